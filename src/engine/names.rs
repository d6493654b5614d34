//! Container names and IDs.

use std::io::Read;

/// Checks a container name: 1-63 of `[A-Za-z0-9_.-]`, starting with a letter or digit (the
/// rule networks follow too).
pub fn check_name(name: &str) -> Result<(), String> {
    crate::network::check_name("container name", name, 63).map_err(|e| e.to_string())
}

/// A new container ID: 64 random hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("/dev/urandom is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A default name: the image's last path component and six digits of the ID.
pub fn default_name(image: &str, id: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base: String = base.split(':').next().unwrap_or(base).chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect();
    let base = if base.is_empty() { "c".to_string() } else { base };
    format!("{base}-{}", &id[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("container1").is_ok());
        assert!(check_name("web_1.v-2").is_ok());
        for bad in ["", "../x", "-x", ".x", "a/b", "a b", &"x".repeat(64), &"y".repeat(300)] {
            let err = check_name(bad).unwrap_err();
            assert!(err.starts_with("invalid container name"), "{err}");
        }
    }

    #[test]
    fn ids_are_64_hex_and_default_names_follow_the_image() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
        assert_eq!(default_name("localhost:5000/apps/web:v1", "abcdef123"), "web-abcdef");
        assert!(check_name(&default_name("busybox", &id)).is_ok());
    }
}
