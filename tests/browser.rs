//! In real headless Chromium (wasm-bindgen-test + chromedriver, configured by webdriver.json):
//! the IndexedDB store round-trips records, survives a reopen, recovers after a failed batch,
//! and wasm builds the same bundle bytes as native.

#![cfg(target_arch = "wasm32")]

mod vectors;

use rexie::{Rexie, TransactionMode};
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::{decode, Record};
use tidelog::wasm::{InitOptions, Store, WasmRun, LOGGED};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn opts(id: &str, resume: &str) -> InitOptions {
    InitOptions {
        project: "browser-tests".into(),
        id: Some(id.into()),
        resume: Some(resume.into()),
        ..InitOptions::default()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", (js_sys::Math::random() * 1e9) as u64)
}

fn log(run: &WasmRun, key: &str, v: f64) {
    run.stage_value(key.into(), JsValue::from_f64(v)).unwrap();
    assert_eq!(run.log_staged(0, -1.0, 2), LOGGED);
}

async fn flush(run: &WasmRun) -> Result<JsValue, JsValue> {
    JsFuture::from(run.flush()).await
}

/// The `(step, value)` of every history row of `key` in a stored log.
async fn rows(store: &Store, id: &str) -> Vec<(u64, f64)> {
    let bytes = store.log_bytes(id.into()).await.unwrap();
    let index = LogIndex::new(&bytes).unwrap();
    index
        .payloads(0..index.len())
        .filter_map(|(_, p)| match decode(p).unwrap() {
            Record::Row(r) => Some(r),
            _ => None,
        })
        .map(|r| {
            let (_, v) = r.values().next().unwrap().unwrap();
            match v {
                tidelog::core::value::ValueRef::Num(x) => (r.step, x),
                other => panic!("not a number: {other:?}"),
            }
        })
        .collect()
}

#[wasm_bindgen_test]
fn wasm_bundle_bytes_equal_the_native_vector() {
    assert_eq!(vectors::bundle().sha256, vectors::BUNDLE_SHA256.trim());
}

#[wasm_bindgen_test]
async fn records_round_trip_and_survive_a_reopen() {
    let id = unique("rt");
    let store = Store::indexed_db().await.unwrap();
    let run = store.open(opts(&id, "never")).await.unwrap();
    for i in 0..100 {
        log(&run, "loss", f64::from(i) * 0.5);
    }
    assert!(run.buffered() > 0.0);
    flush(&run).await.unwrap();
    assert_eq!(run.buffered(), 0.0);
    let want: Vec<(u64, f64)> = (0..100).map(|i| (i, i as f64 * 0.5)).collect();
    assert_eq!(rows(&store, &id).await, want);

    let reopened = Store::indexed_db().await.unwrap();
    let again = reopened.open(opts(&id, "must")).await.unwrap();
    assert_eq!(again.step(), 100.0, "steps continue after a reopen");
    log(&again, "loss", -1.0);
    flush(&again).await.unwrap();
    let got = rows(&reopened, &id).await;
    assert_eq!(got.len(), 101);
    assert_eq!(got[100], (100, -1.0));
    assert!(
        reopened.open(opts(&id, "never")).await.is_err(),
        "resume: never refuses an existing id"
    );
}

#[wasm_bindgen_test]
async fn a_failed_batch_is_kept_and_stored_later_in_order() {
    let id = unique("fb");
    let store = Store::indexed_db().await.unwrap();
    let run = store.open(opts(&id, "allow")).await.unwrap();
    log(&run, "x", 1.0);
    flush(&run).await.unwrap();

    // Take the run's row away so the next append fails inside its transaction.
    let db = Rexie::builder("tidelog").version(1).build().await.unwrap();
    let tx = db.transaction(&["runs"], TransactionMode::ReadWrite).unwrap();
    let runs = tx.store("runs").unwrap();
    let row = runs.get(JsValue::from_str(&id)).await.unwrap().unwrap();
    runs.delete(JsValue::from_str(&id)).await.unwrap();
    tx.done().await.unwrap();

    log(&run, "x", 2.0);
    log(&run, "x", 3.0);
    let err = flush(&run).await.unwrap_err();
    let message = js_sys::Error::from(err).message().as_string().unwrap();
    assert!(message.contains("kept in memory"), "{message}");
    assert!(run.buffered() >= 2.0, "the batch is still in memory");
    log(&run, "x", 4.0);

    let tx = db.transaction(&["runs"], TransactionMode::ReadWrite).unwrap();
    tx.store("runs").unwrap().put(&row, None).await.unwrap();
    tx.done().await.unwrap();
    db.close();

    flush(&run).await.unwrap();
    assert_eq!(run.buffered(), 0.0);
    assert_eq!(
        rows(&store, &id).await,
        vec![(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
    );
}
