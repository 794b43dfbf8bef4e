//! `tidelog run -- CMD`: real child processes, synced at finish to a real `tidelog serve` on
//! 127.0.0.1 and checked through the HTTP API and the local run folder.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::json;
use tidelog::core::log_index::LogIndex;
use tidelog::RunState;

/// The local run's state and exit code, read from its log.
fn local_state(work: &Path) -> RunState {
    let bytes = fs::read(only_run(work).join("records.tlog")).unwrap();
    LogIndex::new(&bytes).unwrap().state(false)
}

/// The local `files/output.log` of the only run under `work`, once there is one.
fn output_log(work: &Path) -> Option<String> {
    let runs = tidelog::native::layout::runs_in(&work.join("tidelog")).ok()?;
    fs::read_to_string(runs.first()?.join("files/output.log")).ok()
}

#[test]
fn a_failing_command_is_recorded_synced_and_its_exit_code_kept() {
    let parent = tempfile::tempdir().unwrap();
    let work = parent.path().join("demo-project");
    fs::create_dir(&work).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let script = "echo hi; echo oops >&2; exit 3";

    let out = tidelog(
        &work,
        &["run", "--", "sh", "-c", script],
        &[("TIDELOG_API_KEY", &key), ("TIDELOG_BASE_URL", &server.url)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hi\n"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops\n"),
        "{}",
        text(&out)
    );

    let local = fs::read_to_string(only_run(&work).join("files/output.log")).unwrap();
    assert!(local.contains("hi\n") && local.contains("oops\n"), "{local:?}");
    assert!(
        only_run(&work).join(".synced").is_file(),
        "synced at finish: {}",
        text(&out)
    );

    let runs = runs(&server.url, &key);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let id = run["id"].as_str().unwrap();
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], json!(3));
    assert_eq!(run["project"], "demo-project", "the folder name by default");
    assert_eq!(run["config"]["command"], json!(["sh", "-c", script]));

    let (status, files) = get(&server.url, &key, &format!("/api/v1/runs/{id}/files"));
    assert_eq!(status, 200, "{files}");
    let listed: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(listed.contains(&"output.log"), "{files}");
    let (status, body) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/output.log"));
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8(body).unwrap(), local);

    let (status, system) = get(&server.url, &key, &format!("/api/v1/runs/{id}/system"));
    assert_eq!(status, 200, "{system}");
    let rows = system["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{system}");
    let ncpu = std::thread::available_parallelism().unwrap().get() as f64;
    for row in rows {
        let cpu = row["cpu.percent"].as_f64().unwrap();
        assert!((0.0..=100.0 * ncpu).contains(&cpu), "{row}");
        let used = row["memory.used_bytes"].as_f64().unwrap();
        assert!(
            used > 0.0 && used <= row["memory.total_bytes"].as_f64().unwrap(),
            "{row}"
        );
    }
}

#[test]
fn a_command_that_cannot_start_exits_127_and_is_named() {
    let work = tempfile::tempdir().unwrap();
    let out = tidelog(
        work.path(),
        &["run", "--project", "p", "--", "tidelog-no-such-command"],
        &[],
    );
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot run \"tidelog-no-such-command\""),
        "{}",
        text(&out)
    );
    assert_eq!(local_state(work.path()), RunState::Failed);
    let log = fs::read_to_string(only_run(work.path()).join("files/output.log")).unwrap();
    assert!(log.contains("tidelog-no-such-command"), "{log:?}");
}

#[cfg(unix)]
#[test]
fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let work = tempfile::tempdir().unwrap();
    let out = tidelog(
        work.path(),
        &[
            "run",
            "--system-interval",
            "0",
            "--",
            "sh",
            "-c",
            "echo before; kill -TERM $$",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out));
    assert_eq!(local_state(work.path()), RunState::Failed);
    let log = fs::read_to_string(only_run(work.path()).join("files/output.log")).unwrap();
    assert_eq!(log, "before\n");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_command_and_the_run_is_still_recorded() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let work = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(work.path())
        .args([
            "run",
            "--project",
            "p",
            "--",
            "sh",
            "-c",
            "echo before; sleep 30; echo after",
        ])
        .env_remove("TIDELOG_API_KEY")
        .env_remove("TIDELOG_BASE_URL")
        .env_remove("TIDELOG_DIR")
        .env("TIDELOG_CONFIG_DIR", work.path().join(".test-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // A test runner started as a background job has SIGINT ignored, and an ignored signal
    // stays ignored across exec, down to `sleep`: give tidelog the default a terminal gives.
    // SAFETY: signal() is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    // Interrupted between its fork and its exec, `sleep` would never see the signal and the
    // shell would carry on: wait until the group runs `sleep` itself.
    while !output_log(work.path()).is_some_and(|l| l.contains("before")) || !group_runs(child.id(), "sleep") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let group = format!("-{}", child.id());
    let kill = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 2),
        "tidelog outlives Ctrl-C and reports it"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(local_state(work.path()), RunState::Failed);
    assert_eq!(output_log(work.path()).unwrap(), "before\n");
}

