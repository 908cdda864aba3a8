//! Request extractors with ACS-shaped errors: JSON bodies whose errors name the bad field, and
//! the `api-version` query parameter.

use super::error::AcsError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

/// A JSON body. An empty body reads as `{}`; an error names the field it found wrong.
pub struct AcsJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AcsJson<T> {
    type Rejection = AcsError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AcsError::new(e.status(), "BadRequest", e.body_text()))?;
        let value = parse_json(&bytes)?;
        Ok(AcsJson(value))
    }
}

/// Parse a JSON body, which must be an object; an empty body reads as `{}`; errors name the
/// offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AcsError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    // serde reads a struct from an array too (`[null, null]` as its fields in order), which
    // would make a request out of a body no client means as one.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AcsError::bad_request("the request body must be a JSON object", "body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let target = if path == "." { "body".to_owned() } else { path };
        AcsError::bad_request(format!("invalid request body: {}", e.inner()), target)
    })?;
    de.end().map_err(|e| AcsError::bad_request(format!("invalid request body: {e}"), "body"))?;
    Ok(value)
}

/// The `api-version` query parameter, checked against the versions a route family supports.
pub struct ApiVersion(pub String);

/// Routes declare which versions they accept by implementing this on a marker type.
pub trait SupportedVersions {
    const VERSIONS: &'static [&'static str];
    /// The version a request without `api-version` is read as; `None` (the ACS APIs): the
    /// parameter is required. APIs shaped like Microsoft Graph, which has no `api-version`,
    /// set one so Graph-style clients need not send it.
    const DEFAULT: Option<&'static str> = None;
}

/// Extracts and checks `api-version` for the marker `V`.
pub struct Versioned<V>(pub ApiVersion, std::marker::PhantomData<V>);

impl<S: Send + Sync, V: SupportedVersions> FromRequestParts<S> for Versioned<V> {
    type Rejection = AcsError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let version = form_urlencoded_pairs(query)
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| python_enum_version(&v).unwrap_or(v));
        match version.or_else(|| V::DEFAULT.map(str::to_owned)) {
            None => Err(AcsError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                format!("the api-version query parameter is required; supported: {}", V::VERSIONS.join(", ")),
            )
            .with_target("api-version")),
            Some(v) if V::VERSIONS.contains(&v.as_str()) => Ok(Versioned(ApiVersion(v), std::marker::PhantomData)),
            Some(v) => Err(AcsError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "UnsupportedApiVersion",
                format!("api-version '{v}' is not supported; supported: {}", V::VERSIONS.join(", ")),
            )
            .with_target("api-version")),
        }
    }
}

/// The version an Azure Python SDK meant when it sent its `ApiVersion` enum member itself
/// (`ApiVersion.V2025_03_13` for `2025-03-13`, `ApiVersion.V2025_03_02_PREVIEW` for
/// `2025-03-02-preview`). The generated paging code of azure-communication-rooms 1.2.0 does that
/// for every page after the first when the client uses its default version (on Python 3.11+,
/// where formatting a `str` enum gives its name); accepting the spelling keeps that SDK working
/// unmodified. `None` for anything else.
fn python_enum_version(v: &str) -> Option<String> {
    let name = v.strip_prefix("ApiVersion.V")?;
    let well_formed = name.len() >= 10 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    well_formed.then(|| name.replace('_', "-").to_ascii_lowercase())
}

/// The `api-version` query parameter as the OpenAPI document shows it: the versions `V` accepts
/// (required unless `V` has a default), from the same list the extractor checks.
impl<V: SupportedVersions> utoipa::IntoParams for Versioned<V> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(V::VERSIONS.iter().copied()))
            .default(V::DEFAULT.map(Into::into));
        let (required, description) = match V::DEFAULT {
            None => (Required::True, "The API version (required).".to_owned()),
            Some(default) => (Required::False, format!("The API version; {default} when absent.")),
        };
        let parameter = ParameterBuilder::new()
            .name("api-version")
            .parameter_in(ParameterIn::Query)
            .required(required)
            .description(Some(description))
            .schema(Some(schema))
            .build();
        vec![parameter]
    }
}

fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default().into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(default)]
        #[allow(dead_code)]
        a: Option<i64>,
    }

    #[test]
    fn a_body_is_an_object_or_empty() {
        assert!(parse_json::<Body>(b"").is_ok());
        assert!(parse_json::<Body>(b" {\"a\": 1} ").is_ok());
        // Found by schemathesis: serde reads a struct from an array.
        for bad in [&b"[null]"[..], b"[1]", b"null", b"1", b"\"a\""] {
            let e = parse_json::<Body>(bad).expect_err("not an object");
            assert_eq!(e.target.as_deref(), Some("body"));
        }
        let e = parse_json::<Body>(b"{\"a\": \"x\"}").expect_err("wrong type");
        assert_eq!(e.target.as_deref(), Some("a"));
    }

    #[test]
    fn python_sdk_enum_spelling_of_a_version_is_understood() {
        assert_eq!(python_enum_version("ApiVersion.V2025_03_13").as_deref(), Some("2025-03-13"));
        assert_eq!(python_enum_version("ApiVersion.V2025_03_02_PREVIEW").as_deref(), Some("2025-03-02-preview"));
        assert_eq!(python_enum_version("2025-03-13"), None);
        assert_eq!(python_enum_version("ApiVersion.V1"), None);
        assert_eq!(python_enum_version("ApiVersion.V2025-03-13;x"), None);
    }
}
