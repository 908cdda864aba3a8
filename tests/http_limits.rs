//! What a stranger can make the HTTPS listener hold, against a real server on loopback: slowloris
//! connections are closed at `http.header_timeout_seconds`, a connection flood from one address
//! stops at `http.max_connections_per_address` while other addresses are served, the total stops
//! at `http.max_connections`, kept-alive connections close at `http.idle_timeout_seconds`, and a
//! body is bounded by its declared length before it is read and by `http.body_timeout_seconds`
//! while it arrives.

mod common;

use common::media::TestServer;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn connector(ca: &[u8]) -> TlsConnector {
    let tls = switchboard::tls::client_config(ca, &[b"http/1.1"]).expect("client TLS");
    TlsConnector::from(Arc::new(tls))
}

async fn tcp_from(local: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(server).await
}

/// A TLS connection from `local`, or the error that ended the handshake (a refused connection is
/// closed by the server before it answers).
async fn tls_from(ca: &[u8], local: IpAddr, server: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(local, server).await?;
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    tokio::time::timeout(Duration::from_secs(10), connector(ca).connect(name, tcp))
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("TLS handshake took over 10 s")))
}

/// Wait until the server closes `stream` (EOF or reset), reading and discarding whatever it sends.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Send `head` (and `body`) on a new TLS connection and read the response head.
async fn raw_request(ca: &[u8], server: SocketAddr, head: &str, body: &[u8], limit: Duration) -> Option<String> {
    let mut s = tls_from(ca, "127.0.0.1".parse().unwrap(), server).await.expect("TLS connection");
    s.write_all(head.as_bytes()).await.expect("head written");
    s.write_all(body).await.expect("body written");
    s.flush().await.expect("flushed");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

async fn healthz_from(ts: &TestServer, local: IpAddr) -> Result<u16, String> {
    get_from(ts, local, "/healthz").await.map(|(status, _)| status)
}

async fn get_from(ts: &TestServer, local: IpAddr, path: &str) -> Result<(u16, String), String> {
    let tls = switchboard::tls::client_config(&ts.ca, &[b"h2", b"http/1.1"]).expect("client TLS");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .local_address(local)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("https://{}{path}", ts.server.https_addr);
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.map_err(|e| e.to_string())?))
}

