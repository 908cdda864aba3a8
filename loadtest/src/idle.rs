//! `loadtest idle`: hold many QUIC participants in calls doing nothing (QUIC keepalives only) and
//! sample the server's resident memory (`switchboard_process_resident_memory_bytes`), to show it
//! stays flat while they idle and returns when they leave.

use crate::acs::AcsClient;
use anyhow::Context as _;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientOptions};

pub struct IdleArgs {
    pub quic: SocketAddr,
    pub participants: usize,
    pub per_room: usize,
    pub hold: Duration,
    pub sample: Duration,
    pub concurrency: usize,
    pub metrics_token: Option<String>,
    /// Only register each connection as a device (reachable for calls), joining no call.
    pub register_only: bool,
    /// Also send a signaling `ping` this often (as a client that keeps its session alive at the
    /// application level would); `None`: QUIC keepalives only.
    pub ping_every: Option<Duration>,
    /// Local addresses to send from, one per client in turn (empty: the unspecified address).
    pub local_ips: Vec<std::net::IpAddr>,
    /// Each client's QUIC keepalive interval.
    pub keep_alive: Duration,
}

/// One RSS sample, seconds after the hold began.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    pub seconds: f64,
    pub rss_bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct IdleReport {
    pub participants: usize,
    pub rooms: usize,
    pub before_join_rss_bytes: u64,
    pub samples: Vec<Sample>,
    /// Least-squares slope of RSS over the hold, bytes per second.
    pub slope_bytes_per_second: f64,
    /// The slope divided by the participants.
    pub slope_bytes_per_participant_second: f64,
    /// RSS 15 s after every participant left.
    pub after_leave_rss_bytes: u64,
}

async fn rss(acs: &AcsClient, token: Option<&str>) -> anyhow::Result<u64> {
    let text = acs.get_text("/metrics", token).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("the server exports no switchboard_process_resident_memory_bytes (Linux only)")
}

/// Least-squares slope of `y` over `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx).powi(2)));
    if den == 0.0 { 0.0 } else { num / den }
}

/// How often a participant's join is tried before the run fails.
const JOIN_ATTEMPTS: u64 = 3;

/// One participant: an identity, a QUIC connection, then a call joined (or a device registered).
async fn join_one(
    acs: &AcsClient,
    ca: &[u8],
    quic: std::net::SocketAddr,
    local_ip: Option<std::net::IpAddr>,
    keep_alive: Duration,
    register_only: bool,
    group: &str,
) -> anyhow::Result<Client> {
    let (status, body) =
        acs.post("/identities?api-version=2023-10-01", &json!({"createTokenWithScopes": ["voip"]})).await?;
    anyhow::ensure!(status == 201, "creating an identity: {status} {body}");
    let token = body["accessToken"]["token"].as_str().context("a token")?.to_owned();
    let mut options = ClientOptions::new(quic, ca.to_vec());
    options.local_ip = local_ip;
    options.keep_alive = keep_alive;
    let client = Client::connect(options).await?;
    if register_only {
        client.register(&token, None).await?;
    } else {
        client.join_group(&token, group).await?;
    }
    Ok(client)
}

pub async fn run(acs: AcsClient, ca: Vec<u8>, args: &IdleArgs) -> anyhow::Result<IdleReport> {
    let token = args.metrics_token.as_deref();
    let before_join = rss(&acs, token).await?;
    let rooms = args.participants.div_ceil(args.per_room.max(1));
    // Group call IDs are UUIDs: the run's prefix, the room's index as the last field.
    let run_id = std::process::id();
    eprintln!("joining {} participants into {rooms} group calls...", args.participants);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..args.participants {
        let (acs, ca, semaphore) = (acs.clone(), ca.clone(), semaphore.clone());
        let (register_only, keep_alive) = (args.register_only, args.keep_alive);
        let local_ip = (!args.local_ips.is_empty()).then(|| args.local_ips[i % args.local_ips.len()]);
        let (quic, group) = (args.quic, format!("{run_id:08x}-0000-4000-8000-{:012x}", i / args.per_room.max(1)));
        joins.spawn(async move {
            let _permit = semaphore.acquire_owned().await.context("semaphore")?;
            // A join that fails (the server too busy to answer the identity request in time,
            // once, at 80,000 joined) is tried again rather than ending the whole run.
            let mut attempt = 1;
            loop {
                match join_one(&acs, &ca, quic, local_ip, keep_alive, register_only, &group).await {
                    Ok(client) => return anyhow::Ok(client),
                    Err(e) if attempt < JOIN_ATTEMPTS => {
                        eprintln!("participant {i}: join attempt {attempt} failed ({e:#}); trying again");
                        tokio::time::sleep(Duration::from_secs(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e.context(format!("participant {i}: {JOIN_ATTEMPTS} join attempts failed"))),
                }
            }
        });
    }
    let mut clients = Vec::with_capacity(args.participants);
    while let Some(joined) = joins.join_next().await {
        clients.push(Arc::new(joined??));
    }
    let mut pingers = tokio::task::JoinSet::new();
    if let Some(every) = args.ping_every {
        for client in &clients {
            let client = Arc::clone(client);
            pingers.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if client.request(switchboard::signaling::messages::ClientMessage::Ping {}).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    eprintln!("all joined; holding {:?}, sampling every {:?}", args.hold, args.sample);
    // Let the joins' transient allocations settle before the first sample.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let sample = Sample { seconds: start.elapsed().as_secs_f64(), rss_bytes: rss(&acs, token).await? };
        eprintln!("{:>7.0} s  RSS {:>8.1} MiB", sample.seconds, sample.rss_bytes as f64 / 1_048_576.0);
        samples.push(sample);
        if start.elapsed() >= args.hold {
            break;
        }
        tokio::time::sleep(args.sample).await;
    }
    pingers.abort_all();
    drop(clients);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after_leave = rss(&acs, token).await?;
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.seconds, s.rss_bytes as f64)).collect();
    let slope = slope(&points);
    Ok(IdleReport {
        participants: args.participants,
        rooms,
        before_join_rss_bytes: before_join,
        samples,
        slope_bytes_per_second: slope,
        slope_bytes_per_participant_second: slope / args.participants.max(1) as f64,
        after_leave_rss_bytes: after_leave,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (f64::from(x), 3.0 * f64::from(x) + 7.0)).collect();
        assert!((super::slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(super::slope(&[(1.0, 2.0)]), 0.0);
    }
}
