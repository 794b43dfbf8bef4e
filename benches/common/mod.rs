//! What the benches share: the ten metrics of a training loop, and a real `tidelog serve`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const KEYS: [&str; 10] = [
    "train/loss",
    "train/acc",
    "lr",
    "epoch",
    "grad_norm",
    "val/loss",
    "val/acc",
    "tokens",
    "gpu_mem",
    "throughput",
];

/// Ten metrics as a GPU training loop produces them: float32 values (with pseudo-random
/// noise) widened to f64, plus integer counters.
pub fn step_values(i: u64) -> [(&'static str, f64); 10] {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    let noise = (x % 10_000) as f32 * 1e-5;
    let decay = 1.0 / (1.0 + i as f32 * 1e-4);
    [
        (KEYS[0], (2.5 * decay + noise) as f64),
        (KEYS[1], (0.9 - 0.8 * decay - noise) as f64),
        (KEYS[2], (1e-3 * decay) as f64),
        (KEYS[3], (i / 10_000) as f64),
        (KEYS[4], (1.0 + noise * 10.0) as f64),
        (KEYS[5], (2.6 * decay + noise * 0.5) as f64),
        (KEYS[6], (0.88 - 0.8 * decay) as f64),
        (KEYS[7], (i * 4096) as f64),
        (KEYS[8], (11.5 + noise) as f64),
        (KEYS[9], (3150.0 + noise * 1e3) as f64),
    ]
}

/// A running `tidelog serve`, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database URL (`postgres://...`, created and empty) for the benched server instead of
/// SQLite under its data folder.
pub const BENCH_DATABASE: &str = "TIDELOG_BENCH_DATABASE";

/// Starts `tidelog serve` on `data` with a fresh key: the server, its URL and the key.
pub fn start_server(data: &Path) -> (Server, String, String) {
    let bin = env!("CARGO_BIN_EXE_tidelog");
    let database: Vec<String> = std::env::var(BENCH_DATABASE)
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| vec!["--database".into(), u])
        .unwrap_or_default();
    let key = Command::new(bin)
        .args(["admin", "create-key", "--account", "bench", "--data"])
        .arg(data)
        .args(&database)
        .output()
        .expect("create-key");
    let key = String::from_utf8(key.stdout).expect("utf8").trim().to_owned();
    let mut child = Command::new(bin)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        // Warnings only: a line per request would bury the figures.
        .env("RUST_LOG", "warn")
        .args(&database)
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let url = line.trim().rsplit(' ').next().expect("url").to_owned();
    (Server(child), url, key)
}
