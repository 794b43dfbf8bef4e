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

fn with_headers<B>(mut rb: ureq::RequestBuilder<B>, req: &Request<'_>) -> ureq::RequestBuilder<B> {
    for (k, v) in &req.headers {
        rb = rb.header(*k, v);
    }
    rb
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

    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String> {
        let url = req.url.as_str();
        let sent = match req.method {
            Method::Get => with_headers(self.agent.get(url), req).call(),
            Method::Head => with_headers(self.agent.head(url), req).call(),
            Method::Post => with_headers(self.agent.post(url), req).send(req.body),
            Method::Patch => with_headers(self.agent.patch(url), req).send(req.body),
        };
        let mut resp = sent.map_err(why)?;
        let headers = req
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

    async fn sleep(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
