//! Which `callbackUri`s the server may POST to: http(s) URIs without user info whose host is on
//! the configured allow-list. Entries are parsed once at config load (`HostPattern`), and a URI is
//! matched by its host name or IP literal only — never by resolving it, so a validation answer
//! cannot change with DNS and costs no lookup.

use reqwest::Url;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Longest `callbackUri` accepted, in bytes.
pub const MAX_CALLBACK_URI_BYTES: usize = 2048;

/// Why a `callbackUri` was refused. The text is meant for the API's 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("callbackUri is not an absolute URI: {0}")]
    NotAUri(String),
    #[error("callbackUri is longer than {MAX_CALLBACK_URI_BYTES} bytes")]
    TooLong,
    #[error("callbackUri must use http or https, not `{0}`")]
    Scheme(String),
    #[error("callbackUri must not carry a user name or password")]
    UserInfo,
    #[error("callbackUri has no host")]
    NoHost,
    #[error("callbackUri host `{0}` is not allowed (webhooks.allowed_hosts)")]
    HostNotAllowed(String),
}

/// A `callbackUri` that passed validation: where deliveries go. Keeps the text the app gave,
/// which is the `aud` of the delivery tokens, next to the parsed URL requests are sent to.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUri {
    given: Arc<str>,
    url: Url,
}

impl CallbackUri {
    /// The URI exactly as the app gave it (what `GET` of a call connection shows, and the
    /// `aud` claim of every delivery token).
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// The parsed URL deliveries are POSTed to.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Debug for CallbackUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUri({})", self.given)
    }
}

impl fmt::Display for CallbackUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

/// One `webhooks.allowed_hosts` entry: `host`, `host:port`, `*.example.com[:port]` (subdomains of
/// example.com at any depth, not example.com itself), an IPv4 literal with optional port, or an
/// IPv6 literal bare (`::1`) or bracketed (`[::1]`, `[::1]:8080`). Without a port any port matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern {
    host: PatternHost,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternHost {
    /// A lower-case DNS name without trailing dot.
    Exact(String),
    /// `*.suffix`: matches names ending in `.suffix`.
    Subdomains(String),
    Ip(IpAddr),
}

/// Why an allow-list entry is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not a host pattern: {reason} (expected host, host:port, *.example.com or an IP literal)")]
pub struct HostPatternError {
    entry: String,
    reason: &'static str,
}

