//! The object store the test servers use: by default the file store under each server's
//! `--data`; with `TIDELOG_TEST_STORE=s3`, a prefix (one per data folder) of a bucket in a real
//! S3-protocol server (moto's, from `target/pyenv`), started once per test binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::Digest;

/// The bucket every test of a binary shares, each data folder under its own prefix.
pub const BUCKET: &str = "tidelog-test";

/// True when the servers of this run use S3.
pub fn is_s3() -> bool {
    std::env::var("TIDELOG_TEST_STORE").is_ok_and(|v| v == "s3")
}

/// A moto S3 server on 127.0.0.1; it exits when the test binary does (its stdin closes).
pub struct Moto {
    _child: Child,
    pub endpoint: String,
}

/// The Python of the project's venv, where scripts/setup installs moto.
fn python() -> std::path::PathBuf {
    std::env::var_os("TIDELOG_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
        Into::into,
    )
}

impl Moto {
    /// Starts a fresh moto server with bucket [`BUCKET`] on a free port.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // moto serves until its stdin reaches EOF, which is when this process exits.
        let script = "import os, sys, threading\n\
            from moto.server import main\n\
            threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
            main(['-H', '127.0.0.1', '-p', sys.argv[1]])\n";
        let child = Command::new(python())
            .args(["-c", script, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (scripts/setup installs it into target/pyenv)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let agent = super::agent();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let made = agent.put(format!("{endpoint}/{BUCKET}")).send_empty();
            if made.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "moto never came up on {endpoint}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            _child: child,
            endpoint,
        }
    }

    /// The variables that point a `tidelog serve` at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

/// The moto server of this test binary, started at first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// The key prefix of data folder `data` in [`BUCKET`]: the same folder, the same store.
fn prefix(data: &Path) -> String {
    let path = std::path::absolute(data).expect("absolute path");
    let hash = sha2::Sha256::digest(path.display().to_string().as_bytes());
    format!("t{}", &format!("{hash:x}")[..16])
}

/// `--store` and the environment for a server over data folder `data`: nothing for the
/// default file store.
pub fn server_args(data: &Path) -> (Vec<String>, Vec<(&'static str, String)>) {
    if !is_s3() {
        return (Vec::new(), Vec::new());
    }
    let url = format!("s3://{BUCKET}/{}", prefix(data));
    (vec!["--store".into(), url], moto().env())
}

/// The store of data folder `data` as its server sees it, for tests that stage or inspect
/// objects directly.
pub fn objects(data: &Path) -> Arc<dyn ObjectStore> {
    if !is_s3() {
        let dir = data.join("store");
        std::fs::create_dir_all(&dir).expect("store folder");
        return Arc::new(LocalFileSystem::new_with_prefix(dir).expect("file store"));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bucket = AmazonS3Builder::new()
        .with_endpoint(&moto().endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_bucket_name(BUCKET)
        .build()
        .expect("S3 client");
    Arc::new(PrefixStore::new(bucket, prefix(data)))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Object `key` of data folder `data`, if there is one.
pub fn get(data: &Path, key: &str) -> Option<Vec<u8>> {
    let store = objects(data);
    block_on(async {
        match store.get(&Key::from(key)).await {
            Ok(got) => Some(got.bytes().await.expect("object bytes").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {key}: {e}"),
        }
    })
}

/// Writes object `key` of data folder `data`.
pub fn put(data: &Path, key: &str, bytes: &[u8]) {
    let store = objects(data);
    block_on(store.put(&Key::from(key), PutPayload::from(bytes.to_vec()))).expect("put");
}

/// The keys under `prefix` in the store of data folder `data`.
pub fn list(data: &Path, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    let store = objects(data);
    let under = Key::from(prefix);
    let metas: Vec<_> = block_on(store.list(Some(&under)).try_collect()).expect("list");
    metas.into_iter().map(|m| m.location.to_string()).collect()
}

/// Simulates a replica that received upload `id` (created through the API) in full as
/// `bytes`, then died: its ingest had begun when `started`. The database is the one the test
/// servers over `data` use.
pub fn stage_received(data: &Path, id: &str, bytes: &[u8], started: bool) {
    let key = format!("uploads/{id}/{:020}-dead", 0);
    put(data, &key, bytes);
    let db = super::database_url(data);
    let len = i64::try_from(bytes.len()).expect("length");
    block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.expect("database");
        sqlx::query("INSERT INTO upload_parts (upload, start, size, name) VALUES ($1, 0, $2, $3)")
            .bind(id)
            .bind(len)
            .bind(&key)
            .execute(&pool)
            .await
            .expect("part row");
        sqlx::query("UPDATE uploads SET received = $1, holder = 'dead', started = $2 WHERE id = $3")
            .bind(len)
            .bind(started.then_some(1_i64))
            .bind(id)
            .execute(&pool)
            .await
            .expect("upload row");
        pool.close().await;
    });
}
