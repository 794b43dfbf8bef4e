//! `cargo bench --bench server_bench [-- STEPS [REPS]]`: a real `tidelog serve` over loopback
//! holding one run of STEPS (default 1M) steps × 10 keys: ingest rows/s, history reads (one key
//! `samples=1000` p50/p99 over REPS requests (default 20), all keys `samples=2000`, one key at
//! full resolution), the Parquet export, the server's peak RSS and its bytes per scalar on disk
//! (all of `--data`, and the history segments alone).
//! `TIDELOG_BENCH_DATABASE=postgres://...` benches it on that (empty) database instead of SQLite.

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
    use std::io::Read;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::common::{start_server, step_values};
    use tidelog::core::sync::{sync_run, SyncOptions};
    use tidelog::native::store::RunDir;
    use tidelog::native::transport::HttpTransport;
    use tidelog::{Mode, Settings};

    fn status_kib(pid: u32, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// CPU seconds (user + system) process `pid` has used: on a machine shared with other
    /// work, steadier than the wall time.
    fn cpu_secs(pid: &str) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        // Clock ticks of USER_HZ, which Linux fixes at 100 for /proc.
        ticks as f64 / 100.0
    }

    fn dir_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }

    /// Seconds and body bytes of one GET.
    fn get(agent: &ureq::Agent, url: &str, key: &str) -> (f64, Vec<u8>) {
        let t = Instant::now();
        let mut resp = agent
            .get(url)
            .header("Authorization", format!("Bearer {key}"))
            .call()
            .expect("GET");
        let mut body = Vec::new();
        resp.body_mut().as_reader().read_to_end(&mut body).expect("body");
        (t.elapsed().as_secs_f64(), body)
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }

    /// `times` GETs of `path`: p50 and p99 in ms, and the last body.
    fn timed(agent: &ureq::Agent, url: &str, key: &str, path: &str, times: usize) -> (f64, f64, Vec<u8>) {
        let mut secs = Vec::with_capacity(times);
        let mut body = Vec::new();
        for _ in 0..times {
            let (s, b) = get(agent, &format!("{url}{path}"), key);
            secs.push(s * 1000.0);
            body = b;
        }
        secs.sort_by(f64::total_cmp);
        (percentile(&secs, 0.5), percentile(&secs, 0.99), body)
    }

    pub fn main() {
        let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        let steps = numbers.first().copied().unwrap_or(1_000_000);
        let reps = numbers.get(1).map_or(20, |&r| r as usize).max(1);
        let spike = (steps / 2 + 12_345) % steps.max(1);
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Settings::new("bench");
        s.mode = Mode::Offline;
        s.dir = Some(tmp.path().to_path_buf());
        let run = tidelog::init(s).expect("init");
        for i in 0..steps {
            let mut values = step_values(i);
            if i == spike {
                values[0].1 = 1000.0;
            }
            run.log(values).expect("log");
        }
        let run_dir = run.finish(0).expect("finish");
        let on = std::env::var(super::common::BENCH_DATABASE)
            .ok()
            .filter(|u| !u.is_empty())
            .and_then(|u| u.split_once("://").map(|(scheme, _)| scheme.to_owned()))
            .unwrap_or_else(|| "sqlite".into());
        println!("server bench: one run of {steps} steps x 10 keys, loopback, on {on}\n");

        let data = tmp.path().join("server");
        let (server, url, key) = start_server(&data);
        let pid = server.0.id();
        let mut store = RunDir::new(&run_dir);
        let mut transport = HttpTransport::new(&url, &key, Duration::from_secs(600));
        let (server_cpu, client_cpu) = (cpu_secs(&pid.to_string()), cpu_secs("self"));
        let t = Instant::now();
        let report = pollster::block_on(sync_run(
            &mut store,
            &mut transport,
            &SyncOptions::default(),
            &mut |_| {},
        ))
        .expect("sync");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ingest (sync end to end): {:.2} s, {:.0} rows/s",
            secs,
            report.rows_added as f64 / secs
        );
        println!(
            "CPU during the sync: server {:.2} s, client {:.2} s",
            cpu_secs(&pid.to_string()) - server_cpu,
            cpu_secs("self") - client_cpu
        );
        let after_ingest = status_kib(pid, "VmHWM:") as f64 / 1024.0;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        let (_, runs) = get(&agent, &format!("{url}/api/v1/runs"), &key);
        let runs: serde_json::Value = serde_json::from_slice(&runs).expect("runs");
        let id = runs["runs"][0]["id"].as_str().expect("run id");
        let history = format!("/api/v1/runs/{id}/history");
        let (p50, p99, body) = timed(
            &agent,
            &url,
            &key,
            &format!("{history}?keys=train/loss&samples=1000"),
            reps,
        );
        let spiked = String::from_utf8_lossy(&body).contains(&format!("\"_step\":{spike},"));
        println!("history?keys=train/loss&samples=1000: p50 {p50:.1} ms, p99 {p99:.1} ms ({} bytes; spike kept: {spiked})", body.len());
        let (p50, p99, body) = timed(
            &agent,
            &url,
            &key,
            &format!("{history}?samples=2000"),
            reps.div_ceil(4),
        );
        println!(
            "history?samples=2000: p50 {p50:.1} ms, p99 {p99:.1} ms ({} bytes)",
            body.len()
        );
        let after_samples = status_kib(pid, "VmHWM:") as f64 / 1024.0;
        println!("server peak RSS after ingest: {after_ingest:.0} MiB; after the sampled reads: {after_samples:.0} MiB");
        let (full, body) = get(&agent, &format!("{url}{history}?keys=train/loss"), &key);
        println!(
            "history?keys=train/loss (full): {:.0} ms ({} bytes)",
            full * 1000.0,
            body.len()
        );
        let (export, body) = get(&agent, &format!("{url}{history}.parquet"), &key);
        println!(
            "history.parquet: {:.0} ms ({} bytes)",
            export * 1000.0,
            body.len()
        );
        let scalars = steps as f64 * 10.0;
        println!(
            "server peak RSS (after the full-resolution read and the export too): {:.0} MiB; on disk under --data: {:.2} bytes/scalar \
             (history segments and their M4 pre-aggregates: {:.2})",
            status_kib(pid, "VmHWM:") as f64 / 1024.0,
            dir_bytes(&data) as f64 / scalars,
            dir_bytes(&data.join("store/segments")) as f64 / scalars
        );
    }
}
