//! `cargo bench --bench scaleout_bench [-- STEPS [REPS]]`: ingest and the sampled history read
//! through one and two replicas. Each setup gets a fresh database and store; RUNS runs of STEPS
//! steps (default 1M) × 10 keys are synced at once, run `i` through replica `i % replicas`, then
//! the first run's `history?keys=train/loss&samples=1000` is read REPS times (default 20),
//! alternating between the replicas, right after the ingest (compaction still merging) and
//! again once compaction has caught up: rows/s of the whole ingest, read p50/p99.
//!
//! On its own it benches SQLite + files (one replica: SQLite is one machine's database).
//! With the test harness's variables, `TIDELOG_TEST_STORE=s3 scripts/postgres cargo bench
//! --bench scaleout_bench`, it benches PostgreSQL + S3 (moto) with one and two replicas.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)]
mod common;

#[cfg(not(target_arch = "wasm32"))]
#[path = "../tests/common/mod.rs"]
mod harness;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

/// Processes and sockets: the bench measures the native build only.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::common::step_values;
    use super::harness::{self, store, Server};
    use tidelog::core::sync::{sync_run, SyncOptions};
    use tidelog::native::store::RunDir;
    use tidelog::native::transport::HttpTransport;
    use tidelog::{Mode, Settings};

    /// `runs` finished offline runs of `steps` steps under `dir`: their folders.
    fn make_runs(dir: &Path, runs: usize, steps: u64) -> Vec<PathBuf> {
        (0..runs)
            .map(|r| {
                let mut s = Settings::new("scaleout");
                s.mode = Mode::Offline;
                s.dir = Some(dir.join(format!("client{r}")));
                let run = tidelog::init(s).expect("init");
                for i in 0..steps {
                    run.log(step_values(i)).expect("log");
                }
                run.finish(0).expect("finish")
            })
            .collect()
    }

    /// Syncs each run through its replica, all at once: rows added and seconds.
    fn ingest(runs: &[PathBuf], urls: &[String], key: &str) -> (u64, f64) {
        let t = Instant::now();
        let rows = std::thread::scope(|scope| {
            let syncs: Vec<_> = runs
                .iter()
                .enumerate()
                .map(|(i, run)| {
                    let url = &urls[i % urls.len()];
                    scope.spawn(move || {
                        let mut dir = RunDir::new(run);
                        let mut transport = HttpTransport::new(url, key, Duration::from_secs(600));
                        let report = pollster::block_on(sync_run(
                            &mut dir,
                            &mut transport,
                            &SyncOptions::default(),
                            &mut |_| {},
                        ))
                        .expect("sync");
                        report.rows_added
                    })
                })
                .collect();
            syncs.into_iter().map(|s| s.join().expect("sync thread")).sum()
        });
        (rows, t.elapsed().as_secs_f64())
    }

    /// `reps` sampled reads of run `id`'s loss, alternating replicas: p50 and p99 in ms.
    fn sampled_reads(urls: &[String], key: &str, id: &str, reps: usize) -> (f64, f64) {
        let path = format!("/api/v1/runs/{id}/history?keys=train/loss&samples=1000");
        let mut ms: Vec<f64> = (0..reps)
            .map(|i| {
                let t = Instant::now();
                let (status, body) = harness::get_bytes(&urls[i % urls.len()], key, &path);
                let took = t.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                took
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        (at(0.5), at(0.99))
    }

    /// Waits until compaction has caught up (no run left with the 8 segments of under 64 k
    /// rows that start a merge, `segments/compact.rs`), for at most two minutes; the seconds
    /// it took, `None` when it had not.
    fn compacted(database: &str) -> Option<f64> {
        let t = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let db = sqlx::AnyPool::connect(database).await.expect("database");
            let caught_up = loop {
                let behind: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT run_id FROM segments WHERE row_count < 65536 \
                     GROUP BY run_id, kind HAVING COUNT(*) >= 8) AS behind",
                )
                .fetch_one(&db)
                .await
                .expect("catalog");
                if behind == 0 || t.elapsed() > Duration::from_secs(120) {
                    break behind == 0;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            db.close().await;
            caught_up.then(|| t.elapsed().as_secs_f64())
        })
    }

    /// One setup: `replicas` servers over one fresh database and store, `runs` fresh runs of
    /// `steps` steps synced (a run synced once has nothing left to send).
    fn setup(runs: usize, steps: u64, replicas: usize, reps: usize, label: &str) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runs = make_runs(tmp.path(), runs, steps);
        let shared = tmp.path().join("shared");
        std::fs::create_dir_all(&shared).expect("shared folder");
        let database = harness::database_url(&shared);
        let store_url = if store::is_s3() {
            store::server_args(&shared).0[1].clone()
        } else {
            format!("file://{}", shared.join("store").display())
        };
        let key = harness::create_key_in(&shared, &database, "bench");
        let servers: Vec<Server> = (0..replicas)
            .map(|r| {
                let scratch = tmp.path().join(format!("replica{r}"));
                Server::start_with(&scratch, &["--database", &database, "--store", &store_url])
            })
            .collect();
        let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
        let (rows, secs) = ingest(&runs, &urls, &key);
        let listed = harness::runs(&urls[0], &key);
        assert_eq!(listed.len(), runs.len(), "every run landed once");
        let id = listed[0]["id"].as_str().expect("run id").to_owned();
        let (busy50, busy99) = sampled_reads(&urls, &key, &id, reps);
        let settle = compacted(&database);
        let (p50, p99) = sampled_reads(&urls, &key, &id, reps);
        println!(
            "| {label} | {replicas} | {} | {:.0} k | {secs:.1} s | {busy50:.1} / {busy99:.1} ms | \
             {} | {p50:.1} / {p99:.1} ms |",
            runs.len(),
            rows as f64 / secs / 1000.0,
            settle.map_or("not caught up in 120 s".into(), |s| format!("{s:.1} s"))
        );
    }

    pub fn main() {
        let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        let steps = numbers.first().copied().unwrap_or(1_000_000);
        let reps = numbers.get(1).map_or(20, |&r| r as usize).max(1);
        let scaled = store::is_s3() && std::env::var(harness::TEST_DATABASE).is_ok_and(|u| !u.is_empty());
        let label = if scaled {
            "PostgreSQL + S3 (moto)"
        } else {
            "SQLite + files"
        };
        println!("scale-out bench: runs of {steps} steps x 10 keys, loopback, release\n");
        println!(
            "| setup | replicas | runs at once | ingest rows/s | ingest wall | samples=1000 p50 / p99 |"
        );
        println!("| --- | --: | --: | --: | --: | --: |");
        setup(1, steps, 1, reps, label);
        setup(2, steps, 1, reps, label);
        if scaled {
            setup(2, steps, 2, reps, label);
        }
    }
}
