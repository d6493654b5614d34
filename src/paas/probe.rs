//! The go-live check: an HTTP GET from the host to the new container, as
//! `curl -H 'Host: APP.DOMAIN' http://ADDR:PORT/PATH` would send it; any 2xx or 3xx passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one attempt may take.
const ATTEMPT: Duration = Duration::from_secs(2);
/// The pause between attempts.
const PAUSE: Duration = Duration::from_millis(100);

/// Asks `addr` for `path` once; the status, or why there is none.
pub fn get(addr: SocketAddr, path: &str, host: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, ATTEMPT).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(ATTEMPT)).and_then(|()| stream.set_write_timeout(Some(ATTEMPT))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: shibafu-paas\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = [0u8; 32];
    let mut got = 0;
    while got < 12 {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("{addr} gave no answer within {} s", ATTEMPT.as_secs()));
            }
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..got]).into_owned();
    let status = line.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5)).and_then(|s| s.parse::<u16>().ok());
    status.ok_or_else(|| format!("{addr} answered {:?}, not HTTP", line.trim_end()))
}

/// Tries `get` until a 2xx or 3xx, the deadline, or `gone()` (the container stopped); the
/// status that passed, or the last failure.
pub fn until_healthy(addr: SocketAddr, path: &str, host: &str, deadline: Duration, gone: impl Fn() -> bool) -> Result<u16, String> {
    let start = Instant::now();
    loop {
        let outcome = get(addr, path, host);
        match outcome {
            Ok(status) if (200..400).contains(&status) => return Ok(status),
            _ if gone() => return Err(format!("the app exited before it answered ({})", describe(&outcome))),
            _ if start.elapsed() >= deadline => return Err(format!("no 2xx or 3xx within {} s: {}", deadline.as_secs(), describe(&outcome))),
            _ => std::thread::sleep(PAUSE),
        }
    }
}

fn describe(outcome: &Result<u16, String>) -> String {
    match outcome {
        Ok(status) => format!("the last answer was {status}"),
        Err(e) => e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn server(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn two_and_three_hundreds_pass_others_are_reported() {
        let ok = server("HTTP/1.1 302 Found\r\n\r\n");
        assert_eq!(until_healthy(ok, "/", "a.platform.local", Duration::from_secs(1), || false), Ok(302));
        let bad = server("HTTP/1.0 500 Oops\r\n\r\n");
        let err = until_healthy(bad, "/", "a", Duration::from_millis(300), || false).unwrap_err();
        assert!(err.contains("the last answer was 500"), "{err}");
        let junk = server("SSH-2.0-x\r\n");
        assert!(get(junk, "/", "a").unwrap_err().contains("not HTTP"));
    }

    #[test]
    fn a_gone_app_ends_the_wait() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = until_healthy(closed, "/", "a", Duration::from_secs(30), || true).unwrap_err();
        assert!(err.starts_with("the app exited"), "{err}");
    }
}
