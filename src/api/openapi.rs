//! `GET /openapi.json`: the OpenAPI document of every route, derived from the code so it cannot
//! drift. Operations come from the `#[utoipa::path]` on each handler, bodies from the request and
//! response types the handlers use, `api-version` from the extractor's list of versions, enum
//! values from the domain enums' own name lists. The route table (`super::routes`) decides what
//! is signed; `Conventions` adds the HMAC security and the error responses the signature
//! middleware and the extractors give. A test checks that the document lists exactly the routes
//! the router serves.

use super::error::AcsErrorResponse;
use super::{Access, calling, dev, identities, meetings, ops, rooms, signal, web};
use crate::auth::token::SCOPE_NAMES;
use crate::meeting_directory::{AllowedPresenters, LobbyBypassScope, MeetingRole};
use crate::rooms::Role;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use std::borrow::Cow;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The security scheme of a signed request.
pub const HMAC_SCHEME: &str = "hmac-sha256";

/// The headers a signature covers, in order (`x-signed-headers` on the scheme).
const SIGNED_HEADERS: [&str; 3] = ["x-ms-date", "host", "x-ms-content-sha256"];

/// How to sign, for people and client generators. One apiKey scheme on `Authorization` with the
/// other two headers described, not three schemes: the headers are one credential (a signature
/// without its date or body hash is no credential), and testers that drop one scheme at a time
/// would otherwise probe half-credentials they cannot tell apart from missing ones.
const HMAC_DESCRIPTION: &str = "ACS HMAC-SHA256 request signing. Send three headers: \
`x-ms-date`, the request time as an RFC 1123 date (`Mon, 30 Nov 2026 09:00:00 GMT`) within \
`auth.max_clock_skew_seconds` of the server clock; `x-ms-content-sha256`, base64 of the SHA-256 of the \
request body (of the empty string when there is none); and `Authorization: HMAC-SHA256 \
SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<sig>`, where <sig> is the base64 \
HMAC-SHA256, keyed with the base64-decoded access key of the connection string, of \
`VERB\\n<path and query as sent>\\n<x-ms-date>;<host>;<x-ms-content-sha256>` (the Host header, \
e.g. `127.0.0.1:8443`). The ACS SDKs do this given a connection string.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "The REST API of a Switchboard server: Azure Communication Services identities and \
            rooms and call automation (wire-compatible with the ACS data plane), meetings shaped like Microsoft Graph's \
            onlineMeeting, and the public operational routes. Management calls are signed with ACS \
            HMAC-SHA256 (see the security schemes); errors use the ACS shape."
    ),
    paths(
        identities::create, identities::get, identities::delete,
        identities::issue_access_token, identities::revoke_access_tokens,
        rooms::create, rooms::list, rooms::get, rooms::update, rooms::delete,
        rooms::participants, rooms::update_participants,
        meetings::create, meetings::list, meetings::get, meetings::update, meetings::delete,
        meetings::lobby, meetings::admit_lobby, meetings::reject_lobby,
        calling::create_call, calling::get_call, calling::hang_up, calling::terminate,
        calling::participants, calling::get_participant, calling::add_participant,
        calling::remove_participant, calling::mute, calling::cancel_add_participant,
        calling::answer, calling::reject, calling::redirect, calling::connect,
        calling::play, calling::cancel_all_media_operations,
        calling::start_continuous_dtmf_recognition, calling::stop_continuous_dtmf_recognition,
        calling::recognize, calling::send_dtmf_tones,
        ops::healthz, ops::readyz, ops::metrics, ops::jwks, serve,
        signal::upgrade,
        web::index, web::meeting_link, web::sdk, web::calling, web::demo, web::css,
        dev::token,
    ),
    components(schemas(AcsErrorResponse)),
    modifiers(&Conventions),
    tags(
        (name = "identities", description = "ACS Communication Identity"),
        (name = "rooms", description = "ACS Rooms"),
        (name = "meetings", description = "Meetings shaped like Graph onlineMeeting, and their lobby"),
        (name = "calling", description = "ACS Call Automation: call connections and their participants"),
        (name = "operations", description = "Public: health, readiness, metrics, token keys, this document"),
        (name = "signaling", description = "Public: the browser signaling WebSocket"),
        (name = "web", description = "Public: the call page and the browser SDK"),
        (name = "dev", description = "Public when enabled: tokens for anyone (demo only)"),
    ),
)]
pub struct ApiDoc;

