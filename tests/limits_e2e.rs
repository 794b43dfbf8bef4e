//! Limits agree end to end: a saved file the server refuses is reported and skipped without
//! walling off the records after it, and `tidelog upload` goes through the same delivery loop
//! as `sync` (tus for large bundles), against a real `tidelog serve`.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use serde_json::json;

fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_file_the_server_refuses_is_skipped_and_the_records_after_it_sync() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "limits")).unwrap();
    for i in 0..10 {
        run.log([("loss", f64::from(i))]).unwrap();
    }
    run.save("huge.bin", &noise(3 << 20, 7)).unwrap();
    run.save("small.txt", b"kept").unwrap();
    for i in 10..20 {
        run.log([("loss", f64::from(i))]).unwrap();
    }
    let id = run.id().to_owned();
    let dir = run.finish(0).unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--max-unpacked-bytes", "1048576"]);
    let key = server.key("alice");
    let out = sync(work.path(), &server.url, &key, &[], 1);
    let said = text(&out);
    assert!(
        said.contains("skipped a file") && said.contains("huge.bin"),
        "{said}"
    );
    assert!(said.contains("refused by the server"), "{said}");

    let rows = history(&server.url, &key, &id);
    let losses: Vec<_> = rows.iter().map(|r| r["loss"].clone()).collect();
    assert_eq!(losses, (0..20).map(|i| json!(f64::from(i))).collect::<Vec<_>>());
    let (status, _) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/huge.bin"));
    assert_eq!(status, 404, "the refused file is not on the server");
    let (status, small) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/small.txt"));
    assert_eq!((status, small.as_slice()), (200, &b"kept"[..]));
    assert!(
        !dir.join(".synced").exists(),
        "a run missing a file is not synced"
    );

    let again = sync(work.path(), &server.url, &key, &["--clean"], 1);
    assert!(text(&again).contains("huge.bin"), "{}", text(&again));
    assert!(
        dir.is_dir(),
        "--clean keeps a run whose file never reached the server"
    );
    assert_eq!(history(&server.url, &key, &id).len(), 20, "no row twice");
}

#[test]
fn upload_sends_large_bundles_resumably_like_sync() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "airgap")).unwrap();
    run.save("ckpt.bin", &noise(6 << 20, 11)).unwrap();
    run.log([("acc", 0.5)]).unwrap();
    let id = run.id().to_owned();
    let dir = run.finish(0).unwrap();
    let out_dir = work.path().join("out");
    let made = tidelog(
        work.path(),
        &["bundle", dir.to_str().unwrap(), "-o", out_dir.to_str().unwrap()],
        &[],
    );
    assert!(made.status.success(), "{}", text(&made));
    let bundles: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");

    // A body limit below the bundle's size: only a chunked (tus) upload gets through.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--max-body-bytes", "5242880"]);
    let key = server.key("bob");
    let env = [
        ("TIDELOG_API_KEY", key.as_str()),
        ("TIDELOG_BASE_URL", server.url.as_str()),
    ];
    let mut args = vec!["upload"];
    args.extend(bundles.iter().map(String::as_str));
    let up = tidelog(work.path(), &args, &env);
    assert!(up.status.success(), "{}", text(&up));
    assert!(!text(&up).contains(": 0 rows added"), "{}", text(&up));
    let twice = tidelog(work.path(), &args, &env);
    assert!(twice.status.success(), "{}", text(&twice));
    assert!(text(&twice).contains(": 0 rows added"), "{}", text(&twice));
    assert_eq!(history(&server.url, &key, &id).len(), 1);

    let junk = work.path().join("junk.tar.gz");
    std::fs::write(&junk, b"not a bundle").unwrap();
    let bad = tidelog(work.path(), &["upload", junk.to_str().unwrap()], &env);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("not a tidelog bundle"), "{}", text(&bad));
}
