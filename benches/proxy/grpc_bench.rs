//! The gRPC side of `scripts/bench-proxy.sh`'s `grpc-unary` mode (ghz is
//! not available here): a tonic unary backend, and a load client that
//! calls it through a proxy over TLS with a client certificate and reports
//! what it measured in the shape of oha's JSON, so the script reads both
//! alike.
//!
//!   grpc-bench serve --listen 127.0.0.1:PORT
//!   grpc-bench load --host grpc.bench.local --connect 127.0.0.1:PORT \
//!       --cacert ca.crt --cert client.crt --key client.key -c 32 -z 3
//!
//! Messages are raw bytes (real gRPC framing, no protobuf code generation):
//! the proxies under test never look inside them. The backend speaks h2
//! with prior knowledge (h2c), as ingress-nginx's `backend-protocol: GRPC`
//! does; each of the client's `-c` connections makes one call at a time.

#[path = "../../tests/common/grpc_raw.rs"]
mod grpc_raw;
use grpc_raw::Raw;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one method.
const UNARY: &str = "/bench.Bench/Unary";
/// The answer: 100 bytes, like the HTTP modes' body.
const ANSWER: &[u8; 100] = &[b'x'; 100];

#[derive(Parser)]
#[command(about = "gRPC unary backend and load client for scripts/bench-proxy.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the unary method over h2c.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Runtime worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Calls the method through a TLS front; prints oha-shaped JSON.
    Load {
        /// The host: SNI and `:authority`.
        #[arg(long)]
        host: String,
        /// Where to connect.
        #[arg(long)]
        connect: SocketAddr,
        /// The CA that signed the front's certificate (PEM).
        #[arg(long)]
        cacert: PathBuf,
        /// The client certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Connections, each making one call at a time.
        #[arg(short = 'c', long, default_value_t = 32)]
        connections: usize,
        /// Seconds to run.
        #[arg(short = 'z', long, default_value_t = 3)]
        seconds: u64,
        /// Stop after this many calls instead (and fail on any error).
        #[arg(long)]
        calls: Option<u64>,
        /// Runtime worker threads (default: the CPUs).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Command::Serve { listen, threads } => runtime(threads)?.block_on(serve(listen)),
        Command::Load {
            host,
            connect,
            cacert,
            cert,
            key,
            connections,
            seconds,
            calls,
            threads,
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let tls = client_tls(&cacert, &cert, &key)?;
            let report = runtime(threads)?.block_on(load(
                host,
                connect,
                tls,
                connections.max(1),
                Duration::from_secs(seconds),
                calls,
            ));
            println!("{}", report.json);
            let failed = report.ok == 0 || (calls.is_some() && report.errors > 0);
            if failed {
                return Err(
                    format!("{} calls failed, {} succeeded", report.errors, report.ok).into(),
                );
            }
            Ok(())
        }
    }
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

// ---------------------------------------------------------------- backend --

/// Answers every call with [`ANSWER`].
#[derive(Clone, Copy)]
struct Answer;

impl tower_service::Service<tonic::Request<Bytes>> for Answer {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(Bytes::from_static(ANSWER))))
    }
}

async fn serve(listen: SocketAddr) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(_) => continue,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let resp = match req.uri().path() {
                    UNARY => tonic::server::Grpc::new(Raw).unary(Answer, req).await,
                    _ => Status::unimplemented("no such method").into_http(),
                };
                Ok::<_, Infallible>(resp)
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

// ----------------------------------------------------------------- client --

fn client_tls(
    cacert: &PathBuf,
    cert: &PathBuf,
    key: &PathBuf,
) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cacert)? {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// One h2 connection; every call is addressed to `authority`.
#[derive(Clone)]
struct Channel {
    sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    authority: String,
}

impl tower_service::Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }
    fn call(&mut self, mut req: Request<tonic::body::Body>) -> Self::Future {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("https://{}{pq}", self.authority).parse() {
            *req.uri_mut() = uri;
        }
        Box::pin(self.sender.send_request(req))
    }
}

async fn channel(
    host: &str,
    connect: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<tonic::client::Grpc<Channel>, BoxError> {
    let tcp = tokio::net::TcpStream::connect(connect).await?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from(host.to_string())?, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(format!("{connect} did not choose h2 by ALPN").into());
    }
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(tonic::client::Grpc::new(Channel {
        sender,
        authority: format!("{host}:{}", connect.port()),
    }))
}

/// What one connection's calls came to.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

async fn calls(
    host: String,
    connect: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    deadline: Instant,
    budget: Option<Arc<AtomicU64>>,
) -> Tally {
    let mut tally = Tally::default();
    let mut grpc = match channel(&host, connect, tls.clone()).await {
        Ok(g) => g,
        Err(e) => {
            *tally.errors.entry(format!("connect: {e}")).or_default() += 1;
            return tally;
        }
    };
    let path: http::uri::PathAndQuery = http::uri::PathAndQuery::from_static(UNARY);
    while Instant::now() < deadline {
        if let Some(b) = &budget
            && b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        let started = Instant::now();
        let result = match grpc.ready().await {
            Ok(()) => {
                grpc.unary(
                    tonic::Request::new(Bytes::from_static(b"bench-call")),
                    path.clone(),
                    Raw,
                )
                .await
            }
            Err(e) => Err(Status::unavailable(e.to_string())),
        };
        match result {
            Ok(resp) if resp.get_ref().len() == ANSWER.len() => tally
                .latencies_us
                .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)),
            Ok(resp) => {
                *tally
                    .errors
                    .entry(format!("answer of {} bytes", resp.get_ref().len()))
                    .or_default() += 1
            }
            Err(s) => {
                *tally
                    .errors
                    .entry(format!("grpc-status {:?}: {}", s.code(), s.message()))
                    .or_default() += 1;
                // A broken connection stays broken: open another.
                if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown {
                    match channel(&host, connect, tls.clone()).await {
                        Ok(g) => grpc = g,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
        }
    }
    tally
}

struct Report {
    json: String,
    ok: u64,
    errors: u64,
}

async fn load(
    host: String,
    connect: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    connections: usize,
    duration: Duration,
    budget: Option<u64>,
) -> Report {
    let started = Instant::now();
    let deadline = if budget.is_some() {
        started + Duration::from_secs(30)
    } else {
        started + duration
    };
    let budget = budget.map(|n| Arc::new(AtomicU64::new(n)));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(calls(
                host.clone(),
                connect,
                tls.clone(),
                deadline,
                budget.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            latencies.extend(tally.latencies_us);
            for (k, v) in tally.errors {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        let i = ((latencies.len() as f64 * p).ceil() as usize).checked_sub(1)?;
        latencies.get(i).map(|us| f64::from(*us) / 1e6)
    };
    let ok = latencies.len() as u64;
    let error_count: u64 = errors.values().sum();
    // The keys scripts/bench-proxy.sh's report reads from oha's JSON.
    let json = serde_json::json!({
        "summary": {
            "total": total,
            "requestsPerSec": ok as f64 / total.max(1e-9),
            "successRate": if ok + error_count == 0 { 0.0 } else { ok as f64 / (ok + error_count) as f64 },
        },
        "statusCodeDistribution": { "200": ok },
        "errorDistribution": errors,
        "latencyPercentiles": { "p50": pct(0.5), "p99": pct(0.99) },
    });
    Report {
        json: json.to_string(),
        ok,
        errors: error_count,
    }
}
