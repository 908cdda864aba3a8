//! Reading the config: the TOML file, then `SWITCHBOARD__SECTION__KEY` environment overrides,
//! then typed deserialization and the checks serde cannot express. Every failure becomes one
//! `ConfigError` that names the offending key.

use super::Config;
use base64::Engine as _;
use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";

/// A config that parsed and validated, with relative paths already resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file it came from, if any (a missing default `config.toml` means built-in defaults).
    pub source: Option<PathBuf>,
}

/// Why the config was refused. `Display` gives the one-line message printed before exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key `{key}`{origin}: {reason}")]
    Key { key: String, origin: Origin, reason: String },
}

/// Where a bad value came from, so the message points at the right place to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, " (in {p})"),
            Origin::Env(var) => write!(f, " (from environment variable {var})"),
        }
    }
}

impl ConfigError {
    /// The key the error names, when it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Load `path` (or `./config.toml` when `None` and present, else the built-in defaults) and apply
/// overrides from `env`.
pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<LoadedConfig, ConfigError> {
    let (text, source) = match path {
        Some(p) => (read(p)?, Some(p.to_path_buf())),
        None => {
            let default = Path::new("config.toml");
            if default.exists() { (read(default)?, Some(default.to_path_buf())) } else { (String::new(), None) }
        }
    };
    let label = source.as_ref().map_or_else(|| "built-in defaults".to_owned(), |p| p.display().to_string());
    let base = source.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_default();
    let config = parse(&text, &label, env, &base)?;
    Ok(LoadedConfig { config, source })
}

/// Parse config text (for tests and `check-config` on a string). Relative paths resolve
/// against `base`.
pub fn load_from_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    base: &Path,
) -> Result<Config, ConfigError> {
    parse(text, "config text", env, base)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Unreadable { path: path.display().to_string(), reason: e.to_string() })
}

fn parse(
    text: &str,
    label: &str,
    env: impl IntoIterator<Item = (String, String)>,
    base: &Path,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: label.to_owned(), reason: one_line(e.message()) })?;

    // Remember which keys the environment set so errors can point at the variable.
    let mut from_env: Vec<(String, String)> = Vec::new();
    let mut overrides: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    overrides.sort();
    for (var, raw) in overrides {
        let key = apply_override(&mut table, &var, &raw)?;
        from_env.push((key, var));
    }
    let origin_of = |key: &str| -> Origin {
        from_env
            .iter()
            .find(|(k, _)| key == k || key.starts_with(&format!("{k}.")) || key.starts_with(&format!("{k}[")))
            .map_or_else(|| Origin::File(label.to_owned()), |(_, var)| Origin::Env(var.clone()))
    };

    let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = one_line(&e.inner().to_string());
        // Depending on nesting, serde reports an unknown field at its own path or its parent's;
        // always name the field itself.
        let key = match unknown_field(&inner) {
            Some(field) if path == field || path.ends_with(&format!(".{field}")) => path,
            Some(field) if path == "." || path.is_empty() => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        ConfigError::Key { origin: origin_of(&key), key, reason: inner }
    })?;

    validate(&config).map_err(|(key, reason)| ConfigError::Key {
        origin: origin_of(key),
        key: key.to_owned(),
        reason,
    })?;
    resolve_paths(&mut config, base);
    Ok(config)
}

