//! Values come back from the server exactly as they were logged: every float bit for bit
//! (a float parsed with a fast, inexact algorithm can come back a few ulps off).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;

#[test]
fn floats_come_back_bit_for_bit() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "floats")).unwrap();
    let mut logged = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 1..=2_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noisy = f64::from(i) / 11.0 + f64::from((x >> 40) as u32) * 1e-9;
        let tiny = f64::from_bits(x >> 12) * 1e-300;
        run.log([
            ("third", 1.0 / f64::from(i) / 3.0),
            ("noisy", noisy),
            ("tiny", tiny),
        ])
        .unwrap();
        logged.push([1.0 / f64::from(i) / 3.0, noisy, tiny]);
    }
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(work.path(), &server.url, &key, &[], 0);
    let rows = history(&server.url, &key, &id);
    assert_eq!(rows.len(), logged.len());
    for (row, want) in rows.iter().zip(&logged) {
        for (k, w) in ["third", "noisy", "tiny"].iter().zip(want) {
            let got = row[*k].as_f64().unwrap_or_else(|| panic!("{k} in {row}"));
            assert_eq!(
                got.to_bits(),
                w.to_bits(),
                "{k} at step {}: {got} != {w}",
                row["_step"]
            );
        }
    }
}
