//! Repeatable requests (the ACS `Repeatability-Request-ID` / `Repeatability-First-Sent` headers):
//! the official SDKs put a fresh ID on every create call, answer, play, add participant... and
//! send the same ID again when their retry policy repeats a request whose answer was lost. The
//! first request with an ID runs; a repeat within `KEEP` gets the first one's answer instead of
//! running again (a second call placed, a prompt played twice). A repeat that arrives while the
//! first still runs waits for its answer. The first request runs to its end even if its client
//! goes away, so the answer a repeat gets is the one that happened.
//!
//! Answers in the 5xx range are not kept: the repeat runs again. The same ID on a different
//! request (method, path or body) is refused with 409. Runs inside the signature check: only
//! signed requests reach it, so the cache holds only what the trusted backend asked.

use super::error::AcsError;
use super::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long an answer is kept for repeats (ACS: a repeat comes within 5 minutes of the first).
pub const KEEP: Duration = Duration::from_secs(300);
/// Most IDs remembered at once; past it, expired ones are swept and, if none are, the request
/// runs without being remembered (counted).
pub const MAX_ENTRIES: usize = 10_000;
/// The answer's header saying the repeatability headers were honoured.
const RESULT: &str = "repeatability-result";
/// Largest answer body kept (call automation answers are a few hundred bytes).
const MAX_KEPT_BODY: usize = 64 * 1024;

/// Longest accepted `Repeatability-Request-ID` (the SDKs send a UUID).
pub const MAX_ID_LEN: usize = 128;

/// `Repeatability-Request-ID` and `Repeatability-First-Sent` (OASIS repeatable requests). The
/// spec requires the second whenever the first is sent. `None` when the request is not
/// repeatable.
pub fn request_id(headers: &HeaderMap) -> Result<Option<String>, AcsError> {
    let Some(value) = headers.get("repeatability-request-id") else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .ok()
        .filter(|v| (1..=MAX_ID_LEN).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            AcsError::bad_argument(
                format!("Repeatability-Request-ID must be 1 to {MAX_ID_LEN} visible ASCII characters"),
                "Repeatability-Request-ID",
            )
        })?;
    let first_sent = headers.get("repeatability-first-sent").and_then(|v| v.to_str().ok());
    if first_sent.and_then(|v| httpdate::parse_http_date(v).ok()).is_none() {
        return Err(AcsError::bad_argument(
            "Repeatability-First-Sent must come with Repeatability-Request-ID, as an HTTP date",
            "Repeatability-First-Sent",
        ));
    }
    Ok(Some(id.to_owned()))
}

/// A kept answer.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

struct Entry {
    /// Method, path as sent and the body's hash: what the ID was first used for.
    fingerprint: String,
    first_seen: Instant,
    /// `None` while the first request runs; its answer after (or `Err` when it is not kept).
    answer: watch::Receiver<Option<Result<Answer, ()>>>,
}

/// The IDs seen in the last `KEEP`, with their answers.
#[derive(Default)]
pub struct Repeatability {
    entries: DashMap<String, Entry>,
}

impl Repeatability {
    /// Forget answers older than `KEEP`.
    fn sweep(&self, now: Instant) {
        self.entries.retain(|_, e| now.saturating_duration_since(e.first_seen) < KEEP);
    }
}

/// What the middleware found for a request's ID.
enum Seen {
    First(watch::Sender<Option<Result<Answer, ()>>>),
    Repeat(watch::Receiver<Option<Result<Answer, ()>>>),
    Mismatch,
    Full,
}

