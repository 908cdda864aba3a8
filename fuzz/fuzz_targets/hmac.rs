//! The management API's request authentication (`auth::hmac`, `HmacVerifier::verify`): the
//! `Authorization: HMAC-SHA256 SignedHeaders=...&Signature=...` header, the signed header list,
//! `x-ms-date`, `x-ms-content-sha256`, and both readings of the path (as sent and
//! percent-decoded). Whatever the request, verification answers without panicking; a request
//! that the server's own `sign_request` signed verifies whatever its method, path, host and body,
//! and one signed with another key never does.
//!
//! Input: two bytes, then an HTTP/1.1 request as text (`METHOD path`, `name: value` header lines,
//! an empty line, the body). The first byte says whether the target signs the request itself
//! (0: no, 1: with the trusted key, 2: with another key); the second, how far the signing time
//! is from the server's clock (in steps of 4 s, signed). Without signing, the request is checked
//! as it is (the seeds are requests signed the way the ACS SDKs sign them).

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use switchboard::auth::hmac::{HmacVerifier, SignedRequest, sign_request};

/// The trusted access key (`fuzz/seeds.py` signs with it).
const KEY: &[u8] = b"fuzz access key, 32 bytes long!!";
const OTHER: &[u8] = b"another key that is not trusted!";
/// Unix seconds of the server's clock (the seeds are signed at it).
const NOW: u64 = 1_800_000_000;
const MAX_SKEW: Duration = Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    let [mode, skew, text @ ..] = data else { return };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let skew = i64::from(*skew as i8) * 4;
    let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW.saturating_add_signed(skew));
    let Some((head, body)) = split_head(text) else { return };
    let Ok(head) = std::str::from_utf8(head) else { return };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let (method, rest) = request_line.split_once(' ').unwrap_or((request_line, ""));
    let path_and_query = rest.strip_suffix(" HTTP/1.1").unwrap_or(rest);
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.trim())) {
            headers.append(n, v);
        }
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let key = match mode % 3 {
        1 => Some(KEY),
        2 => Some(OTHER),
        _ => None,
    };
    if let Some(key) = key {
        for (name, value) in sign_request(method, path_and_query, &host, body, key, signed_at) {
            headers.insert(name, HeaderValue::from_str(&value).expect("signature headers are ASCII"));
        }
    }
    let verifier = HmacVerifier::new(&[KEY], MAX_SKEW);
    let request = SignedRequest { method, path_and_query, host: &host, headers: &headers, body };
    let result = verifier.verify(&request, now);
    if let Err(e) = &result {
        let _ = (e.reason(), e.to_string());
    }
    let fresh = skew.unsigned_abs() <= MAX_SKEW.as_secs();
    match mode % 3 {
        1 if fresh => assert_eq!(result, Ok(()), "the server's own signature verifies: {method} {path_and_query}"),
        1 => assert!(result.is_err(), "a stale date is refused"),
        2 => assert!(result.is_err(), "another key's signature verifies"),
        _ => {}
    }
});

/// Split at the first empty line.
fn split_head(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = text.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&text[..i], &text[i + 4..]))
}
