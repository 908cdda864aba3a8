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

#[utoipa::path(get, path = "/", operation_id = "call_page", tag = "web",
    responses((status = 200, description = "The call page", body = String, content_type = "text/html")))]
pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// A meeting's join link opens the call page, which takes the link from its address. The token
/// is not looked up here: a wrong one is refused when the page joins (`MeetingNotFound`, counted
/// against the address like a wrong passcode), so this route reveals nothing about meetings.
#[utoipa::path(get, path = "/meet/{token}", operation_id = "meeting_link", tag = "web",
    responses((status = 200, description = "The call page, which joins the meeting of the link", body = String, content_type = "text/html")),
    params(("token" = String, Path, description = "The join link's token")))]
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

#[utoipa::path(get, path = "/switchboard.js", operation_id = "switchboard_js", tag = "web",
    responses((status = 200, description = "The protocol client, an ES module", body = String, content_type = "text/javascript")))]
pub async fn sdk() -> impl IntoResponse {
    module(SDK)
}

/// `calling.js` imports `./switchboard.js`, so both are served side by side.
#[utoipa::path(get, path = "/calling.js", operation_id = "calling_js", tag = "web",
    responses((status = 200, description = "The ACS-shaped calling SDK, an ES module", body = String, content_type = "text/javascript")))]
pub async fn calling() -> impl IntoResponse {
    module(CALLING)
}

#[utoipa::path(get, path = "/demo.js", operation_id = "demo_js", tag = "web",
    responses((status = 200, description = "The call page's script", body = String, content_type = "text/javascript")))]
pub async fn demo() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", DEMO)
}

#[utoipa::path(get, path = "/demo.css", operation_id = "demo_css", tag = "web",
    responses((status = 200, description = "The call page's styles", body = String, content_type = "text/css")))]
pub async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}
