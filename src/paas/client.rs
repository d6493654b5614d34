//! A small blocking client of the PaaS API, for `shibafu app`: JSON requests, the deploy form
//! (multipart, built here: one file and a few text fields), and a streamed body for logs.

use std::io::Write;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Hyper};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The API at one base URL (`http://127.0.0.1:8080`), with the token for other hosts.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: Hyper<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

/// One field of the deploy form.
pub enum Part {
    /// `name=value`.
    Text(String, String),
    /// `name=@file` (its bytes, and the file name sent).
    File(String, String, Vec<u8>),
}

impl Client {
    /// A client of the API at `base`.
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = Hyper::builder(TokioExecutor::new()).build(HttpConnector::new());
        Ok(Client { rt, http, base: base.trim_end_matches('/').to_string(), token })
    }

    fn request(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        Ok(req.body(Full::new(Bytes::from(body)))?)
    }

    /// Sends a request; the status and the body read as JSON (an error's `error` explained).
    pub fn call(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> anyhow::Result<(StatusCode, Value)> {
        let req = self.request(method, path, content_type, body)?;
        let base = self.base.clone();
        self.rt.block_on(async {
            let resp = self.http.request(req).await.map_err(|e| anyhow::anyhow!("the PaaS API at {base}: {e} (is `shibafu paas serve` running?)"))?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Ok((status, value))
        })
    }

    /// `call`, with any status but 2xx an error that says the API's reason.
    pub fn json(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, content_type, body)?;
        if status.is_success() {
            return Ok(value);
        }
        let field = value.get("field").and_then(Value::as_str).map(|f| format!("{f}: ")).unwrap_or_default();
        let error = value.get("error").and_then(Value::as_str).map_or_else(|| value.to_string(), str::to_string);
        anyhow::bail!("{status}: {field}{error}")
    }

    /// A GET as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(Method::GET, path, None, Vec::new())
    }

    /// Posts the multipart form made of `parts`.
    pub fn post_form(&self, path: &str, parts: &[Part]) -> anyhow::Result<Value> {
        let boundary = format!("shibafu-{:016x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
        self.json(Method::POST, path, Some(&format!("multipart/form-data; boundary={boundary}")), form_body(&boundary, parts))
    }

    /// Streams a GET's body to `out` as it comes.
    pub fn stream(&self, path: &str, out: &mut impl Write) -> anyhow::Result<()> {
        let req = self.request(Method::GET, path, None, Vec::new())?;
        self.rt.block_on(async {
            let resp = self.http.request(req).await?;
            if !resp.status().is_success() {
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                anyhow::bail!("{status}: {}", value.get("error").and_then(Value::as_str).unwrap_or_default());
            }
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    out.write_all(&data)?;
                    out.flush()?;
                }
            }
            Ok(())
        })
    }
}

/// The bytes of a multipart form.
fn form_body(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            Part::File(name, file, bytes) => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_has_each_part_between_boundaries() {
        let body = form_body("B", &[Part::Text("app_name".into(), "web".into()), Part::File("code".into(), "app.tar.gz".into(), b"\x1f\x8b".to_vec())]);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("--B\r\nContent-Disposition: form-data; name=\"app_name\"\r\n\r\nweb\r\n--B\r\n"));
        assert!(text.contains("name=\"code\"; filename=\"app.tar.gz\""));
        assert!(text.ends_with("\r\n--B--\r\n"));
    }
}
