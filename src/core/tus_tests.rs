//! The upload protocol against a server scripted answer by answer: what the client sends and
//! how it waits are pure functions of those answers.

use std::collections::VecDeque;

use super::*;
use crate::core::bundle::Manifest;
use crate::core::transport::{deliver, Backoff, Response, Server};

/// A request as the scripted server saw it.
#[derive(Debug)]
struct Seen {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Scripted {
    server: Server,
    answers: VecDeque<Result<Response, String>>,
    seen: Vec<Seen>,
    slept: Vec<u64>,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = Result<Response, String>>) -> Scripted {
        Scripted {
            server: Server::new("http://127.0.0.1:9/", "k3y"),
            answers: answers.into_iter().collect(),
            seen: Vec::new(),
            slept: Vec::new(),
        }
    }

    fn methods(&self) -> Vec<Method> {
        self.seen.iter().map(|s| s.method).collect()
    }
}

impl Transport for Scripted {
    fn server(&self) -> &Server {
        &self.server
    }

    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String> {
        self.seen.push(Seen {
            method: req.method,
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.to_vec(),
        });
        let mut answer = self.answers.pop_front().expect("an answer for every request")?;
        // A real home copies only the headers the request names.
        answer.headers.retain(|(k, _)| req.read.contains(k));
        Ok(answer)
    }

    async fn sleep(&mut self, ms: u64) {
        self.slept.push(ms);
    }
}

fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Result<Response, String> {
    Ok(Response {
        status,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.as_bytes().to_vec(),
    })
}

