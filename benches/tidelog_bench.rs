//! `cargo bench`: the numbers in docs/PERFORMANCE.md. A bench binary (not criterion) so
//! it also measures a child process's peak memory and a real server over loopback.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod common;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

/// Processes, files and sockets: the bench measures the native build only.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::common::{start_server, step_values};
    use tidelog::core::bundle::write_bundle;
    use tidelog::core::log_index::LogIndex;
    use tidelog::core::sync::{sync_run, SyncOptions};
    use tidelog::native::store::RunDir;
    use tidelog::native::transport::HttpTransport;
    use tidelog::{Mode, Settings};

    fn log_steps(dir: &Path, steps: u64) -> (f64, std::path::PathBuf) {
        let mut s = Settings::new("bench");
        s.mode = Mode::Offline;
        s.dir = Some(dir.to_path_buf());
        let run = tidelog::init(s).expect("init");
        let start = Instant::now();
        for i in 0..steps {
            run.log(step_values(i)).expect("log");
        }
        let secs = start.elapsed().as_secs_f64();
        let dir = run.finish(0).expect("finish");
        (secs, dir)
    }

    fn peak_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("--child-log") {
            let steps: u64 = args[2].parse().expect("steps");
            let (secs, _) = log_steps(Path::new(&args[3]), steps);
            println!("{secs} {}", peak_rss_kib());
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        println!("tidelog bench (10 scalars per step; float32-valued metrics)\n");
        for steps in [100_000u64, 1_000_000] {
            let dir = tmp.path().join(format!("log{steps}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let out = Command::new(&args[0])
                .args(["--child-log", &steps.to_string()])
                .arg(&dir)
                .output()
                .expect("child");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            let secs: f64 = it.next().and_then(|v| v.parse().ok()).expect("secs");
            let rss: u64 = it.next().and_then(|v| v.parse().ok()).expect("rss");
            println!(
                "log() {steps:>9} steps: {:>6.3} s  {:>10.0} calls/s  {:>12.0} scalars/s  peak RSS {:.1} MiB",
                secs,
                steps as f64 / secs,
                steps as f64 * 10.0 / secs,
                rss as f64 / 1024.0
            );
        }
        let (_, run_dir) = log_steps(tmp.path(), 1_000_000);
        let log = std::fs::read(run_dir.join("records.tlog")).expect("log");
        let scalars = 10_000_000f64;
        println!(
            "records.tlog: {} bytes = {:.2} bytes/scalar",
            log.len(),
            log.len() as f64 / scalars
        );
        let index = LogIndex::new(&log).expect("index");
        let info = index.run().expect("start").clone();
        let t = Instant::now();
        let opts = SyncOptions::default();
        let (mut bundle_bytes, mut start, mut bundles) = (0usize, 0u64, 0);
        while start < index.len() {
            let range = index.plan(start, opts.max_bundle_log_bytes);
            let b = write_bundle(&index, &info, index.state(false), range.clone(), &[]).expect("bundle");
            bundle_bytes += b.bytes.len();
            bundles += 1;
            start = range.end;
        }
        let build = t.elapsed().as_secs_f64();
        println!(
            "bundles: {bundles} totalling {bundle_bytes} bytes = {:.2} bytes/scalar, built in {build:.2} s",
            bundle_bytes as f64 / scalars
        );

        let data = tmp.path().join("server");
        let (_server, url, key) = start_server(&data);
        let mut store = RunDir::new(&run_dir);
        let mut transport = HttpTransport::new(&url, &key, Duration::from_secs(120));
        let t = Instant::now();
        let report =
            pollster::block_on(sync_run(&mut store, &mut transport, &opts, &mut |_| {})).expect("sync");
        let secs = t.elapsed().as_secs_f64();
        println!(
        "sync 1M steps x 10 scalars to a local server: {secs:.2} s ({} rows added, {:.0} rows/s end to end, {} bytes sent)",
        report.rows_added,
        report.rows_added as f64 / secs,
        report.bytes_sent
    );
        resync_after_one_step(tmp.path(), &url, &key);
        cli_sync_peak_rss(tmp.path(), &url, &key);
    }

    /// Bytes this process has read so far (`rchar` of `/proc/self/io`).
    fn bytes_read() -> u64 {
        std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("rchar:").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// A live run of 1M steps, synced; one more step; the re-sync's time and bytes read.
    fn resync_after_one_step(tmp: &Path, url: &str, key: &str) {
        let mut s = Settings::new("bench");
        s.mode = Mode::Offline;
        s.dir = Some(tmp.join("live"));
        s.system_interval = None;
        let run = tidelog::init(s).expect("init");
        for i in 0..1_000_000 {
            run.log(step_values(i)).expect("log");
        }
        run.flush().expect("flush");
        let opts = SyncOptions::default();
        let mut store = RunDir::new(run.dir());
        let mut transport = HttpTransport::new(url, key, Duration::from_secs(120));
        pollster::block_on(sync_run(&mut store, &mut transport, &opts, &mut |_| {})).expect("sync");
        run.log(step_values(1_000_000)).expect("log");
        run.flush().expect("flush");
        let (t, read) = (Instant::now(), bytes_read());
        let report =
            pollster::block_on(sync_run(&mut store, &mut transport, &opts, &mut |_| {})).expect("sync");
        let (secs, read) = (t.elapsed().as_secs_f64(), bytes_read() - read);
        let len = std::fs::metadata(run.dir().join("records.tlog")).map_or(0, |m| m.len());
        println!(
            "re-sync of a 1M-step run after one new step: {:.1} ms, {read} bytes read (log {len} bytes), {} rows added",
            secs * 1e3,
            report.rows_added
        );
        run.finish(0).expect("finish");
    }

    /// Peak RSS of a `tidelog sync` process (`/usr/bin/time`) uploading a fresh 1M-step run.
    fn cli_sync_peak_rss(tmp: &Path, url: &str, key: &str) {
        let work = tmp.join("cli");
        log_steps(&work, 1_000_000);
        let t = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", env!("CARGO_BIN_EXE_tidelog"), "sync"])
            .current_dir(&work)
            .env("TIDELOG_API_KEY", key)
            .env("TIDELOG_BASE_URL", url)
            .output();
        let Ok(out) = out else {
            println!("tidelog sync peak RSS: /usr/bin/time is not available");
            return;
        };
        let secs = t.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kib: u64 = stderr
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        println!(
            "tidelog sync of a 1M-step run: {secs:.2} s, peak RSS {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}