/// True when a process of process group `group` has exec'd `program` (Linux `/proc`).
fn group_runs(group: u32, program: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            return false;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let pgrp = tail.split_whitespace().nth(2);
        comm == program && pgrp == Some(group.to_string().as_str())
    })
}

#[test]
fn a_background_process_holding_the_output_does_not_hold_up_the_run() {
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = tidelog(
        work.path(),
        &["run", "--project", "p", "--", "sh", "-c", "sleep 8 & echo hi"],
        &[],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(output_log(work.path()).unwrap(), "hi\n");
    assert_eq!(local_state(work.path()), RunState::Finished);
}

#[test]
fn a_successful_command_without_a_key_stays_local() {
    let work = tempfile::tempdir().unwrap();
    let out = tidelog(
        work.path(),
        &[
            "run",
            "--project",
            "p",
            "--name",
            "n",
            "--",
            "sh",
            "-c",
            "printf 'a\\nb'",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb");
    let run = only_run(work.path());
    assert_eq!(fs::read_to_string(run.join("files/output.log")).unwrap(), "a\nb");
    assert_eq!(local_state(work.path()), RunState::Finished);
    assert!(!run.join(".synced").exists());
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(run.join("run.spec")).unwrap()).unwrap();
    assert_eq!(
        (spec["project"].as_str(), spec["name"].as_str()),
        (Some("p"), Some("n"))
    );
}

#[test]
fn a_silent_server_holds_run_only_for_its_timeout_and_warnings_read_plainly() {
    let work = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = tidelog(
        work.path(),
        &["run", "--timeout", "1", "--project", "p", "--", "true"],
        &[("TIDELOG_API_KEY", "k"), ("TIDELOG_BASE_URL", &url)],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        took < std::time::Duration::from_secs(15),
        "{took:?}: {}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tidelog: warning: run ") && err.contains("stays offline"),
        "{err}"
    );
    assert!(!err.contains("[WARN") && !err.contains("tidelog::"), "{err}");
    assert!(!only_run(work.path()).join(".synced").exists());
    drop(silent);

    assert_refuses_schemeless_url(work.path(), &["run", "--project", "p", "--", "true"]);
}

#[test]
fn a_killed_tidelog_run_uploads_its_output_so_far_exactly_once() {
    let work = tempfile::tempdir().unwrap();
    let pidfile = work.path().join("child.pid");
    let script = format!("echo before; echo $$ > {}; sleep 30", pidfile.display());
    let mut cli = std::process::Command::new(BIN)
        .current_dir(work.path())
        .args([
            "run",
            "--project",
            "p",
            "--system-interval",
            "0",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env_remove("TIDELOG_API_KEY")
        .env_remove("TIDELOG_BASE_URL")
        .env_remove("TIDELOG_DIR")
        .env("TIDELOG_CONFIG_DIR", work.path().join(".test-config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(pidfile.is_file() && output_log(work.path()).is_some_and(|l| l.contains("before"))) {
        assert!(std::time::Instant::now() < deadline, "the command never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = || {
        let log = fs::read(only_run(work.path()).join("records.tlog")).unwrap_or_default();
        LogIndex::new(&log).is_ok_and(|i| i.run().is_some())
    };
    while !started() {
        assert!(
            std::time::Instant::now() < deadline,
            "the start record never reached the log"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cli.kill().unwrap();
    cli.wait().unwrap();
    let child = fs::read_to_string(&pidfile).unwrap();
    let _ = std::process::Command::new("kill").arg(child.trim()).status();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(work.path(), &server.url, &key, &[], 0);
    let runs = runs(&server.url, &key);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["state"], "crashed");
    let (status, body) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/output.log"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8(body).unwrap(), "before\n");

    let out = sync(work.path(), &server.url, &key, &[], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to sync"),
        "{}",
        text(&out)
    );
    let log = fs::read(only_run(work.path()).join("records.tlog")).unwrap();
    let index = LogIndex::new(&log).unwrap();
    assert_eq!(index.files(0..index.len()).len(), 1, "referenced once");
}
