//! The Switchboard load-test harness. `loadtest tokens` drives the identity API; media scenarios
//! drive real calls through the SFU.

mod acs;
mod floor;
mod idle;
mod media;
mod soak;
mod stats;
mod tokens;
mod webrtc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "loadtest", about = "Load-test harness for Switchboard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SfuKind {
    Switchboard,
    Janus,
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
    /// Many short participant lives (join, publish, subscribe, leave) with media flowing; then
    /// check the server's sessions, maps, tasks and descriptors are back to their baseline.
    Soak {
        /// `endpoint=https://HOST:PORT/;accesskey=KEY` (`switchboard connection-string` prints it).
        #[arg(long, env = "SWITCHBOARD_CONNECTION_STRING")]
        connection_string: String,
        /// Certificate to trust (the server's `data/tls/ca.pem` by default install).
        #[arg(long, default_value = "data/tls/ca.pem")]
        ca_cert: PathBuf,
        /// The server's QUIC address (`quic.listen`).
        #[arg(long, default_value = "127.0.0.1:4433")]
        quic: std::net::SocketAddr,
        /// Participant lives to run.
        #[arg(long, default_value_t = 10_000)]
        cycles: u64,
        /// Group calls, each with a resident publisher.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Participant lives in progress at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// `http.metrics_token`, if the server requires one.
        #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN")]
        metrics_token: Option<String>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Synthetic participants with audio and simulcast video over QUIC or WebRTC: loss, latency,
    /// and the server's CPU per forwarded packet against the machine's bare send cost.
    Media {
        /// quic (`switchboard::client`) or webrtc (str0m peers signaled over `wss://HOST/signal`).
        #[arg(long, value_enum, default_value = "quic")]
        carrier: media::Carrier,
        /// The SFU under test: switchboard, or janus (its VideoRoom over the HTTP API at
        /// --janus-url; webrtc only; no connection string, identities or /metrics).
        #[arg(long, value_enum, default_value = "switchboard")]
        sfu: SfuKind,
        /// Janus's API (`janus.transport.http.jcfg`), with `--sfu janus`.
        #[arg(long, default_value = "http://127.0.0.2:8088/janus")]
        janus_url: String,
        /// The VideoRoom room, with `--sfu janus`.
        #[arg(long, default_value_t = 1234)]
        janus_room: u64,
        /// WebRTC: the address the peers' sockets bind to (their ICE host candidate); default the
        /// local address that routes to the server.
        #[arg(long)]
        local_ip: Option<std::net::IpAddr>,
        /// From everyone joined to the start of the steady window the per-subscriber rates and
        /// layers are measured over.
        #[arg(long, default_value = "3s", value_parser = stats::parse_duration)]
        settle: std::time::Duration,
        /// `endpoint=https://HOST:PORT/;accesskey=KEY` (`switchboard connection-string` prints
        /// it); default: the file `data/connection-string` a server started here wrote.
        #[arg(long, env = "SWITCHBOARD_CONNECTION_STRING")]
        connection_string: Option<String>,
        #[arg(long, default_value = "data/tls/ca.pem")]
        ca_cert: PathBuf,
        #[arg(long, default_value = "127.0.0.1:4433")]
        quic: std::net::SocketAddr,
        /// audio-large, video-meeting or livestream (the explicit counts below override it).
        #[arg(long, default_value = "video-meeting")]
        scenario: String,
        #[arg(long)]
        rooms: Option<usize>,
        /// Publishers per room.
        #[arg(long)]
        publishers: Option<usize>,
        /// Receive-only participants per room.
        #[arg(long)]
        subscribers: Option<usize>,
        /// How long media flows once everyone has joined.
        #[arg(long, default_value = "20s", value_parser = stats::parse_duration)]
        duration: std::time::Duration,
        /// Participants joining per second.
        #[arg(long, default_value_t = 20.0)]
        join_rate: f64,
        /// `http.metrics_token`, if the server requires one.
        #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN")]
        metrics_token: Option<String>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The machine's bare cost of sending a UDP packet (sendmmsg to loopback sockets).
    Floor {
        #[arg(long, default_value_t = 1200)]
        size: usize,
        #[arg(long, default_value_t = 64)]
        sockets: usize,
        #[arg(long, default_value_t = 200_000)]
        packets: usize,
    },
    /// Hold QUIC participants idle in group calls and sample the server's resident memory.
    Idle {
        /// `endpoint=https://HOST:PORT/;accesskey=KEY` (`switchboard connection-string` prints it).
        #[arg(long, env = "SWITCHBOARD_CONNECTION_STRING")]
        connection_string: String,
        /// Certificate to trust (the server's `data/tls/ca.pem` by default install).
        #[arg(long, default_value = "data/tls/ca.pem")]
        ca_cert: PathBuf,
        /// The server's QUIC address (`quic.listen`).
        #[arg(long, default_value = "127.0.0.1:4433")]
        quic: std::net::SocketAddr,
        /// Participants to hold.
        #[arg(long, default_value_t = 2000)]
        participants: usize,
        /// Participants per group call.
        #[arg(long, default_value_t = 10)]
        per_room: usize,
        /// How long to hold them (e.g. 10m).
        #[arg(long, default_value = "10m", value_parser = stats::parse_duration)]
        hold: std::time::Duration,
        /// How often to sample the server's resident memory.
        #[arg(long, default_value = "30s", value_parser = stats::parse_duration)]
        sample: std::time::Duration,
        /// Joins in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// `http.metrics_token`, if the server requires one.
        #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN")]
        metrics_token: Option<String>,
        /// Only register each connection as a device (reachable for calls), joining no call.
        #[arg(long)]
        register_only: bool,
        /// Also send a signaling ping this often (e.g. 5s); default: QUIC keepalives only.
        #[arg(long, value_parser = stats::parse_duration)]
        ping_every: Option<std::time::Duration>,
        /// Local addresses the clients send from, taken in turn (comma-separated, e.g.
        /// 127.0.0.2,127.0.0.3): one address has fewer UDP ports than 100,000 clients need.
        /// Default: the unspecified address.
        #[arg(long, value_delimiter = ',')]
        local_ip: Vec<std::net::IpAddr>,
        /// How often each client sends a QUIC keepalive (under the server's
        /// `quic.idle_timeout_seconds`). At 100,000 clients every 5 s is 20,000 packets a
        /// second for the testers and the server; longer intervals leave more CPU for joining.
        #[arg(long, default_value = "5s", value_parser = stats::parse_duration)]
        keepalive: std::time::Duration,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Media {
            carrier,
            sfu,
            janus_url,
            janus_room,
            local_ip,
            settle,
            connection_string,
            ca_cert,
            quic,
            scenario,
            rooms,
            publishers,
            subscribers,
            duration,
            join_rate,
            metrics_token,
            json,
        } => {
            let mut shape = media::Shape::scenario(&scenario)?;
            shape.rooms = rooms.unwrap_or(shape.rooms);
            shape.publishers = publishers.unwrap_or(shape.publishers);
            shape.subscribers = subscribers.unwrap_or(shape.subscribers);
            anyhow::ensure!(shape.rooms > 0 && shape.publishers > 0, "--rooms and --publishers must be positive");
            let (server, target) = match sfu {
                SfuKind::Switchboard => {
                    let connection_string = match connection_string {
                        Some(cs) => cs,
                        None => std::fs::read_to_string("data/connection-string")
                            .context("no --connection-string, and no data/connection-string here")?
                            .trim()
                            .to_owned(),
                    };
                    let ca =
                        std::fs::read(&ca_cert).with_context(|| format!("reading --ca-cert {}", ca_cert.display()))?;
                    let acs = acs::AcsClient::new(&connection_string, &ca)?;
                    let target = acs.endpoint().to_owned();
                    (media::Server::Switchboard { acs, ca, metrics_token }, target)
                }
                SfuKind::Janus => {
                    anyhow::ensure!(carrier == media::Carrier::WebRtc, "--sfu janus needs --carrier webrtc");
                    let target = format!("Janus {janus_url} room {janus_room}");
                    (media::Server::Janus { url: janus_url, room: janus_room }, target)
                }
            };
            eprintln!("loadtest media: {scenario} {shape:?} over {carrier:?} for {duration:?} against {target}");
            let args = media::MediaArgs { carrier, quic, shape, duration, join_rate, settle, local_ip };
            let report = runtime.block_on(media::run(server, &args))?;
            media::print(&report);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
            }
            anyhow::ensure!(report.failed_participants == 0, "{} participants failed", report.failed_participants);
        }
        Command::Floor { size, sockets, packets } => {
            let us = floor::measure(size, sockets, packets).context("cannot measure the send cost here")?;
            println!("{us:.2} µs of CPU per {size}-byte UDP packet (sendmmsg to {sockets} loopback sockets)");
        }
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
        Command::Soak { connection_string, ca_cert, quic, cycles, rooms, concurrency, metrics_token, json } => {
            anyhow::ensure!(rooms > 0 && concurrency > 0, "--rooms and --concurrency must be positive");
            let ca = std::fs::read(&ca_cert).with_context(|| format!("reading --ca-cert {}", ca_cert.display()))?;
            let client = acs::AcsClient::new(&connection_string, &ca)?;
            let args = soak::SoakArgs { quic, cycles, rooms, concurrency, metrics_token };
            let report = runtime.block_on(soak::run(client, ca, &args))?;
            println!(
                "{} cycles ({} failed) in {:.0} s ({:.1}/s); peak RSS {:.1} MiB",
                report.cycles,
                report.failed_cycles,
                report.seconds,
                report.cycles as f64 / report.seconds.max(1e-9),
                report.peak_rss_bytes / 1_048_576.0
            );
            println!("{:<70} {:>14} {:>14}", "series", "baseline", "after");
            for (series, before) in &report.baseline {
                let after = report.after.get(series).copied().unwrap_or(0.0);
                println!("{series:<70} {before:>14} {after:>14}");
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
            }
            let stuck = soak::not_back(&report);
            anyhow::ensure!(stuck.is_empty(), "not back to baseline: {}", stuck.join("; "));
            anyhow::ensure!(report.failed_cycles == 0, "{} cycles failed", report.failed_cycles);
        }
        Command::Idle {
            connection_string,
            ca_cert,
            quic,
            participants,
            per_room,
            hold,
            sample,
            concurrency,
            metrics_token,
            register_only,
            ping_every,
            local_ip,
            keepalive,
            json,
        } => {
            anyhow::ensure!(participants > 0 && per_room > 0, "--participants and --per-room must be positive");
            let ca = std::fs::read(&ca_cert).with_context(|| format!("reading --ca-cert {}", ca_cert.display()))?;
            let client = acs::AcsClient::new(&connection_string, &ca)?;
            let args = idle::IdleArgs {
                quic,
                participants,
                per_room,
                hold,
                sample,
                concurrency,
                metrics_token,
                register_only,
                ping_every,
                local_ips: local_ip,
                keep_alive: keepalive,
            };
            let report = runtime.block_on(idle::run(client, ca, &args))?;
            let mib = |b: u64| b as f64 / 1_048_576.0;
            let first = report.samples.first().map_or(0, |s| s.rss_bytes);
            let last = report.samples.last().map_or(0, |s| s.rss_bytes);
            println!(
                "{} participants in {} calls: RSS before join {:.1} MiB, hold start {:.1} MiB, end {:.1} MiB, after leave {:.1} MiB",
                report.participants,
                report.rooms,
                mib(report.before_join_rss_bytes),
                mib(first),
                mib(last),
                mib(report.after_leave_rss_bytes)
            );
            println!(
                "slope {:.1} B/s = {:.3} B per participant per second",
                report.slope_bytes_per_second, report.slope_bytes_per_participant_second
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
            }
        }
    }
    Ok(())
}
