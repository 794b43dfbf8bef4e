//! The sync engine's [`Transport`] over blocking HTTP (`ureq`), with connect and idle
//! timeouts so a sync never hangs. Only the wire is here: the requests and what their
//! answers mean are the core's (`core/tus.rs`).

use std::time::Duration;

use crate::core::sync::{Transport, TransportError};
use crate::core::transport::{Method, Request, Response, Server};
use crate::core::tus;

/// An HTTP client bound to one server and key.
pub struct HttpTransport {
    agent: ureq::Agent,
    server: Server,
}

/// Why no answer came, in plain words.
fn why(e: ureq::Error) -> String {
    match &e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        other => other.to_string(),
    }
}

/// A [`Request`] that owns its body, to travel to the thread that sends it.
struct Job {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    read: &'static [&'static str],
}

impl Job {
    fn with_headers<B>(&self, mut rb: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        for (k, v) in &self.headers {
            rb = rb.header(*k, v);
        }
        rb
    }

    /// Puts the request on the wire: the status, the headers it reads, the body.
    fn run(&self, agent: &ureq::Agent) -> Result<Response, String> {
        let url = self.url.as_str();
        let sent = match self.method {
            Method::Get => self.with_headers(agent.get(url)).call(),
            Method::Head => self.with_headers(agent.head(url)).call(),
            Method::Post => self.with_headers(agent.post(url)).send(&self.body[..]),
            Method::Patch => self.with_headers(agent.patch(url)).send(&self.body[..]),
        };
        let mut resp = sent.map_err(why)?;
        let headers = self
            .read
            .iter()
            .filter_map(|&name| {
                let v = resp.headers().get(name)?.to_str().ok()?;
                Some((name, v.to_owned()))
            })
            .collect();
        let body = resp.body_mut().read_to_vec().map_err(why)?;
        Ok(Response {
            status: resp.status().as_u16(),
            headers,
            body,
        })
    }
}

impl HttpTransport {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) authenticating with `api_key`.
    pub fn new(base: &str, api_key: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build()
            .into();
        HttpTransport {
            agent,
            server: Server::new(base, api_key),
        }
    }

    /// The account the key belongs to (`GET /api/v1/whoami`).
    pub fn whoami(&mut self) -> Result<String, TransportError> {
        pollster::block_on(tus::whoami(self))
    }
}

impl Transport for HttpTransport {
    fn server(&self) -> &Server {
        &self.server
    }

    /// The request goes out on a thread of its own, so the sync engine builds the next bundle
    /// while this one is on the wire and the server stores it.
    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String> {
        let job = Job {
            method: req.method,
            url: req.url.clone(),
            headers: req.headers.clone(),
            body: req.body.to_vec(),
            read: req.read,
        };
        let agent = self.agent.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("tidelog-http".into())
            .spawn(move || {
                // The receiver is gone only when the sync itself was dropped.
                let _ = tx.send(job.run(&agent));
            })
            .map_err(|e| format!("could not start a thread for the request: {e}"))?;
        rx.await
            .map_err(|_| "the request's thread ended without an answer".to_owned())?
    }

    async fn sleep(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