/// The document as served, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI document of this server", body = Object,
        content_type = "application/json")))]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")], document())
}

/// What every operation gets from the code around its handler: signed routes (per the route
/// table) the HMAC security requirement, 401 (signature), 408 (a body slower than
/// `http.body_timeout_seconds`), 413 (body over `http.max_body_bytes`, checked before the signature) and 500 (store failures); versioned operations 400 (a missing or
/// unsupported `api-version`, and any malformed input). All in the ACS error shape.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut scheme = ApiKeyValue::with_description("Authorization", HMAC_DESCRIPTION);
        scheme.extensions = Some([("x-signed-headers", serde_json::json!(SIGNED_HEADERS))].into_iter().collect());
        components.add_security_scheme(HMAC_SCHEME, SecurityScheme::ApiKey(ApiKey::Header(scheme)));
        for (status, description) in [
            ("400", "Bad input: a missing or unsupported api-version, a malformed body, parameter or header"),
            ("401", "No valid HMAC signature"),
            ("408", "The body did not arrive within http.body_timeout_seconds"),
            ("413", "The body is larger than the server accepts"),
            ("500", "The server could not complete the request"),
        ] {
            components.responses.insert(status_response_name(status), RefOr::T(error_response(description)));
        }

        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, operation) in operations_mut(item) {
                let signed = super::served_routes()
                    .iter()
                    .any(|r| r.method == method && r.path == path && r.access == Access::Signed);
                let versioned = operation.parameters.iter().flatten().any(|p| match p {
                    RefOr::T(p) => p.name == "api-version",
                    RefOr::Ref(_) => false,
                });
                let mut add = |status: &str| {
                    let reference = Ref::new(format!("#/components/responses/{}", status_response_name(status)));
                    operation.responses.responses.entry(status.to_owned()).or_insert(RefOr::Ref(reference));
                };
                if versioned {
                    add("400");
                }
                if signed {
                    add("401");
                    add("408");
                    add("413");
                    add("500");
                    operation.security = Some(vec![SecurityRequirement::new(HMAC_SCHEME, Vec::<String>::new())]);
                }
            }
        }
    }
}

fn status_response_name(status: &str) -> String {
    match status {
        "400" => "BadRequest",
        "401" => "Unauthorized",
        "408" => "RequestTimeout",
        "413" => "RequestTooLarge",
        _ => "InternalError",
    }
    .to_owned()
}

fn error_response(description: &str) -> Response {
    let content = ContentBuilder::new().schema(Some(AcsErrorResponse::schema_ref())).build();
    ResponseBuilder::new().description(description).content("application/json", content).build()
}

/// Every operation of a path item with its method.
pub fn operations_mut(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
    let PathItem { get, put, post, delete, options, head, patch, trace, .. } = item;
    [
        (Method::GET, get),
        (Method::PUT, put),
        (Method::POST, post),
        (Method::DELETE, delete),
        (Method::OPTIONS, options),
        (Method::HEAD, head),
        (Method::PATCH, patch),
        (Method::TRACE, trace),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

/// The methods of a path item that have an operation.
pub fn methods(item: &PathItem) -> Vec<Method> {
    let mut item = item.clone();
    operations_mut(&mut item).into_iter().map(|(m, _)| m).collect()
}

/// A reference to a schema component, the way `#[utoipa::path]` references `body = T`.
trait SchemaRef {
    fn schema_ref() -> RefOr<Schema>;
}

impl<T: ToSchema> SchemaRef for T {
    fn schema_ref() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(T::name()))
    }
}

/// A string schema with the given values (from a domain enum's name list).
fn string_enum(description: &str, values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).enum_values(Some(values)).into()
}

/// Wire-name schemas for request and response fields that carry a domain enum as a string.
macro_rules! name_schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