/// Put one `SWITCHBOARD__SECTION__KEY=value` into the table. The value is read as a TOML value
/// (`8443`, `true`, `["a","b"]`) and, when it is not one, as a plain string.
fn apply_override(table: &mut toml::Table, var: &str, raw: &str) -> Result<String, ConfigError> {
    let parts: Vec<String> = var[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    let key = parts.join(".");
    if parts.len() < 2 || parts.iter().any(String::is_empty) {
        return Err(ConfigError::Key {
            key,
            origin: Origin::Env(var.to_owned()),
            reason: "expected SWITCHBOARD__SECTION__KEY".to_owned(),
        });
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));

    let (last, sections) = parts.split_last().expect("checked above: at least two parts");
    let mut cursor = table;
    for section in sections {
        let entry = cursor.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Key {
                    key,
                    origin: Origin::Env(var.to_owned()),
                    reason: format!("`{section}` is not a section"),
                });
            }
        };
    }
    cursor.insert(last.clone(), value);
    Ok(key)
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that need more than one value's type: returns the key and what is allowed.
fn validate(c: &Config) -> Result<(), (&'static str, String)> {
    if !c.server.resource_id.is_empty() && uuid::Uuid::parse_str(&c.server.resource_id).is_err() {
        return Err(("server.resource_id", "must be empty (generated) or a UUID".to_owned()));
    }
    if let Err(e) = c.server.log.parse::<tracing_subscriber::EnvFilter>() {
        return Err(("server.log", format!("not a valid tracing filter: {e}")));
    }
    if !c.http.public_url.is_empty() && !is_https_base_url(&c.http.public_url) {
        return Err((
            "http.public_url",
            "must be empty or an https:// URL such as https://sfu.example.com/".to_owned(),
        ));
    }
    let token = &c.http.metrics_token;
    if !token.is_empty() && (token.len() < 16 || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic())) {
        return Err((
            "http.metrics_token",
            "must be empty (public /metrics) or 16 to 256 visible ASCII characters".to_owned(),
        ));
    }
    if c.http.tls_cert.as_os_str().is_empty() != c.http.tls_key.as_os_str().is_empty() {
        return Err(("http.tls_key", "set both http.tls_cert and http.tls_key, or neither".to_owned()));
    }
    if c.webrtc.public_ips.is_empty() && c.webrtc.listen_ip.is_unspecified() {
        return Err((
            "webrtc.public_ips",
            "set the IPs browsers reach when webrtc.listen_ip is unspecified".to_owned(),
        ));
    }
    if let Some(ip) = c.webrtc.public_ips.iter().find(|ip| ip.is_unspecified() || ip.is_multicast()) {
        return Err(("webrtc.public_ips", format!("{ip} cannot be an ICE candidate")));
    }
    // With a configured resource ID, listed users of another resource are caught here; with a
    // generated one, at start (`OrgPolicy::new` in `server::start`).
    if !c.server.resource_id.is_empty()
        && let Err(e) = crate::organization::OrgPolicy::new(c.organization.lists(), &c.server.resource_id)
    {
        return Err((e.key, format!("`{}` belongs to resource {}, not to server.resource_id", e.raw, e.resource)));
    }
    if c.webhooks.initial_backoff_ms.get() > c.webhooks.max_backoff_ms.get() {
        return Err(("webhooks.initial_backoff_ms", "must not exceed webhooks.max_backoff_ms".to_owned()));
    }
    if c.webhooks.max_queued_per_call.get() > c.webhooks.max_queued_total.get() {
        return Err(("webhooks.max_queued_per_call", "must not exceed webhooks.max_queued_total".to_owned()));
    }
    for (i, key) in c.auth.access_keys.iter().enumerate() {
        match base64::engine::general_purpose::STANDARD.decode(key) {
            Ok(bytes) if bytes.len() >= 16 => {}
            Ok(_) => return Err(("auth.access_keys", format!("key {i} is shorter than 16 bytes"))),
            Err(_) => return Err(("auth.access_keys", format!("key {i} is not valid base64"))),
        }
    }
    Ok(())
}

fn is_https_base_url(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or_default();
        !host.is_empty() && !rest.contains(['?', '#', ' '])
    })
}

