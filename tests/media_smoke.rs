mod common;

use common::media::{TestServer, group, now_us};
use std::time::Duration;
use switchboard::client::ClientEvent;
use switchboard::client::synthetic::{SyntheticAudio, read_marker};
use switchboard::sfu::packet::{Codec, MediaKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_between_two_clients() {
    let ts = TestServer::start(2).await;
    let g = group();
    let (a, _) = ts.joined(&g).await;
    let (mut b, _) = ts.joined(&g).await;
    let track = a.publish(MediaKind::Audio, Codec::Opus, vec![]).await.expect("publish");
    let sub = b.subscribe(track.track_id, None, None).await.expect("subscribe");
    let mut src = SyntheticAudio::new(77);
    for _ in 0..50 {
        a.send_rtp(&track, 0, src.packet(20, now_us())).expect("send");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = Vec::new();
    while let Some(ev) = b.next_event_timeout(Duration::from_millis(300)).await {
        if let ClientEvent::Rtp { subscription, packet } = ev {
            assert_eq!(subscription, sub.subscription_id);
            got.push(read_marker(&packet).expect("marker").frame);
        }
    }
    assert!(got.len() >= 45, "received {} of 50", got.len());
    ts.stop().await;
}
