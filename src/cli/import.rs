//! `tidelog import wandb|tensorboard|csv PATH...`: finds the source runs under each PATH,
//! reads them with the format readers of `tidelog::import` and writes local tidelog runs.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use tidelog::core::layout::check_run_id;
use tidelog::import::leveldb::LogReader;
use tidelog::import::tensorboard::{self, Scalars};
use tidelog::import::tfrecord::RecordReader;
use tidelog::import::writer::{Begin, Importer, Report};
use tidelog::import::{csv, wandb, Damage, Item, Source};

use super::run_cmd::folder_name;

mod discover;
use discover::{canonical, derived_id, find, group_by_folder};

/// Records read before the W&B run record that are held back for it; W&B writes the run
/// record second, so more means the file is not a run.
const MAX_HELD: usize = 256;
/// W&B's project for runs started without one.
const WANDB_DEFAULT_PROJECT: &str = "uncategorized";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// W&B offline runs: `wandb/` folders, `offline-run-*` folders or `.wandb` files.
    Wandb,
    /// TensorBoard event files (`events.out.tfevents.*`); one run per folder.
    Tensorboard,
    /// CSV files with a header row.
    Csv,
}

#[derive(Args)]
pub struct ImportArgs {
    /// What to import: wandb, tensorboard or csv.
    #[arg(hide_possible_values = true)]
    format: Format,
    /// Files or folders to import from.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Project of the imported runs (default: W&B's recorded project; the current folder's
    /// name for TensorBoard and CSV).
    #[arg(long)]
    project: Option<String>,
    /// Display name (CSV; default the file's name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Folder that holds `tidelog/` for the imported runs.
    #[arg(long, env = "TIDELOG_DIR", default_value = ".")]
    dir: PathBuf,
}

/// Runs the import; exit 0 when every source was imported (damaged ones up to the damage)
/// or had been imported before.
pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let sources = match a.format {
        Format::Wandb => find(&a.paths, |p| p.extension().is_some_and(|e| e == "wandb"))?,
        Format::Tensorboard => group_by_folder(find(&a.paths, |p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
        })?),
        Format::Csv => find(&a.paths, |p| {
            p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        })?,
    };
    if sources.is_empty() {
        bail!("nothing to import under {}", list(&a.paths));
    }
    for files in sources {
        let result = match a.format {
            Format::Wandb => import_wandb(&a, &files[0]),
            Format::Tensorboard => import_tensorboard(&a, &files),
            Format::Csv => import_csv(&a, &files[0]),
        };
        if let Err(e) = result {
            eprintln!("tidelog: error: {e:#}");
            failed += 1;
        }
    }
    Ok(ExitCode::from(u8::from(failed > 0)))
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts the run, or says it was imported before (`None`).
fn begin(
    a: &ImportArgs,
    what: &str,
    source: Source,
    files: Option<PathBuf>,
) -> anyhow::Result<Option<Importer>> {
    let id = source.id.clone();
    match Importer::begin(&a.dir, source, files)? {
        Begin::New(importer) => Ok(Some(*importer)),
        Begin::Existing { dir, state } => {
            println!(
                "skipped {what}: imported before as run {id} ({}, {})",
                dir.display(),
                state.as_str()
            );
            Ok(None)
        }
    }
}

fn done(what: &str, importer: Importer, records: u64) -> anyhow::Result<()> {
    let (dir, r) = importer.finish()?;
    let Report {
        rows,
        system_rows,
        files,
        stale,
        refused,
        notes,
    } = r;
    println!(
        "imported {what}: {records} records, {rows} steps, {system_rows} system samples, {files} files -> {}",
        dir.display()
    );
    if stale > 0 {
        eprintln!("tidelog: warning: {what}: {stale} values at decreasing steps were not imported (steps must not decrease)");
    }
    if refused > 0 {
        eprintln!(
            "tidelog: warning: {what}: {refused} values or files not imported: {}",
            notes.join("; ")
        );
    }
    Ok(())
}

