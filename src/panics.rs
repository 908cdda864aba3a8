//! What a panic (always a bug: bad input gets an error, never a panic) does to the server.
//!
//! - In a **media worker** thread: the process aborts after logging which worker panicked. The
//!   worker owns every connection and forwarding state of its sessions; without it their calls are
//!   silently dead while signaling says they are live, so the server stops and its supervisor
//!   (systemd `Restart=on-failure`, Docker's restart policy) starts it again; clients reconnect.
//! - In a **signaling session**: that session ends (it leaves its call, the client gets close code
//!   10 on QUIC, 1011 on WebSocket) and every other session goes on.
//! - In an **HTTP request**: that request gets 500 and the connection goes on.
//!
//! The last two are counted in `switchboard_panics_total{site}`; every panic is logged on stderr
//! with its thread, location and message by the standard panic hook.

use prometheus::{IntCounterVec, Registry};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `switchboard_panics_total{site}`: panics contained to one session or one request.
pub fn register_metric(registry: &Registry) -> IntCounterVec {
    crate::metrics::counter_vec(
        registry,
        "panics_total",
        "Panics contained to one signaling session or one HTTP request, by site (a bug: please report it)",
        &["site"],
    )
}

/// The message of a panic payload.
pub fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&'static str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A future that turns a panic while polling `F` into `Err(payload)`.
pub struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

/// Run `future`, catching a panic in it. What the future borrows may be half-updated after a
/// panic: the caller only uses it to clean up.
pub fn catch_unwind<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { inner: Box::pin(future) }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Debug builds only: whether `SWITCHBOARD_DEBUG_PANIC` (a comma-separated list of `worker`,
/// `session`, `http`) asks for a panic at `site`, so tests can check the policy above against the
/// real binary. Release builds never panic on purpose.
pub fn injected(site: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        static SITES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        SITES
            .get_or_init(|| {
                std::env::var("SWITCHBOARD_DEBUG_PANIC")
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                    .unwrap_or_default()
            })
            .iter()
            .any(|s| s == site)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = site;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_future_is_an_error_and_the_value_otherwise() {
        let caught = catch_unwind(async {
            tokio::task::yield_now().await;
            panic!("boom at {}", 7)
        })
        .await;
        let payload = caught.expect_err("the panic is caught");
        assert_eq!(message(payload.as_ref()), "boom at 7");
        assert_eq!(catch_unwind(async { 5 }).await.ok(), Some(5));
    }
}
