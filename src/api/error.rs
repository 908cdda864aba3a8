//! The ACS error shape: `{"error":{"code","message","target","details"}}` with a fitting status,
//! and the code repeated in the `x-ms-error-code` header as ACS sends it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API error as ACS clients expect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcsError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field or parameter at fault, when there is one.
    pub target: Option<String>,
    /// Finer-grained errors (ACS puts a `BadArgument` per bad field here).
    pub details: Vec<AcsErrorDetail>,
}

/// One entry of `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AcsErrorDetail {
    /// `BadArgument` for a bad field.
    pub code: &'static str,
    pub message: String,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub target: Option<String>,
}

/// The body of every error response (ACS `CommunicationErrorResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AcsErrorResponse {
    pub error: AcsErrorBody,
}

/// ACS `CommunicationError`; the code is also sent in the `x-ms-error-code` header.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcsErrorBody {
    /// A stable code: `BadRequest`, `Unauthorized`, `IdentityNotFound`, `NotFound`, ...
    pub code: &'static str,
    /// What was wrong, for a person.
    pub message: String,
    /// The request field or parameter at fault, or `null`.
    #[schema(required = true)]
    pub target: Option<String>,
    pub details: Vec<AcsErrorDetail>,
}

impl AcsError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), target: None, details: Vec::new() }
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn bad_request(message: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message).with_target(target)
    }

    /// A 400 for one bad field, shaped as ACS reports it: `BadRequest` with a `BadArgument`
    /// detail naming the field.
    pub fn bad_argument(message: impl Into<String>, target: impl Into<String>) -> Self {
        let (message, target) = (message.into(), target.into());
        let detail = AcsErrorDetail { code: "BadArgument", message: message.clone(), target: Some(target.clone()) };
        Self { details: vec![detail], ..Self::bad_request(message, target) }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// A server-side failure; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "the server could not complete the request")
    }
}

impl IntoResponse for AcsError {
    fn into_response(self) -> Response {
        let body = AcsErrorResponse {
            error: AcsErrorBody { code: self.code, message: self.message, target: self.target, details: self.details },
        };
        (self.status, [("x-ms-error-code", self.code)], axum::Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for AcsError {
    fn from(e: crate::store::StoreError) -> Self {
        AcsError::internal(e)
    }
}