fn say_damage(what: &str, damage: &[Damage], end_of_good: u64) {
    for d in damage {
        let kind = if d.offset >= end_of_good {
            "torn"
        } else {
            "damaged"
        };
        eprintln!(
            "tidelog: warning: {what} is {kind}: {} bytes unreadable from byte {} ({}); the records {} it are imported",
            d.bytes,
            d.offset,
            d.why,
            if kind == "torn" { "before" } else { "around" }
        );
    }
}

/// Runs `read` into the importer, then finishes the run; a failure part way leaves the run
/// unfinished (`crashed`), so a second import says so instead of skipping a partial run.
fn feed(
    what: &str,
    mut importer: Importer,
    read: impl FnOnce(&mut Importer) -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    match read(&mut importer) {
        Ok(records) => done(what, importer, records),
        Err(e) => {
            let dir = importer.dir().to_path_buf();
            importer.abort()?;
            Err(e.context(format!("the run in {} is left unfinished", dir.display())))
        }
    }
}

/// A `.wandb` file read record by record.
struct WandbFile {
    what: String,
    reader: LogReader<File>,
    records: u64,
    undecodable: u64,
}

impl WandbFile {
    /// The next record: `Some(None)` for one tidelog has no use for or cannot decode.
    fn next(&mut self) -> anyhow::Result<Option<Option<Item>>> {
        let Some(rec) = self
            .reader
            .next_record()
            .with_context(|| format!("reading {}", self.what))?
        else {
            return Ok(None);
        };
        self.records += 1;
        Ok(Some(match wandb::decode(rec) {
            Ok(item) => item,
            Err(e) => {
                self.undecodable += 1;
                let at = self.reader.record_offset();
                eprintln!("tidelog: warning: {}: record at byte {at}: {e}", self.what);
                None
            }
        }))
    }

    fn say_damage(&self) {
        say_damage(&self.what, self.reader.damage(), self.reader.end_of_good());
        if self.undecodable > 0 {
            eprintln!(
                "tidelog: warning: {}: {} records could not be decoded and were skipped",
                self.what, self.undecodable
            );
        }
    }
}

fn import_wandb(a: &ImportArgs, path: &Path) -> anyhow::Result<()> {
    let what = path.display().to_string();
    let file = File::open(path).with_context(|| format!("opening {what}"))?;
    let reader = LogReader::new(file).with_context(|| what.clone())?;
    let mut src = WandbFile {
        what: what.clone(),
        reader,
        records: 0,
        undecodable: 0,
    };
    let mut held = Vec::new();
    let mut source = loop {
        match src.next()? {
            None => {
                src.say_damage();
                bail!(
                    "{what}: no W&B run record in its {} readable records",
                    src.records
                );
            }
            Some(Some(Item::Run(source))) => break source,
            Some(Some(item)) if held.len() < MAX_HELD => held.push(item),
            Some(Some(_)) => bail!("{what}: no W&B run record in its first {MAX_HELD} records"),
            Some(None) => {}
        }
    };
    if check_run_id(&source.id).is_err() {
        source.id = derived_id("wandb", &source.id);
    }
    if let Some(p) = &a.project {
        source.project = p.clone();
    } else if source.project.is_empty() {
        source.project = WANDB_DEFAULT_PROJECT.into();
    }
    let files_dir = path.parent().map(|p| p.join("files"));
    let Some(importer) = begin(a, &what, source, files_dir)? else {
        return Ok(());
    };
    feed(&what, importer, |imp| {
        for item in held {
            imp.push(item)?;
        }
        while let Some(item) = src.next()? {
            if let Some(item) = item {
                imp.push(item)?;
            }
        }
        src.say_damage();
        Ok(src.records)
    })
}

