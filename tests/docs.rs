//! The user-facing reference in `docs/` is checked against the real thing: CLI.md against the
//! built binary's `--help`, HTTP-API.md's route table against a running `tidelog serve`, and
//! ON-DISK.md's example bytes against the encoders that write `records.tlog` and bundles.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{Server, BIN};
use tidelog::core::bundle::ColumnsBuilder;
use tidelog::core::frame::{self, Frames};
use tidelog::core::record::{decode, encode_key, encode_row, Record, RowKind};
use tidelog::core::value::{Value, ValueRef};

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The spans between backticks in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

// ---- CLI.md ------------------------------------------------------------------------------

/// One `### \`tidelog ...\`` section of CLI.md: the command's words and, from the first two
/// cells of its table rows, each documented flag's names with its default cell.
#[derive(Debug)]
struct CliSection {
    words: Vec<String>,
    flags: Vec<(Vec<String>, String)>,
}

fn cli_sections(md: &str) -> Vec<CliSection> {
    let mut out: Vec<CliSection> = Vec::new();
    let mut open = false;
    for line in md.lines() {
        if line.starts_with('#') {
            let cmd = line
                .strip_prefix("### `tidelog ")
                .and_then(|rest| rest.strip_suffix('`'));
            open = cmd.is_some();
            if let Some(cmd) = cmd {
                out.push(CliSection {
                    words: cmd.split_whitespace().map(str::to_owned).collect(),
                    flags: Vec::new(),
                });
            }
            continue;
        }
        let (true, Some(section)) = (open && line.starts_with("| "), out.last_mut()) else {
            continue;
        };
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 4 {
            continue;
        }
        let names: Vec<String> = code_spans(cells[1])
            .iter()
            .filter_map(|span| span.split_whitespace().next())
            .filter(|name| name.starts_with('-'))
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            section.flags.push((names, cells[2].trim().to_owned()));
        }
    }
    out
}

