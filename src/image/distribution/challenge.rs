//! The bearer challenge of a registry's 401:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`.

/// A parsed bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The token service's URL.
    pub realm: String,
    /// `service=`, if given.
    pub service: Option<String>,
    /// `scope=`, if given.
    pub scope: Option<String>,
}

impl Challenge {
    /// Reads a `WWW-Authenticate` value; None unless it is a bearer challenge with a realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        let rest = header.trim().strip_prefix("Bearer ").or_else(|| header.trim().strip_prefix("bearer "))?;
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        for (key, value) in params(rest) {
            match key.as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                "scope" => scope = Some(value),
                _ => {}
            }
        }
        Some(Challenge { realm: realm?, service, scope })
    }
}

/// `key="value", key=value` pairs (a quoted value may hold commas).
fn params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_lowercase();
        if key.is_empty() {
            return out;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string()
        };
        out.push((key, value));
    }
}

/// The token request for a challenge: `REALM?service=...&scope=...`.
pub fn token_url(c: &Challenge) -> String {
    let mut query = Vec::new();
    if let Some(s) = &c.service {
        query.push(format!("service={}", encode(s)));
    }
    if let Some(s) = &c.scope {
        query.push(format!("scope={}", encode(s)));
    }
    let sep = if c.realm.contains('?') { '&' } else { '?' };
    if query.is_empty() { c.realm.clone() } else { format!("{}{sep}{}", c.realm, query.join("&")) }
}

/// Percent-encodes what a query value may not hold as it is.
fn encode(value: &str) -> String {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~:/,".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hubs_challenge_is_read() {
        let c = Challenge::parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#).unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/busybox:pull,push"));
        assert_eq!(token_url(&c), "https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/busybox:pull,push");
        assert!(Challenge::parse(r#"Basic realm="x""#).is_none());
        assert!(Challenge::parse("Bearer service=x").is_none(), "a realm is needed");
        let spaced = Challenge::parse(r#"Bearer realm="http://a/t?x=1", service=reg"#).unwrap();
        assert_eq!(token_url(&spaced), "http://a/t?x=1&service=reg");
    }
}
