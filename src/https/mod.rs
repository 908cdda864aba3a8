//! The HTTPS listener: TLS (rustls) in front of the axum router, HTTP/1.1 and HTTP/2 with
//! upgrades (WebSocket), and a graceful stop that lets open requests finish within a deadline.
//! What one client can make it hold is bounded in `limits`: connections in all and per address, a
//! deadline for the TLS handshake and first request head, and one between requests.

pub mod limits;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use limits::{Activity, ConnectionLimits, ConnectionPermit, Deadline};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Serve `app` on `listener` until `shutdown` fires, then wait up to `grace` for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    connections: Arc<ConnectionLimits>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let accepted_at = Instant::now();
        let permit = match connections.admit(peer.ip()) {
            Ok(p) => p,
            Err(refusal) => {
                tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            let limits = connections.limits();
            let handshake_deadline = accepted_at + limits.header_timeout;
            let stream = match tokio::time::timeout_at(handshake_deadline, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    connections.metrics().timed_out.with_label_values(&["header"]).inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let activity = Activity::new(accepted_at);
            let panics = connections.metrics().panics.clone();
            let requests = Arc::clone(&activity);
            let service = tower::service_fn(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let in_progress = requests.begin();
                let app = app.clone();
                let panics = panics.clone();
                async move {
                    let handled = crate::panics::catch_unwind(async move {
                        if crate::panics::injected("http") && req.uri().path() == "/debug/panic" {
                            panic!("injected by SWITCHBOARD_DEBUG_PANIC=http");
                        }
                        app.oneshot(req).await
                    })
                    .await;
                    drop(in_progress);
                    // See `crate::panics`: the request gets 500, the connection and server go on.
                    handled.unwrap_or_else(|payload| {
                        panics.with_label_values(&["http"]).inc();
                        tracing::error!(%peer, panic = crate::panics::message(payload.as_ref()), "an HTTP handler panicked");
                        Ok(axum::response::IntoResponse::into_response(crate::api::AcsError::new(
                            hyper::StatusCode::INTERNAL_SERVER_ERROR,
                            "InternalError",
                            "the server could not complete the request",
                        )))
                    })
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let io = TokioIo::new(Held { inner: stream, _permit: permit });
            let conn = watcher
                .watch(builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service)).into_owned());
            tokio::pin!(conn);
            loop {
                let at = match activity.deadline(Instant::now(), limits) {
                    Deadline::Busy(recheck) => recheck,
                    Deadline::Idle { at, .. } => at,
                };
                tokio::select! {
                    ended = &mut conn => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(at) => {
                        // Requests may have started or ended while this slept: look again.
                        let now = Instant::now();
                        if let Deadline::Idle { at, first } = activity.deadline(now, limits)
                            && at <= now
                        {
                            let phase = if first { "header" } else { "idle" };
                            connections.metrics().timed_out.with_label_values(&[phase]).inc();
                            tracing::debug!(%peer, phase, "closing a connection that sent no request in time");
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::info!("grace period over; closing remaining HTTP connections"),
    }
}

/// A connection's byte stream together with its place in the connection limits, so the place is
/// held for as long as the stream lives, also after an upgrade hands it to a WebSocket.
struct Held<S> {
    inner: S,
    _permit: ConnectionPermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
