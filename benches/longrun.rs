//! Long runs, client side (`bench/longrun.sh` drives it under `/usr/bin/time -v` for peak
//! RSS): `log DIR STEPS` logs STEPS steps of 10 scalars and finishes, printing the log()
//! rate; `resume DIR` resumes that run, logs one step and finishes; `bundle DIR` builds the
//! run's bundles the way a sync plans them (4 MiB of log each, read in 8 MiB windows) and
//! prints rows/s.

#[cfg(target_arch = "wasm32")]
fn main() {}

// Its server helpers serve the other benches; bench/longrun.sh starts the server here.
#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)]
mod common;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::main();
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use super::common::step_values;
    use tidelog::core::bundle::write_bundle;
    use tidelog::core::checkpoint::Checkpoint;
    use tidelog::core::log_index::LogIndex;
    use tidelog::core::sync::{RunStore, SyncOptions};
    use tidelog::native::store::RunDir;
    use tidelog::{Mode, Resume, Settings};

    const ID: &str = "longrun1";

    fn settings(dir: &Path) -> Settings {
        let mut s = Settings::new("bench");
        s.mode = Mode::Offline;
        s.dir = Some(dir.to_path_buf());
        s.id = Some(ID.into());
        s.system_interval = None;
        s
    }

    fn run_dir(dir: &Path) -> PathBuf {
        let root = dir.join("tidelog");
        std::fs::read_dir(&root)
            .expect("tidelog/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(ID))
            .expect("the run's folder")
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
        let dir = PathBuf::from(args.get(1).expect("DIR"));
        match args[0].as_str() {
            "log" => {
                let steps: u64 = args.get(2).expect("STEPS").parse().expect("a number");
                let run = tidelog::init(settings(&dir)).expect("init");
                let t0 = Instant::now();
                for i in 0..steps {
                    run.log(step_values(i)).expect("log");
                }
                let secs = t0.elapsed().as_secs_f64();
                let t1 = Instant::now();
                run.finish(0).expect("finish");
                println!(
                    "log: {steps} steps x 10 scalars: {:.1} M scalars/s; finish {:.2} s",
                    steps as f64 * 10.0 / secs / 1e6,
                    t1.elapsed().as_secs_f64()
                );
            }
            "resume" => {
                let t0 = Instant::now();
                let mut s = settings(&dir);
                s.resume = Resume::Must;
                let run = tidelog::init(s).expect("resume");
                let step = run.step();
                run.log(step_values(step)).expect("log");
                run.finish(0).expect("finish");
                println!(
                    "resume at step {step}, log 1 step, finish: {:.2} s",
                    t0.elapsed().as_secs_f64()
                );
            }
            "bundle" => bundle(&run_dir(&dir)),
            other => panic!("unknown mode {other}"),
        }
    }

    /// Builds every bundle of the run as a sync plans them, reading the log in windows.
    fn bundle(path: &Path) {
        let store = RunDir::new(path);
        let opts = SyncOptions::default();
        let window = store.read_window().max(opts.max_bundle_log_bytes * 2);
        let mut cp = Checkpoint::default();
        let (mut rows, mut bytes, mut secs) = (0u64, 0u64, 0f64);
        loop {
            let log = pollster::block_on(store.read_log_at(cp.offset, cp.records, window)).expect("read");
            let more = log.len() == window;
            let index = LogIndex::after(&log, more, &cp).expect("index");
            let run = index.run().cloned().expect("a start record");
            let t0 = Instant::now();
            let mut at = cp.records;
            while at < index.len() {
                let range = index.plan(at, opts.max_bundle_log_bytes);
                let b = write_bundle(&index, &run, index.state(false), range.clone(), &[]).expect("bundle");
                bytes += b.bytes.len() as u64;
                rows += range.end - range.start;
                at = range.end;
            }
            secs += t0.elapsed().as_secs_f64();
            if !more {
                break;
            }
            cp = index.checkpoint(index.len());
        }
        println!(
            "bundle: {rows} records in {:.2} s = {:.2} M rows/s on one core, {:.1} MB of bundles",
            secs,
            rows as f64 / secs / 1e6,
            bytes as f64 / 1e6
        );
    }
}
