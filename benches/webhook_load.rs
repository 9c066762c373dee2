//! HTTPS throughput and latency of `tlsward webhook` against a baseline
//! server, measured in one run on one machine.
//!
//! ```text
//! cargo bench --bench webhook_load
//! TLSWARD_LOAD_ROUNDS=5 TLSWARD_LOAD_SECONDS=10 cargo bench --bench webhook_load
//! ```
//!
//! What it does:
//! 1. Generates a throwaway CA and a serving certificate for `localhost` /
//!    `127.0.0.1` with rcgen, into a temporary directory (deleted at exit).
//! 2. Writes two ClientAuthPolicy manifests: one policy, and the same policy
//!    among `TLSWARD_LOAD_POLICIES` (default 10,000), as one multi-document
//!    YAML file each.
//! 3. Starts three servers as child processes on 127.0.0.1:
//!    - `baseline`: `examples/baseline_webhook.rs`, axum-server + rustls
//!      (tlsward's stack before it served with hyper under its connection
//!      limits) answering a fixed AdmissionReview without parsing;
//!    - `tlsward`: `tlsward webhook --client-auth-policies <1 policy>`;
//!    - `tlsward-10k`: `tlsward webhook --client-auth-policies <10,000>`.
//!
//!    tlsward runs with its defaults: secure default policy, `info` logs
//!    (one line per review, written to a file in the temporary directory).
//! 4. For each round (default 3), drives each server in turn (order rotated
//!    every round) with `C` keep-alive HTTP/1.1 connections over TLS
//!    (default 16), which verify the server against the CA, each POSTing a
//!    kubectl-like Ingress AdmissionReview to `/validate` back to back. A
//!    warm-up (default 1 s) is discarded, then requests are counted for the
//!    measurement window (default 5 s). Every response must be 200 with
//!    `"allowed":true`, or the bench fails.
//! 5. Prints req/s, p50 and p99 per server and round, and the CPU time
//!    (user + system, from /proc) the server and the load generator spent
//!    per measured request, then the ratios tlsward/baseline (throughput,
//!    p99, server CPU per request) and tlsward-10k/tlsward (latency and
//!    throughput), per round and min/median/max across rounds.
//!
//! The tlsward binary is the one cargo builds for this bench. The baseline is
//! built by running `cargo build --release --example baseline_webhook` from
//! here (a no-op when it is fresh); set `TLSWARD_LOAD_NO_BUILD=1` to skip
//! that and use `target/release/examples/baseline_webhook` as it is.
//!
//! Environment: `TLSWARD_LOAD_ROUNDS` (3), `TLSWARD_LOAD_SECONDS` (5),
//! `TLSWARD_LOAD_WARMUP_SECONDS` (1), `TLSWARD_LOAD_CONNECTIONS` (16),
//! `TLSWARD_LOAD_POLICIES` (10000), `TLSWARD_LOAD_LOG_LEVEL` (info, tlsward's
//! `--log-level`).
//!
//! The load generator shares the machine's cores with the server under
//! test; ratios taken in the same run are what to compare, not absolute
//! figures across machines. Child processes are killed when the bench ends,
//! fails or panics.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Binding;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest a single request may take before the run is declared broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a server may take to answer its first review.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

struct Config {
    rounds: usize,
    measure: Duration,
    warmup: Duration,
    connections: usize,
    policies: usize,
    log_level: String,
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Self {
        let cfg = Self {
            rounds: env_or("TLSWARD_LOAD_ROUNDS", 3),
            measure: Duration::from_secs_f64(env_or("TLSWARD_LOAD_SECONDS", 5.0)),
            warmup: Duration::from_secs_f64(env_or("TLSWARD_LOAD_WARMUP_SECONDS", 1.0)),
            connections: env_or("TLSWARD_LOAD_CONNECTIONS", 16),
            policies: env_or("TLSWARD_LOAD_POLICIES", 10_000),
            log_level: env_or("TLSWARD_LOAD_LOG_LEVEL", "info".to_string()),
        };
        assert!(cfg.rounds >= 1, "TLSWARD_LOAD_ROUNDS must be at least 1");
        assert!(
            cfg.connections >= 1,
            "TLSWARD_LOAD_CONNECTIONS must be at least 1"
        );
        assert!(
            cfg.policies >= 2,
            "TLSWARD_LOAD_POLICIES must be at least 2"
        );
        assert!(
            cfg.measure >= Duration::from_millis(100) && cfg.measure <= Duration::from_secs(600),
            "TLSWARD_LOAD_SECONDS must be between 0.1 and 600"
        );
        assert!(
            cfg.warmup <= Duration::from_secs(60),
            "TLSWARD_LOAD_WARMUP_SECONDS must be at most 60"
        );
        cfg
    }
}

