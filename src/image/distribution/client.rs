//! A small blocking registry client over hyper: HTTPS (the system's roots, and SSL_CERT_FILE),
//! plain HTTP for loopback registries that do not speak TLS and for those named in
//! `SHIBAFU_INSECURE_REGISTRIES`; basic authentication from
//! `SHIBAFU_REGISTRY_AUTH=HOST=USER:PASSWORD[,...]` (sent to that host only); redirects of reads
//! followed (without credentials elsewhere); and the bearer token flow (a 401 names the token
//! service; the token is fetched and the request sent again).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::super::progress::Progress;
use super::super::{ImageError, Result};
use super::challenge::{token_url, Challenge};

type Body = BoxBody<Bytes, std::io::Error>;

/// What a request carries; rebuilt for a second try after a token was fetched.
pub enum Payload<'a> {
    /// Nothing.
    Empty,
    /// Bytes in memory (manifests, configs).
    Bytes(&'a [u8]),
    /// A file, streamed (layers), with its progress report.
    File(&'a Path, Arc<Mutex<Progress>>),
}

/// An answer: status, `Location`, the challenge of a 401, the body.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `Location`, if any.
    pub location: Option<String>,
    /// The body.
    pub body: Bytes,
    challenge: Option<String>,
}

/// A client for one registry host.
pub struct Registry {
    rt: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    host: String,
    base: String,
    token: Mutex<Option<String>>,
}

/// A failure talking to a registry.
pub fn failed(what: impl std::fmt::Display) -> ImageError {
    ImageError::Registry(what.to_string())
}

