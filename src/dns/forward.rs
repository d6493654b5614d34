//! Forwarding: a name that is not ours goes to the host's upstream servers, one after another,
//! within one time budget for all of them, so a dead upstream is a SERVFAIL the client gets in
//! time instead of a query that hangs until the client gives up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The time all upstream servers together may take: well under the 5 s a client waits (the
/// C library's default `timeout:5`), so the client hears SERVFAIL rather than nothing.
pub const BUDGET: Duration = Duration::from_secs(2);

/// The UDP payload we offer upstream servers (EDNS), the size DNS flag day 2020 settled on.
const PAYLOAD: u16 = 1232;

/// Asks `servers` in turn for `query`; the first answer that is not SERVFAIL or REFUSED wins.
/// Each server gets an equal share of what is left of `budget`, so one that fails at once
/// (port unreachable) leaves its time to the next. `None`: nobody answered in time.
pub async fn forward(query: &Query, recursion_desired: bool, servers: &[SocketAddr], budget: Duration) -> Option<Message> {
    let started = Instant::now();
    for (k, server) in servers.iter().enumerate() {
        let share = budget.saturating_sub(started.elapsed()) / (servers.len() - k) as u32;
        match tokio::time::timeout(share, ask(*server, query, recursion_desired)).await {
            Ok(Ok(reply)) if !matches!(reply.metadata.response_code, ResponseCode::ServFail | ResponseCode::Refused) => return Some(reply),
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => continue,
        }
    }
    None
}

/// One server: over UDP, and again over TCP when the UDP answer was truncated.
async fn ask(server: SocketAddr, query: &Query, recursion_desired: bool) -> std::io::Result<Message> {
    let mut message = Message::query();
    message.add_query(query.clone());
    message.metadata.recursion_desired = recursion_desired;
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    message.set_edns(edns);
    let bytes = message.to_vec().map_err(std::io::Error::other)?;
    let reply = over_udp(server, &bytes, &message).await?;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    over_tcp(server, &bytes, &message).await
}

/// Whether `reply` answers `asked`: same ID and question. Anything else on the socket (a late
/// answer, a spoofed one) is ignored.
fn answers(reply: &Message, asked: &Message) -> bool {
    reply.metadata.message_type == MessageType::Response && reply.metadata.id == asked.metadata.id && reply.queries == asked.queries
}

async fn over_udp(server: SocketAddr, bytes: &[u8], asked: &Message) -> std::io::Result<Message> {
    // A fresh socket per query: the kernel picks a random source port.
    let local: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; usize::from(PAYLOAD).max(4096)];
    loop {
        let n = socket.recv(&mut buf).await?;
        if let Ok(reply) = Message::from_vec(&buf[..n]) {
            if answers(&reply, asked) {
                return Ok(reply);
            }
        }
    }
}

async fn over_tcp(server: SocketAddr, bytes: &[u8], asked: &Message) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&[&len.to_be_bytes()[..], bytes].concat()).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(std::io::Error::other)?;
    if answers(&reply, asked) {
        Ok(reply)
    } else {
        Err(std::io::Error::other(format!("{server} answered another question over TCP")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::{Name, RecordType};

    fn google() -> Query {
        Query::query(Name::from_ascii("google.com.").unwrap(), RecordType::A)
    }

    /// A pretend upstream on loopback: answers each query with `code`, or never when `None`.
    async fn upstream(code: Option<ResponseCode>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Some(code) = code else { continue };
                let asked = Message::from_vec(&buf[..n]).unwrap();
                let mut reply = Message::error_msg(asked.metadata.id, asked.metadata.op_code, code);
                reply.add_queries(asked.queries.clone());
                socket.send_to(&reply.to_vec().unwrap(), from).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_failing_server_passes_to_the_next_and_silence_ends_within_the_budget() {
        let refuses = upstream(Some(ResponseCode::Refused)).await;
        let silent = upstream(None).await;
        let answers = upstream(Some(ResponseCode::NXDomain)).await;
        let reply = forward(&google(), true, &[refuses, silent, answers], Duration::from_millis(600)).await.expect("the third answers");
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        let started = Instant::now();
        assert!(forward(&google(), true, &[silent, silent], Duration::from_millis(300)).await.is_none());
        assert!(started.elapsed() < Duration::from_secs(5), "the budget bounds the wait");
        assert!(forward(&google(), true, &[], BUDGET).await.is_none(), "no servers: nothing to wait for");
    }
}
