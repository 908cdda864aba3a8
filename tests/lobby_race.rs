//! Admissions racing leaves, rejections and changes of the lobby settings, thousands of times,
//! while media flows in the meeting: nobody who waits ever receives a media packet or hears of the
//! meeting, and when it is all over the server holds nothing for anyone.

mod common;

use common::media::{Participant, TestServer};
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::client::{ClientEvent, Locator};
use switchboard::config::Bounded;
use switchboard::signaling::messages::{CallState, ServerMessage};

const CLIENTS: usize = 8;
const ROUNDS: usize = 120;

#[derive(Default)]
struct Tally {
    joins: AtomicU64,
    waited: AtomicU64,
    admitted: AtomicU64,
    turned_away: AtomicU64,
    media_inside: AtomicU64,
    stale: AtomicU64,
    violations: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_racing_leaves_rejections_and_setting_changes_never_leak_media() {
    let ts = Arc::new(
        TestServer::start_with(2, |c| {
            c.limits.joins_per_second_per_address = Bounded::try_from(100_000).expect("in range");
            c.limits.messages_per_second_per_session = Bounded::try_from(10_000).expect("in range");
        })
        .await,
    );
    let (organizer, o_token) = ts.identity(&["voip"]).await;
    let body = json!({
        "participants": {"organizer": {"identity": {"user": {"id": organizer}}}},
        "lobbyBypassSettings": {"scope": "organizer"},
        "allowedPresenters": "organizer",
        "joinMeetingIdSettings": {"isPasscodeRequired": true},
    });
    let (status, m) = ts.api.call(Method::POST, "/meetings", Some(body)).await;
    assert_eq!(status, 201, "{m}");
    let meeting_id = m["id"].as_str().expect("id").to_owned();
    let locator = Locator::Meeting {
        join_meeting_id: m["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join id").to_owned(),
        passcode: m["joinMeetingIdSettings"]["passcode"].as_str().map(str::to_owned),
    };

    // The organizer is in, publishing audio and video the whole time; it admits everyone waiting
    // now and then over signaling.
    let oc = ts.client().await;
    oc.join(Some(&o_token), locator.clone(), Some("Olga")).await.expect("organizer");
    let mut org = Participant::new(oc, 1);
    org.publish_audio_video().await;
    let video = org.video.as_ref().expect("video").track_id;
    let stop = Arc::new(AtomicBool::new(false));
    let org_task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut admit = tokio::time::interval(Duration::from_millis(7));
            while !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    () = org.run(Duration::from_millis(50)) => {}
                    _ = admit.tick() => { let _ = org.client.admit_lobby(&[], true).await; }
                }
            }
            org
        }
    });
    // A trusted service flips the bypass scope and admits or rejects everyone over REST.
    let service = tokio::spawn({
        let (ts, stop, meeting_id) = (ts.clone(), stop.clone(), meeting_id.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let scope = if i.is_multiple_of(2) { "everyone" } else { "organizer" };
                ts.api
                    .call(
                        Method::PATCH,
                        &format!("/meetings/{meeting_id}"),
                        Some(json!({"lobbyBypassSettings": {"scope": scope}})),
                    )
                    .await;
                let action = if i.is_multiple_of(3) { "lobby:reject" } else { "lobby:admit" };
                ts.api
                    .call(Method::POST, &format!("/meetings/{meeting_id}/{action}"), Some(json!({"all": true})))
                    .await;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            i
        }
    });

    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let (_, token) = ts.identity(&["voip"]).await;
        let client = ts.client().await;
        client.register(&token, None).await.expect("register");
        let (tally, locator) = (tally.clone(), locator.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            let mut old_subs: HashSet<u64> = HashSet::new();
            let mut left_at = Instant::now();
            for round in 0..ROUNDS {
                tally.joins.fetch_add(1, Ordering::Relaxed);
                let joined = match client.join(None, locator.clone(), None).await {
                    Ok(j) => j,
                    Err(e) => panic!("client {n} round {round}: join refused: {e}"),
                };
                let mut inside = joined.state == CallState::Connected;
                if !inside {
                    tally.waited.fetch_add(1, Ordering::Relaxed);
                }
                // Most leave at once or soon (racing an admission); every tenth round stays long
                // enough for media to flow once admitted.
                let patience = if round % 10 == n % 10 {
                    Duration::from_millis(700)
                } else {
                    Duration::from_millis(((n * 7 + round * 13) % 25) as u64)
                };
                let deadline = Instant::now() + patience;
                let mut subs: HashSet<u64> = HashSet::new();
                let mut ended = false;
                while let Some(ev) = client.next_event_timeout(deadline.saturating_duration_since(Instant::now())).await
                {
                    match ev {
                        ClientEvent::Rtp { subscription, .. } if inside && subs.contains(&subscription) => {
                            tally.media_inside.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientEvent::Rtp { subscription, .. }
                            if old_subs.contains(&subscription) && left_at.elapsed() < Duration::from_secs(1) =>
                        {
                            tally.stale.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientEvent::Rtp { subscription, .. } => {
                            tally.violations.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "client {n} round {round}: RTP on subscription {subscription} while not admitted"
                            );
                        }
                        ClientEvent::Signal(ServerMessage::Admitted { .. }) => {
                            inside = true;
                            tally.admitted.fetch_add(1, Ordering::Relaxed);
                            if let Ok(s) = client.subscribe(video, Some(0), None).await {
                                subs.insert(s.subscription_id);
                            }
                        }
                        ClientEvent::Signal(ServerMessage::CallStateChanged {
                            state: CallState::Disconnected, ..
                        }) => {
                            tally.turned_away.fetch_add(1, Ordering::Relaxed);
                            ended = true;
                            break;
                        }
                        ClientEvent::Signal(m) if !inside && !matches!(m, ServerMessage::CallStateChanged { .. }) => {
                            tally.violations.fetch_add(1, Ordering::Relaxed);
                            eprintln!("client {n} round {round}: {m:?} while waiting");
                        }
                        ClientEvent::Closed { reason } => panic!("client {n} closed: {reason}"),
                        _ => {}
                    }
                }
                if inside
                    && subs.is_empty()
                    && !ended
                    && let Ok(s) = client.subscribe(video, Some(0), None).await
                {
                    subs.insert(s.subscription_id);
                }
                old_subs.extend(subs);
                if !ended {
                    // Refused (NotJoined) when it was turned away a moment ago: its Disconnected
                    // is on the way then.
                    let _ = client.leave().await;
                    // Events sent before the leave are still queued here: read up to the leave's
                    // own Disconnected, so none of them is taken for the next round's.
                    loop {
                        match client.next_event_timeout(Duration::from_secs(5)).await {
                            Some(ClientEvent::Signal(ServerMessage::CallStateChanged {
                                state: CallState::Disconnected,
                                ..
                            })) => break,
                            Some(ClientEvent::Rtp { subscription, .. }) if !old_subs.contains(&subscription) => {
                                tally.violations.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(_) => {}
                            None => panic!("client {n} round {round}: no Disconnected after leave"),
                        }
                    }
                }
                left_at = Instant::now();
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client task"));
    }
    stop.store(true, Ordering::Relaxed);
    let patches = service.await.expect("service");
    let org = org_task.await.expect("organizer");
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "joins {}, waited {}, admitted {}, turned away {}, media packets inside {}, stale {}, setting flips {patches}",
        t(&tally.joins),
        t(&tally.waited),
        t(&tally.admitted),
        t(&tally.turned_away),
        t(&tally.media_inside),
        t(&tally.stale)
    );
    assert_eq!(t(&tally.violations), 0, "a waiting member received media or heard of the meeting");
    assert!(t(&tally.joins) >= (CLIENTS * ROUNDS) as u64);
    assert!(t(&tally.waited) > 100 && t(&tally.admitted) > 50 && t(&tally.turned_away) >= 5, "every path was taken");
    assert!(t(&tally.media_inside) > 0, "those admitted did receive media");
    assert!(patches > 100, "the settings changed many times");
    // Everyone leaves: nothing is held for anyone.
    for c in &clients {
        let _ = c.leave().await;
    }
    org.client.leave().await.expect("organizer leaves");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(ts.metric("switchboard_lobby_waiting").await, 0.0);
    assert_eq!(ts.metric("switchboard_participants{kind=\"meeting\"}").await, 0.0);
    for w in 0..2 {
        for what in ["admitted_sessions", "subscriptions", "tracks"] {
            let held = ts.metric(&format!("switchboard_worker_state{{what=\"{what}\",worker=\"{w}\"}}")).await;
            assert_eq!(held, 0.0, "worker {w} holds {held} {what}");
        }
    }
    drop(clients);
    if let Ok(ts) = Arc::try_unwrap(ts) {
        ts.stop().await;
    }
}
