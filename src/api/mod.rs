//! The HTTPS API: ACS-compatible management routes (HMAC-signed) and the public operational
//! routes. Handlers are thin: they parse, call a service, and shape the ACS response.

pub mod calling;
pub mod dev;
pub mod error;
pub mod extract;
pub mod identities;
pub mod meetings;
pub mod openapi;
pub mod ops;
pub mod repeatability;
pub mod rooms;
pub mod signal;
pub mod signed;
pub mod state;
pub mod web;

pub use error::AcsError;
pub use state::{AppState, Health, Services};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use std::sync::OnceLock;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Only a request with a valid ACS HMAC signature (`signed::require_signature`).
    Signed,
}

/// One route the router serves. The OpenAPI document must list exactly these (tested in
/// `openapi.rs`), and takes from them which operations are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// The route table: builds the routers and records what they serve, so the two cannot differ.
struct RouteTable {
    public: Router<AppState>,
    signed: Router<AppState>,
    served: Vec<ServedRoute>,
}

impl RouteTable {
    fn new() -> Self {
        // `without_v07_checks`: ACS action paths (`/identities/{id}/:issueAccessToken`) have
        // segments that start with a colon, which axum 0.8 otherwise refuses as old capture syntax.
        let router = || Router::new().without_v07_checks();
        Self { public: router(), signed: router(), served: Vec::new() }
    }

    fn route<H: Handler<T, AppState>, T: 'static>(
        mut self,
        access: Access,
        method: Method,
        path: &'static str,
        handler: H,
    ) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("the table names only methods axum routes");
        let routed = calling::routed_path(path);
        match access {
            Access::Public => self.public = self.public.route(&routed, on(filter, handler)),
            Access::Signed => self.signed = self.signed.route(&routed, on(filter, handler)),
        }
        self.served.push(ServedRoute { method, path, access });
        self
    }
}

