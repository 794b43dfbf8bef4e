//! `tidelog serve` and `tidelog admin`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use tidelog::core::bundle::Limits;
use tidelog::core::time::rfc3339;
use tidelog::server::{self, Connections, ServeOptions};

use super::logging::LogFormat;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Folder for uploads and blobs, and for the SQLite database unless --database names one
    /// [default: tidelog-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Database URL, e.g. sqlite:///srv/tidelog.db, created if missing (default: SQLite under
    /// --data). Uploads and blobs still go to --data.
    #[arg(long)]
    database: Option<String>,
    /// Object store for history segments, files and unfinished uploads: file:///DIR or
    /// s3://BUCKET/PREFIX (credentials and endpoint from the AWS_* variables) [default:
    /// file://<data>/store].
    #[arg(long)]
    store: Option<String>,
    /// Origins allowed to call the API from a browser (CORS); repeatable.
    #[arg(long = "allow-origin")]
    allow_origin: Vec<String>,
    /// Largest size a bundle may unpack to, in bytes.
    #[arg(long, default_value_t = tidelog::core::bundle::DEFAULT_MAX_UNPACKED)]
    max_unpacked_bytes: u64,
    /// Largest request body (a bundle or a tus chunk), in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    max_body_bytes: usize,
    /// Seconds an unfinished resumable upload is kept before it is removed (tus expiration).
    #[arg(long, default_value_t = 24 * 3600)]
    upload_expiry_secs: u64,
    /// Rows × keys one table of a bundle may hold (the decode budget).
    #[arg(long, default_value_t = Limits::default().max_cells)]
    max_decode_cells: u64,
    /// Bytes of memory the decoded rows of one bundle may take (the decode budget).
    #[arg(long, default_value_t = Limits::default().max_decoded_bytes)]
    max_decoded_bytes: u64,
    /// Seconds a connection may take to send a request's headers, or stay idle between
    /// requests, before it is closed.
    #[arg(long, default_value_t = 10.0)]
    header_timeout_secs: f64,
    /// Seconds a request body may pause before the request is abandoned (408).
    #[arg(long, default_value_t = 30.0)]
    body_timeout_secs: f64,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Bundles decoded and stored at once; more are answered 503 with Retry-After [default: one
    /// per core, from 2 to 4].
    #[arg(long)]
    max_ingests: Option<usize>,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C before the server
    /// exits anyway.
    #[arg(long, default_value_t = 30.0)]
    shutdown_timeout_secs: f64,
    /// How log lines look on stderr: text, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// One ingest slot per core, from 2 to 4: each ingest waits on the database with one of its
/// 8 pooled connections, and reads need the others.
fn default_ingests() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// A duration flag in seconds, refused when negative or not finite.
fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{flag} must be a non-negative number of seconds"))
}

