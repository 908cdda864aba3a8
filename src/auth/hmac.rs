//! ACS HMAC-SHA256 request signing, both halves: `HmacVerifier` for the server (management API)
//! and `sign_request` for Switchboard's own clients (tests, `loadtest`).
//!
//! String to sign: `VERB\n<path and query>\n<values of the signed headers joined by ';'>`, where
//! the signed headers must include `x-ms-date`, `host` and `x-ms-content-sha256`. The key is the
//! base64-decoded access key; the signature is checked in constant time against every configured
//! key (rotation).

use aws_lc_rs::{constant_time, digest, hmac};
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::time::{Duration, SystemTime};

/// Why a signed request was refused. `reason()` is the metrics label; `Display` goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HmacError {
    #[error("missing Authorization header (expected HMAC-SHA256 SignedHeaders=...&Signature=...)")]
    MissingAuthorization,
    #[error("Authorization header is not HMAC-SHA256 SignedHeaders=...&Signature=...")]
    MalformedAuthorization,
    #[error("SignedHeaders must include x-ms-date, host and x-ms-content-sha256")]
    RequiredHeaderNotSigned,
    #[error("signed header {0} is missing from the request")]
    MissingHeader(String),
    #[error("x-ms-date is not an RFC 1123 date")]
    BadDate,
    #[error("x-ms-date is more than {0} seconds away from the server clock")]
    StaleDate(u64),
    #[error("x-ms-content-sha256 does not match the request body")]
    BodyHashMismatch,
    #[error("signature does not match any access key")]
    BadSignature,
}

impl HmacError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HmacError::MissingAuthorization => "missing_authorization",
            HmacError::MalformedAuthorization => "malformed_authorization",
            HmacError::RequiredHeaderNotSigned => "required_header_not_signed",
            HmacError::MissingHeader(_) => "missing_header",
            HmacError::BadDate => "bad_date",
            HmacError::StaleDate(_) => "stale_date",
            HmacError::BodyHashMismatch => "body_hash_mismatch",
            HmacError::BadSignature => "bad_signature",
        }
    }
}

/// Checks ACS-signed management requests against the configured access keys.
pub struct HmacVerifier {
    keys: Vec<hmac::Key>,
    max_skew: Duration,
}