/// A metric's value, scraped from an address no test floods.
async fn metric(ts: &TestServer, name_and_labels: &str) -> f64 {
    let (status, text) = get_from(ts, "127.0.9.9".parse().unwrap(), "/metrics").await.expect("scraped");
    assert_eq!(status, 200);
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_others_are_served() {
    let ts = TestServer::start_with(1, |c| {
        c.http.header_timeout_seconds = 2.try_into().unwrap();
    })
    .await;
    let server = ts.server.https_addr;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let started = Instant::now();

    // 30 clients trickle a request head, a byte every 300 ms, and never finish it.
    let mut trickling = Vec::new();
    for _ in 0..30 {
        let ca = ts.ca.clone();
        trickling.push(tokio::spawn(async move {
            let mut s = tls_from(&ca, local, server).await.expect("handshake");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.expect("written");
            let t0 = Instant::now();
            let mut buf = [0u8; 256];
            for _ in 0..100 {
                if s.write_all(b"X").await.is_err() || s.flush().await.is_err() {
                    return t0.elapsed();
                }
                tokio::select! {
                    read = s.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return t0.elapsed() },
                    () = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
            Duration::MAX
        }));
    }
    // 10 more connect over TCP and never start TLS; 10 finish TLS and send nothing.
    let mut silent_tcp = Vec::new();
    for _ in 0..10 {
        silent_tcp.push(tcp_from(local, server).await.expect("tcp"));
    }
    let mut silent_tls = Vec::new();
    for _ in 0..10 {
        silent_tls.push(tls_from(&ts.ca, local, server).await.expect("handshake"));
    }

    // Meanwhile others are served, promptly.
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(healthz_from(&ts, local).await, Ok(200));
        assert!(t0.elapsed() < Duration::from_secs(2), "healthz took {:?} during the slowloris", t0.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for t in trickling {
        let held = t.await.expect("trickler");
        assert!(held < Duration::from_secs(6), "a trickling connection was held {held:?}");
    }
    for mut s in silent_tcp {
        assert!(closed_within(&mut s, Duration::from_secs(6)).await, "a connection without TLS stayed open");
    }
    for mut s in silent_tls {
        assert!(closed_within(&mut s, Duration::from_secs(6)).await, "a connection without a request stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    let timed_out = metric(&ts, "switchboard_http_connections_timed_out_total{phase=\"header\"}").await;
    assert!(timed_out >= 50.0, "header timeouts counted: {timed_out}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_room_for_others() {
    let ts = TestServer::start_with(1, |c| {
        c.http.max_connections_per_address = 20.try_into().unwrap();
        c.http.header_timeout_seconds = 60.try_into().unwrap();
    })
    .await;
    let server = ts.server.https_addr;
    let flooder: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        match tls_from(&ts.ca, flooder, server).await {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), 20, "the flooder holds exactly its share");
    assert_eq!(refused, 40);
    // Another address is served while the flood holds its 20.
    assert_eq!(healthz_from(&ts, "127.0.0.2".parse().unwrap()).await, Ok(200));
    // The flooder itself gets nothing more until it lets go of one.
    assert!(healthz_from(&ts, flooder).await.is_err());
    drop(held.pop());
    let mut served = false;
    for _ in 0..50 {
        if healthz_from(&ts, flooder).await == Ok(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a place freed by a closed connection is given again");
    let counted = metric(&ts, "switchboard_http_connections_refused_total{reason=\"address_full\"}").await;
    assert!(counted >= 41.0, "refusals counted: {counted}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_is_capped_and_idle_connections_give_their_place_back() {
    let ts = TestServer::start_with(1, |c| {
        c.http.max_connections = 10.try_into().unwrap();
        c.http.idle_timeout_seconds = 1.try_into().unwrap();
        c.http.header_timeout_seconds = 2.try_into().unwrap();
    })
    .await;
    let server = ts.server.https_addr;
    let mut held = Vec::new();
    for i in 0..10u8 {
        let local = IpAddr::from([127, 0, 1, i + 1]);
        held.push(tls_from(&ts.ca, local, server).await.expect("within the total"));
    }
    assert!(tls_from(&ts.ca, "127.0.2.1".parse().unwrap(), server).await.is_err(), "the 11th is refused");
    // A connection that made a request and then idles is closed after the idle timeout.
    let mut kept = held.pop().expect("ten held");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("request");
    let t0 = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(5)).await, "an idle kept-alive connection stayed open");
    assert!(t0.elapsed() >= Duration::from_millis(900), "closed before the idle timeout: {:?}", t0.elapsed());
    // The rest never sent a request and are closed at the header timeout; then the server has room.
    for mut s in held {
        assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    }
    assert_eq!(healthz_from(&ts, "127.0.2.1".parse().unwrap()).await, Ok(200));
    assert!(metric(&ts, "switchboard_http_connections_refused_total{reason=\"server_full\"}").await >= 1.0);
    assert!(metric(&ts, "switchboard_http_connections_timed_out_total{phase=\"idle\"}").await >= 1.0);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_bounded_by_its_length_before_it_is_read_and_by_time_while_it_arrives() {
    let ts = TestServer::start_with(1, |c| {
        c.http.body_timeout_seconds = 1.try_into().unwrap();
    })
    .await;
    let server = ts.server.https_addr;
    // 10 MB declared, none sent: refused at once, without waiting for the body.
    let head = "POST /identities?api-version=2023-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                content-type: application/json\r\ncontent-length: 10000000\r\n\r\n";
    let t0 = Instant::now();
    let answer = raw_request(&ts.ca, server, head, b"", Duration::from_secs(5)).await;
    let answer = answer.expect("an answer before any of the body was sent");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // 100 bytes declared, 10 sent: 408 after the body timeout.
    let head = "POST /identities?api-version=2023-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                content-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let answer = raw_request(&ts.ca, server, head, b"{\"createTo", Duration::from_secs(5)).await;
    let answer = answer.expect("an answer after the body timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A bad length is a clear 400.
    let head = "POST /identities?api-version=2023-10-01 HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: 12x\r\n\r\n";
    let answer = raw_request(&ts.ca, server, head, b"", Duration::from_secs(5)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(metric(&ts, "switchboard_http_connections_timed_out_total{phase=\"body\"}").await >= 1.0);
    ts.stop().await;
}
