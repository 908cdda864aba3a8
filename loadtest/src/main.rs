//! The Switchboard load-test harness. `loadtest tokens` drives the identity API; media scenarios
//! drive real calls through the SFU.

mod acs;
mod stats;
mod tokens;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "loadtest", about = "Load-test harness for Switchboard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create identities and issue access tokens through the HMAC-signed REST API.
    Tokens {
        /// `endpoint=https://HOST:PORT/;accesskey=KEY` (`switchboard connection-string` prints it).
        #[arg(long, env = "SWITCHBOARD_CONNECTION_STRING")]
        connection_string: String,
        /// Certificate to trust (the server's `data/tls/ca.pem` by default install).
        #[arg(long, default_value = "data/tls/ca.pem")]
        ca_cert: PathBuf,
        /// Identities to create before issuing tokens.
        #[arg(long, default_value_t = 100)]
        identities: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How long to issue tokens (e.g. 30s, 2m).
        #[arg(long, default_value = "10s", value_parser = stats::parse_duration)]
        duration: std::time::Duration,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Tokens { connection_string, ca_cert, identities, concurrency, duration, json } => {
            anyhow::ensure!(identities > 0 && concurrency > 0, "--identities and --concurrency must be positive");
            let ca = std::fs::read(&ca_cert).with_context(|| format!("reading --ca-cert {}", ca_cert.display()))?;
            let client = acs::AcsClient::new(&connection_string, &ca)?;
            eprintln!(
                "loadtest tokens: {} identities, {concurrency} clients, {:?} against {}",
                identities,
                duration,
                client.endpoint()
            );
            let args = tokens::TokensArgs { identities, concurrency, duration };
            let mut phases = runtime.block_on(tokens::run(client, &args))?;
            println!("{:<18} {:>9} {:>7} {:>10} {:>9} {:>9}", "phase", "ok", "errors", "req/s", "p50 ms", "p99 ms");
            let mut out = Vec::new();
            for p in &mut phases {
                let (p50, p99) = (p.latencies.quantile_ms(0.5), p.latencies.quantile_ms(0.99));
                println!(
                    "{:<18} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2}",
                    p.name,
                    p.ok,
                    p.errors,
                    p.rate(),
                    p50.unwrap_or(f64::NAN),
                    p99.unwrap_or(f64::NAN)
                );
                out.push(serde_json::json!({
                    "phase": p.name, "ok": p.ok, "errors": p.errors, "requests_per_second": p.rate(),
                    "latency_ms": {"p50": p50, "p99": p99}, "seconds": p.elapsed.as_secs_f64(),
                }));
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
            }
            let errors: u64 = phases.iter().map(|p| p.errors).sum();
            anyhow::ensure!(errors == 0, "{errors} requests failed");
        }
    }
    Ok(())
}