/// Every route: method, path (also the OpenAPI path), who may call it, and the handler.
fn route_table() -> RouteTable {
    use Access::{Public, Signed};
    RouteTable::new()
        .route(Signed, Method::POST, "/identities", identities::create)
        .route(Signed, Method::GET, "/identities/{id}", identities::get)
        .route(Signed, Method::DELETE, "/identities/{id}", identities::delete)
        .route(Signed, Method::POST, "/identities/{id}/:issueAccessToken", identities::issue_access_token)
        .route(Signed, Method::POST, "/identities/{id}/:revokeAccessTokens", identities::revoke_access_tokens)
        .route(Signed, Method::POST, "/rooms", rooms::create)
        .route(Signed, Method::GET, "/rooms", rooms::list)
        .route(Signed, Method::GET, "/rooms/{id}", rooms::get)
        .route(Signed, Method::PATCH, "/rooms/{id}", rooms::update)
        .route(Signed, Method::DELETE, "/rooms/{id}", rooms::delete)
        .route(Signed, Method::GET, "/rooms/{id}/participants", rooms::participants)
        .route(Signed, Method::PATCH, "/rooms/{id}/participants", rooms::update_participants)
        .route(Signed, Method::POST, "/meetings", meetings::create)
        .route(Signed, Method::GET, "/meetings", meetings::list)
        .route(Signed, Method::GET, "/meetings/{id}", meetings::get)
        .route(Signed, Method::PATCH, "/meetings/{id}", meetings::update)
        .route(Signed, Method::DELETE, "/meetings/{id}", meetings::delete)
        .route(Signed, Method::GET, "/meetings/{id}/lobby", meetings::lobby)
        .route(Signed, Method::POST, "/meetings/{id}/lobby:admit", meetings::admit_lobby)
        .route(Signed, Method::POST, "/meetings/{id}/lobby:reject", meetings::reject_lobby)
        .route(Signed, Method::POST, "/calling/callConnections", calling::create_call)
        .route(Signed, Method::POST, "/calling/callConnections:answer", calling::answer)
        .route(Signed, Method::POST, "/calling/callConnections:reject", calling::reject)
        .route(Signed, Method::POST, "/calling/callConnections:redirect", calling::redirect)
        .route(Signed, Method::POST, "/calling/callConnections:connect", calling::connect)
        .route(Signed, Method::GET, "/calling/callConnections/{callConnectionId}", calling::get_call)
        .route(Signed, Method::DELETE, "/calling/callConnections/{callConnectionId}", calling::hang_up)
        .route(Signed, Method::POST, "/calling/callConnections/{callConnectionId}:terminate", calling::terminate)
        .route(Signed, Method::POST, "/calling/callConnections/{callConnectionId}:play", calling::play)
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}:cancelAllMediaOperations",
            calling::cancel_all_media_operations,
        )
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}:startContinuousDtmfRecognition",
            calling::start_continuous_dtmf_recognition,
        )
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}:stopContinuousDtmfRecognition",
            calling::stop_continuous_dtmf_recognition,
        )
        .route(Signed, Method::POST, "/calling/callConnections/{callConnectionId}:recognize", calling::recognize)
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}:sendDtmfTones",
            calling::send_dtmf_tones,
        )
        .route(Signed, Method::GET, "/calling/callConnections/{callConnectionId}/participants", calling::participants)
        .route(
            Signed,
            Method::GET,
            "/calling/callConnections/{callConnectionId}/participants/{participantRawId}",
            calling::get_participant,
        )
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}/participants:add",
            calling::add_participant,
        )
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}/participants:remove",
            calling::remove_participant,
        )
        .route(Signed, Method::POST, "/calling/callConnections/{callConnectionId}/participants:mute", calling::mute)
        .route(
            Signed,
            Method::POST,
            "/calling/callConnections/{callConnectionId}/participants:cancelAddParticipant",
            calling::cancel_add_participant,
        )
        .route(Public, Method::GET, "/healthz", ops::healthz)
        .route(Public, Method::GET, "/readyz", ops::readyz)
        .route(Public, Method::GET, "/metrics", ops::metrics)
        .route(Public, Method::GET, "/.well-known/jwks.json", ops::jwks)
        .route(Public, Method::GET, "/openapi.json", openapi::serve)
        .route(Public, Method::GET, "/signal", signal::upgrade)
        .route(Public, Method::GET, "/", web::index)
        .route(Public, Method::GET, "/meet/{token}", web::meeting_link)
        .route(Public, Method::GET, "/switchboard.js", web::sdk)
        .route(Public, Method::GET, "/calling.js", web::calling)
        .route(Public, Method::GET, "/demo.js", web::demo)
        .route(Public, Method::GET, "/demo.css", web::css)
        .route(Public, Method::POST, "/dev/token", dev::token)
}

/// What the router serves (the route table without its handlers).
pub fn served_routes() -> &'static [ServedRoute] {
    static SERVED: OnceLock<Vec<ServedRoute>> = OnceLock::new();
    SERVED.get_or_init(|| route_table().served)
}

/// Build the router for every HTTP route.
pub fn router(state: AppState) -> Router {
    let RouteTable { public, signed, .. } = route_table();
    // Layers added later wrap the earlier ones: the signature is checked before repeatability.
    let signed = signed
        .route_layer(middleware::from_fn_with_state(state.clone(), repeatability::repeatable))
        .route_layer(middleware::from_fn_with_state(state.clone(), signed::require_signature));
    let routes = public
        .merge(signed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state);
    // Paths are rewritten before routing (ACS actions after a path parameter), so the rewrite
    // wraps the whole router.
    Router::new().fallback_service(tower::ServiceExt::map_request(routes, split_action_path))
}

/// The path of a request as the client sent (and signed) it, when routing rewrote it.
#[derive(Debug, Clone)]
pub struct SentPath(pub String);

/// Route `/calling/callConnections/{id}:action` as `{id}/:action` (`calling::split_action`),
/// keeping the path as sent for the signature check.
fn split_action_path(mut req: Request) -> Request {
    if let Some(routed) = calling::split_action(req.uri().path()) {
        let sent = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let with_query = match req.uri().query() {
            Some(q) => format!("{routed}?{q}"),
            None => routed,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = with_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
                req.extensions_mut().insert(SentPath(sent));
            }
        }
    }
    req
}

async fn not_found() -> AcsError {
    AcsError::not_found("NotFound", "no such route")
}

/// A route that exists, asked with a method it does not have (axum adds the `Allow` header).
async fn method_not_allowed() -> AcsError {
    AcsError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "the route does not take this method")
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
