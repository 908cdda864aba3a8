//! The `switchboard` binary: a thin command-line layer over the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::auth::{Scopes, TokenIssuer, TokenLifetime};
use switchboard::config::{self, Config, ConfigError};
use switchboard::identity::{IdentityDirectory, IdentityId};
use switchboard::organization::{ForeignConfiguredUser, OrgPolicy};
use switchboard::{bootstrap, server, store::Store};

/// Exit code for a refused configuration.
const EXIT_CONFIG: u8 = 2;

/// `-V`: the version and the revision it was built from.
const SHORT_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SWITCHBOARD_GIT_REVISION"), ")");

/// `--version` and `switchboard version`.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision: ",
    env!("SWITCHBOARD_GIT_REVISION"),
    "\nfeatures: ",
    env!("SWITCHBOARD_FEATURES")
);

const CONFIG_HELP: &str = "\
Configuration:
  --config FILE names the config file; without it ./config.toml is read when it exists, else the
  built-in defaults apply (config.toml in the source tree documents every key and its default).
  Relative paths in a config file are resolved against that file's directory.
  Any key can be overridden from the environment as SWITCHBOARD__SECTION__KEY, e.g.
    SWITCHBOARD__HTTP__LISTEN=0.0.0.0:8443
    SWITCHBOARD__SERVER__DATA_DIR=/var/lib/switchboard
    SWITCHBOARD__WEBRTC__PUBLIC_IPS='[\"203.0.113.7\"]'
  (values are read as TOML values, otherwise as strings). A wrong key, type or value stops with
  one line naming the key and exit code 2. RUST_LOG overrides server.log.

The identity, token, connection-string and backup commands work on the data directory
(server.data_dir) directly, also while the server runs.";

#[derive(Parser)]
#[command(
    name = "switchboard",
    version = SHORT_VERSION,
    long_version = LONG_VERSION,
    about = "Self-hosted communications server (SFU, identities, calls, meetings)",
    long_about = "Self-hosted communications server: a selective forwarding unit plus the identity, call and \
meeting services around it, with an HTTPS REST API compatible with the Azure Communication Services data \
plane. Without a command it runs the server (`serve`).",
    after_help = "Configuration: --config FILE, else ./config.toml, else built-in defaults; any key can be \
overridden as SWITCHBOARD__SECTION__KEY (see --help).",
    after_long_help = CONFIG_HELP
)]
struct Cli {
    /// Config file (default: ./config.toml when present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    #[command(long_about = "Run the server: HTTPS (REST API, WebSocket signaling, the call page, /metrics, \
/healthz), QUIC and WebRTC media. On first start it creates the data directory with the database, an \
access key, a TLS certificate and a token signing key. It prints one `switchboard ready: ...` line when \
it accepts connections. SIGTERM or Ctrl-C stop it gracefully within server.shutdown_grace_seconds.")]
    Serve,
    /// Validate the configuration and exit (exit code 2 on a bad config).
    CheckConfig,
    /// Print the OpenAPI document of the REST API (what `GET /openapi.json` serves).
    Openapi,
    /// Manage identities in the data directory.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Issue access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the connection string (endpoint and access key) for ACS SDKs.
    #[command(long_about = "Print the connection string (endpoint=https://...;accesskey=...) that ACS SDKs \
