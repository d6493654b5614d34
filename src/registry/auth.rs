//! Basic authentication from an htpasswd file (bcrypt entries, `htpasswd -B`). A bcrypt check
//! costs milliseconds on purpose, so credentials that passed once are remembered (as a
//! digest) and later requests with them cost a hash.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Users and their bcrypt hashes.
pub struct Htpasswd {
    users: HashMap<String, String>,
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Reads `USER:HASH` lines; only bcrypt hashes are taken.
    pub fn load(path: &Path) -> anyhow::Result<Htpasswd> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
            let (user, hash) = line.trim().split_once(':').ok_or_else(|| anyhow::anyhow!("{}:{}: not USER:HASH", path.display(), n + 1))?;
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                anyhow::bail!("{}:{}: user {user} has no bcrypt hash; make the file with `htpasswd -B`", path.display(), n + 1);
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            anyhow::bail!("{} names no users", path.display());
        }
        Ok(Htpasswd { users, passed: Mutex::new(HashSet::new()) })
    }

    /// Whether an `Authorization` header holds valid credentials.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let key: [u8; 32] = Sha256::digest(&decoded).into();
        if self.passed.lock().expect("never poisoned").contains(&key) {
            return true;
        }
        let text = String::from_utf8_lossy(&decoded);
        let Some((user, password)) = text.split_once(':') else { return false };
        let ok = self.users.get(user).is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false));
        if ok {
            self.passed.lock().expect("never poisoned").insert(key);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_entries_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, format!("alice:{}\n", bcrypt::hash("secret", 4).unwrap())).unwrap();
        let auth = Htpasswd::load(&file).unwrap();
        let basic = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(auth.allows(Some(&basic("alice:secret"))));
        assert!(auth.allows(Some(&basic("alice:secret"))), "remembered");
        assert!(!auth.allows(Some(&basic("alice:wrong"))));
        assert!(!auth.allows(Some(&basic("bob:secret"))));
        assert!(!auth.allows(None));
        std::fs::write(&file, "alice:{SHA}abc\n").unwrap();
        assert!(Htpasswd::load(&file).is_err(), "only bcrypt");
    }
}