/// The parts of a request that the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path and query exactly as they appeared in the request line.
    pub path_and_query: &'a str,
    /// The `Host` header, or the `:authority` of an HTTP/2 request.
    pub host: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl HmacVerifier {
    /// `keys` are raw (already base64-decoded) access keys.
    pub fn new<K: AsRef<[u8]>>(keys: &[K], max_skew: Duration) -> Self {
        let keys = keys.iter().map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())).collect();
        Self { keys, max_skew }
    }

    /// Verify a request signed at most `max_skew` away from `now`.
    pub fn verify(&self, req: &SignedRequest<'_>, now: SystemTime) -> Result<(), HmacError> {
        let auth = header(req.headers, "authorization").ok_or(HmacError::MissingAuthorization)?;
        let (signed_headers, signature) = parse_authorization(auth)?;
        let names: Vec<String> = signed_headers.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
        for required in ["x-ms-date", "host", "x-ms-content-sha256"] {
            if !names.iter().any(|n| n == required) {
                return Err(HmacError::RequiredHeaderNotSigned);
            }
        }
        let mut values = Vec::with_capacity(names.len());
        for name in &names {
            let value = if name == "host" { Some(req.host) } else { header(req.headers, name) };
            values.push(value.ok_or_else(|| HmacError::MissingHeader(name.clone()))?);
        }

        let date = header(req.headers, "x-ms-date").ok_or_else(|| HmacError::MissingHeader("x-ms-date".into()))?;
        let date = httpdate::parse_http_date(date).map_err(|_| HmacError::BadDate)?;
        let skew = date.duration_since(now).or_else(|_| now.duration_since(date)).unwrap_or(Duration::MAX);
        if skew > self.max_skew {
            return Err(HmacError::StaleDate(self.max_skew.as_secs()));
        }

        let claimed_hash = header(req.headers, "x-ms-content-sha256")
            .ok_or_else(|| HmacError::MissingHeader("x-ms-content-sha256".into()))?;
        let actual_hash = content_hash(req.body);
        if constant_time::verify_slices_are_equal(claimed_hash.as_bytes(), actual_hash.as_bytes()).is_err() {
            return Err(HmacError::BodyHashMismatch);
        }

        let signature = B64.decode(signature).map_err(|_| HmacError::MalformedAuthorization)?;
        let joined = values.join(";");
        // Clients differ in whether they sign the path as sent or percent-decoded (the ACS SDKs
        // have a `decode_url` switch); both forms need the key, so accepting either is safe.
        let decoded = percent_decode(req.path_and_query);
        let paths = std::iter::once(req.path_and_query).chain(decoded.as_deref().filter(|d| *d != req.path_and_query));
        for path in paths {
            let string_to_sign = format!("{}\n{}\n{}", req.method.to_ascii_uppercase(), path, joined);
            if self.keys.iter().any(|k| hmac::verify(k, string_to_sign.as_bytes(), &signature).is_ok()) {
                return Ok(());
            }
        }
        Err(HmacError::BadSignature)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_authorization(value: &str) -> Result<(&str, &str), HmacError> {
    let (scheme, rest) = value.trim().split_once(' ').ok_or(HmacError::MalformedAuthorization)?;
    if !scheme.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(HmacError::MalformedAuthorization);
    }
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.trim().split('&') {
        match part.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("SignedHeaders") => signed_headers = Some(v),
            Some((k, v)) if k.eq_ignore_ascii_case("Signature") => signature = Some(v),
            _ => return Err(HmacError::MalformedAuthorization),
        }
    }
    match (signed_headers, signature) {
        (Some(h), Some(s)) if !h.is_empty() && !s.is_empty() => Ok((h, s)),
        _ => Err(HmacError::MalformedAuthorization),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Base64 SHA-256 of a body, the value of `x-ms-content-sha256`.
pub fn content_hash(body: &[u8]) -> String {
    B64.encode(digest::digest(&digest::SHA256, body))
}

/// Headers that sign a request the way the ACS SDKs do. `key` is the raw access key.
pub fn sign_request(
    method: &str,
    path_and_query: &str,
    host: &str,
    body: &[u8],
    key: &[u8],
    at: SystemTime,
) -> [(&'static str, String); 3] {
    let date = httpdate::fmt_http_date(at);
    let hash = content_hash(body);
    let string_to_sign = format!("{}\n{}\n{};{};{}", method.to_ascii_uppercase(), path_and_query, date, host, hash);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), string_to_sign.as_bytes());
    let authorization =
        format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={}", B64.encode(tag));
    [("x-ms-date", date), ("x-ms-content-sha256", hash), ("authorization", authorization)]
}

/// A parsed ACS connection string: `endpoint=https://HOST:PORT/;accesskey=BASE64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The endpoint without a trailing slash, e.g. `https://127.0.0.1:8443`.
    pub endpoint: String,
    /// `HOST:PORT` as it goes into the string to sign.
    pub host: String,
    /// The raw (decoded) access key.
    pub key: Vec<u8>,
}

