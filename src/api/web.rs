//! The browser SDK and the demo page, compiled into the binary (no files needed at runtime, no
//! CDN): `/`, `/calling.js` (the ACS-shaped SDK), `/switchboard.js` (the low-level client it is
//! built on), `/demo.js`, `/demo.css`; and `/meet/<token>`, a meeting's `joinWebUrl`, which is the
//! call page too (it reads the link from its own address).

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../web/index.html");
const SDK: &str = include_str!("../../web/switchboard.js");
const CALLING: &str = include_str!("../../web/calling.js");
const DEMO: &str = include_str!("../../web/demo.js");
const CSS: &str = include_str!("../../web/demo.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// A meeting's join link opens the call page, which takes the link from its address. The token
/// is not looked up here: a wrong one is refused when the page joins (`MeetingNotFound`, counted
/// against the address like a wrong passcode), so this route reveals nothing about meetings.
pub async fn meeting_link() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// The SDK is public code; pages on other origins may import it as a module.
fn module(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
}

pub async fn sdk() -> impl IntoResponse {
    module(SDK)
}

/// `calling.js` imports `./switchboard.js`, so both are served side by side.
pub async fn calling() -> impl IntoResponse {
    module(CALLING)
}

pub async fn demo() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", DEMO)
}

pub async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}