/// The serving certificate, its key, and the CA that signed it.
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    ca: CertificateDer<'static>,
}

fn write_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tlsward webhook_load bench CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "tlsward-webhook.tlsward.svc");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).expect("server certificate");

    let pki = Pki {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca: ca.der().clone(),
    };
    fs::write(&pki.cert, cert.pem()).expect("writing tls.crt");
    write_private(&pki.key, key.serialize_pem().as_bytes());
    pki
}

fn write_private(path: &Path, data: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("creating the key file");
    f.write_all(data).expect("writing the key file");
}

fn write_policies(dir: &Path, count: usize) -> PathBuf {
    let d = dir.join(format!("client-auth-policies-{count}"));
    fs::create_dir(&d).expect("creating the policy directory");
    fs::write(
        d.join("policies.yaml"),
        common::client_auth_policies_yaml(count),
    )
    .expect("writing the policies");
    d
}

/// A child process, killed and reaped when dropped (also on panic).
struct Server {
    name: String,
    addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(name: &str, mut cmd: Command, addr: SocketAddr, log: PathBuf) -> Self {
        let out = fs::File::create(&log).expect("creating a log file");
        let err = out.try_clone().expect("cloning a log file");
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Server {
            name: name.to_string(),
            addr,
            log,
            child,
        }
    }

    /// Panics with the end of the server's log if it has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}; its log ends with:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Distinct free ports on 127.0.0.1, found by binding and releasing them.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address"))
        .collect()
}

/// `target/<profile>` of this bench executable (`.../deps/webhook_load-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("bench executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

