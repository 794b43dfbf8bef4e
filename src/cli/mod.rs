//! Command-line parsing and dispatch; each subcommand lives in its own file.

mod credentials;
mod export;
mod import;
mod local;
mod logging;
mod run_cmd;
mod serve;
mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Offline-first experiment tracker.
#[derive(Parser)]
#[command(name = "tidelog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload unsynced runs to the server, exactly once.
    Sync(sync::SyncArgs),
    /// Store an API key for a server (checked first).
    Login(credentials::LoginArgs),
    /// List local runs, their state and what is unsynced.
    Ls(local::LsArgs),
    /// Write pending bundles as .tar.gz files (air-gapped transfer).
    Bundle(local::BundleArgs),
    /// Upload bundle files made by `tidelog bundle`.
    Upload(local::UploadArgs),
    /// Download a synced run's history from the server as Parquet or CSV.
    Export(export::ExportArgs),
    /// Run a command as a run: output.log, system metrics, exit code.
    Run(run_cmd::RunArgs),
    /// Turn W&B offline runs, TensorBoard event files or CSV into local runs for `sync`.
    Import(import::ImportArgs),
    /// Run the tidelog server and dashboard.
    Serve(serve::ServeArgs),
    /// Server administration.
    #[command(subcommand)]
    Admin(serve::AdminCommand),
}

/// Parses arguments, runs the command, and maps failures to exit codes (2 = usage).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(match &cli.command {
        Command::Serve(args) => logging::Style::Server(args.log_format),
        _ => logging::Style::Client,
    });
    let result = match cli.command {
        Command::Sync(args) => sync::sync(args),
        Command::Login(args) => credentials::login(args),
        Command::Ls(args) => local::ls(args),
        Command::Bundle(args) => local::bundle(args),
        Command::Upload(args) => local::upload(args),
        Command::Export(args) => export::export(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Import(args) => import::import(args),
        Command::Serve(args) => serve::serve(args),
        Command::Admin(cmd) => serve::admin(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidelog: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
