//! One query's answer: the directory (answer.rs) answers, or the upstream servers do. The
//! outcome is the same over UDP (udp.rs) and TCP (hickory-server calls `handle_request`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::rdata::{A, PTR};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::answer::{Answer, Directory};
use super::directory::Source;
use super::forward::{forward, BUDGET};
use super::upstream::Upstreams;
use super::Result;

/// What every listener shares: the state database and the upstream servers.
pub struct Shared {
    source: Mutex<Source>,
    upstreams: Mutex<Upstreams>,
    /// Domains whose apps the reverse proxy serves (`dns serve --proxy-domain`).
    proxy_domains: Vec<String>,
    /// The host's own listener (`dns serve --host-address`), never an upstream.
    host_address: Option<std::net::Ipv4Addr>,
}

impl Shared {
    /// Shares `source`, forwarding to `upstreams`; names under `proxy_domains` go to the proxy;
    /// `host_address` is a listener for the host besides the gateways'.
    pub fn new(source: Source, upstreams: Upstreams, proxy_domains: Vec<String>, host_address: Option<std::net::Ipv4Addr>) -> Shared {
        Shared { source: Mutex::new(source), upstreams: Mutex::new(upstreams), proxy_domains, host_address }
    }

    /// The host's own listener, if it has one.
    pub fn host_address(&self) -> Option<std::net::Ipv4Addr> {
        self.host_address
    }

    /// The directory as of now (read again if the database changed since the last query).
    pub fn directory(&self) -> Result<Arc<Directory>> {
        self.source.lock().expect("the state lock is never poisoned").current()
    }

    /// The upstream servers, leaving out our own listeners (a host whose resolv.conf names a
    /// gateway must not send a query round in circles).
    fn upstreams(&self, directory: &Directory) -> Vec<SocketAddr> {
        let mut upstreams = self.upstreams.lock().expect("the upstream lock is never poisoned");
        let ours = |s: &SocketAddr| {
            s.port() == super::PORT && (directory.networks.iter().any(|n| s.ip() == IpAddr::V4(n.gateway)) || self.host_address.is_some_and(|h| s.ip() == IpAddr::V4(h)))
        };
        upstreams.current().iter().filter(|s| !ours(s)).copied().collect()
    }
}

/// Answers the queries that arrive on one network's gateway.
#[derive(Clone)]
pub struct Handler {
    /// The network whose gateway this listener has ("" for the host's own listener).
    pub network: String,
    /// The address it listens on: the proxy's too (`proxy serve` takes every address).
    pub address: std::net::Ipv4Addr,
    /// What all listeners share.
    pub shared: Arc<Shared>,
}

/// What one query gets, whichever transport brought it.
pub enum Outcome {
    /// Our own, authoritative answer: the response code and the answer records.
    Answer(ResponseCode, Vec<Record>),
    /// An error, not authoritative (FORMERR, NOTIMP, REFUSED, SERVFAIL).
    Error(ResponseCode),
    /// Not ours: the reply of these upstream servers is passed on.
    Forward(Vec<SocketAddr>),
}

impl Handler {
    /// The outcome of a message of `op_code` holding `queries`, from `src`.
    pub fn outcome(&self, op_code: OpCode, queries: &[&Query], src: IpAddr) -> Outcome {
        let query = match (op_code, queries) {
            (OpCode::Query, [query]) => query,
            (OpCode::Query, _) => return Outcome::Error(ResponseCode::FormErr),
            _ => return Outcome::Error(ResponseCode::NotImp),
        };
        let IpAddr::V4(asker) = src else {
            return Outcome::Error(ResponseCode::Refused);
        };
        let directory = match self.shared.directory() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("shibafu dns: reading the state: {e}");
                return Outcome::Error(ResponseCode::ServFail);
            }
        };
        let owner = query.name();
        // A container's own address is never the host's: only strangers cost a bind(2).
        let host = !directory.is_container(asker) && is_host(asker);
        match directory.answer(&self.network, asker, host, &owner.to_ascii(), query.query_type(), &self.shared.proxy_domains) {
            Answer::Forward => Outcome::Forward(self.shared.upstreams(&directory)),
            // The proxy listens on every address of ours: the one the asker reached is one.
            Answer::Proxy if query.query_class() == DNSClass::IN => Outcome::Answer(ResponseCode::NoError, vec![record(owner, RData::A(A(self.address)))]),
            Answer::Refused => Outcome::Error(ResponseCode::Refused),
            // A class other than IN holds nothing of ours.
            _ if query.query_class() != DNSClass::IN => Outcome::Answer(ResponseCode::NoError, Vec::new()),
            Answer::NxDomain => Outcome::Answer(ResponseCode::NXDomain, Vec::new()),
            Answer::NoData | Answer::Proxy => Outcome::Answer(ResponseCode::NoError, Vec::new()),
            Answer::Addresses(addresses) => Outcome::Answer(ResponseCode::NoError, addresses.into_iter().map(|a| record(owner, RData::A(A(a)))).collect()),
            Answer::Names(names) => {
                let names = names.iter().filter_map(|n| Name::from_ascii(n).ok());
                Outcome::Answer(ResponseCode::NoError, names.map(|n| record(owner, RData::PTR(PTR(n)))).collect())
            }
        }
    }

}