fn resolve_paths(c: &mut Config, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if !p.as_os_str().is_empty() && p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut c.server.data_dir);
    resolve(&mut c.http.tls_cert);
    resolve(&mut c.http.tls_key);
    resolve(&mut c.tokens.signing_key);
    c.tokens.retired_signing_keys.iter_mut().for_each(resolve);
    resolve(&mut c.call_automation.media_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        load_from_str(text, env, Path::new("/etc/sb"))
    }

    #[test]
    fn empty_text_gives_documented_defaults() {
        let c = parse_env("", &[]).expect("defaults are valid");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.tokens.default_lifetime_minutes.get(), 1440);
        assert_eq!(c.server.data_dir, Path::new("/etc/sb/data"));
    }

    #[test]
    fn a_metrics_token_must_be_long_and_printable() {
        let e = parse_env("[http]\nmetrics_token = \"short\"\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.metrics_token"));
        let e = parse_env("[http]\nmetrics_token = \"sixteen chars ok\"\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.metrics_token"), "no spaces");
        let c = parse_env("[http]\nmetrics_token = \"0123456789abcdef\"\n", &[]).expect("valid");
        assert_eq!(c.http.metrics_token, "0123456789abcdef");
    }

    #[test]
    fn unknown_key_is_named_with_its_section() {
        let e = parse_env("[http]\nlisten_port = 1\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.listen_port"));
        let e = parse_env("[nope]\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("nope"));
    }

    #[test]
    fn wrong_type_and_range_name_the_key() {
        let e = parse_env("[http]\nlisten = 5\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.listen"));
        let e = parse_env("[tokens]\ndefault_lifetime_minutes = 10\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("tokens.default_lifetime_minutes"));
        assert!(e.to_string().contains("allowed 60..=1440"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_errors_name_the_variable() {
        let c = parse_env("[http]\nlisten = \"127.0.0.1:1\"\n", &[("SWITCHBOARD__HTTP__LISTEN", "127.0.0.1:0")])
            .expect("valid override");
        assert_eq!(c.http.listen.port(), 0);
        let c = parse_env("", &[("SWITCHBOARD__AUTH__ACCESS_KEYS", "[\"AAAAAAAAAAAAAAAAAAAAAA==\"]")]).expect("list");
        assert_eq!(c.auth.access_keys.len(), 1);
        let e = parse_env("", &[("SWITCHBOARD__TOKENS__VERIFY_LEEWAY_SECONDS", "900")]).unwrap_err();
        assert_eq!(e.key(), Some("tokens.verify_leeway_seconds"));
        assert!(e.to_string().contains("SWITCHBOARD__TOKENS__VERIFY_LEEWAY_SECONDS"), "{e}");
        let e = parse_env("", &[("SWITCHBOARD__HTTP", "x")]).unwrap_err();
        assert!(e.to_string().contains("SECTION__KEY"), "{e}");
    }

    #[test]
    fn cross_field_checks() {
        let e = parse_env("[http]\ntls_cert = \"a.pem\"\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.tls_key"));
        let e = parse_env("[auth]\naccess_keys = [\"!!\"]\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("auth.access_keys"));
        let e = parse_env("[http]\npublic_url = \"http://x/\"\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("http.public_url"));
        let e = parse_env("[server]\nresource_id = \"a_b\"\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("server.resource_id"));
    }

    #[test]
    fn organization_entries_are_checked_and_named() {
        let text = "[organization]\nmember_domains = [\"*@contoso.com\", \"contoso*\"]\n";
        let e = parse_env(text, &[]).unwrap_err();
        assert!(e.key().is_some_and(|k| k.starts_with("organization.member_domains")), "{e}");
        assert!(e.to_string().contains("contoso*"), "{e}");
        let e = parse_env("[organization]\nguests = [\"bob\"]\n", &[]).unwrap_err();
        assert!(e.key().is_some_and(|k| k.starts_with("organization.guests")), "{e}");
        let e = parse_env("", &[("SWITCHBOARD__ORGANIZATION__FEDERATED_DOMAINS", "[\"*fabrikam.com\"]")]).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD__ORGANIZATION__FEDERATED_DOMAINS"), "{e}");

        let res = "1b2c3d4e-0000-4000-8000-000000000001";
        let ours = format!("8:acs:{res}_{}", uuid::Uuid::new_v4());
        let theirs = format!("8:acs:2b2c3d4e-0000-4000-8000-000000000001_{}", uuid::Uuid::new_v4());
        let text = format!("[server]\nresource_id = \"{res}\"\n[organization]\nmembers = [\"{ours}\"]\n");
        let c = parse_env(&text, &[]).expect("a member of this resource");
        assert_eq!(c.organization.members.len(), 1);
        let text = format!("[server]\nresource_id = \"{res}\"\n[organization]\nmembers = [\"{theirs}\"]\n");
        let e = parse_env(&text, &[]).unwrap_err();
        assert_eq!(e.key(), Some("organization.members"), "{e}");
        // Without a configured resource ID, the resource is checked at start.
        let text = format!("[organization]\nmembers = [\"{theirs}\"]\n");
        assert!(parse_env(&text, &[]).is_ok());
    }

    #[test]
    fn webhook_entries_and_backoff_order_are_checked() {
        let c = parse_env("[webhooks]\nallowed_hosts = [\"*.example.com\", \"[::1]:8080\"]\n", &[]).expect("valid");
        assert_eq!(c.webhooks.allowed_hosts.len(), 2);
        let e = parse_env("[webhooks]\nallowed_hosts = [\"exa*mple.com\"]\n", &[]).unwrap_err();
        assert!(e.key().is_some_and(|k| k.starts_with("webhooks.allowed_hosts")), "{e}");
        assert!(e.to_string().contains("exa*mple.com"), "{e}");
        let e = parse_env("[webhooks]\ninitial_backoff_ms = 5000\nmax_backoff_ms = 1000\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("webhooks.initial_backoff_ms"));
        let e = parse_env("[webhooks]\nmax_queued_per_call = 10\nmax_queued_total = 5\n", &[]).unwrap_err();
        assert_eq!(e.key(), Some("webhooks.max_queued_per_call"));
    }

    #[test]
    fn syntax_error_is_one_line() {
        let e = parse_env("[http\n", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }));
        assert!(!e.to_string().contains('\n'));
    }
}
