//! Command-line parsing and dispatch; each subcommand lives in its own file.

mod serve;

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
    /// Run the tidelog server and dashboard.
    Serve(serve::ServeArgs),
    /// Server administration.
    #[command(subcommand)]
    Admin(serve::AdminCommand),
}

/// Parses arguments, runs the command, and maps failures to exit codes (2 = usage).
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
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
