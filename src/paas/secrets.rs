//! Secrets at rest: each value sealed with ChaCha20-Poly1305 under a key made at the service's
//! first start (`<root>/paas/secret.key`, 32 random bytes, mode 0600). A sealed value is
//! base64 of a random 96-bit nonce and the ciphertext; the app and key name are its associated
//! data, so a value copied onto another name or app does not open.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Seals and opens secret values.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Writes `contents()` to a new file at `path`, mode 0600, unless the file exists (it is never
/// replaced: a key or token made once stays).
fn make_once(path: &Path, contents: impl FnOnce() -> std::io::Result<Vec<u8>>) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(&contents()?)?;
            f.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Sealer {
    /// The sealer of the key file at `path`, made (0600, never replaced) when missing.
    pub fn open(path: &Path) -> std::io::Result<Sealer> {
        make_once(path, || Ok(random::<32>()?.to_vec()))?;
        let bytes = std::fs::read(path)?;
        if bytes.len() != 32 {
            return Err(std::io::Error::other(format!("{} is not a 32-byte key ({} bytes): restore it from a backup; without it the secrets cannot be read", path.display(), bytes.len())));
        }
        Ok(Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }

    /// Seals `value` for `app`'s secret `name`.
    pub fn seal(&self, app: &str, name: &str, value: &str) -> std::io::Result<String> {
        let nonce = random::<12>()?;
        let aad = format!("{app}/{name}");
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: aad.as_bytes() }).map_err(|_| std::io::Error::other("seal a secret"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode([&nonce[..], &sealed].concat()))
    }

    /// Opens what `seal` made for the same app and name.
    pub fn unseal(&self, app: &str, name: &str, sealed: &str) -> Result<String, String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| format!("secret {name} is not sealed text"))?;
        if bytes.len() < 12 + 16 {
            return Err(format!("secret {name} is too short to be sealed"));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let aad = format!("{app}/{name}");
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| format!("secret {name} does not open with this service's key (paas/secret.key was replaced?)"))?;
        String::from_utf8(plain).map_err(|_| format!("secret {name} is not UTF-8"))
    }
}

/// 32 random bytes as 64 hex digits: the API token, a console session, a form's CSRF token.
pub fn random_hex() -> std::io::Result<String> {
    Ok(random::<32>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, compared in constant time (for their length).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API token in the file at `path`, made (64 hex digits, 0600, never replaced) when missing.
pub fn token(path: &Path) -> std::io::Result<String> {
    make_once(path, || Ok(random_hex()?.into_bytes()))?;
    let text = std::fs::read_to_string(path)?.trim().to_string();
    if text.len() < 32 {
        return Err(std::io::Error::other(format!("{} holds no token of at least 32 characters", path.display())));
    }
    Ok(text)
}

/// Whether `headers` carry `Authorization: Bearer TOKEN` with this token (compared in constant
/// time).
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let Some(given) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    same(given.trim(), token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sealed_value_opens_only_under_its_own_name_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let sealer = Sealer::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = sealer.seal("web", "API_KEY", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, sealer.seal("web", "API_KEY", "hunter2").unwrap(), "a fresh nonce each time");
        assert_eq!(Sealer::open(&path).unwrap().unseal("web", "API_KEY", &sealed).unwrap(), "hunter2", "the key file is kept");
        assert!(sealer.unseal("web", "OTHER", &sealed).is_err());
        assert!(sealer.unseal("api", "API_KEY", &sealed).is_err());
        let other = Sealer::open(&dir.path().join("other.key")).unwrap();
        assert!(other.unseal("web", "API_KEY", &sealed).unwrap_err().contains("does not open"));
        std::fs::write(&path, b"short").unwrap();
        assert!(Sealer::open(&path).is_err());
    }

    #[test]
    fn the_token_is_made_once_and_only_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        let t = token(&path).unwrap();
        assert_eq!((t.len(), token(&path).unwrap() == t), (64, true));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut headers = axum::http::HeaderMap::new();
        assert!(!bearer_matches(&headers, &t));
        headers.insert("authorization", format!("Bearer {t}").parse().unwrap());
        assert!(bearer_matches(&headers, &t));
        headers.insert("authorization", format!("Bearer {}x", &t[1..]).parse().unwrap());
        assert!(!bearer_matches(&headers, &t));
    }
}
