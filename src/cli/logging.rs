//! Where log lines go and how they look: `tidelog: warning: ...` for the client commands, and
//! for `tidelog serve` timestamped lines with their fields, as text or as one JSON object each
//! (`--log-format`), for journald, a file or a log shipper.

use std::io::Write;

use clap::ValueEnum;
use log::kv::{Error, Key, Value, VisitSource, VisitValue};
use serde_json::{Map, Value as Json};

/// How `tidelog serve` writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    // Plain comments, not doc comments: clap would list them in `--help` as value help.
    // `2026-12-02T03:45:12.123Z info request method=GET status=200 ...`
    Text,
    // One JSON object per line: `ts`, `level`, `target`, `msg` and the line's fields.
    Json,
}

/// How a command logs: client commands as a user reads them, the server in `LogFormat`.
#[derive(Clone, Copy)]
pub enum Style {
    /// `tidelog: warning: ...`, warnings and errors only by default.
    Client,
    /// The server's lines, from `info` up by default (one per request).
    Server(LogFormat),
}

/// Starts logging to stderr; `RUST_LOG` overrides which lines are written.
pub fn init(style: Style) {
    let filter = match style {
        Style::Client => "warn",
        Style::Server(_) => "warn,tidelog=info",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter))
        .format(move |out, record| match style {
            Style::Client => client_line(out, record),
            Style::Server(LogFormat::Text) => text_line(out, record),
            Style::Server(LogFormat::Json) => json_line(out, record),
        })
        .init();
}

fn level(record: &log::Record<'_>) -> &'static str {
    match record.level() {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Log lines as a user reads them, `tidelog: warning: ...`, without the module path that
/// env_logger shows by default.
fn client_line(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    let message = record.args().to_string();
    let message = message.strip_prefix("tidelog: ").unwrap_or(&message);
    writeln!(out, "tidelog: {}: {message}", level(record))
}

/// A line's fields as JSON values, in the order they were given.
struct Fields(Vec<(String, Json)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let mut json = ToJson(Json::Null);
        value.visit(&mut json)?;
        self.0.push((key.as_str().to_owned(), json.0));
        Ok(())
    }
}

/// One field's value as JSON: numbers and booleans as themselves, anything else as text.
struct ToJson(Json);

impl<'v> VisitValue<'v> for &mut ToJson {
    fn visit_any(&mut self, value: Value<'_>) -> Result<(), Error> {
        self.0 = Json::String(value.to_string());
        Ok(())
    }
    fn visit_null(&mut self) -> Result<(), Error> {
        self.0 = Json::Null;
        Ok(())
    }
    fn visit_u64(&mut self, value: u64) -> Result<(), Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_i64(&mut self, value: i64) -> Result<(), Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_f64(&mut self, value: f64) -> Result<(), Error> {
        // Durations: microseconds are enough, and keep lines short.
        self.0 =
            serde_json::Number::from_f64((value * 1000.0).round() / 1000.0).map_or(Json::Null, Json::Number);
        Ok(())
    }
    fn visit_bool(&mut self, value: bool) -> Result<(), Error> {
        self.0 = value.into();
        Ok(())
    }
    fn visit_str(&mut self, value: &str) -> Result<(), Error> {
        self.0 = value.into();
        Ok(())
    }
}

fn fields(record: &log::Record<'_>) -> Vec<(String, Json)> {
    let mut f = Fields(Vec::new());
    // A field that fails to convert is left out rather than losing the line.
    let _ = record.key_values().visit(&mut f);
    f.0
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    tidelog::core::time::rfc3339(ms)
}

/// `TS LEVEL MESSAGE key=value ...`; text values with spaces or quotes are JSON-quoted, absent
/// ones left out.
fn text_line(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    let mut line = format!("{} {} {}", now(), level(record), record.args());
    for (key, value) in fields(record) {
        let shown = match value {
            Json::Null => continue,
            Json::String(s) if !s.is_empty() && !s.contains([' ', '"', '=', '\n']) => s,
            other => other.to_string(),
        };
        line.push_str(&format!(" {key}={shown}"));
    }
    writeln!(out, "{line}")
}

/// One JSON object: `ts`, `level`, `target`, `msg`, then the line's fields.
fn json_line(out: &mut env_logger::fmt::Formatter, record: &log::Record<'_>) -> std::io::Result<()> {
    let mut obj = Map::new();
    obj.insert("ts".into(), now().into());
    obj.insert("level".into(), level(record).into());
    obj.insert("target".into(), record.target().into());
    obj.insert("msg".into(), record.args().to_string().into());
    for (key, value) in fields(record) {
        obj.entry(key).or_insert(value);
    }
    writeln!(out, "{}", Json::Object(obj))
}
