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

#[derive(Parser)]
#[command(name = "switchboard", about = "Self-hosted communications server (SFU, identities, calls, meetings)")]
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
    Serve,
    /// Validate the configuration and exit.
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
    ConnectionString,
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Create an identity and print its raw ID.
    Create {
        /// Return the existing identity when this external ID is already known.
        #[arg(long)]
        external_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for an identity and print it.
    Issue {
        /// The identity's raw ID (8:acs:...).
        #[arg(long)]
        identity: String,
        /// Comma-separated scopes: voip, voip.join, chat, chat.join, chat.join.limited.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Lifetime in minutes (60-1440; default from config).
        #[arg(long)]
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
        println!("switchboard {}", env!("CARGO_PKG_VERSION"));
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
        let running = server::start(config).await?;
        println!("{}", running.ready_line());
        wait_for_stop_signal().await;
        tracing::info!("stopping: draining connections");
        running.stop().await;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
