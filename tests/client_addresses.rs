//! The per-address join limit counts the client, not the reverse proxy in front of the server:
//! `X-Forwarded-For` is read from `[http] trusted_proxies` only, and ignored from anyone else (a
//! client could otherwise pick a fresh address for each attempt).

mod common;

use common::media::{TestServer, group};
use common::webrtc::Signal;
use switchboard::config::Bounded;
use switchboard::signaling::client_addr::IpRange;
use switchboard::signaling::messages::{ClientMessage, ErrorCode, JoinAt, ServerMessage};

/// WebSocket sessions with these `X-Forwarded-For` headers, connected and with a token each, so
/// that their joins follow each other closely (well inside the limiter's one-second window).
async fn sessions(ts: &TestServer, forwarded_for: &[&str]) -> Vec<(Signal, String)> {
    let mut out = Vec::new();
    for ff in forwarded_for {
        let (_, token) = ts.identity(&["voip"]).await;
        out.push((Signal::connect_with_headers(&ts.server.endpoint, &ts.ca, &[("x-forwarded-for", ff)]).await, token));
    }
    out
}

/// Join each session to group `g`; whether each was refused as `RateLimited`.
async fn limited(sessions: Vec<(Signal, String)>, g: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for (mut s, token) in sessions {
        match s.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(g), display_name: None }).await {
            ServerMessage::Joined { .. } => out.push(false),
            ServerMessage::Error { code: ErrorCode::RateLimited, .. } => out.push(true),
            other => panic!("unexpected answer to a join: {other:?}"),
        }
    }
    out
}

async fn server(trusted: &[&str]) -> TestServer {
    let trusted: Vec<IpRange> = trusted.iter().map(|t| IpRange::parse(t).expect("range")).collect();
    TestServer::start_with(1, move |c| {
        c.limits.joins_per_second_per_address = Bounded::try_from(2).expect("in range");
        c.http.trusted_proxies = trusted;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_the_client_behind_a_trusted_proxy_only() {
    // Behind a trusted proxy (the tests connect from 127.0.0.1): each client has its budget.
    let ts = server(&["127.0.0.0/8"]).await;
    let g = group();
    // Client .7 three times (the third with a forged hop on the left, which does not help: the
    // right-most hop is what the proxy saw), then client .8 once.
    let s = sessions(&ts, &["203.0.113.7", "203.0.113.7", "198.51.100.1, 203.0.113.7", "203.0.113.8"]).await;
    assert_eq!(limited(s, &g).await, [false, false, true, false], "each client behind the proxy has its budget");
    ts.stop().await;

    // Without trusted proxies the header is the client's own claim: ignored, so changing it
    // does not escape the limit of the address the connection comes from.
    let ts = server(&[]).await;
    let s = sessions(&ts, &["203.0.113.1", "203.0.113.2", "203.0.113.3"]).await;
    assert_eq!(limited(s, &g).await, [false, false, true], "a fresh X-Forwarded-For per attempt escapes nothing");
    ts.stop().await;
}
