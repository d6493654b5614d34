//! The UDP path of a listener. hickory-server's UDP loop spawns a task and hops through a
//! channel for every datagram, which costs more than answering from the directory: here a
//! query the directory answers is answered inline, in the receiving loop, and only a forwarded
//! query gets a task of its own (its upstream may take up to the budget). TCP stays with
//! hickory-server; both paths share `Handler::outcome`.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::proto::op::{Message, Metadata, Query, ResponseCode};
use hickory_server::proto::rr::Record;
use tokio::net::UdpSocket;

use super::forward::{forward, BUDGET};
use super::handler::{reply_edns, Handler, Outcome};

/// The largest datagram read; anything longer is cut and then fails to parse.
const MAX_DATAGRAM: usize = 4096;

/// Answers the queries arriving on `socket` until the task is aborted.
pub async fn serve(socket: UdpSocket, handler: Arc<Handler>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                eprintln!("shibafu dns: network {}: receiving: {e}", handler.network);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Nothing can be sent back to port 0 or to a broadcast or unspecified address.
        if from.port() == 0 || from.ip().is_unspecified() || from.ip() == std::net::Ipv4Addr::BROADCAST {
            continue;
        }
        // What does not parse as a DNS message gets no answer, as from hickory-server.
        let Ok(request) = Message::from_vec(&buf[..n]) else { continue };
        if request.metadata.message_type != hickory_server::proto::op::MessageType::Query {
            continue;
        }
        let queries: Vec<&Query> = request.queries.iter().collect();
        match handler.outcome(request.metadata.op_code, &queries, from.ip()) {
            Outcome::Answer(code, records) => send(&socket, from, &reply(&request, code, true, records)).await,
            Outcome::Error(code) => send(&socket, from, &reply(&request, code, false, Vec::new())).await,
            Outcome::Forward(servers) => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let answer = match forward(&request.queries[0], request.metadata.recursion_desired, &servers, BUDGET).await {
                        Some(upstream) => relayed(&request, upstream),
                        None => reply(&request, ResponseCode::ServFail, false, Vec::new()),
                    };
                    send(&socket, from, &answer).await;
                });
            }
        }
    }
}

/// Our answer to `request`: its ID and question, `code`, the records.
fn reply(request: &Message, code: ResponseCode, authoritative: bool, answers: Vec<Record>) -> Message {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata = Metadata::response_from_request(&request.metadata);
    message.metadata.recursion_available = true;
    message.metadata.authoritative = authoritative;
    message.metadata.response_code = code;
    message.queries = request.queries.clone();
    message.answers = answers;
    message.edns = request.edns.as_ref().map(|asked| reply_edns(asked.max_payload()));
    message
}

/// An upstream's reply, passed on under `request`'s ID: its sections and response code as
/// they came.
fn relayed(request: &Message, upstream: Message) -> Message {
    let mut message = reply(request, upstream.metadata.response_code, false, upstream.answers);
    message.metadata.recursion_available = upstream.metadata.recursion_available;
    message.authorities = upstream.authorities;
    message.additionals = upstream.additionals;
    message
}

/// Sends `message` to `to`.
async fn send(socket: &UdpSocket, to: SocketAddr, message: &Message) {
    match encode(message) {
        Ok(bytes) => {
            if let Err(e) = socket.send_to(&bytes, to).await {
                eprintln!("shibafu dns: sending an answer to {to}: {e}");
            }
        }
        Err(e) => eprintln!("shibafu dns: writing an answer: {e}"),
    }
}

/// The datagram of `message`: an answer longer than the client takes (512 bytes, or what its
/// EDNS offered) goes as its truncated form, so the client asks again over TCP.
fn encode(message: &Message) -> Result<Vec<u8>, hickory_server::proto::ProtoError> {
    let bytes = message.to_vec()?;
    if bytes.len() <= usize::from(message.max_payload()) {
        return Ok(bytes);
    }
    message.truncate().to_vec()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_server::proto::op::Edns;
    use hickory_server::proto::rr::rdata::A;
    use hickory_server::proto::rr::{Name, RData, RecordType};

    use super::*;

    /// A query for `many.example.` with or without EDNS offering `payload` bytes.
    fn request(payload: Option<u16>) -> Message {
        let mut request = Message::query();
        request.add_query(Query::query(Name::from_ascii("many.example.").unwrap(), RecordType::A));
        if let Some(p) = payload {
            let mut edns = Edns::new();
            edns.set_max_payload(p);
            request.set_edns(edns);
        }
        request
    }

    fn many(owner: &str) -> Vec<Record> {
        (1..=60).map(|i| Record::from_rdata(Name::from_ascii(owner).unwrap(), 0, RData::A(A(Ipv4Addr::new(10, 0, 0, i))))).collect()
    }

    #[test]
    fn a_long_answer_is_truncated_unless_the_client_offered_room() {
        let plain = reply(&request(None), ResponseCode::NoError, true, many("many.example."));
        let sent = Message::from_vec(&encode(&plain).unwrap()).unwrap();
        assert!(sent.metadata.truncation);
        assert!(sent.answers.is_empty());
        assert_eq!(sent.queries, plain.queries);
        let roomy = reply(&request(Some(4096)), ResponseCode::NoError, true, many("many.example."));
        let sent = Message::from_vec(&encode(&roomy).unwrap()).unwrap();
        assert!(!sent.metadata.truncation);
        assert_eq!(sent.answers.len(), 60);
        assert_eq!(sent.edns.map(|e| e.max_payload()), Some(4096));
    }

    #[test]
    fn an_upstream_reply_is_passed_on_under_the_askers_id() {
        let asked = request(None);
        let mut upstream = Message::response(4242, asked.metadata.op_code);
        upstream.metadata.response_code = ResponseCode::NXDomain;
        upstream.answers = many("many.example.").into_iter().take(2).collect();
        let sent = relayed(&asked, upstream);
        assert_eq!((sent.metadata.id, sent.metadata.response_code, sent.answers.len()), (asked.metadata.id, ResponseCode::NXDomain, 2));
        assert!(!sent.metadata.authoritative);
    }
}