/// A connection string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection string: {0} (expected endpoint=https://HOST:PORT/;accesskey=BASE64)")]
pub struct ConnectionStringError(&'static str);

impl std::str::FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut endpoint = None;
        let mut key = None;
        for part in s.trim().split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or(ConnectionStringError("a part has no '='"))?;
            if k.eq_ignore_ascii_case("endpoint") {
                endpoint = Some(v.trim_end_matches('/').to_owned());
            } else if k.eq_ignore_ascii_case("accesskey") {
                key = Some(B64.decode(v).map_err(|_| ConnectionStringError("accesskey is not base64"))?);
            }
        }
        let endpoint = endpoint.ok_or(ConnectionStringError("no endpoint"))?;
        let key = key.ok_or(ConnectionStringError("no accesskey"))?;
        let host = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, h)| h).to_owned();
        if host.is_empty() || host.contains('/') {
            return Err(ConnectionStringError("endpoint has no host or has a path"));
        }
        Ok(Self { endpoint, host, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const PATH: &str = "/identities/8%3Aacs%3Ar_1/:issueAccessToken?api-version=2023-10-01";

    fn headers_for(signed: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in signed {
            h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).expect("ascii header"));
        }
        h
    }

    fn check(v: &HmacVerifier, headers: &HeaderMap, body: &[u8], path: &str, now: SystemTime) -> Result<(), HmacError> {
        v.verify(&SignedRequest { method: "POST", path_and_query: path, host: "127.0.0.1:8443", headers, body }, now)
    }

    #[test]
    fn accepts_own_signature_with_any_configured_key() {
        let now = SystemTime::now();
        let v = HmacVerifier::new(&[b"other-key-other-key".as_slice(), KEY], Duration::from_secs(300));
        let h = headers_for(&sign_request("post", PATH, "127.0.0.1:8443", b"{}", KEY, now));
        assert_eq!(check(&v, &h, b"{}", PATH, now), Ok(()));
    }

    #[test]
    fn accepts_signature_over_decoded_path() {
        let now = SystemTime::now();
        let v = HmacVerifier::new(&[KEY], Duration::from_secs(300));
        let decoded = percent_decode(PATH).expect("decodable");
        assert!(decoded.contains("8:acs:r_1"));
        let h = headers_for(&sign_request("POST", &decoded, "127.0.0.1:8443", b"", KEY, now));
        assert_eq!(check(&v, &h, b"", PATH, now), Ok(()));
    }

    #[test]
    fn refuses_wrong_key_tampered_body_stale_date_and_missing_headers() {
        let now = SystemTime::now();
        let v = HmacVerifier::new(&[KEY], Duration::from_secs(300));
        let wrong = headers_for(&sign_request("POST", PATH, "127.0.0.1:8443", b"{}", b"not the key at all!", now));
        assert_eq!(check(&v, &wrong, b"{}", PATH, now), Err(HmacError::BadSignature));

        let good = headers_for(&sign_request("POST", PATH, "127.0.0.1:8443", b"{}", KEY, now));
        assert_eq!(check(&v, &good, b"{\"x\":1}", PATH, now), Err(HmacError::BodyHashMismatch));
        assert_eq!(check(&v, &good, b"{}", "/identities?api-version=2023-10-01", now), Err(HmacError::BadSignature));
        assert_eq!(check(&v, &good, b"{}", PATH, now + Duration::from_secs(301)), Err(HmacError::StaleDate(300)));
        assert_eq!(check(&v, &good, b"{}", PATH, now - Duration::from_secs(299)), Ok(()));

        for drop in ["x-ms-date", "x-ms-content-sha256", "authorization"] {
            let mut h = good.clone();
            h.remove(drop);
            assert!(check(&v, &h, b"{}", PATH, now).is_err(), "accepted without {drop}");
        }
        let mut h = good.clone();
        h.insert("authorization", HeaderValue::from_static("HMAC-SHA256 SignedHeaders=host&Signature=AAAA"));
        assert_eq!(check(&v, &h, b"{}", PATH, now), Err(HmacError::RequiredHeaderNotSigned));
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(check(&v, &h, b"{}", PATH, now), Err(HmacError::MalformedAuthorization));
        h.insert("authorization", HeaderValue::from_static("HMAC-SHA256 junk"));
        assert_eq!(check(&v, &h, b"{}", PATH, now), Err(HmacError::MalformedAuthorization));
    }

    #[test]
    fn connection_string_parses() {
        let cs: ConnectionString = "endpoint=https://127.0.0.1:8443/;accesskey=AAEC".parse().expect("valid");
        assert_eq!(cs.endpoint, "https://127.0.0.1:8443");
        assert_eq!(cs.host, "127.0.0.1:8443");
        assert_eq!(cs.key, vec![0, 1, 2]);
        assert!("endpoint=https://x/".parse::<ConnectionString>().is_err());
        assert!("accesskey=AAEC".parse::<ConnectionString>().is_err());
        assert!("endpoint=https://x/;accesskey=!!".parse::<ConnectionString>().is_err());
    }

    #[test]
    fn percent_decode_handles_edges() {
        assert_eq!(percent_decode("/a%3Ab"), Some("/a:b".to_owned()));
        assert_eq!(percent_decode("/a%3"), Some("/a%3".to_owned()));
        assert_eq!(percent_decode("/a%zz"), None);
        assert_eq!(percent_decode("/plain"), None);
    }
}
