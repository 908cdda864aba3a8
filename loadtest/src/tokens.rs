//! `loadtest tokens`: create identities and issue tokens through the HMAC-signed API as fast as
//! `--concurrency` clients can, and report throughput and latency.

use crate::acs::AcsClient;
use crate::stats::Latencies;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct TokensArgs {
    pub identities: usize,
    pub concurrency: usize,
    pub duration: Duration,
}

/// What one phase measured.
pub struct PhaseReport {
    pub name: &'static str,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl PhaseReport {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn run(client: AcsClient, args: &TokensArgs) -> anyhow::Result<Vec<PhaseReport>> {
    let version = "api-version=2023-10-01";
    // Phase 1: create the identities.
    let next = Arc::new(AtomicU64::new(0));
    let target = args.identities as u64;
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.identities)));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, next, ids) = (client.clone(), next.clone(), ids.clone());
        workers.spawn(async move {
            let mut lat = Latencies::default();
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < target {
                let t = Instant::now();
                match client.post(&format!("/identities?{version}"), &json!({})).await {
                    Ok((201, body)) => {
                        lat.record(t.elapsed());
                        if let Some(id) = body["identity"]["id"].as_str() {
                            ids.lock().expect("no panics while holding the id list").push(id.replace(':', "%3A"));
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        });
    }
    let create = collect("create identity", &mut workers, start).await;
    let ids: Arc<Vec<String>> = Arc::new(std::mem::take(&mut *ids.lock().expect("workers finished")));
    anyhow::ensure!(
        !ids.is_empty(),
        "no identity could be created ({} errors); check the connection string",
        create.errors
    );

    // Phase 2: issue tokens for `duration`.
    let progress = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.concurrency {
        let (client, ids, progress, failures) = (client.clone(), ids.clone(), progress.clone(), failures.clone());
        workers.spawn(async move {
            let mut lat = Latencies::default();
            let mut errors = 0;
            let mut i = w;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 1;
                let t = Instant::now();
                let path = format!("/identities/{id}/:issueAccessToken?{version}");
                match client.post(&path, &json!({"scopes": ["voip"], "expiresInMinutes": 60})).await {
                    Ok((200, _)) => {
                        lat.record(t.elapsed());
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors += 1;
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (lat, errors)
        });
    }
    let ticker = tokio::spawn(async move {
        let mut last = 0;
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.tick().await;
        loop {
            interval.tick().await;
            let now = progress.load(Ordering::Relaxed);
            eprintln!(
                "  t={:>3}s  issued={now:<8} errors={:<5} rate={}/s",
                start.elapsed().as_secs(),
                failures.load(Ordering::Relaxed),
                now - last
            );
            last = now;
        }
    });
    let issue = collect("issue token", &mut workers, start).await;
    ticker.abort();
    Ok(vec![create, issue])
}

async fn collect(
    name: &'static str,
    workers: &mut tokio::task::JoinSet<(Latencies, u64)>,
    start: Instant,
) -> PhaseReport {
    let mut latencies = Latencies::default();
    let mut errors = 0;
    while let Some(r) = workers.join_next().await {
        if let Ok((lat, e)) = r {
            latencies.merge(lat);
            errors += e;
        }
    }
    PhaseReport { name, ok: latencies.len() as u64, errors, elapsed: start.elapsed(), latencies }
}
