//! Command line only: every command is a function of the library.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tlsward::telemetry::{self, LogFormat};

// Every request allocates small blocks on the thread that serves it;
// mimalloc serves them from per-thread pages, with less work per block than
// glibc's malloc (measured in docs/benchmarks-proxy.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tlsward",
    version,
    about = "Keeps Kubernetes ingress traffic on TLS and enforces mutual TLS at the edge"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG wins when set).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate the admission policy over manifest files, offline.
    /// Exit 0: all Ingresses pass; 1: some violate the policy; 2: unreadable input.
    Check {
        /// Files, directories (recursive) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Policy file; the secure defaults without it.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// An Ingress class tlsward's proxy serves (repeatable), besides the
        /// policy's proxyIngressClasses: its Ingresses get the migration report.
        #[arg(long = "ingress-class", value_name = "CLASS")]
        ingress_classes: Vec<String>,
    },
    /// Serve the validating and mutating admission webhook over HTTPS.
    Webhook(tlsward::webhook::WebhookArgs),
    /// Reconcile ClientAuthPolicies into CA-bundle Secrets (in a cluster).
    Operator(tlsward::operator::OperatorArgs),
    /// Try it on localhost: a throwaway PKI and manifests in DIR, a built-in
    /// upstream, and the proxy serving mutual TLS, with curl lines to try.
    Quickstart(tlsward::quickstart::QuickstartArgs),
    /// Serve Ingresses of class tlsward over HTTPS with per-host mutual TLS.
    Proxy(tlsward::proxy::ProxyArgs),
    /// Print the ClientAuthPolicy CustomResourceDefinition (YAML).
    Crd,
    /// Print the AdmissionReview the API server would send for each object,
    /// one JSON document per line (to try a webhook with curl).
    Review {
        /// Files, directories (recursive) or - for stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// CREATE, UPDATE or DELETE.
        #[arg(long, default_value = "CREATE", value_parser = ["CREATE", "UPDATE", "DELETE", "CONNECT"])]
        operation: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            paths,
            policy,
            output,
            ingress_classes,
        } => {
            let text = match output {
                Output::Text => tlsward::check::OutputFormat::Text,
                Output::Json => tlsward::check::OutputFormat::Json,
            };
            ExitCode::from(tlsward::check::run(
                &paths,
                policy.as_deref(),
                text,
                &ingress_classes,
            ))
        }
        Command::Crd => match tlsward::clientauth::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Review { paths, operation } => match tlsward::manifests::read_paths(&paths) {
            Ok(docs) => {
                for (i, doc) in docs.iter().enumerate() {
                    let uid = format!("tlsward-review-{}", i + 1);
                    let review =
                        tlsward::webhook::review::request_for(&doc.value, &operation, &uid);
                    println!("{review}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Webhook(args) => serve(
            cli.log_format,
            &cli.log_level,
            "webhook",
            tlsward::webhook::run(args),
        ),
        Command::Quickstart(args) => serve(
            cli.log_format,
            &cli.log_level,
            "quickstart",
            tlsward::quickstart::run(args),
        ),
        Command::Proxy(args) => serve(
            cli.log_format,
            &cli.log_level,
            "proxy",
            tlsward::proxy::run(args),
        ),
        Command::Operator(args) => serve(
            cli.log_format,
            &cli.log_level,
            "operator",
            tlsward::operator::run(args),
        ),
    }
}

/// Runs a long-lived role on a Tokio runtime with logging set up.
fn serve(
    format: LogFormat,
    level: &str,
    role: &str,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    // Dropped after the runtime, so the last lines are flushed.
    let _log = telemetry::init_logging(format, level);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %telemetry::error_chain(e.as_ref()), "{role} failed");
            ExitCode::FAILURE
        }
    }
}
