//! `tidelog export`: a synced run's history from the server, as Parquet or CSV.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use tidelog::core::value::num_to_json;

use super::credentials;

/// The file formats `export` writes.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Parquet,
    Csv,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The run's id.
    run_id: String,
    /// File format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// File to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Server base URL.
    #[arg(long)]
    server: Option<String>,
    /// Seconds to wait for the server to connect and to answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Downloads the run's history as Parquet into `to`, streamed to disk.
fn download(server: &str, key: &str, run_id: &str, timeout: Duration, to: &Path) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .build()
        .into();
    let id: String = run_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!(
        "{}/api/v1/runs/{id}/history.parquet",
        server.trim_end_matches('/')
    );
    let mut resp = agent
        .get(&url)
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .with_context(|| format!("fetching {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("the server answered {status} for run {run_id:?}: {why}");
    }
    let mut file = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    std::io::copy(&mut resp.body_mut().as_reader(), &mut file)
        .with_context(|| format!("downloading {url} into {}", to.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

/// One CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    if text.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", text.replace('"', "\"\""))
    } else {
        out.write_all(text.as_bytes())
    }
}

/// Converts the exported Parquet file to CSV, a row at a time: a header of the column names,
/// `_timestamp` in Unix seconds as the HTTP API gives it, empty where a row lacks a key.
fn to_csv(parquet: &Path, csv: &Path) -> anyhow::Result<()> {
    let reader = SerializedFileReader::new(File::open(parquet)?).context("reading the exported Parquet")?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut out = BufWriter::new(File::create(csv).with_context(|| format!("creating {}", csv.display()))?);
    for (i, col) in schema.columns().iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        csv_field(&mut out, col.name())?;
    }
    out.write_all(b"\n")?;
    for row in reader.get_row_iter(None)? {
        for (i, (_, field)) in row?.get_column_iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            match field {
                Field::Null => {}
                Field::TimestampMillis(ms) => write!(out, "{}", *ms as f64 / 1000.0)?,
                Field::Double(x) if x.is_finite() => write!(out, "{x}")?,
                Field::Double(x) => write!(out, "{}", num_to_json(*x).as_str().unwrap_or_default())?,
                Field::Str(s) => csv_field(&mut out, s)?,
                other => csv_field(&mut out, &other.to_string())?,
            }
        }
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

pub fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let server = credentials::server(a.server.as_deref())?;
    let Some((server, key)) = credentials::require(Some(&server))? else {
        return Ok(ExitCode::from(2));
    };
    let timeout = Duration::from_secs(a.timeout);
    // Written next to the output and renamed into place: a failed export leaves no partial file.
    let part = a.output.with_extension("part.parquet");
    let result = download(&server, &key, &a.run_id, timeout, &part).and_then(|()| match a.format {
        Format::Parquet => {
            fs::rename(&part, &a.output).with_context(|| format!("writing {}", a.output.display()))
        }
        Format::Csv => {
            let csv = a.output.with_extension("part.csv");
            to_csv(&part, &csv)
                .and_then(|()| {
                    fs::rename(&csv, &a.output).with_context(|| format!("writing {}", a.output.display()))
                })
                .inspect_err(|_| drop(fs::remove_file(&csv)))
        }
    });
    let _ = fs::remove_file(&part);
    result?;
    println!("exported run {} to {}", a.run_id, a.output.display());
    Ok(ExitCode::SUCCESS)
}
