//! Errors as the distribution spec words them: a status and `{"errors":[{code, message}]}`.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One failed request.
#[derive(Debug)]
pub struct RegistryError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The spec's code (`BLOB_UNKNOWN`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Extra headers (`Range`, `Location` for a 416).
    pub headers: Vec<(HeaderName, String)>,
}

/// Result of registry handlers.
pub type Result<T> = std::result::Result<T, RegistryError>;

impl RegistryError {
    /// An error with a status, a spec code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> RegistryError {
        RegistryError { status, code, message: message.into(), headers: Vec::new() }
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: HeaderName, value: String) -> RegistryError {
        self.headers.push((name, value));
        self
    }

    /// 404 BLOB_UNKNOWN.
    pub fn blob_unknown(digest: &str) -> RegistryError {
        RegistryError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("blob unknown to registry: {digest}"))
    }

    /// 404 MANIFEST_UNKNOWN.
    pub fn manifest_unknown(reference: &str) -> RegistryError {
        RegistryError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest unknown to registry: {reference}"))
    }

    /// 404 BLOB_UPLOAD_UNKNOWN.
    pub fn upload_unknown(id: &str) -> RegistryError {
        RegistryError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", format!("blob upload unknown to registry: {id}"))
    }

    /// 400 DIGEST_INVALID.
    pub fn digest_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    /// 400 MANIFEST_INVALID.
    pub fn manifest_invalid(message: impl Into<String>) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    /// 400 NAME_INVALID.
    pub fn name_invalid(name: &str) -> RegistryError {
        RegistryError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("invalid repository name {name:?}: lowercase path components of letters and digits, separated by . _ __ or -"))
    }

    /// 500, for what the client cannot help (a full disk, a broken database).
    pub fn internal(what: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", what.to_string())
    }
}

impl From<crate::state::StateError> for RegistryError {
    fn from(e: crate::state::StateError) -> Self {
        RegistryError::internal(e)
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::internal(e)
    }
}

/// The spec's error body: `{"errors":[{"code","message","detail"}]}`.
pub fn json_body(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]}).to_string()
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, [("content-type", "application/json")], json_body(self.code, &self.message)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}
