//! The deploy form (`multipart/form-data`), read as it streams: the code archive goes to a
//! temp file under `paas/uploads/` and is counted against the upload limit as it arrives;
//! every other field is small and capped. Each check names its field.

use std::collections::BTreeMap;
use std::path::Path;

use axum::extract::multipart::{Field, Multipart};
use axum::http::StatusCode;
use tokio::io::AsyncWriteExt;

use super::detect::Runtime;
use super::PaasError;

/// The largest value of a field other than `code`.
const MAX_FIELD: usize = 64 << 10;

/// A deploy request, checked.
#[derive(Debug)]
pub struct DeployForm {
    /// `app_name`.
    pub app: String,
    /// `runtime`, as given.
    pub runtime_text: String,
    /// `runtime`, read.
    pub runtime: Runtime,
    /// `code`: the archive as uploaded (removed when dropped).
    pub code: tempfile::TempPath,
    /// `env[KEY]=VALUE` fields.
    pub env: BTreeMap<String, String>,
    /// `secret[KEY]=VALUE` fields (plain: sealed before they are stored).
    pub secrets: BTreeMap<String, String>,
    /// `port`: where the app listens (its `PORT`).
    pub port: u16,
    /// `health_path`.
    pub health_path: String,
    /// `command`: run this instead of what the code suggests.
    pub command: Option<String>,
}

/// Reads the form; `uploads` takes the archive, at most `max_upload` bytes of it.
pub async fn read(mut form: Multipart, uploads: &Path, max_upload: u64) -> Result<DeployForm, PaasError> {
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    let mut env = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut code = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(PaasError::field("form", format!("the request body is not a complete multipart form: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "code" {
            if code.is_some() {
                return Err(PaasError::field("code", "given twice"));
            }
            code = Some(save(field, uploads, max_upload).await?);
        } else if let Some(key) = name.strip_prefix("env[").and_then(|k| k.strip_suffix(']')) {
            check_key(&name, key)?;
            let value = small(field, &name).await?;
            if env.insert(key.to_string(), value).is_some() || secrets.contains_key(key) {
                return Err(PaasError::field(&name, "given twice (as env or secret)"));
            }
        } else if let Some(key) = name.strip_prefix("secret[").and_then(|k| k.strip_suffix(']')) {
            check_key(&name, key)?;
            let value = small(field, &name).await?;
            if secrets.insert(key.to_string(), value).is_some() || env.contains_key(key) {
                return Err(PaasError::field(&name, "given twice (as env or secret)"));
            }
        } else if ["app_name", "runtime", "port", "health_path", "command"].contains(&name.as_str()) {
            let value = small(field, &name).await?;
            if text.insert(name.clone(), value).is_some() {
                return Err(PaasError::field(&name, "given twice"));
            }
        } else {
            return Err(PaasError::field(&name, "unknown field: the form takes app_name, runtime, code, env[KEY], secret[KEY], port, health_path and command"));
        }
    }
    let app = text.remove("app_name").ok_or_else(|| PaasError::field("app_name", "missing: name the app (a DNS label such as myapp)"))?;
    check_app_name(&app)?;
    let runtime_text = text.remove("runtime").ok_or_else(|| PaasError::field("runtime", "missing: node:18, python:3.11, static, or an image reference"))?;
    let runtime = Runtime::parse(&runtime_text).map_err(|e| PaasError::field("runtime", e))?;
    let code = code.ok_or_else(|| PaasError::field("code", "missing: attach the app as a tar or tar.gz (-F code=@app.tar.gz)"))?;
    let port = match text.remove("port") {
        None => super::DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| PaasError::field("port", format!("{p:?} is not a port (1-65535)")))?,
    };
    let health_path = text.remove("health_path").unwrap_or_else(|| "/".into());
    check_health_path(&health_path)?;
    let command = text.remove("command");
    if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(PaasError::field("command", "empty: leave the field out to run what the code suggests"));
    }
    Ok(DeployForm { app, runtime_text, runtime, code, env, secrets, port, health_path, command })
}