impl HostPattern {
    pub fn parse(entry: &str) -> Result<Self, HostPatternError> {
        let fail = |reason| HostPatternError { entry: entry.to_owned(), reason };
        let text = entry.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(fail("empty"));
        }
        // Bracketed IPv6, with or without a port.
        if let Some(rest) = text.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| fail("unclosed `[`"))?;
            let ip: Ipv6Addr = addr.parse().map_err(|_| fail("not an IPv6 address inside [ ]"))?;
            let port = match after {
                "" => None,
                p => Some(
                    parse_port(p.strip_prefix(':').ok_or_else(|| fail("junk after `]`"))?)
                        .ok_or_else(|| fail("bad port"))?,
                ),
            };
            return Ok(Self { host: PatternHost::Ip(IpAddr::V6(ip)), port });
        }
        // A bare IP literal (IPv6 has colons, so this comes before the port split).
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self { host: PatternHost::Ip(ip), port: None });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p).ok_or_else(|| fail("bad port"))?)),
            None => (text.as_str(), None),
        };
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Ok(Self { host: PatternHost::Ip(IpAddr::V4(ip)), port });
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(name) => (true, name),
            None => (false, host),
        };
        if !is_dns_name(name) {
            return Err(fail("not a DNS name (`*` only as a leading `*.`)"));
        }
        let host =
            if wildcard { PatternHost::Subdomains(name.to_owned()) } else { PatternHost::Exact(name.to_owned()) };
        Ok(Self { host, port })
    }

    /// Whether a parsed URL's host and effective port match.
    fn matches(&self, host: &url::Host<&str>, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        match (&self.host, host) {
            (PatternHost::Ip(ip), url::Host::Ipv4(v4)) => *ip == IpAddr::V4(*v4),
            (PatternHost::Ip(ip), url::Host::Ipv6(v6)) => *ip == IpAddr::V6(*v6),
            (PatternHost::Exact(name), url::Host::Domain(d)) => name == &normalize_domain(d),
            (PatternHost::Subdomains(suffix), url::Host::Domain(d)) => {
                let d = normalize_domain(d);
                d.len() > suffix.len() + 1 && d.ends_with(suffix.as_str()) && d[..d.len() - suffix.len()].ends_with('.')
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = HostPatternError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

fn normalize_domain(d: &str) -> String {
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Check a `callbackUri` against the rules and the allow-list.
pub fn validate(allowed: &[HostPattern], uri: &str) -> Result<CallbackUri, WebhookError> {
    if uri.len() > MAX_CALLBACK_URI_BYTES {
        return Err(WebhookError::TooLong);
    }
    let url = Url::parse(uri).map_err(|e| WebhookError::NotAUri(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::UserInfo);
    }
    let host = match url.host() {
        None => return Err(WebhookError::NoHost),
        Some(url::Host::Domain("")) => return Err(WebhookError::NoHost),
        Some(h) => h,
    };
    let port = url.port_or_known_default();
    if !allowed.iter().any(|p| p.matches(&host, port)) {
        return Err(WebhookError::HostNotAllowed(host.to_string()));
    }
    Ok(CallbackUri { given: Arc::from(uri), url })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<HostPattern> {
        entries.iter().map(|e| HostPattern::parse(e).expect("valid pattern")).collect()
    }

    fn ok(allowed: &[HostPattern], uri: &str) -> bool {
        validate(allowed, uri).is_ok()
    }

    #[test]
    fn scheme_must_be_http_or_https() {
        let l = list(&["example.com"]);
        assert!(ok(&l, "https://example.com/cb"));
        assert!(ok(&l, "http://example.com/cb?x=1"));
        assert_eq!(validate(&l, "ftp://example.com/cb"), Err(WebhookError::Scheme("ftp".into())));
        assert!(matches!(validate(&l, "file:///etc/passwd"), Err(WebhookError::Scheme(_))));
        assert!(matches!(validate(&l, "/relative"), Err(WebhookError::NotAUri(_))));
        assert!(matches!(validate(&l, ""), Err(WebhookError::NotAUri(_))));
        assert!(matches!(validate(&l, "https://"), Err(WebhookError::NotAUri(_) | WebhookError::NoHost)));
    }

    #[test]
    fn host_must_be_listed_by_name_case_insensitively() {
        let l = list(&["App.Example.com"]);
        assert!(ok(&l, "https://app.example.com/cb"));
        assert!(ok(&l, "https://APP.EXAMPLE.COM./cb"));
        assert!(ok(&l, "https://app.example.com:9443/cb"), "no port in the entry: any port");
        assert_eq!(
            validate(&l, "https://evil.example.com/cb"),
            Err(WebhookError::HostNotAllowed("evil.example.com".into()))
        );
        assert!(!ok(&l, "https://app.example.com.evil.net/cb"));
        assert!(!ok(&l, "https://example.com/cb"));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(ok(&l, "https://a.example.com/"));
        assert!(ok(&l, "https://a.b.example.com/"));
        assert!(!ok(&l, "https://example.com/"));
        assert!(!ok(&l, "https://badexample.com/"));
        assert!(!ok(&l, "https://a.example.com.evil.net/"));
        assert!(HostPattern::parse("*example.com").is_err());
        assert!(HostPattern::parse("a.*.example.com").is_err());
        assert!(HostPattern::parse("*").is_err());
    }

    #[test]
    fn port_in_entry_must_match_the_effective_port() {
        let l = list(&["hooks.example.com:8443", "plain.example.com:443"]);
        assert!(ok(&l, "https://hooks.example.com:8443/cb"));
        assert!(!ok(&l, "https://hooks.example.com/cb"), "443 is not 8443");
        assert!(!ok(&l, "http://hooks.example.com:8080/cb"));
        assert!(ok(&l, "https://plain.example.com/cb"), "https defaults to 443");
        assert!(!ok(&l, "http://plain.example.com/cb"), "http defaults to 80");
        assert!(HostPattern::parse("x.example.com:0").is_err());
        assert!(HostPattern::parse("x.example.com:99999").is_err());
        assert!(HostPattern::parse("x.example.com:").is_err());
    }

    #[test]
    fn userinfo_is_refused() {
        let l = list(&["example.com"]);
        assert_eq!(validate(&l, "https://user@example.com/"), Err(WebhookError::UserInfo));
        assert_eq!(validate(&l, "https://user:pw@example.com/"), Err(WebhookError::UserInfo));
        assert_eq!(validate(&l, "https://:pw@example.com/"), Err(WebhookError::UserInfo));
        // The classic confusion: the host here is evil.net, and it carries user info.
        assert_eq!(validate(&l, "https://example.com@evil.net/"), Err(WebhookError::UserInfo));
    }

    #[test]
    fn ip_literals_v4_and_v6() {
        let l = list(&["127.0.0.1", "::1", "[fd00::1]:8080", "10.0.0.5:9000"]);
        assert!(ok(&l, "http://127.0.0.1:3000/cb"));
        assert!(ok(&l, "http://[::1]:3000/cb"));
        assert!(ok(&l, "http://[0:0:0:0:0:0:0:1]/cb"), "the same address spelled out");
        assert!(ok(&l, "http://[fd00::1]:8080/cb"));
        assert!(!ok(&l, "http://[fd00::1]:8081/cb"));
        assert!(ok(&l, "http://10.0.0.5:9000/"));
        assert!(!ok(&l, "http://10.0.0.5/"));
        assert!(!ok(&l, "http://127.0.0.2/"));
        assert!(!ok(&l, "http://[::2]/"));
        assert!(!ok(&l, "http://localhost/"), "names are not resolved: localhost is not 127.0.0.1");
        // Names never match IP entries and IPs never match name entries.
        let names = list(&["localhost"]);
        assert!(!ok(&names, "http://127.0.0.1/"));
        assert!(HostPattern::parse("[::1").is_err());
        assert!(HostPattern::parse("[nope]").is_err());
        assert!(HostPattern::parse("[::1]x").is_err());
    }

    #[test]
    fn default_allow_list_is_loopback_only() {
        let l = crate::config::WebhooksSection::default().allowed_hosts;
        assert!(ok(&l, "http://localhost:8080/api/callbacks"));
        assert!(ok(&l, "https://127.0.0.1/cb"));
        assert!(ok(&l, "http://[::1]:1/cb"));
        assert!(!ok(&l, "https://example.com/cb"));
        assert!(!ok(&l, "http://169.254.169.254/latest/meta-data"));
    }

    #[test]
    fn callback_keeps_the_given_text() {
        let l = list(&["example.com"]);
        let cb = validate(&l, "https://EXAMPLE.com").expect("valid");
        assert_eq!(cb.as_str(), "https://EXAMPLE.com");
        assert_eq!(cb.url().as_str(), "https://example.com/");
        assert_eq!(validate(&l, &format!("https://example.com/{}", "a".repeat(3000))), Err(WebhookError::TooLong));
    }
}
