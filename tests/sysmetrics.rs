//! System metrics of library runs: rows written on the sampler's timer with values in range,
//! no GPU keys without NVML, sampling off on request, and the naming of GPU readings.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::{decode, Record, RowKind};
use tidelog::core::value::ValueRef;
use tidelog::native::sysmetrics::{GpuReading, HostReading, Reading, DEFAULT_INTERVAL};
use tidelog::Settings;

/// Every system row of the run in `dir`, as `(timestamp ms, key -> value)`.
fn system_rows(dir: &Path) -> Vec<(i64, BTreeMap<String, f64>)> {
    let bytes = fs::read(dir.join("records.tlog")).unwrap();
    let index = LogIndex::new(&bytes).unwrap();
    let mut rows = Vec::new();
    for (_, payload) in index.payloads(0..index.len()) {
        let Record::Row(row) = decode(payload).unwrap() else {
            continue;
        };
        if row.kind != RowKind::System {
            continue;
        }
        let values = row
            .values()
            .map(|v| {
                let (id, v) = v.unwrap();
                let ValueRef::Num(x) = v else {
                    panic!("system value {v:?} is not a number")
                };
                (index.key(id).unwrap().to_owned(), x)
            })
            .collect();
        rows.push((row.ts_ms, values));
    }
    rows
}

fn nvml_present() -> bool {
    nvml_wrapper::Nvml::init().is_ok_and(|n| n.device_count().is_ok_and(|c| c > 0))
}

#[test]
fn a_short_interval_writes_several_rows_in_range() {
    let work = tempfile::tempdir().unwrap();
    let mut s = settings(work.path(), "sys");
    s.system_interval = Some(Duration::from_millis(50));
    let run = tidelog::init(s).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut steps = 0;
    loop {
        run.log([("loss", f64::from(steps))]).unwrap();
        steps += 1;
        run.flush().unwrap();
        if system_rows(run.dir()).len() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 system rows in 20 s at 50 ms"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = run.finish(0).unwrap();

    let rows = system_rows(&dir);
    assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "timestamps in order");
    let ncpu = std::thread::available_parallelism().unwrap().get() as f64;
    for (_, row) in &rows {
        let get = |k: &str| *row.get(k).unwrap_or_else(|| panic!("{k} missing from {row:?}"));
        assert!(get("cpu.percent").is_finite(), "{row:?}");
        assert!(get("cpu.count") >= 1.0, "{row:?}");
        let (used, total) = (get("memory.used_bytes"), get("memory.total_bytes"));
        assert!(used > 0.0 && used <= total, "{row:?}");
        assert!((0.0..=100.0).contains(&get("memory.percent")), "{row:?}");
        assert!(get("proc.memory.rss_bytes") > 0.0, "{row:?}");
        assert!((0.0..=100.0 * ncpu).contains(&get("proc.cpu.percent")), "{row:?}");
        // Every counter is reported (`get` panics naming a missing one); they are unsigned
        // counts, so their range needs no check.
        for k in [
            "disk.read_bytes",
            "disk.write_bytes",
            "network.sent_bytes",
            "network.recv_bytes",
        ] {
            get(k);
        }
        let gpu_keys = row.keys().filter(|k| k.starts_with("gpu.")).count();
        if nvml_present() {
            assert!(row.contains_key("gpu.0.memory.total_bytes"), "{row:?}");
        } else {
            assert_eq!(gpu_keys, 0, "no NVML, no GPU keys: {row:?}");
        }
    }
    assert_eq!(
        rows[0].1["disk.read_bytes"], 0.0,
        "counters start at the run's start"
    );
    assert_eq!(rows[0].1["network.sent_bytes"], 0.0);

    let bytes = fs::read(dir.join("records.tlog")).unwrap();
    let index = LogIndex::new(&bytes).unwrap();
    assert_eq!(
        index.state(false),
        tidelog::RunState::Finished,
        "system rows come before the finish"
    );
}

#[test]
fn the_default_interval_is_ten_seconds_and_finish_does_not_wait_for_it() {
    assert_eq!(DEFAULT_INTERVAL, Duration::from_secs(10));
    assert_eq!(Settings::default().system_interval, Some(DEFAULT_INTERVAL));
    let work = tempfile::tempdir().unwrap();
    let s = settings(work.path(), "sys");
    assert_eq!(s.system_interval, Some(DEFAULT_INTERVAL));
    let started = Instant::now();
    let run = tidelog::init(s).unwrap();
    run.log([("loss", 1.0)]).unwrap();
    let dir = run.finish(0).unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "finish waited {took:?} for the sampler"
    );
    assert_eq!(system_rows(&dir).len(), 1, "the sample taken at start");
}

#[test]
fn sampling_off_writes_no_system_rows() {
    for off in [None, Some(Duration::ZERO)] {
        let work = tempfile::tempdir().unwrap();
        let mut s = settings(work.path(), "sys");
        s.system_interval = off;
        let run = tidelog::init(s).unwrap();
        run.log([("loss", 1.0)]).unwrap();
        run.flush().unwrap();
        let dir = run.finish(0).unwrap();
        assert!(system_rows(&dir).is_empty(), "{off:?}");
    }
}

#[test]
fn readings_map_to_named_keys_in_their_units() {
    let reading = Reading {
        host: HostReading {
            cpu_percent: 12.5,
            cpu_count: 8,
            memory_used_bytes: 4 << 30,
            memory_total_bytes: 16 << 30,
            proc_rss_bytes: 100 << 20,
            proc_cpu_percent: 150.0,
            disk_read_bytes: 1,
            disk_write_bytes: 2,
            network_sent_bytes: 3,
            network_recv_bytes: 4,
        },
        gpus: vec![
            GpuReading {
                index: 0,
                utilization_percent: Some(87),
                memory_used_bytes: Some(20 << 30),
                memory_total_bytes: Some(80 << 30),
                temperature_c: Some(64),
                power_mw: Some(312_500),
                sm_clock_mhz: Some(1980),
            },
            GpuReading {
                index: 1,
                utilization_percent: Some(0),
                ..GpuReading::default()
            },
        ],
    };
    let pairs: BTreeMap<String, f64> = reading.pairs().into_iter().collect();
    let expected: BTreeMap<String, f64> = [
        ("cpu.percent", 12.5),
        ("cpu.count", 8.0),
        ("memory.used_bytes", (4u64 << 30) as f64),
        ("memory.total_bytes", (16u64 << 30) as f64),
        ("memory.percent", 25.0),
        ("proc.memory.rss_bytes", (100u64 << 20) as f64),
        ("proc.cpu.percent", 150.0),
        ("disk.read_bytes", 1.0),
        ("disk.write_bytes", 2.0),
        ("network.sent_bytes", 3.0),
        ("network.recv_bytes", 4.0),
        ("gpu.0.utilization", 87.0),
        ("gpu.0.memory.used_bytes", (20u64 << 30) as f64),
        ("gpu.0.memory.total_bytes", (80u64 << 30) as f64),
        ("gpu.0.memory.percent", 25.0),
        ("gpu.0.temperature_c", 64.0),
        ("gpu.0.power_w", 312.5),
        ("gpu.0.sm_clock_mhz", 1980.0),
        ("gpu.1.utilization", 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(pairs, expected, "a GPU field NVML does not report is left out");
    assert_eq!(reading.pairs().len(), expected.len(), "no key twice");

    let empty = Reading::default().pairs();
    assert!(
        !empty.iter().any(|(k, _)| k == "memory.percent"),
        "no percent of an unknown total"
    );
}