fn acked(rows: u64) -> Result<Response, String> {
    answer(
        201,
        &[],
        &format!(r#"{{"rows_added":{rows},"duplicates_skipped":0}}"#),
    )
}

fn busy(status: u16, retry_after: &str) -> Result<Response, String> {
    answer(status, &[(RETRY_AFTER, retry_after)], r#"{"error":"busy"}"#)
}

fn patched(offset: u64, rows: Option<u64>) -> Result<Response, String> {
    let offset = offset.to_string();
    let rows = rows.map(|r| r.to_string());
    let mut h = vec![(OFFSET, offset.as_str())];
    if let Some(r) = &rows {
        h.push((ROWS_ADDED, r.as_str()));
    }
    answer(204, &h, "")
}

fn created(n: u32) -> Result<Response, String> {
    answer(201, &[(LOCATION, &format!("/api/v1/uploads/{n}"))], "")
}

fn bundle(len: usize) -> Bundle {
    Bundle {
        bytes: (0..len).map(|i| i as u8).collect(),
        sha256: "ab".repeat(32),
        manifest: Manifest {
            format: crate::core::bundle::FORMAT,
            run: Default::default(),
            state: Default::default(),
            seq_start: 0,
            seq_end: 1,
            entries: Vec::new(),
        },
        dropped_values: 0,
    }
}

fn ack(rows: u64) -> Ack {
    Ack {
        rows_added: rows,
        duplicates_skipped: 0,
    }
}

fn tus_opts() -> SyncOptions {
    SyncOptions {
        direct_max: 4,
        chunk: 8,
        ..SyncOptions::default()
    }
}

fn run<T: Transport>(
    t: &mut T,
    opts: &SyncOptions,
    b: &Bundle,
    ledger: &mut Option<PendingUpload>,
) -> Result<Ack, SyncError> {
    pollster::block_on(deliver(t, opts, b, ledger, &mut |_| {}))
}

#[test]
fn retry_after_is_honoured_when_longer_than_the_backoff() {
    let mut t = Scripted::new([busy(503, "7"), busy(429, "0"), acked(3)]);
    let opts = SyncOptions::default();
    assert_eq!(run(&mut t, &opts, &bundle(10), &mut None).unwrap(), ack(3));
    let schedule = Backoff::attempts(opts.backoff_ms);
    assert_eq!(t.slept, vec![7_000, schedule.delay_ms(2, None)]);
    assert_eq!(t.slept[1], opts.backoff_ms * 2);
}

#[test]
fn a_post_carries_the_key_and_the_sha256() {
    let mut t = Scripted::new([acked(1)]);
    run(&mut t, &SyncOptions::default(), &bundle(3), &mut None).unwrap();
    let post = &t.seen[0];
    assert_eq!(
        (post.method, post.url.as_str()),
        (Method::Post, "http://127.0.0.1:9/api/v1/bundles")
    );
    assert_eq!(post.header("Authorization"), Some("Bearer k3y"));
    assert_eq!(
        post.header("Tidelog-Bundle-Sha256"),
        Some("ab".repeat(32).as_str())
    );
    assert_eq!(post.body, bundle(3).bytes);
}

#[test]
fn a_tus_upload_creates_then_patches_checksummed_chunks() {
    let b = bundle(12);
    let mut t = Scripted::new([created(1), patched(8, None), patched(12, Some(4))]);
    let mut upload = None;
    assert_eq!(run(&mut t, &tus_opts(), &b, &mut upload).unwrap(), ack(4));
    assert_eq!(t.methods(), [Method::Post, Method::Patch, Method::Patch]);
    let create = &t.seen[0];
    assert_eq!(create.header("Upload-Length"), Some("12"));
    assert_eq!(create.header("Tus-Resumable"), Some("1.0.0"));
    assert_eq!(
        create.header("Upload-Metadata"),
        Some(format!("sha256 {}", b64(b.sha256.as_bytes())).as_str())
    );
    for (p, range) in t.seen[1..].iter().zip([0..8, 8..12]) {
        assert_eq!(p.url, "http://127.0.0.1:9/api/v1/uploads/1");
        assert_eq!(p.header("Upload-Offset"), Some(range.start.to_string().as_str()));
        assert_eq!(p.body, b.bytes[range.clone()]);
        let sum = format!("sha256 {}", b64(&Sha256::digest(&b.bytes[range])));
        assert_eq!(p.header("Upload-Checksum"), Some(sum.as_str()));
    }
    assert_eq!(upload.map(|u| u.url).as_deref(), Some("/api/v1/uploads/1"));
}

#[test]
fn a_refused_chunk_continues_from_the_servers_offset() {
    let b = bundle(12);
    for refusal in [409, 460] {
        let mut t = Scripted::new([
            created(1),
            answer(refusal, &[], r#"{"error":"no"}"#),
            answer(200, &[(OFFSET, "5")], ""),
            patched(12, Some(2)),
        ]);
        assert_eq!(
            run(&mut t, &tus_opts(), &b, &mut None).unwrap(),
            ack(2),
            "{refusal}"
        );
        assert_eq!(
            t.methods(),
            [Method::Post, Method::Patch, Method::Head, Method::Patch]
        );
        assert_eq!(t.seen[3].header("Upload-Offset"), Some("5"));
        assert_eq!(t.seen[3].body, b.bytes[5..12]);
        assert!(t.slept.is_empty(), "a resync is no failure to wait for");
    }
}

#[test]
fn an_interrupted_upload_resumes_where_the_server_stands() {
    let b = bundle(12);
    let mut upload = Some(PendingUpload {
        url: "/api/v1/uploads/9".into(),
        sha256: b.sha256.clone(),
        seq_start: 0,
        seq_end: 1,
    });
    let mut t = Scripted::new([answer(200, &[(OFFSET, "8")], ""), patched(12, Some(1))]);
    assert_eq!(run(&mut t, &tus_opts(), &b, &mut upload).unwrap(), ack(1));
    assert_eq!(t.methods(), [Method::Head, Method::Patch]);
    assert_eq!(t.seen[1].body, b.bytes[8..12]);
}

#[test]
fn a_finished_upload_without_an_ack_is_sent_again_not_counted() {
    let mut t = Scripted::new([created(1), patched(8, None), created(2), patched(8, Some(5))]);
    let mut upload = None;
    assert_eq!(run(&mut t, &tus_opts(), &bundle(8), &mut upload).unwrap(), ack(5));
    assert_eq!(upload.map(|u| u.url).as_deref(), Some("/api/v1/uploads/2"));
}

#[test]
fn refusals_are_not_retried_and_no_answer_names_the_server() {
    let mut t = Scripted::new([answer(413, &[], r#"{"error":"too big"}"#)]);
    let got = run(&mut t, &SyncOptions::default(), &bundle(1), &mut None);
    assert!(matches!(
        got,
        Err(SyncError::Transport(TransportError::Status { status: 413, .. }))
    ));
    assert!(t.slept.is_empty());
    let opts = SyncOptions {
        attempts: 1,
        ..SyncOptions::default()
    };
    let mut t = Scripted::new([Err("connection refused".to_owned())]);
    let got = run(&mut t, &opts, &bundle(1), &mut None).unwrap_err();
    assert_eq!(
        got.to_string(),
        "network error: could not reach http://127.0.0.1:9: connection refused"
    );
}