/// The TCP path: hickory-server parses, calls this, and writes the answer back.
#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| reply_edns(asked.max_payload()));
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let queries: Vec<&Query> = request.queries.queries().iter().map(|q| q.original()).collect();
        match self.outcome(request.metadata.op_code, &queries, request.src().ip()) {
            Outcome::Error(code) => send(&mut response, builder.error_msg(&request.metadata, code)).await,
            Outcome::Answer(code, records) => {
                metadata.authoritative = true;
                metadata.response_code = code;
                send(&mut response, builder.build(metadata, records.iter(), [], [], [])).await
            }
            Outcome::Forward(servers) => match forward(queries[0], request.metadata.recursion_desired, &servers, BUDGET).await {
                Some(reply) => relay(&mut response, builder, metadata, &reply).await,
                None => send(&mut response, builder.error_msg(&request.metadata, ResponseCode::ServFail)).await,
            },
        }
    }
}

/// The EDNS record of an answer to a client that offered `asked` bytes (at least 512).
pub fn reply_edns(asked: u16) -> Edns {
    let mut ours = Edns::new();
    ours.set_max_payload(asked.max(512));
    ours
}

/// Whether `address` is one of the host's own: only then can a socket be bound to it. The host
/// is recognized by any of its addresses, not only a gateway's: its query to a gateway may leave
/// with another source (SHIBAFU-POSTROUTING masquerades what a gateway address sends outside
/// its bridge, and a local destination goes out through `lo`).
fn is_host(address: std::net::Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((address, 0)).is_ok()
}

/// A record of ours: TTL 0, since containers come and go at any moment.
fn record(owner: &Name, data: RData) -> Record {
    Record::from_rdata(owner.clone(), 0, data)
}

/// Passes an upstream's answer on, sections and response code as they came.
async fn relay<R: ResponseHandler>(response: &mut R, builder: MessageResponseBuilder<'_>, mut metadata: Metadata, reply: &Message) -> ResponseInfo {
    metadata.response_code = reply.metadata.response_code;
    metadata.recursion_available = reply.metadata.recursion_available;
    send(response, builder.build(metadata, reply.answers.iter(), reply.authorities.iter(), [], reply.additionals.iter())).await
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let fallback = Header { metadata: *message.metadata(), counts: HeaderCounts::default() };
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            eprintln!("shibafu dns: sending an answer: {e}");
            ResponseInfo::from(fallback)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_server::proto::op::Query;
    use hickory_server::proto::rr::RecordType;
    use hickory_server::Server;

    use super::*;
    use crate::state::containers::ContainerRow;
    use crate::state::network::{LeaseRow, NetworkRow};
    use crate::state::Db;

    /// A state with postgres at 172.22.0.2 on backend, and a server for backend on loopback.
    async fn server(root: &std::path::Path) -> (Server<Handler>, SocketAddr) {
        let db = Db::open(root).unwrap();
        db.insert_network(&NetworkRow { name: "backend".into(), bridge: "br-backend".into(), subnet: "172.22.0.0/24".into(), gateway: "172.22.0.1".into(), internal: false, created_at: String::new() }).unwrap();
        let id = "0123456789ab".repeat(5) + "cdef";
        let row = ContainerRow {
            id: id.clone(),
            name: "postgres".into(),
            image: "postgres:15".into(),
            command: vec![],
            layers: vec![],
            runtime: "shibafu".into(),
            created_at: crate::state::now(),
            state: "running".into(),
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            finished_at: None,
            network: "backend".into(),
            hostname: String::new(),
            aliases: Vec::new(),
            ..Default::default()
        };
        db.insert_container(&row).unwrap();
        let lease = LeaseRow { network: "backend".into(), address: String::new(), container_id: id, interface: "eth0".into(), host_veth: "vethpg".into() };
        db.lease(&lease, |_| Some("172.22.0.2".into())).unwrap();
        let shared = Arc::new(Shared::new(Source::open(root).unwrap(), Upstreams::new(root.join("resolv.conf")), vec!["platform.local".into()], None));
        let mut server = Server::new(Handler { network: "backend".into(), address: Ipv4Addr::new(172, 22, 0, 1), shared });
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        server.register_socket(socket);
        (server, addr)
    }

    async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Message {
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query.to_vec().unwrap(), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf)).await.expect("an answer within 5 s").unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    /// Through hickory-server over UDP on loopback: the host (127.0.0.1 is one of its
    /// addresses) asks; with no upstream servers a forwarded name is a SERVFAIL at once.
    #[tokio::test]
    async fn answers_travel_through_the_server() {
        let root = tempfile::tempdir().unwrap();
        let (mut server, addr) = server(root.path()).await;
        let reply = ask(addr, "postgres.backend.local.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        let a: Vec<(u32, Option<Ipv4Addr>)> = reply.answers.iter().map(|r| (r.ttl, if let RData::A(a) = &r.data { Some(a.0) } else { None })).collect();
        assert_eq!(a, [(0, Some(Ipv4Addr::new(172, 22, 0, 2)))]);
        let reply = ask(addr, "postgres.backend.local.", RecordType::AAAA).await;
        assert_eq!((reply.metadata.response_code, reply.answers.len()), (ResponseCode::NoError, 0));
        let reply = ask(addr, "2.0.22.172.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.answers.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["postgres.backend.local."]);
        assert_eq!(ask(addr, "nosuch.backend.local.", RecordType::A).await.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ask(addr, "google.com.", RecordType::A).await.metadata.response_code, ResponseCode::ServFail);
        let reply = ask(addr, "myapp.platform.local.", RecordType::A).await;
        assert_eq!(reply.answers.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["172.22.0.1"], "the proxy's domain: the gateway asked");
        server.shutdown_gracefully().await.unwrap();
    }
}
