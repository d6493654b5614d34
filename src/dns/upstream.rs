//! The host's upstream name servers, from /etc/resolv.conf, read again when the file changes
//! (a new DHCP lease, the lab's pretend internet coming up). The server runs on the host, so a
//! loopback server such as systemd-resolved's 127.0.0.53 is as good as any.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// At most this many servers are tried, as the C library does (MAXNS).
pub const MAX_SERVERS: usize = 3;

/// The servers of one resolv.conf, kept in step with the file.
pub struct Upstreams {
    path: PathBuf,
    seen: Option<(i64, i64, u64, u64)>,
    servers: Vec<SocketAddr>,
}

impl Upstreams {
    /// The servers named by the file at `path` (read on first use).
    pub fn new(path: impl Into<PathBuf>) -> Upstreams {
        Upstreams { path: path.into(), seen: None, servers: Vec::new() }
    }

    /// The servers now: the file is read again when its inode, size or mtime changed. A missing
    /// file means no servers.
    pub fn current(&mut self) -> &[SocketAddr] {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.ino(), m.len()));
        if stamp != self.seen || stamp.is_none() {
            self.servers = parse(&std::fs::read_to_string(&self.path).unwrap_or_default());
            self.seen = stamp;
        }
        &self.servers
    }
}

/// The `nameserver` lines of a resolv.conf, the first three, as port-53 addresses (an IPv6
/// scope such as `%eth0` is dropped: a link-local server is not reachable that way).
pub fn parse(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|server| server.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_SERVERS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_three_at_most() {
        let text = "# comment\nsearch lab\nnameserver 127.0.0.53\nnameserver  ::1\nnameserver bogus\nnameserver fe80::1%eth0\nnameserver 198.51.100.1\n";
        let got: Vec<String> = parse(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(got, ["127.0.0.53:53", "[::1]:53", "[fe80::1]:53"]);
        assert!(parse("options edns0\n").is_empty());
    }

    #[test]
    fn the_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        let mut up = Upstreams::new(&path);
        assert!(up.current().is_empty(), "no file, no servers");
        std::fs::write(&path, "nameserver 198.51.100.1\n").unwrap();
        assert_eq!(up.current(), ["198.51.100.1:53".parse().unwrap()]);
        std::fs::write(&path, "nameserver 198.51.100.2\nnameserver 198.51.100.3\n").unwrap();
        assert_eq!(up.current().len(), 2, "a longer file is a changed file, whatever the clock");
    }
}
