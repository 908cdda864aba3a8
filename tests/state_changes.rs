//! State changes sent to media workers are delayed when a worker's queue is full, never lost:
//! with a command queue of one, many clients joining, publishing, subscribing, unsubscribing
//! and leaving at once all get what they asked for, and the workers end up holding nothing.

mod common;

use common::media::{Participant, TestServer, group};
use std::time::Duration;
use switchboard::config::Bounded;

const CLIENTS: usize = 6;

async fn worker_state(ts: &TestServer, what: &str) -> f64 {
    let mut total = 0.0;
    for w in 0..2 {
        total += ts.metric(&format!("switchboard_worker_state{{what=\"{what}\",worker=\"{w}\"}}")).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_queue_delays_but_never_loses_a_state_change() {
    let ts = TestServer::start_with(2, |c| c.media.command_queue = Bounded::try_from(1).expect("in range")).await;
    let g = group();
    let clients = ts.clients_on_both_workers(CLIENTS).await;
    // Everyone joins and publishes at once.
    let mut joins = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let (_, token) = ts.identity(&["voip"]).await;
        let g = g.clone();
        joins.push(tokio::spawn(async move {
            client.join_group(&token, &g).await.expect("join is delayed, not refused");
            let mut p = Participant::new(client, i as u32 + 1);
            p.publish_audio_video().await;
            p
        }));
    }
    let mut ps = Vec::new();
    for j in joins {
        ps.push(j.await.expect("join task"));
    }
    let tracks: Vec<(usize, u64)> = ps
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            [(i, p.audio.as_ref().expect("audio").track_id), (i, p.video.as_ref().expect("video").track_id)]
        })
        .collect();
    // Everyone subscribes to everything of the others, all at once, and sends media meanwhile.
    let mut runs = Vec::new();
    for (i, mut p) in ps.into_iter().enumerate() {
        let theirs: Vec<u64> = tracks.iter().filter(|(owner, _)| *owner != i).map(|(_, t)| *t).collect();
        runs.push(tokio::spawn(async move {
            let mut subs = Vec::new();
            for t in theirs {
                subs.push(p.client.subscribe(t, Some(0), None).await.expect("subscribe is delayed, not refused"));
            }
            p.run(Duration::from_secs(2)).await;
            (p, subs)
        }));
    }
    let mut done = Vec::new();
    for r in runs {
        done.push(r.await.expect("run task"));
    }
    let expected = CLIENTS * (2 * (CLIENTS - 1));
    let mut got = 0;
    for (i, (p, subs)) in done.iter().enumerate() {
        for s in subs {
            let n = p.received.get(&s.subscription_id).map_or(0, Vec::len);
            assert!(n > 10, "participant {i} subscription {} got {n} packets", s.subscription_id);
            got += 1;
        }
    }
    assert_eq!(got, expected);
    tokio::time::sleep(Duration::from_millis(1100)).await; // worker gauges are set once a second
    assert_eq!(worker_state(&ts, "subscriptions").await, expected as f64, "every subscription is held");
    assert_eq!(worker_state(&ts, "admitted_sessions").await, CLIENTS as f64);
    let waits: f64 = ts.metric("switchboard_worker_command_waits_total{worker=\"0\"}").await
        + ts.metric("switchboard_worker_command_waits_total{worker=\"1\"}").await;
    assert!(waits > 0.0, "the queue of one was full at times (waits: {waits})");

    // Half unsubscribe from everything, all at once; then everyone leaves at once.
    let mut unsubscribes = Vec::new();
    for (i, (p, subs)) in done.into_iter().enumerate() {
        unsubscribes.push(tokio::spawn(async move {
            if i % 2 == 0 {
                for s in subs {
                    p.client.unsubscribe(s.subscription_id).await.expect("unsubscribe");
                }
            }
            p
        }));
    }
    let mut ps = Vec::new();
    for u in unsubscribes {
        ps.push(u.await.expect("unsubscribe task"));
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(worker_state(&ts, "subscriptions").await, (expected / 2) as f64, "half the subscriptions are gone");
    let mut leaves = Vec::new();
    for p in ps {
        leaves.push(tokio::spawn(async move {
            p.client.leave().await.expect("leave");
            p
        }));
    }
    let mut left = Vec::new();
    for l in leaves {
        left.push(l.await.expect("leave task"));
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for what in ["tracks", "subscriptions", "admitted_sessions"] {
        assert_eq!(worker_state(&ts, what).await, 0.0, "no {what} are left on any worker");
    }
    drop(left);
    ts.stop().await;
}
