//! Helpers of the operations tests: hand-built bundles and one-call HTTP requests.

use tidelog::core::bundle::{sha256_hex, write_bundle, Bundle};
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::{FileRef, Meta, RunInfo};

use super::{agent, reply, Reply, Server};

const T0: i64 = 1_796_000_000_000;

/// A finished run `id` of `rows` history rows that saved `files`, as one bundle carrying them.
pub fn run_bundle(id: &str, rows: u32, files: &[(&str, &[u8])]) -> Bundle {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "ops".into(),
        created_ms: T0,
        ..RunInfo::default()
    }));
    for i in 0..rows {
        log.log(T0 + i64::from(i), [("loss", f64::from(i))], LogOptions::default())
            .unwrap();
    }
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in files {
        let sha = sha256_hex(bytes);
        log.meta(&Meta::File(FileRef {
            path: (*path).into(),
            sha256: sha.clone(),
            size: bytes.len() as u64,
        }));
        if !blobs.iter().any(|(s, _)| *s == sha) {
            blobs.push((sha, bytes.to_vec()));
        }
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: T0 + 10_000,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    let index = LogIndex::new(&out).unwrap();
    let run = index.run().unwrap().clone();
    write_bundle(&index, &run, index.state(false), 0..index.len(), &blobs).unwrap()
}

pub fn call(server: &Server, method: &str, key: &str, path: &str) -> Reply {
    let url = format!("{}{path}", server.url);
    let auth = format!("Bearer {key}");
    let a = agent();
    reply(match method {
        "GET" => a.get(&url).header("Authorization", &auth).call(),
        "DELETE" => a.delete(&url).header("Authorization", &auth).call(),
        other => unreachable!("{other}"),
    })
}

pub fn post(server: &Server, key: &str, b: &Bundle) -> Reply {
    reply(
        agent()
            .post(format!("{}/api/v1/bundles", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/gzip")
            .send(&b.bytes[..]),
    )
}