fn import_tensorboard(a: &ImportArgs, files: &[PathBuf]) -> anyhow::Result<()> {
    let folder = files[0].parent().unwrap_or(Path::new("."));
    let what = folder.display().to_string();
    let mut readers = Vec::with_capacity(files.len());
    for path in files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        readers.push((
            path.display().to_string(),
            RecordReader::new(BufReader::with_capacity(1 << 16, file)),
        ));
    }
    // The first event (TensorBoard writes the file version first) dates the run.
    let (first_name, first_reader) = &mut readers[0];
    let first = first_reader
        .next_record()
        .with_context(|| format!("reading {first_name}"))?
        .map(tensorboard::decode);
    let created_ms = first.as_ref().and_then(|e| e.as_ref().ok()).and_then(|e| e.ts_ms);
    let source = Source {
        id: derived_id("tensorboard", &canonical(folder)?),
        project: match &a.project {
            Some(p) => p.clone(),
            None => folder_name()?,
        },
        name: fs::canonicalize(folder)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        created_ms,
        ..Source::default()
    };
    let Some(importer) = begin(a, &what, source, None)? else {
        return Ok(());
    };
    feed(&what, importer, |imp| {
        let (mut records, mut skipped, mut torn) = (u64::from(first.is_some()), 0u64, false);
        let mut event = |ev: Scalars, skipped: &mut u64| -> anyhow::Result<()> {
            *skipped += ev.skipped;
            match u64::try_from(ev.step) {
                Ok(step) if !ev.values.is_empty() => {
                    let values = ev.values.into_iter().map(|(k, v)| (k, v.into())).collect();
                    imp.push(Item::History {
                        step,
                        ts_ms: ev.ts_ms,
                        values,
                    })?;
                }
                Ok(_) => {}
                Err(_) => *skipped += ev.values.len() as u64,
            }
            Ok(())
        };
        match first {
            Some(Ok(ev)) => event(ev, &mut skipped)?,
            Some(Err(e)) => eprintln!("tidelog: warning: {}: record at byte 0: {e}", readers[0].0),
            None => {}
        }
        for (shown, reader) in &mut readers {
            while let Some(rec) = reader.next_record().with_context(|| format!("reading {shown}"))? {
                records += 1;
                match tensorboard::decode(rec) {
                    Ok(ev) => event(ev, &mut skipped)?,
                    Err(e) => eprintln!(
                        "tidelog: warning: {shown}: record at byte {}: {e}",
                        reader.record_offset()
                    ),
                }
            }
            if let Some(d) = reader.damage() {
                say_damage(shown, std::slice::from_ref(d), d.offset);
                torn = true;
            }
        }
        if !torn {
            // Event files record no end: one read to its end is a finished run.
            imp.push(Item::Exit {
                code: 0,
                runtime_s: None,
            })?;
        }
        if skipped > 0 {
            eprintln!("tidelog: warning: {what}: {skipped} summary values that are not scalars (images, histograms, text) or have a negative step were not imported");
        }
        Ok(records)
    })
}

fn import_csv(a: &ImportArgs, path: &Path) -> anyhow::Result<()> {
    let what = path.display().to_string();
    let file = File::open(path).with_context(|| format!("opening {what}"))?;
    let created_ms = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    let mut rows = csv::Rows::new(BufReader::with_capacity(1 << 16, file)).with_context(|| what.clone())?;
    let source = Source {
        id: derived_id("csv", &canonical(path)?),
        project: match &a.project {
            Some(p) => p.clone(),
            None => folder_name()?,
        },
        name: a
            .name
            .clone()
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned())),
        created_ms,
        ..Source::default()
    };
    let Some(importer) = begin(a, &what, source, None)? else {
        return Ok(());
    };
    feed(&what, importer, |imp| {
        let mut records = 0;
        while let Some(row) = rows.next_row().with_context(|| what.clone())? {
            records += 1;
            imp.push(row)?;
        }
        imp.push(Item::Exit {
            code: 0,
            runtime_s: None,
        })?;
        Ok(records)
    })
}
