//! `tidelog login`, and finding a key for commands that need one.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tidelog::native::credentials;
use tidelog::native::transport::HttpTransport;

/// What a user reads when no key can be found.
pub const NO_KEY: &str = "no API key: set TIDELOG_API_KEY=<key>, or run `tidelog login` once to store one";

#[derive(Args)]
pub struct LoginArgs {
    /// Server base URL (default: $TIDELOG_BASE_URL or http://127.0.0.1:8080).
    #[arg(long)]
    server: Option<String>,
}

/// Refuses a server URL without a scheme before any work is done, rather than failing later
/// with an obscure transport error.
pub fn check_server(server: &str) -> anyhow::Result<()> {
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("server URL must start with http:// or https://: {server}");
    }
    Ok(())
}

/// The server a command would use, checked by [`check_server`].
pub fn server(flag: Option<&str>) -> anyhow::Result<String> {
    let server = credentials::resolve(flag, None).server;
    check_server(&server)?;
    Ok(server)
}

/// Where the key [`require`] found comes from, for a message when the server refuses it.
pub fn key_source(server: &str) -> String {
    if std::env::var("TIDELOG_API_KEY").is_ok_and(|k| !k.is_empty()) {
        "TIDELOG_API_KEY".to_owned()
    } else if credentials::resolve(Some(server), None).api_key.is_some() {
        format!("the login stored in {}", credentials::path().display())
    } else {
        "the prompt".to_owned()
    }
}

fn prompt_key(server: &str) -> anyhow::Result<String> {
    let key = rpassword::prompt_password(format!("API key for {server}: ")).context("reading the key")?;
    Ok(key.trim().to_owned())
}

/// Server and key for a command, prompting on a TTY; `None` (after printing why) means exit 2.
pub fn require(server: Option<&str>) -> anyhow::Result<Option<(String, String)>> {
    let creds = credentials::resolve(server, None);
    check_server(&creds.server)?;
    if let Some(key) = creds.api_key {
        return Ok(Some((creds.server, key)));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let key = prompt_key(&creds.server)?;
        if !key.is_empty() {
            return Ok(Some((creds.server, key)));
        }
    }
    eprintln!("tidelog: {NO_KEY}");
    Ok(None)
}

pub fn login(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let server = server(a.server.as_deref())?;
    let key = if std::io::stdin().is_terminal() {
        prompt_key(&server)?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the key from stdin")?;
        line.trim().to_owned()
    };
    if key.is_empty() {
        eprintln!("tidelog: no key given");
        return Ok(ExitCode::from(2));
    }
    let account = HttpTransport::new(&server, &key, Duration::from_secs(30))
        .whoami()
        .with_context(|| format!("checking the key against {server}"))?;
    let path = credentials::store(&server, &key)?;
    println!(
        "logged in to {server} as {account}; key stored in {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