/// Streams the archive to a temp file, counting; past the limit it is a 413 and the file goes.
pub(crate) async fn save(mut field: Field<'_>, uploads: &Path, max_upload: u64) -> Result<tempfile::TempPath, PaasError> {
    let temp = tempfile::Builder::new().prefix("code-").tempfile_in(uploads).map_err(PaasError::internal)?;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut size = 0u64;
    loop {
        let chunk = match field.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(PaasError::field("code", format!("the upload stopped before its end: {e}"))),
        };
        size += chunk.len() as u64;
        if size > max_upload {
            return Err(PaasError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                field: Some("code".into()),
                message: format!("the archive is over the {} limit (paas serve --max-upload)", crate::storage::limits::human(max_upload)),
            });
        }
        file.write_all(&chunk).await.map_err(PaasError::internal)?;
    }
    if size == 0 {
        return Err(PaasError::field("code", "empty: attach the app as a tar or tar.gz"));
    }
    file.flush().await.map_err(PaasError::internal)?;
    Ok(path)
}

/// The most of a config value (`env[KEY]`, `secret[KEY]`, a PUT's body).
pub const MAX_VALUE: usize = MAX_FIELD;

/// A small field's value as UTF-8, read by chunks up to `MAX_FIELD`.
pub(crate) async fn small(mut field: Field<'_>, name: &str) -> Result<String, PaasError> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_FIELD {
                    return Err(PaasError::field(name, format!("over {} KiB", MAX_FIELD >> 10)));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(PaasError::field(name, format!("the request body stopped before its end: {e}"))),
        }
    }
    String::from_utf8(bytes).map_err(|_| PaasError::field(name, "not UTF-8 text"))
}

/// An app name: a DNS label of lowercase letters, digits and inner dashes, at most 40 long
/// (its containers are named `APP-dep-N`).
pub fn check_app_name(name: &str) -> Result<(), PaasError> {
    let ok = (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PaasError::field("app_name", format!("{name:?} is not an app name: 1-40 lowercase letters, digits and dashes, not starting or ending with a dash (it becomes NAME.platform.local)")))
    }
}

/// An environment key (of `field`, an env or a secret): a shell variable name, and not
/// `PORT` (the platform sets it).
pub fn check_key(field: &str, key: &str) -> Result<(), PaasError> {
    let ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && key.len() <= 256;
    if !ok {
        return Err(PaasError::field(field, format!("{key:?} is not a variable name: letters, digits and _, not starting with a digit")));
    }
    if key == "PORT" {
        return Err(PaasError::field(field, "PORT is the platform's: give the port field instead"));
    }
    Ok(())
}

fn check_health_path(path: &str) -> Result<(), PaasError> {
    if path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(PaasError::field("health_path", format!("{path:?} is not a path: it starts with / and holds no spaces or control characters")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_short_dns_labels() {
        for good in ["a", "myapp", "my-app-2", &"x".repeat(40)] {
            assert!(check_app_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Bad_Name", "-a", "a-", "a.b", &"x".repeat(41), "ä"] {
            assert_eq!(check_app_name(bad).unwrap_err().field.as_deref(), Some("app_name"), "{bad}");
        }
    }

    #[test]
    fn env_keys_are_variable_names_and_port_is_the_platforms() {
        assert!(check_key("env[DATABASE_URL]", "DATABASE_URL").is_ok());
        assert!(check_key("secret[_x1]", "_x1").is_ok());
        for bad in ["1X", "A-B", "", "A B"] {
            assert_eq!(check_key("env[x]", bad).unwrap_err().field.as_deref(), Some("env[x]"), "{bad}");
        }
        assert!(check_key("env[PORT]", "PORT").unwrap_err().message.contains("port field"));
    }

    #[test]
    fn health_paths_start_with_a_slash() {
        assert!(check_health_path("/healthz?x=1").is_ok());
        assert!(check_health_path("healthz").is_err());
        assert!(check_health_path("/a b").is_err());
    }
}
