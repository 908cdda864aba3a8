//! The HTTPS API: ACS-compatible management routes (HMAC-signed) and the public operational
//! routes. Handlers are thin: they parse, call a service, and shape the ACS response.

pub mod dev;
pub mod error;
pub mod extract;
pub mod identities;
pub mod meetings;
pub mod ops;
pub mod rooms;
pub mod signal;
pub mod signed;
pub mod state;
pub mod web;

pub use error::AcsError;
pub use state::{AppState, Health, Services};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

/// Build the router for every HTTP route.
pub fn router(state: AppState) -> Router {
    let management = Router::new()
        .route("/identities", post(identities::create))
        .route("/identities/{id}", get(identities::get).delete(identities::delete))
        .route("/identities/{id}/{action}", post(identities::action))
        .route("/rooms", post(rooms::create).get(rooms::list))
        .route("/rooms/{id}", get(rooms::get).patch(rooms::update).delete(rooms::delete))
        .route("/rooms/{id}/participants", get(rooms::participants).patch(rooms::update_participants))
        .route("/meetings", post(meetings::create).get(meetings::list))
        .route("/meetings/{id}", get(meetings::get).patch(meetings::update).delete(meetings::delete))
        .route("/meetings/{id}/lobby", get(meetings::lobby))
        .route("/meetings/{id}/{action}", post(meetings::lobby_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), signed::require_signature));

    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/signal", get(signal::upgrade))
        .route("/", get(web::index))
        .route("/meet/{token}", get(web::meeting_link))
        .route("/switchboard.js", get(web::sdk))
        .route("/calling.js", get(web::calling))
        .route("/demo.js", get(web::demo))
        .route("/demo.css", get(web::css))
        .route("/dev/token", post(dev::token))
        .merge(management)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn not_found() -> AcsError {
    AcsError::not_found("NotFound", "no such route")
}

/// Count every request by matched route pattern (bounded cardinality) and status class.
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state.metrics.http.requests.with_label_values(&[route.as_str(), class]).inc();
    response
}