fn baseline_binary() -> PathBuf {
    let skip_build = std::env::var_os("TLSWARD_LOAD_NO_BUILD").is_some_and(|v| v == "1");
    if !skip_build && let Some(cargo) = std::env::var_os("CARGO") {
        let status = Command::new(cargo)
            .args(["build", "--release", "--example", "baseline_webhook"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the baseline");
        assert!(
            status.success(),
            "cargo build --release --example baseline_webhook failed"
        );
    }
    let path = profile_dir().join("examples/baseline_webhook");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --example baseline_webhook` first",
        path.display()
    );
    path
}

/// One HTTPS client configuration for every connection: trusts only the
/// bench CA, speaks HTTP/1.1.
fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("adding the bench CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTPS connection, its driver task aborted on drop.
struct Connection {
    sender: Sender,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> Result<Connection, String> {
    assert!(
        addr.ip().is_loopback(),
        "the load generator only targets 127.0.0.1"
    );
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let name = ServerName::try_from("localhost").expect("valid server name");
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection { sender, driver })
}

/// POSTs `body` to /validate; returns the status and the response body.
async fn post(conn: &mut Connection, body: &Bytes) -> Result<(StatusCode, Bytes), String> {
    let exchange = async {
        conn.sender
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let req = Request::post("/validate")
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(body.clone()))
            .expect("valid request");
        let resp = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails unless the response admits the object.
fn check(server: &str, status: StatusCode, body: &[u8]) -> Result<(), String> {
    if status != StatusCode::OK || !contains(body, br#""allowed":true"#) {
        return Err(format!(
            "{server}: HTTP {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    Ok(())
}

/// One connection's back-to-back requests until `until`; latencies (ns) of
/// requests sent at or after `from` and answered by `until`.
async fn client(
    server: String,
    addr: SocketAddr,
    tls: TlsConnector,
    body: Bytes,
    from: Instant,
    until: Instant,
) -> Result<Vec<u64>, String> {
    let mut conn = connect(addr, &tls).await?;
    let mut latencies = Vec::with_capacity(64 * 1024);
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let (status, resp) = post(&mut conn, &body).await?;
        let done = Instant::now();
        check(&server, status, &resp)?;
        if sent >= from && done <= until {
            latencies.push((done - sent).as_nanos() as u64);
        }
    }
    Ok(latencies)
}

/// What one server did in one measurement window.
#[derive(Clone, Debug)]
struct Run {
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time (user + system) the server spent per measured request.
    server_cpu: Duration,
    /// CPU time the load generator (this process) spent per measured request.
    client_cpu: Duration,
}

/// User + system CPU time of process `pid` (all its threads) so far, from
/// /proc/<pid>/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
fn cpu_time(pid: &str) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses; utime and
    // stime are fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Duration::from_nanos(sorted[rank.min(sorted.len()) - 1])
}

async fn drive(
    server: &str,
    pid: u32,
    addr: SocketAddr,
    cfg: &Config,
    tls: &TlsConnector,
    body: &Bytes,
) -> Run {
    let from = Instant::now() + cfg.warmup;
    let until = from + cfg.measure;
    let pid = pid.to_string();
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|_| {
            tokio::spawn(client(
                server.to_string(),
                addr,
                tls.clone(),
                body.clone(),
                from,
                until,
            ))
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let (server_start, client_start) = (cpu_time(&pid), cpu_time("self"));
    tokio::time::sleep_until(until.into()).await;
    let (server_end, client_end) = (cpu_time(&pid), cpu_time("self"));
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(lat)) => all.extend(lat),
            Ok(Err(e)) => panic!("{server}: {e}"),
            Err(e) => panic!("{server}: load task failed: {e}"),
        }
    }
    assert!(
        !all.is_empty(),
        "{server}: no request completed in the window"
    );
    all.sort_unstable();
    let n = all.len() as u32;
    Run {
        requests: all.len(),
        rps: all.len() as f64 / cfg.measure.as_secs_f64(),
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        server_cpu: server_end.saturating_sub(server_start) / n,
        client_cpu: client_end.saturating_sub(client_start) / n,
    }
}

/// Polls with real reviews until the server admits one.
async fn wait_ready(server: &mut Server, tls: &TlsConnector, body: &Bytes) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let started = Instant::now();
    loop {
        server.check_alive();
        let attempt = async {
            let mut conn = connect(server.addr, tls).await?;
            let (status, resp) = post(&mut conn, body).await?;
            check(&server.name, status, &resp)
        };
        match attempt.await {
            Ok(()) => {
                println!(
                    "{} ready on https://{} after {:.1} s",
                    server.name,
                    server.addr,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            Err(e) if Instant::now() > deadline => panic!(
                "{} not ready within {STARTUP_TIMEOUT:?}: {e}\nlog:\n{}",
                server.name,
                log_tail(&server.log)
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A review whose annotation names `policy`: tlsward warns when the policy is
/// unknown, so a warning-free answer proves it was loaded.
async fn assert_knows(server: &Server, tls: &TlsConnector, policy: &str) {
    let mut ingress = common::ingress(1, Binding::Annotation);
    ingress["metadata"]["annotations"]["tlsward.io/client-auth-policy"] = policy.into();
    let body = Bytes::from(serde_json::to_vec(&common::admission_review(&ingress)).unwrap());
    let mut conn = connect(server.addr, tls).await.expect("connecting");
    let (status, resp) = post(&mut conn, &body).await.expect("posting");
    check(&server.name, status, &resp).expect("admitted");
    assert!(
        !contains(&resp, b"\"warnings\""),
        "{}: does not know ClientAuthPolicy {policy}: {}",
        server.name,
        String::from_utf8_lossy(&resp)
    );
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (values[0], median, values[n - 1])
}

fn main() {
    // `cargo test --benches` runs bench targets without --bench; a minute of
    // load does not belong in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("webhook_load: skipped (run it with `cargo bench --bench webhook_load`)");
        return;
    }
    let cfg = Config::from_env();
    let baseline_bin = baseline_binary();
    let tlsward_bin = PathBuf::from(env!("CARGO_BIN_EXE_tlsward"));

    let tmp = tempfile::Builder::new()
        .prefix("tlsward-webhook-load-")
        .tempdir()
        .expect("temporary directory");
    let pki = write_pki(tmp.path());
    let one = write_policies(tmp.path(), 1);
    let many = write_policies(tmp.path(), cfg.policies);

    let object = common::ingress(1, Binding::Annotation);
    let object_len = serde_json::to_vec(&object).unwrap().len();
    let body = Bytes::from(serde_json::to_vec(&common::admission_review(&object)).unwrap());

    let addrs = free_addrs(5);
    let tlsward = |name: &str, listen: SocketAddr, admin: SocketAddr, policies: &Path| {
        let mut cmd = Command::new(&tlsward_bin);
        cmd.arg("--log-level")
            .arg(&cfg.log_level)
            .arg("webhook")
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--client-auth-policies")
            .arg(policies);
        Server::start(name, cmd, listen, tmp.path().join(format!("{name}.log")))
    };
    let mut baseline_cmd = Command::new(&baseline_bin);
    baseline_cmd
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.key)
        .arg("--listen")
        .arg(addrs[0].to_string());
    let many_name = if cfg.policies == 10_000 {
        "tlsward-10k".to_string()
    } else {
        format!("tlsward-{}", cfg.policies)
    };
    // Declared after `tmp`, so the processes are gone before it is deleted.
    let mut servers = vec![
        Server::start(
            "baseline",
            baseline_cmd,
            addrs[0],
            tmp.path().join("baseline.log"),
        ),
        tlsward("tlsward", addrs[1], addrs[2], &one),
        tlsward(&many_name, addrs[3], addrs[4], &many),
    ];

    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let tls = connector(&pki.ca);
    rt.block_on(async {
        for s in servers.iter_mut() {
            wait_ready(s, &tls, &body).await;
        }
        assert_knows(&servers[2], &tls, &format!("cap-{:05}", cfg.policies - 1)).await;
    });

    println!(
        "\nload: {} rounds x ({:.1} s warm-up + {:.1} s measured) per server, {} connections, \
         POST /validate of {} bytes (object {} bytes), tlsward --log-level {}; cores: {}; loadavg {}",
        cfg.rounds,
        cfg.warmup.as_secs_f64(),
        cfg.measure.as_secs_f64(),
        cfg.connections,
        body.len(),
        object_len,
        cfg.log_level,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!(
        "\n| round | server | requests | req/s | p50 (us) | p99 (us) | server CPU/req (us) | load generator CPU/req (us) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut runs: Vec<Vec<Run>> = Vec::new();
    for round in 0..cfg.rounds {
        let mut results: Vec<Option<Run>> = vec![None; servers.len()];
        for k in 0..servers.len() {
            let i = (round + k) % servers.len();
            servers[i].check_alive();
            let (name, addr) = (servers[i].name.clone(), servers[i].addr);
            let pid = servers[i].child.id();
            let run = rt.block_on(drive(&name, pid, addr, &cfg, &tls, &body));
            servers[i].check_alive();
            println!(
                "| {} | {name} | {} | {:.0} | {} | {} | {:.1} | {:.1} |",
                round + 1,
                run.requests,
                run.rps,
                us(run.p50),
                us(run.p99),
                run.server_cpu.as_secs_f64() * 1e6,
                run.client_cpu.as_secs_f64() * 1e6
            );
            results[i] = Some(run);
        }
        runs.push(results.into_iter().map(Option::unwrap).collect());
    }

    println!("\nPer server, median across rounds:\n");
    println!("| server | req/s | p50 (us) | p99 (us) | server CPU/req (us) |");
    println!("|---|---:|---:|---:|---:|");
    for (i, s) in servers.iter().enumerate() {
        let median =
            |f: fn(&Run) -> f64| spread(&mut runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>()).1;
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            s.name,
            median(|r| r.rps),
            median(|r| r.p50.as_secs_f64()) * 1e6,
            median(|r| r.p99.as_secs_f64()) * 1e6,
            median(|r| r.server_cpu.as_secs_f64()) * 1e6,
        );
    }

    type Metric = fn(&[Run]) -> f64;
    let ratios: [(&str, Metric, &str); 6] = [
        (
            "tlsward / baseline, req/s",
            |r| r[1].rps / r[0].rps,
            ">= 0.8",
        ),
        (
            "tlsward / baseline, p99",
            |r| r[1].p99.as_secs_f64() / r[0].p99.as_secs_f64(),
            "-",
        ),
        (
            "tlsward / baseline, server CPU per request",
            |r| r[1].server_cpu.as_secs_f64() / r[0].server_cpu.as_secs_f64(),
            "-",
        ),
        (
            "many / 1 policies, p50",
            |r| r[2].p50.as_secs_f64() / r[1].p50.as_secs_f64(),
            "<= 1.1",
        ),
        (
            "many / 1 policies, p99",
            |r| r[2].p99.as_secs_f64() / r[1].p99.as_secs_f64(),
            "<= 1.1",
        ),
        ("many / 1 policies, req/s", |r| r[2].rps / r[1].rps, "-"),
    ];
    println!("\nRatios (many = {many_name}):\n");
    let header: Vec<String> = (1..=cfg.rounds).map(|r| format!("round {r}")).collect();
    println!(
        "| ratio | {} | min | median | max | target |",
        header.join(" | ")
    );
    println!("|---|{}---:|---:|---:|---|", "---:|".repeat(cfg.rounds));
    for (label, metric, target) in ratios {
        let mut values: Vec<f64> = runs.iter().map(|r| metric(r)).collect();
        let per_round: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        let (min, median, max) = spread(&mut values);
        println!(
            "| {label} | {} | {min:.3} | {median:.3} | {max:.3} | {target} |",
            per_round.join(" | ")
        );
    }
    println!("\nloadavg at the end: {}", loadavg());
    drop(servers);
}