/// `tidelog WORDS --help`, which must succeed (an unknown command exits 2).
fn help(words: &[String]) -> String {
    let out = Command::new(BIN)
        .args(words)
        .arg("--help")
        .output()
        .expect("run tidelog --help");
    assert!(
        out.status.success(),
        "`tidelog {} --help` failed: {}",
        words.join(" "),
        common::text(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The lines of the help section that starts with the line `title`, up to a blank line.
fn help_section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The subcommands a help text lists, without clap's own `help`.
fn help_commands(help: &str) -> Vec<String> {
    help_section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The options a help text lists (names, `[default: ...]`), without `--help` and `--version`.
fn help_flags(help: &str) -> Vec<(Vec<String>, Option<String>)> {
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    for line in help_section(help, "Options:") {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            let names = trimmed
                .split_whitespace()
                .take_while(|t| t.starts_with('-') || t.starts_with('<'))
                .filter(|t| t.starts_with('-'))
                .map(|t| t.trim_end_matches(',').to_owned())
                .collect();
            out.push((names, trimmed.to_owned()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    out.into_iter()
        .filter(|(names, _)| !names.iter().any(|n| n == "--help" || n == "--version"))
        .map(|(names, text)| {
            let default = text
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(d, _)| d.to_owned());
            (names, default)
        })
        .collect()
}

/// Every leaf command under `words` (a command without subcommands), found through `--help`.
fn leaf_commands(words: Vec<String>) -> Vec<Vec<String>> {
    let subs = help_commands(&help(&words));
    if subs.is_empty() {
        return vec![words];
    }
    subs.into_iter()
        .flat_map(|sub| {
            let mut next = words.clone();
            next.push(sub);
            leaf_commands(next)
        })
        .collect()
}

#[test]
fn cli_md_documents_every_command_and_flag_of_the_binary() {
    let sections = cli_sections(&read("docs/CLI.md"));
    let documented: BTreeSet<Vec<String>> = sections.iter().map(|s| s.words.clone()).collect();
    let commands = leaf_commands(Vec::new());
    assert!(commands.len() >= 8, "too few commands found: {commands:?}");
    for cmd in &commands {
        assert!(
            documented.contains(cmd),
            "docs/CLI.md has no `### \\`tidelog {}\\`` section",
            cmd.join(" ")
        );
    }
    for section in &sections {
        let cmd = format!("tidelog {}", section.words.join(" "));
        let real = help_flags(&help(&section.words));
        for (names, _) in &section.flags {
            for name in names {
                assert!(
                    real.iter().any(|(r, _)| r.contains(name)),
                    "docs/CLI.md documents `{cmd} {name}`, which `{cmd} --help` does not list"
                );
            }
        }
        for (names, default) in &real {
            let doc = section
                .flags
                .iter()
                .find(|(doc_names, _)| names.iter().all(|n| doc_names.contains(n)));
            let Some((_, doc_default)) = doc else {
                panic!("`{cmd} {}` is not documented in docs/CLI.md", names.join(", "));
            };
            if let Some(default) = default {
                assert!(
                    doc_default.contains(default.as_str()),
                    "docs/CLI.md gives `{cmd} {}` the default {doc_default:?}; --help says {default}",
                    names.join(", ")
                );
            }
        }
    }
}

// ---- HTTP-API.md ---------------------------------------------------------------------------

const METHODS: [&str; 6] = ["GET", "POST", "PATCH", "HEAD", "OPTIONS", "DELETE"];

/// `(method, path)` of every row of HTTP-API.md's route table.
fn doc_routes(md: &str) -> Vec<(String, String)> {
    md.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let method = *cells.get(1)?;
            let path = code_spans(cells.get(2)?).first().copied()?;
            METHODS
                .contains(&method)
                .then(|| (method.to_owned(), path.to_owned()))
        })
        .collect()
}

/// Paths the router registers, read from its source (`{*path}` written as `{path}`).
fn router_paths() -> BTreeSet<String> {
    read("src/server/routes.rs")
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split_once('"'))
        .map(|(path, _)| path.replace("{*", "{"))
        .collect()
}

#[test]
fn http_api_md_routes_answer_on_a_real_server() {
    let md = read("docs/HTTP-API.md");
    let routes = doc_routes(&md);
    let documented: BTreeSet<&str> = routes.iter().map(|(_, p)| p.as_str()).collect();
    let served = router_paths();
    assert!(
        served.len() >= 10,
        "routes.rs parsed to too few routes: {served:?}"
    );
    for path in served {
        assert!(
            documented.contains(path.as_str()),
            "the server routes {path}, which docs/HTTP-API.md's table does not list"
        );
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&tmp.path().join("data"));
    let key = server.key("alice");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let run = tidelog::init(common::settings(&work, "docs")).expect("init");
    run.log([("loss", 0.5)]).expect("log");
    run.save("notes.txt", b"hello").expect("save");
    let run_id = run.id().to_owned();
    run.finish(0).expect("finish");
    common::sync(&work, &server.url, &key, &[], 0);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {key}");
    let created = agent
        .post(format!("{}/api/v1/uploads", server.url))
        .header("Authorization", &auth)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .send_empty()
        .expect("create an upload");
    assert_eq!(created.status().as_u16(), 201);
    let upload = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .expect("Location")
        .to_owned();

    for (method, path) in &routes {
        let id = if path.starts_with("/api/v1/uploads/") {
            &upload
        } else {
            &run_id
        };
        let path = path
            .replace("{id}", id)
            .replace("{path}", "notes.txt")
            .replace("{name}", "app.js");
        let url = format!("{}{path}", server.url);
        let tus = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            r.header("Authorization", &auth)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", "10")
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
        };
        let answer = match method.as_str() {
            "GET" => agent.get(&url).header("Authorization", &auth).call(),
            "HEAD" => agent.head(&url).header("Authorization", &auth).call(),
            "OPTIONS" => agent.options(&url).call(),
            "DELETE" => agent.delete(&url).header("Authorization", &auth).call(),
            "POST" => tus(agent.post(&url)).send_empty(),
            "PATCH" => tus(agent.patch(&url)).send(&b"x"[..]),
            other => unreachable!("{other}"),
        };
        let status = answer
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .status()
            .as_u16();
        if method == "GET" {
            assert_eq!(status, 200, "GET {path}");
        } else {
            assert!(
                ![404, 405].contains(&status) && status < 500,
                "{method} {path} answered {status}"
            );
        }
    }
}

// ---- ON-DISK.md ----------------------------------------------------------------------------

/// The bytes of the code block after `marker` in `md`: two-digit hex tokens, `#` to the end of
/// a line is a comment.
fn hex_block(md: &str, marker: &str) -> Vec<u8> {
    let after = md
        .split_once(marker)
        .unwrap_or_else(|| panic!("docs/ON-DISK.md lacks {marker}"))
        .1;
    let block = after
        .split_once("```text\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```text block after the marker")
        .0;
    block
        .lines()
        .flat_map(|line| line.split('#').next().unwrap_or_default().split_whitespace())
        .map(|tok| {
            assert_eq!(tok.len(), 2, "hex token {tok:?} after {marker}");
            u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("hex token {tok:?}"))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

/// The example timestamp of ON-DISK.md: 2026-11-29T09:33:20Z.
const TS_MS: i64 = 1_796_000_000_000;

#[test]
fn on_disk_md_frame_example_is_what_the_writer_produces() {
    let doc = hex_block(&read("docs/ON-DISK.md"), "<!-- frame-example -->");
    let mut log = Vec::new();
    encode_key(&mut log, 0, "loss");
    encode_row(&mut log, RowKind::History, 0, TS_MS, &[(0, 0.5)], &[]);
    assert_eq!(hex(&doc), hex(&log), "docs/ON-DISK.md's frame example");

    let mut frames = Frames::new(&doc);
    let found: Vec<_> = frames.by_ref().collect();
    assert_eq!(frames.valid_len(), doc.len());
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].offset, frame::HEADER + 6);
    let mut again = Vec::new();
    for f in &found {
        frame::push(&mut again, f.payload);
    }
    assert_eq!(again, doc, "frame::push of the payloads gives the same bytes");
    assert_eq!(
        decode(found[0].payload).expect("key record"),
        Record::Key { id: 0, name: "loss" }
    );
    let Record::Row(row) = decode(found[1].payload).expect("row record") else {
        panic!("the second frame is not a row");
    };
    assert_eq!((row.kind, row.step, row.ts_ms), (RowKind::History, 0, TS_MS));
    let values: Vec<_> = row.values().map(|v| v.expect("value")).collect();
    assert_eq!(values, vec![(0, ValueRef::Num(0.5))]);
}

#[test]
fn on_disk_md_column_table_example_is_what_the_writer_produces() {
    let doc = hex_block(&read("docs/ON-DISK.md"), "<!-- columns-example -->");
    let mut log = Vec::new();
    encode_row(&mut log, RowKind::History, 0, TS_MS, &[(0, 0.5)], &[]);
    encode_row(
        &mut log,
        RowKind::History,
        1,
        TS_MS + 250,
        &[(0, 0.25)],
        &[(1, Value::Str("val".into()))],
    );
    let names = ["loss", "phase"];
    let mut table = ColumnsBuilder::default();
    for (f, seq) in Frames::new(&log).zip([3, 5]) {
        let Record::Row(row) = decode(f.payload).expect("row") else {
            panic!("not a row");
        };
        table
            .push(seq, &row, |id| names.get(id as usize).copied())
            .expect("push");
    }
    assert_eq!(
        hex(&doc),
        hex(&table.finish()),
        "docs/ON-DISK.md's history.tlc example"
    );
}
