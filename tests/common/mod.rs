//! Shared test harness: a real `tidelog serve` child on 127.0.0.1, the CLI, and HTTP helpers.

#![allow(dead_code)]

pub mod ops;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidelog");

/// A `tidelog serve` child process, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// A server over `data` with `extra` arguments, on the test store (see [`store`]) unless
    /// `extra` names a `--store`.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::spawn(data, &[], extra, None)
    }

    /// [`Server::start_with`] run by `wrapper` (a command line that ends by running the one
    /// appended to it), e.g. in a namespace of its own.
    pub fn start_in(data: &Path, wrapper: &[&str], extra: &[&str]) -> Server {
        Server::spawn(data, wrapper, extra, None)
    }

    /// A server whose log lines (stderr) the test reads.
    pub fn start_logged(data: &Path, extra: &[&str]) -> (Server, std::process::ChildStderr) {
        let mut server = Server::spawn(data, &[], extra, Some(Stdio::piped()));
        let stderr = server.child.stderr.take().expect("stderr");
        (server, stderr)
    }

    /// Sends SIGTERM, as systemd or a container runtime stops the server.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, for at most `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `stderr`: where the log goes; `None` inherits it, without the per-request lines (unless
    /// `RUST_LOG` asks for them), which would bury test output.
    fn spawn(data: &Path, wrapper: &[&str], extra: &[&str], stderr: Option<Stdio>) -> Server {
        let (mut store_args, env) = store::server_args(data);
        if extra.contains(&"--store") {
            store_args.clear();
        }
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(database_args(data, extra))
            .args(extra)
            .args(store_args)
            .envs(env)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        match stderr {
            Some(s) => cmd.stderr(s),
            None if std::env::var_os("RUST_LOG").is_none() => cmd.env("RUST_LOG", "warn"),
            None => &mut cmd,
        };
        let mut child = cmd.spawn().expect("spawn tidelog serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("tidelog server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    pub fn key(&self, account: &str) -> String {
        create_key(&self.data, account)
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn create_key(data: &Path, account: &str) -> String {
    key_from(
        Command::new(BIN)
            .args(["admin", "create-key", "--account", account, "--data"])
            .arg(data)
            .args(database_args(data, &[])),
    )
}

/// [`create_key`] in the database `url` names.
pub fn create_key_in(data: &Path, url: &str, account: &str) -> String {
    key_from(
        Command::new(BIN)
            .args(["admin", "create-key", "--account", account, "--data"])
            .arg(data)
            .args(["--database", url]),
    )
}

/// Runs an `admin create-key` command; returns the key it printed.
fn key_from(cmd: &mut Command) -> String {
    let out = cmd.output().expect("create-key");
    assert!(
        out.status.success(),
        "create-key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

/// The variable naming the PostgreSQL server the server tests run against instead of SQLite,
/// as `postgres://USER@HOST:PORT/` (`scripts/test` sets it for its second pass, through
/// `scripts/postgres`).
pub const TEST_DATABASE: &str = "TIDELOG_TEST_DATABASE";

/// `--database URL` for a server or `admin` command on data folder `data`, unless `extra`
/// names a database itself: with [`TEST_DATABASE`] set, a PostgreSQL database of the data
/// folder's own (so tests stay isolated, and a restart on the same folder finds its data, as
/// with SQLite); without it, nothing (SQLite under the folder).
pub fn database_args(data: &Path, extra: &[&str]) -> Vec<String> {
    match std::env::var(TEST_DATABASE) {
        Ok(base) if !base.is_empty() && !extra.contains(&"--database") => {
            vec!["--database".into(), postgres_database(&base, data)]
        }
        _ => Vec::new(),
    }
}

/// The database the test servers over `data` use: its own PostgreSQL database with
/// `TIDELOG_TEST_DATABASE`, else the SQLite file under `data`; for tests that look inside.
pub fn database_url(data: &Path) -> String {
    match std::env::var(TEST_DATABASE) {
        Ok(base) if !base.is_empty() => postgres_database(&base, data),
        _ => format!("sqlite://{}?mode=rwc", data.join("tidelog.db").display()),
    }
}

/// The URL of database `tidelog_test_<hash of data's path>` on the server `base` names,
/// created when it does not exist yet.
pub fn postgres_database(base: &str, data: &Path) -> String {
    let path = std::path::absolute(data).expect("absolute data path");
    let digest = tidelog::core::bundle::sha256_hex(path.as_os_str().as_encoded_bytes());
    let name = format!("tidelog_test_{}", &digest[..16]);
    let root = base
        .find("://")
        .and_then(|s| base[s + 3..].find('/').map(|i| &base[..s + 3 + i]))
        .unwrap_or(base.trim_end_matches('/'));
    let url = format!("{root}/{name}");
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !made.contains(&name) {
        create_database(&format!("{root}/postgres"), &name);
        made.push(name);
    }
    url
}

/// `CREATE DATABASE name` through the maintenance database at `admin`; one that exists
/// (SQLSTATE 42P04) is fine.
fn create_database(admin: &str, name: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin} ({TEST_DATABASE}): {e}"));
        match sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            other => {
                other.unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            }
        }
        conn.close().await.expect("close");
    });
}

/// Runs the CLI in `cwd` with a clean credential environment plus `env`.
pub fn tidelog(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = cwd.join(".test-config");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("TIDELOG_API_KEY")
        .env_remove("TIDELOG_BASE_URL")
        .env_remove("TIDELOG_DIR")
        .env("TIDELOG_CONFIG_DIR", &config)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidelog")
}

/// `tidelog ARGS` with a server URL that lacks its scheme: refused before any work, naming it.
pub fn assert_refuses_schemeless_url(cwd: &Path, args: &[&str]) {
    let out = tidelog(
        cwd,
        args,
        &[("TIDELOG_API_KEY", "k"), ("TIDELOG_BASE_URL", "127.0.0.1:18431")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("server URL must start with http:// or https://: 127.0.0.1:18431"),
        "{}",
        text(&out)
    );
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tidelog sync ARGS` against `server` with `key`; asserts the exit code.
pub fn sync(cwd: &Path, server: &str, key: &str, args: &[&str], code: i32) -> Output {
    let mut all = vec!["sync"];
    all.extend_from_slice(args);
    let out = tidelog(
        cwd,
        &all,
        &[("TIDELOG_API_KEY", key), ("TIDELOG_BASE_URL", server)],
    );
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    out
}

/// An HTTP client that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The `rows` of a history or system route, which must answer 200.
pub fn rows(server: &str, key: &str, path: &str) -> Vec<Value> {
    let (status, body) = get(server, key, path);
    assert_eq!(status, 200, "{path}: {body}");
    body["rows"].as_array().unwrap().clone()
}

/// GET a JSON route; returns status and body.
pub fn get(server: &str, key: &str, path: &str) -> (u16, Value) {
    let mut resp = agent()
        .get(format!("{server}{path}"))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .expect("body");
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

/// GET raw bytes.
pub fn get_bytes(server: &str, key: &str, path: &str) -> (u16, Vec<u8>) {
    let mut resp = agent()
        .get(format!("{server}{path}"))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("body");
    (status, body)
}

pub fn runs(server: &str, key: &str) -> Vec<Value> {
    let (status, body) = get(server, key, "/api/v1/runs");
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().cloned().unwrap_or_default()
}

pub fn history(server: &str, key: &str, id: &str) -> Vec<Value> {
    let (status, body) = get(server, key, &format!("/api/v1/runs/{id}/history"));
    assert_eq!(status, 200, "{body}");
    body["rows"].as_array().cloned().expect("rows")
}

/// The `_step` of each row of a history answer (`{ "rows": [...] }`), in order.
pub fn steps_of(history: &Value) -> Vec<u64> {
    history["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["_step"].as_u64().expect("a _step"))
        .collect()
}

/// A loopback TCP proxy that counts client→server bytes and, once armed with a budget,
/// cuts every connection after that many bytes.
pub struct Proxy {
    pub url: String,
    pub sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: &str, cut_after: Option<u64>) -> Proxy {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (Arc::clone(&sent), Arc::clone(&stop));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(&target) else {
                    continue;
                };
                let sent = Arc::clone(&s2);
                let (c2, u2) = (
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                std::thread::spawn(move || pump_back(u2, c2));
                std::thread::spawn(move || pump_forward(client, upstream, sent, cut_after));
            }
        });
        Proxy { url, sent, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn pump_forward(mut from: TcpStream, mut to: TcpStream, sent: Arc<AtomicU64>, cut_after: Option<u64>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(limit) = cut_after {
            if before + n as u64 > limit {
                let keep = limit.saturating_sub(before) as usize;
                let _ = to.write_all(&buf[..keep]);
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn pump_back(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The quickstart example binary, built by `cargo test` beside the test executables.
pub fn quickstart_exe() -> PathBuf {
    let deps = std::env::current_exe().expect("exe");
    deps.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX))
}

/// Settings for an offline library run under `dir`.
pub fn settings(dir: &Path, project: &str) -> tidelog::Settings {
    let mut s = tidelog::Settings::new(project);
    s.mode = tidelog::Mode::Offline;
    s.dir = Some(dir.to_path_buf());
    s
}

/// The single run folder under `dir/tidelog`.
pub fn only_run(dir: &Path) -> PathBuf {
    let runs = tidelog::native::layout::runs_in(&dir.join("tidelog")).expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

impl Server {
    /// The server process's id, to read its memory use from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A `/proc/<pid>/status` figure in KiB, e.g. `VmHWM` (peak resident memory) or `VmRSS`.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A response reduced to what the tests look at.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().expect("an error reason").to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a whole exchange into a [`Reply`].
pub fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("HTTP exchange");
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("read body");
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body,
    }
}

/// A column table of `rows` rows (seqs 0, 1, 2, …, step 0) and `keys` columns named `name`,
/// each with `vals` tagged `true` values in its first rows: the decode-amplification shapes.
pub fn table(rows: u64, keys: u64, name: &str, vals: u64) -> Vec<u8> {
    use tidelog::core::varint::put_u64;
    let mut t = b"TLC1".to_vec();
    put_u64(&mut t, rows);
    let rows_n = rows as usize;
    t.extend((0..rows_n).map(|i| u8::from(i > 0)));
    t.extend(std::iter::repeat_n(0u8, rows_n * 2));
    put_u64(&mut t, keys);
    for _ in 0..keys {
        put_u64(&mut t, name.len() as u64);
        t.extend_from_slice(name.as_bytes());
        put_u64(&mut t, vals);
        if vals == 0 {
            t.push(0);
            continue;
        }
        if vals != rows {
            t.extend(std::iter::repeat_n(0u8, vals as usize));
        }
        t.push(1);
        put_u64(&mut t, vals);
        t.extend(std::iter::repeat_n(2u8, vals as usize));
    }
    t
}

/// The test servers' object store: files by default, moto's S3 with `TIDELOG_TEST_STORE=s3`.
pub mod store;
/// A finished run `id` with one row and the saved files `files` (path, bytes).
pub fn run_log(id: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    use tidelog::core::bundle::sha256_hex;
    use tidelog::core::run_log::{LogOptions, RunLog};
    use tidelog::{FileRef, Meta, RunInfo};
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "p".into(),
        ..RunInfo::default()
    }));
    log.log(1_000, [("loss", 0.5)], LogOptions::default()).unwrap();
    for (path, data) in files {
        log.meta(&Meta::File(FileRef {
            path: (*path).into(),
            sha256: sha256_hex(data),
            size: data.len() as u64,
        }));
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: 2_000,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

/// The bundle of a whole log carrying `carried` blobs (the rest left out, as a client does
/// for blobs the server acknowledged before).
pub fn bundle(log: &[u8], carried: &[&[u8]]) -> tidelog::core::bundle::Bundle {
    use tidelog::core::bundle::{sha256_hex, write_bundle};
    let index = tidelog::core::log_index::LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    let files: Vec<_> = carried.iter().map(|d| (sha256_hex(d), d.to_vec())).collect();
    write_bundle(&index, &run, index.state(false), 0..index.len(), &files).unwrap()
}

/// `GET path` with `key`, as a [`Reply`].
pub fn get_reply(server: &Server, key: &str, path: &str) -> Reply {
    reply(
        agent()
            .get(format!("{}{path}", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .call(),
    )
}

/// `POST /api/v1/bundles` of `bytes` with `key`.
pub fn post_bundle(server: &Server, key: &str, bytes: &[u8]) -> Reply {
    reply(
        agent()
            .post(format!("{}/api/v1/bundles", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/gzip")
            .send(bytes),
    )
}
