//! The forwarding path against scripted containers on loopback: framing, keep-alive both ways,
//! interim answers and kept connections the container closed. (The root tests in
//! tests/network_root.rs run it against real containers, with routes that follow them.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::routes::RouteTable;
use crate::engine::routes::Route;
use crate::http_server::Limits;

const LIMITS: Limits = Limits { max_connections: 64, header_timeout: Duration::from_secs(5), idle_timeout: Duration::from_secs(5) };

/// A proxy on a loopback port routing `NAME.localhost` to each given port; returns its port.
fn proxy(routes: &[(&str, u16)]) -> u16 {
    let table = Arc::new(RouteTable::new(&[]));
    let routes: Vec<Route> = routes.iter().map(|(name, port)| Route { name: name.to_string(), backend: SocketAddrV4::new(Ipv4Addr::LOCALHOST, *port) }).collect();
    table.set(&routes);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let connection = move |stream, peer, conn| super::forward::connection(stream, peer, conn, table.clone(), LIMITS);
            match crate::http_server::serve_connections(listener, LIMITS, |_, m| ("text/plain", m.to_string()), connection).await {}
        })
    });
    port
}

/// A container: each accepted connection is handed to `serve` on its own thread; returns the
/// port.
fn container(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// A proxy to `web.localhost`: a container that reads one request head on each connection and
/// hands it to `answer` with the rest of the stream.
fn proxy_to_one_request(answer: impl Fn(Vec<String>, &mut BufReader<TcpStream>, &mut TcpStream) + Send + Sync + 'static) -> u16 {
    proxy(&[(
        "web",
        container(move |stream| {
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            if let Some(head) = read_head(&mut r) {
                answer(head, &mut r, &mut w);
            }
        }),
    )])
}

/// A client connection to the proxy.
fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A request head read from `r`, lines without their ends, or None at the end of the stream.
fn read_head(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

fn field<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// Reads a line; false when it was empty.
fn read_head_line(r: &mut impl BufRead) -> bool {
    let mut line = String::new();
    r.read_line(&mut line).unwrap() > 0 && !line.trim_end().is_empty()
}

/// Every value of header `name`, joined by commas.
fn all(head: &[String], name: &str) -> String {
    let values: Vec<&str> = head.iter().filter_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())).collect();
    values.join(",")
}

/// Reads a chunked body's data.
fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let size = line.split(';').next().unwrap().trim();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            // Trailers, up to an empty line.
            while read_head_line(r) {}
            return data;
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).unwrap();
        data.extend_from_slice(&chunk[..n]);
    }
}

/// A keep-alive container that answers each request with its method, path and body, chunked.
fn echo(stream: TcpStream) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    while let Some(head) = read_head(&mut r) {
        let body = match (field(&head, "content-length"), field(&head, "transfer-encoding")) {
            (Some(n), _) => {
                let mut b = vec![0; n.parse().unwrap()];
                r.read_exact(&mut b).unwrap();
                b
            }
            (None, Some(_)) => read_chunked(&mut r),
            _ => Vec::new(),
        };
        let text = format!("{} body={} xff={}", head[0], String::from_utf8_lossy(&body), all(&head, "x-forwarded-for")).into_bytes();
        if head[0].starts_with("HEAD") {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
            continue;
        }
        let (a, b) = text.split_at(text.len() / 2);
        let answer = [format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", a.len()).into_bytes(), a.to_vec(), format!("\r\n{:x}\r\n", b.len()).into_bytes(), b.to_vec(), b"\r\n0\r\n\r\n".to_vec()].concat();
        w.write_all(&answer).unwrap();
    }
}

/// Sends `requests` at once on one connection and reads `count` answers of the proxy (heads
/// and bodies, by their framing; a close ends the last).
fn exchange(port: u16, requests: &str, count: usize) -> Vec<(Vec<String>, String)> {
    exchange_heads(port, requests, count, &[])
}

/// The same, where the answers numbered in `to_head` answer HEAD requests (no body).
fn exchange_heads(port: u16, requests: &str, count: usize, to_head: &[usize]) -> Vec<(Vec<String>, String)> {
    let s = connect(port);
    (&s).write_all(requests.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut answers = Vec::new();
    for i in 0..count {
        let head = read_head(&mut r).unwrap_or_else(|| panic!("answer {i} of {count}: closed"));
        let body = if to_head.contains(&i) || head[0].contains(" 100 ") {
            Vec::new()
        } else if field(&head, "transfer-encoding").is_some() {
            read_chunked(&mut r)
        } else if let Some(n) = field(&head, "content-length") {
            let mut b = vec![0; n.parse().unwrap()];
            r.read_exact(&mut b).unwrap();
            b
        } else {
            let mut b = Vec::new();
            r.read_to_end(&mut b).unwrap();
            b
        };
        answers.push((head, String::from_utf8(body).unwrap()));
    }
    answers
}

#[test]
fn pipelined_requests_with_chunked_and_sized_bodies_come_back_in_order_on_one_connection() {
    let port = proxy(&[("web", container(echo))]);
    let requests = "POST /a HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n\
                    PUT /b HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n\r\nhello\
                    HEAD /c HTTP/1.1\r\nHost: web.localhost\r\n\r\n\
                    GET /d HTTP/1.1\r\nHost: nosuch.localhost\r\n\r\n\
                    GET /e HTTP/1.1\r\nHost: web.localhost\r\nConnection: close\r\n\r\n";
    let answers = exchange_heads(port, requests, 5, &[2]);
    let bodies: Vec<&str> = answers.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies[0], "POST /a HTTP/1.1 body=abcde xff=127.0.0.1");
    assert_eq!(bodies[1], "PUT /b HTTP/1.1 body=hello xff=127.0.0.1");
    assert_eq!(bodies[2], "", "a HEAD answer has no body");
    assert!(bodies[3].starts_with("no running container answers for host \"nosuch.localhost\""), "{bodies:?}");
    assert_eq!(answers[3].0[0], "HTTP/1.1 404 Not Found");
    assert_eq!(bodies[4], "GET /e HTTP/1.1 body= xff=127.0.0.1");
    assert_eq!(field(&answers[4].0, "connection"), Some("close"));
}