/// Where an admin command finds the server's database.
#[derive(Args)]
pub struct Database {
    /// The server's data folder.
    #[arg(long, default_value = DEFAULT_DATA)]
    data: PathBuf,
    /// Database URL, e.g. sqlite:///srv/tidelog.db (default: SQLite under --data).
    #[arg(long)]
    database: Option<String>,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an API key for an account; prints it once, only its hash is kept.
    CreateKey {
        /// The account the key acts for (created if new).
        #[arg(long)]
        account: String,
        /// The server's data folder.
        #[arg(long, default_value = DEFAULT_DATA)]
        data: PathBuf,
        /// Database URL, e.g. sqlite:///srv/tidelog.db, created if missing (default: SQLite
        /// under --data).
        #[arg(long)]
        database: Option<String>,
    },
    /// List the API keys: id, account, creation and whether revoked (never the keys).
    ListKeys {
        #[command(flatten)]
        db: Database,
    },
    /// Revoke an API key by the id `list-keys` shows; it is refused from the next request on.
    RevokeKey {
        /// The key's id (at least 8 of its hex digits), or the key itself.
        key_id: String,
        #[command(flatten)]
        db: Database,
    },
    /// Delete a run with its history, system metrics and files; it cannot be uploaded again.
    DeleteRun {
        /// The run's id.
        run_id: String,
        #[command(flatten)]
        db: Database,
        /// The server's object store, as given to `tidelog serve --store` [default:
        /// file://<data>/store].
        #[arg(long)]
        store: Option<String>,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The data folder when `--data` is not given.
const DEFAULT_DATA: &str = "tidelog-data";

/// glibc gives every thread that allocates an arena of its own and keeps what is freed in it:
/// the server's worker and blocking threads held 398 MiB for a 3 M-step ingest that needs 171
/// MiB. Two arenas keep the peak near what is live, at no cost measured in ingest speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before the runtime's threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    let data = match (a.data, &a.database) {
        (Some(data), _) => data,
        (None, Some(_)) => {
            let data = PathBuf::from(DEFAULT_DATA);
            eprintln!(
                "tidelog: uploads and blobs go to {}; pass --data to put them elsewhere",
                std::path::absolute(&data)
                    .unwrap_or_else(|_| data.clone())
                    .display()
            );
            data
        }
        (None, None) => PathBuf::from(DEFAULT_DATA),
    };
    let opts = ServeOptions {
        addr: a.addr,
        data,
        database: a.database,
        store: a.store,
        allow_origins: a.allow_origin,
        limits: Limits {
            max_unpacked: a.max_unpacked_bytes,
            max_cells: a.max_decode_cells,
            max_decoded_bytes: a.max_decoded_bytes,
            ..Limits::default()
        },
        max_body: a.max_body_bytes,
        upload_ttl: Duration::from_secs(a.upload_expiry_secs),
        connections: Connections {
            header_timeout: seconds("header-timeout-secs", a.header_timeout_secs)?,
            body_timeout: seconds("body-timeout-secs", a.body_timeout_secs)?,
            max: a.max_connections,
            shutdown_grace: seconds("shutdown-timeout-secs", a.shutdown_timeout_secs)?,
        },
        max_ingests: a.max_ingests.unwrap_or_else(default_ingests),
    };
    let rt = runtime()?;
    let served = rt.block_on(server::serve(opts));
    // Blocking work still running (a write the grace period cut short) is not waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
}

pub fn admin(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::CreateKey {
            account,
            data,
            database,
        } => {
            let key = runtime()?.block_on(server::create_key(&data, database.as_deref(), &account))?;
            println!("{key}");
            eprintln!(
                "tidelog: key id {} (as `tidelog admin list-keys` shows it)",
                server::key_id(&key)
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::ListKeys { db } => {
            let keys = runtime()?.block_on(server::list_keys(&db.data, db.database.as_deref()))?;
            let width = keys.iter().map(|k| k.account.len()).max().unwrap_or(0).max(7);
            println!(
                "{:<12}  {:<width$}  {:<24}  STATE",
                "KEY ID", "ACCOUNT", "CREATED"
            );
            for k in keys {
                let state = k
                    .revoked_ms
                    .map_or("active".to_owned(), |ms| format!("revoked {}", rfc3339(ms)));
                println!(
                    "{:<12}  {:<width$}  {:<24}  {state}",
                    k.id,
                    k.account,
                    rfc3339(k.created_ms)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::RevokeKey { key_id, db } => {
            let k = runtime()?.block_on(server::revoke_key(&db.data, db.database.as_deref(), &key_id))?;
            println!("revoked key {} of account {}", k.id, k.account);
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::DeleteRun { run_id, db, store } => {
            let deleting = server::delete_run(&db.data, db.database.as_deref(), store.as_deref(), &run_id);
            let d = runtime()?.block_on(deleting)?;
            println!(
                "deleted run {} of account {}: {} history rows, {} system rows, {} files; {} stored \
                 files removed",
                d.run_id, d.account, d.history_rows, d.system_rows, d.files, d.blobs_removed
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