pub async fn repeatable(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let id = match request_id(req.headers()) {
        Ok(Some(id)) => id,
        Ok(None) => return next.run(req).await,
        Err(e) => return e.into_response(),
    };
    let path = match req.extensions().get::<super::SentPath>() {
        Some(sent) => sent.0.clone(),
        None => req.uri().path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    // The signature check before this one verified that this header is the body's hash.
    let body_hash = req.headers().get("x-ms-content-sha256").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let fingerprint = format!("{} {path} {body_hash}", req.method());
    let cache = &state.repeatability;
    let now = Instant::now();
    let seen = lookup(cache, &id, fingerprint, now);
    let metric = |outcome: &str| state.metrics.http.repeatable.with_label_values(&[outcome]).inc();
    match seen {
        Seen::First(tx) => {
            metric("first");
            // Run to the end even if the client goes: a repeat must get what really happened.
            let run = tokio::spawn(next.run(req));
            let response = match run.await {
                Ok(r) => r,
                Err(_) => {
                    cache.entries.remove(&id);
                    let _ = tx.send(Some(Err(())));
                    return AcsError::internal("the request failed").into_response();
                }
            };
            let (mut parts, body) = response.into_parts();
            if !parts.headers.contains_key(RESULT) {
                parts.headers.insert(RESULT, axum::http::HeaderValue::from_static("accepted"));
            }
            if parts.status.is_server_error() {
                cache.entries.remove(&id);
                let _ = tx.send(Some(Err(())));
                return Response::from_parts(parts, body);
            }
            match axum::body::to_bytes(body, MAX_KEPT_BODY).await {
                Ok(bytes) => {
                    let answer = Answer { status: parts.status, headers: parts.headers.clone(), body: bytes.clone() };
                    let _ = tx.send(Some(Ok(answer)));
                    Response::from_parts(parts, Body::from(bytes))
                }
                Err(_) => {
                    cache.entries.remove(&id);
                    let _ = tx.send(Some(Err(())));
                    AcsError::internal("the answer was too large to keep for repeats").into_response()
                }
            }
        }
        Seen::Repeat(mut rx) => {
            metric("repeat");
            let answer = match rx.wait_for(Option::is_some).await {
                Ok(a) => a.clone(),
                Err(_) => None,
            };
            match answer {
                Some(Ok(a)) => {
                    let mut response = Response::new(Body::from(a.body));
                    *response.status_mut() = a.status;
                    *response.headers_mut() = a.headers;
                    response
                }
                // The first one failed (5xx): this one runs instead.
                _ => next.run(req).await,
            }
        }
        Seen::Mismatch => {
            metric("mismatch");
            AcsError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "this Repeatability-Request-ID was used for a different request",
            )
            .into_response()
        }
        Seen::Full => {
            metric("not_kept");
            next.run(req).await
        }
    }
}

fn lookup(cache: &Arc<Repeatability>, id: &str, fingerprint: String, now: Instant) -> Seen {
    if cache.entries.len() >= MAX_ENTRIES {
        cache.sweep(now);
    }
    let full = cache.entries.len() >= MAX_ENTRIES;
    match cache.entries.entry(id.to_owned()) {
        MapEntry::Occupied(mut o) => {
            let e = o.get();
            if now.saturating_duration_since(e.first_seen) >= KEEP {
                let (tx, rx) = watch::channel(None);
                o.insert(Entry { fingerprint, first_seen: now, answer: rx });
                Seen::First(tx)
            } else if e.fingerprint != fingerprint {
                Seen::Mismatch
            } else {
                Seen::Repeat(e.answer.clone())
            }
        }
        MapEntry::Vacant(_) if full => Seen::Full,
        MapEntry::Vacant(v) => {
            let (tx, rx) = watch::channel(None);
            v.insert(Entry { fingerprint, first_seen: now, answer: rx });
            Seen::First(tx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeatability_needs_both_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_id(&headers), Ok(None));
        headers.insert("repeatability-request-id", "0b5d3c0e-1c1f-4c89-8f5e-1f2a3b4c5d6e".parse().expect("value"));
        let e = request_id(&headers).expect_err("no first-sent");
        assert_eq!(e.target.as_deref(), Some("Repeatability-First-Sent"));
        headers.insert("repeatability-first-sent", "Tue, 24 Oct 2023 13:07:56 GMT".parse().expect("value"));
        assert_eq!(request_id(&headers), Ok(Some("0b5d3c0e-1c1f-4c89-8f5e-1f2a3b4c5d6e".to_owned())));
    }

    #[test]
    fn first_repeat_mismatch_and_expiry() {
        let cache = Arc::new(Repeatability::default());
        let t0 = Instant::now();
        let Seen::First(tx) = lookup(&cache, "a", "POST /x h".into(), t0) else { panic!("first use") };
        assert!(matches!(lookup(&cache, "a", "POST /x h".into(), t0), Seen::Repeat(_)));
        assert!(matches!(lookup(&cache, "a", "POST /y h".into(), t0), Seen::Mismatch));
        drop(tx);
        assert!(matches!(lookup(&cache, "a", "POST /y h".into(), t0 + KEEP), Seen::First(_)));
    }

    #[test]
    fn a_full_cache_sweeps_then_stops_remembering() {
        let cache = Arc::new(Repeatability::default());
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            assert!(matches!(lookup(&cache, &i.to_string(), "f".into(), t0), Seen::First(_)));
        }
        assert!(matches!(lookup(&cache, "new", "f".into(), t0), Seen::Full));
        // Once the old ones expire they are swept and new IDs are remembered again.
        assert!(matches!(lookup(&cache, "new", "f".into(), t0 + KEEP), Seen::First(_)));
        assert_eq!(cache.entries.len(), 1);
    }
}