#[test]
fn an_http10_client_gets_the_chunks_decoded_and_the_connection_closed() {
    let port = proxy(&[("web", container(echo))]);
    let answers = exchange(port, "GET /old HTTP/1.0\r\nHost: web.localhost\r\n\r\n", 1);
    let (head, body) = &answers[0];
    assert_eq!(body, "GET /old HTTP/1.1 body= xff=127.0.0.1", "{head:?}");
    assert!(field(head, "transfer-encoding").is_none() && field(head, "connection") == Some("close"), "{head:?}");
}

#[test]
fn an_interim_100_continue_reaches_the_client_before_the_answer() {
    let port = proxy_to_one_request(|head, r, w| {
        assert_eq!(field(&head, "expect"), Some("100-continue"));
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let mut body = [0; 4];
        r.read_exact(&mut body).unwrap();
        w.write_all(format!("HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n{}", String::from_utf8_lossy(&body)).as_bytes()).unwrap();
    });
    let s = connect(port);
    (&s).write_all(b"PUT / HTTP/1.1\r\nHost: web.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_head(&mut r).unwrap()[0], "HTTP/1.1 100 Continue");
    (&s).write_all(b"data").unwrap();
    let head = read_head(&mut r).unwrap();
    let mut body = [0; 4];
    r.read_exact(&mut body).unwrap();
    assert_eq!((head[0].as_str(), &body), ("HTTP/1.1 201 Created", b"data"));
}

#[test]
fn a_kept_connection_the_container_closed_is_replaced_and_a_dead_container_is_a_502() {
    // Answers one request per connection and closes, without saying so.
    let port = container(|stream| {
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        if read_head(&mut r).is_some() {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        }
    });
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port = proxy(&[("web", port), ("dead", dead)]);
    // The container's close reaches the proxy between requests: a GET is sent again on a new
    // connection; a POST, with a body or without, goes on a new one from the start.
    let get = "GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    let post = "POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n\r\nx";
    let bare_post = "POST / HTTP/1.1\r\nHost: web.localhost\r\n\r\n";
    for (round, request) in [get, get, post, bare_post, get].iter().enumerate() {
        let answers = exchange(port, request, 1);
        assert_eq!(answers[0].1, "ok", "round {round}: {answers:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers = exchange(port, "GET / HTTP/1.1\r\nHost: dead.localhost\r\n\r\nGET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n", 2);
    assert_eq!(answers[0].0[0], "HTTP/1.1 502 Bad Gateway");
    assert!(answers[0].1.contains("container dead (127.0.0.1:") && answers[0].1.contains("refused"), "{answers:?}");
    assert_eq!(answers[1].1, "ok", "the client's connection stays after a 502");
}

#[test]
fn a_body_cut_short_by_the_container_closes_the_clients_connection() {
    let port = proxy_to_one_request(|_, _, w| w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this").unwrap());
    let s = connect(port);
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: web.localhost\r\n\r\n").unwrap();
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).expect("closed, not left hanging");
    assert!(String::from_utf8_lossy(&got).ends_with("\r\n\r\nonly this"));
}

#[test]
fn bad_heads_are_refused_in_plain_words_and_the_connection_closed() {
    let port = proxy(&[("web", container(echo))]);
    for (request, status) in [
        ("POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "400 Bad Request"),
        ("GET / HTTP/1.1\r\nHost: web.localhost\r\nBad Header\r\n\r\n", "400 Bad Request"),
        ("CONNECT web.localhost:443 HTTP/1.1\r\nHost: web.localhost\r\n\r\n", "405 Method Not Allowed"),
    ] {
        let answers = exchange(port, request, 1);
        let (head, body) = &answers[0];
        assert_eq!(head[0], format!("HTTP/1.1 {status}"), "{request:?}: {body}");
        assert_eq!(field(head, "connection"), Some("close"));
        assert_eq!(field(head, "content-type"), Some("text/plain; charset=utf-8"));
    }
}

#[test]
fn a_large_body_streams_both_ways() {
    let port = proxy_to_one_request(|head, r, w| {
        let n: usize = field(&head, "content-length").unwrap().parse().unwrap();
        w.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes()).unwrap();
        std::io::copy(&mut r.take(n as u64), w).unwrap();
    });
    let n = 8 << 20;
    let s = connect(port);
    let writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut w = writer;
        w.write_all(format!("PUT / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: {n}\r\n\r\n").as_bytes()).unwrap();
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..n / block.len() {
            w.write_all(&block).unwrap();
        }
    });
    let mut r = BufReader::new(s);
    let head = read_head(&mut r).unwrap();
    assert_eq!(field(&head, "content-length"), Some(n.to_string().as_str()));
    let mut body = vec![0; n];
    r.read_exact(&mut body).unwrap();
    sender.join().unwrap();
    assert!(body.iter().enumerate().all(|(i, &b)| b == ((i % (64 * 1024)) % 251) as u8), "the bytes came back as sent");
}

#[test]
fn the_client_address_is_passed_on() {
    let port = proxy(&[("web", container(echo))]);
    let answers = exchange(port, "GET / HTTP/1.1\r\nHost: WEB.localhost:80\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n", 1);
    assert_eq!(answers[0].1, "GET / HTTP/1.1 body= xff=10.1.1.1,127.0.0.1", "the client's own header comes first, the proxy's after it");
}

