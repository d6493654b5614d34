//! Image references: `NAME[:TAG]`, with names as the OCI distribution spec allows them.

/// A parsed `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Repository name, possibly with a registry host (`localhost:5000/apps/web`).
    pub name: String,
    /// Tag (`latest` when none was given).
    pub tag: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// Parses and checks `NAME[:TAG]`.
pub fn parse(text: &str) -> Result<Reference, String> {
    let (name, tag) = match text.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (text, "latest"),
    };
    check_tag(tag)?;
    check_name(name)?;
    Ok(Reference { name: name.to_string(), tag: tag.to_string() })
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok { Ok(()) } else { Err(format!("invalid tag {tag:?}: use up to 128 of [A-Za-z0-9_.-], not starting with . or -")) }
}

/// A name: path components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, optionally after a
/// registry host (`host[:port]/`).
pub fn check_name(name: &str) -> Result<(), String> {
    let err = || Err(format!("invalid image name {name:?}: use lowercase path components of [a-z0-9] joined by . _ __ or -, like library/busybox"));
    if name.is_empty() || name.len() > 255 {
        return err();
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(':') || parts[0].contains('.') || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host.split_once(':').unwrap_or((host, "0"));
        let host_ok = !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) && port.parse::<u16>().is_ok();
        if !host_ok {
            return err();
        }
    }
    if parts.iter().all(|p| component_ok(p)) { Ok(()) } else { err() }
}

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn component_ok(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_follow_the_distribution_grammar() {
        assert_eq!(parse("busybox").unwrap().to_string(), "busybox:latest");
        assert_eq!(parse("localhost:5000/apps/web:v1").unwrap(), Reference { name: "localhost:5000/apps/web".into(), tag: "v1".into() });
        assert_eq!(parse("localhost:5000/apps/web").unwrap().tag, "latest");
        assert!(parse("my_app__x-y.z").is_ok());
        for bad in ["Busybox", "a/../b", "", "a:", "a:.x", "-a", "a//b", "a..b", &"x".repeat(300)] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