/// The most an answer read whole into memory (a manifest, a config, a token) may have; a
/// manifest may have 4 MiB (the distribution spec's usual limit), configs stay far below.
const MAX_ANSWER: usize = 16 << 20;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl Registry {
    /// A client for the registry at `host` (`localhost:5000`, `registry-1.docker.io`).
    pub fn new(host: &str) -> Result<Registry> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config()?).https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let mut reg = Registry { rt, client, host: host.into(), base: format!("https://{host}"), token: Mutex::new(None) };
        if insecure(host) || (is_loopback(host) && !reg.speaks_tls()) {
            reg.base = format!("http://{host}");
        }
        Ok(reg)
    }

    /// Whether the host answers HTTPS (a loopback registry may speak plain HTTP only). A
    /// certificate that does not verify counts as TLS: the requests then fail saying so.
    fn speaks_tls(&self) -> bool {
        let req = Request::get(format!("{}/v2/", self.base)).body(empty()).expect("a GET builds");
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(5), self.client.request(req)).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => chain(&e).contains("certificate"),
                Err(_) => false,
            }
        })
    }

    /// Sends a request; on a 401 with a bearer challenge, fetches a token and sends it again.
    pub fn call(&self, method: Method, path: &str, content_type: Option<&str>, payload: &Payload) -> Result<Answer> {
        let first = self.send(method.clone(), path, content_type, payload)?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let Some(challenge) = first.challenge.as_deref().and_then(Challenge::parse) else { return Ok(first) };
        self.fetch_token(&challenge)?;
        self.send(method, path, content_type, payload)
    }

    fn send(&self, method: Method, path: &str, content_type: Option<&str>, payload: &Payload) -> Result<Answer> {
        let url = self.url(path);
        let body = match payload {
            Payload::Empty => empty(),
            Payload::Bytes(b) => Full::new(Bytes::copy_from_slice(b)).map_err(|never| match never {}).boxed(),
            Payload::File(file, progress) => self.file_body(file, progress.clone())?,
        };
        let req = self.request(method.clone(), &url, content_type).body(body).map_err(failed)?;
        self.rt.block_on(async {
            let resp = self.client.request(req).await.map_err(|e| failed(format!("{method} {url}: {}", chain(&e))))?;
            // A blob may live elsewhere (Docker Hub sends it to a CDN): follow, for reads only.
            let resp = if matches!(method, Method::GET | Method::HEAD) { self.follow(method.clone(), resp, None).await? } else { resp };
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (status, location, challenge) = (resp.status(), header("location"), header("www-authenticate"));
            // Manifests, configs, tokens and errors: small, so read whole, within a limit.
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
            let body = limited.collect().await.map_err(|e| failed(format!("{method} {url}: {e} (an answer read whole may have {MAX_ANSWER} bytes at most)")))?.to_bytes();
            Ok(Answer { status, location, body, challenge })
        })
    }

    fn file_body(&self, file: &Path, progress: Arc<Mutex<Progress>>) -> Result<Body> {
        let file: PathBuf = file.to_path_buf();
        self.rt.block_on(async move {
            let f = tokio::fs::File::open(&file).await.map_err(|e| failed(format!("read {}: {e}", file.display())))?;
            let frames = tokio_util::io::ReaderStream::with_capacity(f, 256 << 10).map_ok(move |chunk| {
                progress.lock().expect("never poisoned").add(chunk.len() as u64);
                hyper::body::Frame::data(chunk)
            });
            Ok(BodyExt::boxed(http_body_util::StreamBody::new(frames)))
        })
    }

    /// Follows up to five redirects of a read, asking each place for the same `range`.
    /// Credentials go only to the registry itself.
    async fn follow(&self, method: Method, mut resp: hyper::Response<Incoming>, range: Option<&str>) -> Result<hyper::Response<Incoming>> {
        for _ in 0..5 {
            if !resp.status().is_redirection() {
                break;
            }
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(|l| self.url(l)) else { break };
            let req = with_range(self.request(method.clone(), &location, None), range).body(empty()).map_err(failed)?;
            resp = self.client.request(req).await.map_err(|e| failed(format!("{method} {location}: {}", chain(&e))))?;
        }
        Ok(resp)
    }

    /// Whether a URL is on the registry itself (and may carry its credentials).
    fn own(&self, url: &str) -> bool {
        url.starts_with(&format!("{}/", self.base))
    }

    /// This registry's basic credentials, from `SHIBAFU_REGISTRY_AUTH=HOST=USER:PASSWORD[,...]`.
    fn credentials(&self) -> Option<String> {
        use base64::Engine as _;
        let list = std::env::var("SHIBAFU_REGISTRY_AUTH").ok()?;
        let creds = list.split(',').find_map(|entry| entry.trim().split_once('=').filter(|(h, _)| *h == self.host).map(|(_, c)| c.to_string()))?;
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(creds)))
    }

    /// An absolute URL for a path or a Location (which may be absolute already).
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") { path.to_string() } else { format!("{}{path}", self.base) }
    }

    /// A request with what every call carries: Accept, and the token or basic credentials.
    fn request(&self, method: Method, url: &str, content_type: Option<&str>) -> hyper::http::request::Builder {
        let mut req = Request::builder().method(method).uri(url).header("accept", ACCEPT);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if !self.own(url) {
            return req;
        }
        if let Some(token) = self.token.lock().expect("never poisoned").as_ref() {
            req = req.header("authorization", format!("Bearer {token}"));
        } else if let Some(basic) = self.credentials() {
            req = req.header("authorization", basic);
        }
        req
    }

    fn fetch_token(&self, challenge: &Challenge) -> Result<()> {
        self.rt.block_on(self.renew_token(challenge))
    }

    /// Fetches a token from the service a 401's challenge names; later requests carry it.
    async fn renew_token(&self, challenge: &Challenge) -> Result<()> {
        let url = token_url(challenge);
        let mut req = Request::get(&url);
        // The token service may sit elsewhere (auth.docker.io): it gets the credentials only
        // over TLS, or on this machine.
        let safe = url.starts_with("https://") || url.strip_prefix("http://").is_some_and(|rest| is_loopback(rest.split('/').next().unwrap_or("")));
        if let Some(basic) = self.credentials().filter(|_| safe) {
            req = req.header("authorization", basic);
        }
        let req = req.body(empty()).map_err(failed)?;
        let resp = self.client.request(req).await.map_err(|e| failed(format!("token from {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(failed(format!("token from {url}: {}", resp.status())));
        }
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER).collect().await.map_err(|e| failed(format!("token from {url}: {e}")))?.to_bytes();
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|e| failed(format!("token from {url}: {e}")))?;
        let token = parsed.get("token").or_else(|| parsed.get("access_token")).and_then(|t| t.as_str()).ok_or_else(|| failed(format!("{url} gave no token")))?;
        *self.token.lock().expect("never poisoned") = Some(token.to_string());
        Ok(())
    }

    /// Asks for blob `digest` of `repo`, from byte `from` on when given (`Range: bytes=N-`),
    /// following redirects (a blob may be kept on another host) with the same Range. A 401
    /// with a bearer challenge (a token that expired during a long pull) renews the token and
    /// asks once more. The answer's body is left to stream.
    pub async fn get_blob(&self, repo: &str, digest: &str, from: Option<u64>) -> Result<hyper::Response<Incoming>> {
        let resp = self.get_blob_once(repo, digest, from).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).and_then(Challenge::parse);
        let Some(challenge) = challenge else { return Ok(resp) };
        self.renew_token(&challenge).await?;
        self.get_blob_once(repo, digest, from).await
    }

    async fn get_blob_once(&self, repo: &str, digest: &str, from: Option<u64>) -> Result<hyper::Response<Incoming>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let range = from.map(|n| format!("bytes={n}-"));
        let req = with_range(self.request(Method::GET, &url, None), range.as_deref()).body(empty()).map_err(failed)?;
        let resp = self.client.request(req).await.map_err(|e| failed(format!("GET {url}: {}", chain(&e))))?;
        self.follow(Method::GET, resp, range.as_deref()).await
    }

    /// Runs `work` (requests of this client) to its end.
    pub fn block_on<F: std::future::Future>(&self, work: F) -> F::Output {
        self.rt.block_on(work)
    }
}

/// Adds `Range` to a request when there is one.
fn with_range(req: hyper::http::request::Builder, range: Option<&str>) -> hyper::http::request::Builder {
    match range {
        Some(r) => req.header("range", r),
        None => req,
    }
}

/// `sha256:1a2b3c4d5e6f`: enough of a digest to tell blobs apart on screen.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

/// TLS with the system's root certificates (and SSL_CERT_FILE's). A machine with none (the
/// lab VM has no ca-certificates) still talks to plain-HTTP registries; TLS ones then fail
/// on their certificate, saying so.
fn tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// An error with its causes, which say what went wrong (a refused connection, a certificate).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|never| match never {}).boxed()
}

/// `localhost[:port]`, `127.x.x.x[:port]`, `[::1][:port]`.
fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h);
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// Hosts named in `SHIBAFU_INSECURE_REGISTRIES` (commas) are spoken to in plain HTTP.
fn insecure(host: &str) -> bool {
    std::env::var("SHIBAFU_INSECURE_REGISTRIES").is_ok_and(|list| list.split(',').any(|h| h.trim() == host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_known() {
        assert!(is_loopback("localhost:5000") && is_loopback("127.0.0.1:5443") && is_loopback("localhost"));
        assert!(!is_loopback("registry-1.docker.io") && !is_loopback("10.0.0.1:5000"));
    }
}