name_schema!(
    /// An access token scope (case-insensitive on input).
    ScopeName => string_enum("An access token scope", SCOPE_NAMES.iter().map(|(name, _)| *name))
);
name_schema!(
    /// An ACS Rooms role.
    RoleName => string_enum("An ACS Rooms participant role", Role::ALL.iter().map(|r| r.as_str()))
);
name_schema!(
    /// A meeting participant's role (Graph `onlineMeetingRole`).
    MeetingRoleName => string_enum("A meeting participant's role", MeetingRole::ALL.iter().map(|r| r.as_str()))
);
name_schema!(
    /// Graph `lobbyBypassScope`.
    LobbyBypassScopeName => string_enum("Who joins directly, skipping the lobby", LobbyBypassScope::ALL.iter().map(|r| r.as_str()))
);
name_schema!(
    /// Graph `onlineMeetingPresenters`.
    AllowedPresentersName => string_enum("Who may present", AllowedPresenters::ALL.iter().map(|r| r.as_str()))
);
name_schema!(
    /// A communication user's raw ID.
    RawId => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A communication user's raw ID: `8:acs:<resourceId>_<uuid>`"))
        .examples(["8:acs:1b2c3d4e-0000-0000-0000-000000000000_0f8fad5b-d9cb-469f-a165-70867728950e"])
        .into()
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = ApiDoc::openapi();
        doc.paths
            .paths
            .iter()
            .flat_map(|(path, item)| methods(item).into_iter().map(move |m| (m.to_string(), path.clone())))
            .collect()
    }

    fn served() -> BTreeSet<(String, String)> {
        super::super::served_routes().iter().map(|r| (r.method.to_string(), r.path.to_owned())).collect()
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let (documented, served) = (documented(), served());
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&served).collect();
        assert!(undocumented.is_empty(), "served but not in the OpenAPI document: {undocumented:?}");
        assert!(unrouted.is_empty(), "in the OpenAPI document but not served: {unrouted:?}");
    }

    #[test]
    fn signed_operations_carry_the_hmac_requirement_and_public_ones_none() {
        let mut doc = ApiDoc::openapi();
        let schemes = &doc.components.as_ref().expect("components").security_schemes;
        assert!(schemes.contains_key(HMAC_SCHEME));
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                let route = super::super::served_routes()
                    .iter()
                    .find(|r| r.method == method && r.path == path)
                    .expect("every documented operation is served");
                let requirement = serde_json::to_value(&op.security).expect("json");
                match route.access {
                    Access::Signed => {
                        assert_eq!(requirement, serde_json::json!([{ HMAC_SCHEME: [] }]), "{method} {path}");
                        assert!(op.responses.responses.contains_key("401"), "{method} {path} documents 401");
                    }
                    Access::Public => assert!(requirement.is_null(), "{method} {path} is public"),
                }
            }
        }
    }

    #[test]
    fn every_client_error_is_in_the_acs_error_shape() {
        let json: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        let responses = &json["components"]["responses"];
        let mut checked = 0;
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                for (status, response) in op["responses"].as_object().expect("responses") {
                    if !status.starts_with('4') {
                        continue;
                    }
                    let response = match response["$ref"].as_str() {
                        Some(r) => &responses[r.rsplit('/').next().expect("a name")],
                        None => response,
                    };
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/AcsErrorResponse", "{method} {path} {status}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "checked {checked} error responses");
    }

    #[test]
    fn operation_ids_are_unique() {
        let json: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        let mut ids = BTreeSet::new();
        for item in json["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("path item").values() {
                let id = op["operationId"].as_str().expect("an operationId").to_owned();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
            }
        }
    }

    #[test]
    fn api_versions_come_from_the_extractors() {
        let json: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        let param = |path: &str, method: &str| {
            json["paths"][path][method]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == "api-version")
                .cloned()
                .expect("api-version")
        };
        let identities = param("/identities", "post");
        assert_eq!(identities["required"], true);
        assert!(identities["schema"]["enum"].as_array().expect("enum").iter().any(|v| v == "2023-10-01"));
        let meetings = param("/meetings/{id}", "get");
        assert_eq!(meetings["required"], false);
        assert_eq!(meetings["schema"]["default"], "2025-01-01");
    }
}