take. The endpoint is http.public_url, else http.listen; with port 0 only the running server knows its \
port, so the string it wrote to <data_dir>/connection-string is printed.")]
    ConnectionString,
    /// Back up the data directory into one file, safely while the server runs.
    #[command(
        long_about = "Back up the data directory into one file, safely while the server runs. The \
database (identities with their revocations, rooms, meetings) is copied through SQLite's online backup \
API as one consistent snapshot, and the generated resource ID, access key, token signing key and TLS \
material are carried along, so a server restored from it serves the same identities and accepts the same \
tokens. The file holds those secrets and is created readable by its owner only: keep it private.",
        after_help = "Restore with `switchboard restore FILE` into a new, empty data directory."
    )]
    Backup {
        /// The backup file to write (not inside the data directory's database files).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE when it exists (by default an existing file is refused).
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into a new, empty data directory.
    #[command(
        long_about = "Restore a file written by `switchboard backup` into the configured data directory \
(server.data_dir), which must be empty or not exist yet: a restore never replaces a server's state. The \
backup is checked (integrity, schema version) first; a restore that fails leaves the directory empty. \
Then start the server on that data directory.",
        after_help = "Example: SWITCHBOARD__SERVER__DATA_DIR=/srv/new-data switchboard restore backup.sqlite"
    )]
    Restore {
        /// The backup file to read.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the version, the git revision it was built from and the enabled cargo features.
    Version,
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Create an identity and print its raw ID.
    Create {
        /// Return the existing identity when this external ID is already known.
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for an identity and print it.
    Issue {
        /// The identity's raw ID (8:acs:...).
        #[arg(long, value_name = "RAW_ID")]
        identity: String,
        /// Comma-separated scopes: voip, voip.join, chat, chat.join, chat.join.limited.
        #[arg(long, value_delimiter = ',', required = true, value_name = "SCOPES")]
        scopes: Vec<String>,
        /// Lifetime in minutes (60-1440; default from config).
        #[arg(long, value_name = "N")]
        minutes: Option<i64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Openapi) {
        println!("{}", switchboard::api::openapi::document());
        return ExitCode::SUCCESS;
    }
    if matches!(command, Command::Version) {
        println!("switchboard {LONG_VERSION}");
        return ExitCode::SUCCESS;
    }
    let loaded = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    init_logging(&loaded.config);
    let result = match command {
        Command::Serve => serve(loaded.config),
        Command::Openapi => unreachable!("handled before loading the config"),
        Command::CheckConfig => {
            let source = loaded.source.map_or_else(|| "built-in defaults".to_owned(), |p| p.display().to_string());
            println!("config OK ({source})");
            Ok(())
        }
        Command::Identity { command: IdentityCommand::Create { external_id } } => {
            identity_create(&loaded.config, external_id.as_deref())
        }
        Command::Token { command: TokenCommand::Issue { identity, scopes, minutes } } => {
            token_issue(&loaded.config, &identity, &scopes, minutes)
        }
        Command::ConnectionString => connection_string(&loaded.config),
        Command::Backup { file, force } => backup(&loaded.config, &file, force),
        Command::Restore { file } => restore(&loaded.config, &file),
        Command::Version => unreachable!("handled before loading the config"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            if is_config_error(&e) { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE }
        }
    }
}

/// Config mistakes found only once the data directory is known (users listed for another
/// resource than the generated one) exit like the others found while loading.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ForeignConfiguredUser>().is_some()
        || matches!(e.downcast_ref::<server::StartError>(), Some(server::StartError::Organization(_)))
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("switchboard: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn init_logging(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<tracing_subscriber::EnvFilter>().ok())
        .unwrap_or_else(|| config.server.log.parse().expect("config validation checked server.log is a valid filter"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn serve(config: Config) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        // Installed before the server can announce itself (ready line, ready file): a signal sent
        // right after it must stop the server gracefully, not kill it with the default action.
        let stop = StopSignals::install()?;
        let running = server::start(config).await?;
        println!("{}", running.ready_line());
        stop.wait().await;
        tracing::info!("stopping: draining connections");
        running.stop().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment they are installed.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The data directory's directory and issuer, for the CLI commands that work offline.
fn offline_services(config: &Config) -> anyhow::Result<(bootstrap::Prepared, std::sync::Arc<IdentityDirectory>)> {
    let prepared = bootstrap::prepare(config)?;
    let store = Store::open(&prepared.db_path)?;
    Ok((prepared, std::sync::Arc::new(IdentityDirectory::new(store))))
}

fn identity_create(config: &Config, external_id: Option<&str>) -> anyhow::Result<()> {
    let (prepared, directory) = offline_services(config)?;
    let (record, _) = directory.create(external_id, unix_now() * 1000)?;
    println!("{}", IdentityId(record.id).raw(&prepared.resource_id));
    Ok(())
}

fn token_issue(config: &Config, identity: &str, scopes: &[String], minutes: Option<i64>) -> anyhow::Result<()> {
    let (prepared, directory) = offline_services(config)?;
    let id =
        IdentityId::parse_raw(identity, &prepared.resource_id).with_context(|| format!("--identity {identity}"))?;
    let scopes = Scopes::parse(scopes.iter().map(String::as_str)).context("--scopes")?;
    let minutes =
        minutes.unwrap_or_else(|| i64::try_from(config.tokens.default_lifetime_minutes.get()).unwrap_or(1440));
    let lifetime = TokenLifetime::from_minutes(minutes).context("--minutes")?;
    // The token carries the identity's organization standing, decided here as by the server.
    let org = OrgPolicy::new(config.organization.lists(), &prepared.resource_id)?;
    let issuer =
        TokenIssuer::new(std::sync::Arc::new(prepared.keys), directory, prepared.resource_id, std::sync::Arc::new(org));
    let token = issuer.issue(id, scopes, lifetime, unix_now())?;
    println!("{}", token.token);
    Ok(())
}

fn connection_string(config: &Config) -> anyhow::Result<()> {
    let prepared = bootstrap::prepare(config)?;
    let written = prepared.data_dir.join("connection-string");
    // With port 0 only the running server knows its port; it writes the file when ready.
    if config.http.listen.port() == 0 && config.http.public_url.is_empty() {
        let text = std::fs::read_to_string(&written).with_context(|| {
            format!("http.listen uses port 0; start the server first (it writes {})", written.display())
        })?;
        print!("{text}");
        return Ok(());
    }
    let endpoint = server::endpoint_for(&config.http.public_url, config.http.listen);
    println!("{}", server::connection_string(&endpoint, &prepared.primary_access_key_b64()));
    Ok(())
}

fn backup(config: &Config, file: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let held = switchboard::backup::backup(&config.server.data_dir, file, force)?;
    println!(
        "backed up {} identities, {} rooms and {} meetings{} to {} (it holds secrets: keep it private)",
        held.identities,
        held.rooms,
        held.meetings,
        carried(&held.files),
        file.display()
    );
    Ok(())
}

fn restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let data_dir = &config.server.data_dir;
    let held = switchboard::backup::restore(file, data_dir)?;
    println!(
        "restored {} identities, {} rooms and {} meetings{} into {}",
        held.identities,
        held.rooms,
        held.meetings,
        carried(&held.files),
        data_dir.display()
    );
    Ok(())
}

fn carried(files: &[String]) -> String {
    if files.is_empty() { String::new() } else { format!(" with {}", files.join(", ")) }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command (subcommands included) and every argument of each says what it is for.
    #[test]
    fn every_command_and_argument_is_documented() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut undocumented = Vec::new();
        let mut seen = 0;
        let mut stack = vec![(String::from("switchboard"), cli)];
        while let Some((path, command)) = stack.pop() {
            seen += 1;
            if command.get_about().is_none_or(|a| a.to_string().trim().is_empty()) {
                undocumented.push(format!("`{path}` has no about text"));
            }
            for arg in command.get_arguments() {
                let help = arg.get_help().or(arg.get_long_help()).map(ToString::to_string).unwrap_or_default();
                if help.trim().is_empty() {
                    undocumented.push(format!("`{path}`: argument `{}` has no help", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(undocumented.is_empty(), "{undocumented:#?}");
        assert!(seen >= 11, "walked every command: {seen}");
    }
}
