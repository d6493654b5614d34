//! Phases 2 and 4 of shared/PHASES.md: the bridge, veth pairs, addresses, NAT to a pretend
//! internet, published ports, and exact teardown. Each test runs in namespaces of its own.

mod common;

use common::{internet, Lab};

#[test]
fn phase2_a_container_pings_google_com_through_our_nat() {
    let out = Lab::new().ok(&format!(
        r#"{internet}
        shibafu run --network bridge busybox ping -c 3 google.com
        ip link show ctr0
        ip addr show ctr0
        shibafu run -d --name mycontainer busybox sleep 100 >/dev/null
        shibafu exec mycontainer ip addr show eth0
        shibafu exec mycontainer cat /etc/resolv.conf
        echo seen-as=$(shibafu run --rm busybox wget -qO- http://google.com/cgi-bin/whoami)
        iptables -t nat -L SHIBAFU-POSTROUTING -v -n -x | awk '$3 == "MASQUERADE" && $7 == "!ctr0" {{print "masquerade-packets=" $1}}'
        "#,
        internet = internet()
    ));
    assert!(out.contains("3 packets transmitted, 3 packets received, 0% packet loss"), "{out}");
    assert!(out.contains("ctr0: <NO-CARRIER,BROADCAST,MULTICAST,UP>"), "made on first use, no container on it now: {out}");
    assert!(out.contains("inet 172.20.0.1/24"), "{out}");
    assert!(out.contains("inet 172.20.0.2/24"), "mycontainer is the only one running: {out}");
    assert!(out.contains("nameserver 198.51.100.1"), "{out}");
    assert!(out.contains("seen-as=198.51.100.254"), "the internet sees the host's address, not 172.20.0.x: {out}");
    let packets: u64 = out.split("masquerade-packets=").nth(1).and_then(|t| t.lines().next()).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(packets > 0, "the MASQUERADE rule counted nothing: {out}");
}

#[test]
fn ten_racing_runs_share_one_bridge_and_get_distinct_addresses() {
    let out = Lab::new().ok(
        r#"
        for i in 1 2 3 4 5 6 7 8 9 10; do shibafu run -d --name c$i busybox sleep 100 >/dev/null & done
        wait
        echo bridges=$(ip -o link show type bridge | wc -l)
        echo distinct=$(shibafu list --format json | grep -o '"172.20.0.[0-9]*"' | sort -u | wc -l)
        echo leases=$(sqlite3 $SHIBAFU_ROOT/state.db 'SELECT count(*) FROM leases')
        echo jumps=$(iptables-save | grep -c -- '-j SHIBAFU-POSTROUTING')
        for i in 1 2 3 4 5 6 7 8 9 10; do shibafu exec c$i ping -c 1 -W 2 172.20.0.1 >/dev/null && echo reached-gateway; done
        "#,
    );
    for want in ["bridges=1", "distinct=10", "leases=10", "jumps=1"] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert_eq!(out.matches("reached-gateway").count(), 10, "{out}");
}

/// A shell function `state` that prints what networking leaves on the machine: links, rules
/// (without counters), leases, published ports, namespace files.
const STATE: &str = r#"state() {
            ip -o link | awk '{print $2}'
            iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
            sqlite3 $SHIBAFU_ROOT/state.db 'SELECT * FROM leases; SELECT * FROM ports'
            ls $SHIBAFU_ROOT/run/netns
        }"#;

/// A web server in busybox: serves "hello-NAME" on port 80.
const WEB: &str = "sh -c 'mkdir -p /www && echo hello-$0 > /www/index.html && exec httpd -f -p 80 -h /www'";

#[test]
fn phase4_published_ports_reach_the_container_from_the_host_and_from_other_containers() {
    let out = Lab::new().ok(&format!(
        r#"
        shibafu run --name web --publish 80 busybox {WEB} web
        shibafu run --name api -p 8080:80 busybox {WEB} api
        shibafu run --name local -p 127.0.0.1:8081:80 -p 5353:53/udp busybox {WEB} local
        echo from-host=$(busybox wget -qO- http://localhost:30001/)
        echo by-ip=$(busybox wget -qO- http://127.0.0.1:8080/)
        echo local=$(busybox wget -qO- http://127.0.0.1:8081/)
        echo hairpin=$(shibafu run --rm busybox wget -qO- http://172.20.0.1:30001/)
        shibafu port web
        shibafu port local
        shibafu list
        if shibafu run -p 8080:80 busybox true 2>$LAB/err; then echo taken-port-accepted; fi
        cat $LAB/err
        busybox nc -l -p 8090 >/dev/null 2>&1 &
        sleep 0.2
        if shibafu run -p 8090:80 busybox true 2>$LAB/err2; then echo busy-port-accepted; fi
        cat $LAB/err2
        echo containers=$(shibafu list -aq | wc -l)
        "#
    ));
    for want in [
        "Container web started, accessible at localhost:30001",
        "Container api started, accessible at localhost:8080",
        "Container local started, accessible at 127.0.0.1:8081, localhost:5353/udp",
        "from-host=hello-web",
        "by-ip=hello-api",
        "local=hello-local",
        "hairpin=hello-web",
        "80/tcp -> 0.0.0.0:30001",
        "53/udp -> 0.0.0.0:5353",
        "0.0.0.0:8080->80/tcp",
        "host port 8080/tcp is already published by container api",
        "host port 0.0.0.0:8090/tcp is in use by a process on this host",
        "containers=3",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    assert!(!out.contains("accepted"), "{out}");
}

#[test]
fn stop_rm_and_failed_runs_leave_links_rules_and_leases_as_they_were() {
    let out = Lab::new().ok(&format!(
        r#"
        {STATE}
        shibafu run --rm busybox true
        state > $LAB/before
        for i in $(seq 100); do
            shibafu run --name w$i -p 80 busybox {WEB} w >/dev/null
            shibafu rm -f w$i >/dev/null
        done
        shibafu run --name s -p 80 busybox {WEB} s >/dev/null
        shibafu stop -t 1 s >/dev/null
        echo stopped-ports=$(shibafu port s | wc -l)
        shibafu run busybox /no/such/program 2>/dev/null || echo failed-run=$?
        shibafu run --network 'no such' busybox true 2>&1 || true
        shibafu run -p 70000 busybox true 2>&1 || true
        shibafu run --network none -p 80 busybox true 2>&1 || true
        state > $LAB/after
        diff $LAB/before $LAB/after && echo unchanged
        grep -c SHIBAFU-DNAT $LAB/after
        "#
    ));
    for want in [
        "stopped-ports=0",
        "failed-run=127",
        "invalid network name \"no such\"",
        "invalid --publish \"70000\"",
        "--publish needs a bridge network, not --network none",
        "unchanged",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// `rm` drops the container's network namespace and the kernel frees its veth pair: the pair
/// is gone when `rm` returns. A namespace that some other process still holds keeps its links;
/// those are deleted one by one, and that process is left with only `lo`.
#[test]
fn rm_leaves_no_veth_even_when_another_process_holds_the_namespace() {
    let out = Lab::new().ok(
        r#"
        shibafu run -d --name free busybox sleep 1000 >/dev/null
        shibafu run -d --name held busybox sleep 1000 >/dev/null
        echo veths-running=$(ip -o link show type veth | wc -l)
        shibafu rm -f free >/dev/null
        echo veths-after-free=$(ip -o link show type veth | wc -l)
        id=$(shibafu inspect --format '{{.Id}}' held)
        nsenter --net=$SHIBAFU_ROOT/run/netns/$id sleep 1000 &
        holder=$!
        sleep 0.2
        shibafu rm -f held >/dev/null
        echo veths-after-held=$(ip -o link show type veth | wc -l)
        echo leases=$(sqlite3 $SHIBAFU_ROOT/state.db 'SELECT count(*) FROM leases')
        echo holder-sees=$(nsenter --net=/proc/$holder/ns/net ip -o link | awk '{print $2}' | tr '\n' ' ')
        kill $holder
        shibafu run --rm busybox true
        echo veths-after-run-rm=$(ip -o link show type veth | wc -l)
        "#,
    );
    for want in ["veths-running=2", "veths-after-free=1", "veths-after-held=0", "leases=0", "holder-sees=lo:\n", "veths-after-run-rm=0"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn none_host_and_prune() {
    let out = Lab::new().ok(
        r#"
        echo none=$(shibafu run --rm --network none busybox ip -o link | awk '{print $2}' | tr '\n' ' ')
        shibafu run --rm busybox true
        echo host-sees-ctr0=$(shibafu run --rm --network host busybox ip -o link | grep -c ctr0)
        shibafu network prune
        echo links=$(ip -o link | awk '{print $2}' | tr '\n' ' ')
        echo chains=$(iptables-save | grep -c SHIBAFU || true)
        shibafu network create backend 172.22.0.0/24
        shibafu network create backend 172.23.0.0/24 2>&1 || true
        shibafu network create other 172.22.0.0/24 2>&1 || true
        shibafu network create bad 172.22.0.1/24 2>&1 || true
        echo on-backend=$(shibafu run --rm --network backend busybox ip -o addr show eth0 | grep -o 'inet [0-9./]*')
        shibafu network ls
        shibafu network rm backend
        echo links-after-rm=$(ip -o link | awk '{print $2}' | tr '\n' ' ')
        "#,
    );
    for want in [
        "none=lo:\n",
        "host-sees-ctr0=1",
        "bridge (bridge ctr0 removed)",
        "links=lo:\n",
        "chains=0",
        "a network named \"backend\" exists already",
        "network \"backend\" has that subnet or bridge already",
        "host bits are set; did you mean 172.22.0.0/24?",
        "on-backend=inet 172.22.0.2/24",
        "links-after-rm=lo:\n",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// Shell lines that make the layers `base` (busybox), `python` and `app` (`source` as /FILE),
/// for `run --layers base,python,app python /FILE`.
fn python_app(file: &str, source: &str) -> String {
    format!(
        "{python}\nmkdir -p $LAB/app && cat > $LAB/app/{file} <<'PY'\n{source}\nPY\n\
         mkdir -p $LAB/base && tar -C $LAB/base -xf $BUSYBOX_TAR\n\
         shibafu prepare-layer base $LAB/base >/dev/null\n\
         shibafu prepare-layer python $LAB/python-3.11 >/dev/null\n\
         shibafu prepare-layer app $LAB/app >/dev/null",
        python = common::PYTHON_DIR
    )
}

/// A keep-alive HTTP/1.1 server that answers with the client's source port (python, on the
/// busybox layer), so a test sees whether the proxy reused its upstream connection.
const PORT_ECHO: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("port=%d\n" % self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 3000), H).serve_forever()
"#;

#[test]
fn phase4_the_proxy_routes_by_host_follows_containers_streams_and_keeps_upstreams_alive() {
    let out = Lab::new().ok(&format!(
        r#"
        {app}
        shibafu proxy serve --port 80 --domain platform.local 2>$LAB/proxy.log &
        proxy=$!
        shibafu run --name web -p 80 busybox {WEB} web
        get() {{ curl -s --max-time 5 -H "Host: $1" http://127.0.0.1/${{2:-}}; }}
        for i in $(seq 50); do [ "$(get web.localhost)" = hello-web ] && break; sleep 0.1; done
        echo web=$(get web.localhost)
        echo domain=$(get web.platform.local)
        echo unknown=$(get nosuch.localhost)
        shibafu run -d --name api -p 3000 --layers base,python,app python /server.py >/dev/null
        for i in $(seq 100); do get api.localhost | grep -q port= && break; sleep 0.1; done
        echo api-ports=$(for i in $(seq 20); do get api.localhost; done | sort -u | wc -l) workers=$(nproc)
        shibafu run -d --name down busybox sleep 100 >/dev/null
        sleep 0.5
        echo down=$(get down.localhost)
        shibafu exec web sh -c 'dd if=/dev/zero of=/www/big bs=1M count=64 2>/dev/null'
        echo big=$(get web.localhost big | wc -c)
        echo proxy-rss-kib=$(awk '/VmHWM/ {{print $2}}' /proc/$proxy/status)
        shibafu stop -t 1 web >/dev/null
        sleep 0.5
        echo after-stop=$(get web.localhost)
        kill $proxy
        "#,
        app = python_app("server.py", PORT_ECHO)
    ));
    for want in [
        "web=hello-web",
        "domain=hello-web",
        "unknown=no running container answers for host \"nosuch.localhost\"",
        "down=502 Bad Gateway: container down (172.20.0.",
        "big=67108864",
        "after-stop=no running container answers for host \"web.localhost\"",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    // Each proxy worker (one per CPU) keeps its own upstream connection alive: 20 requests,
    // each on a new client connection, reach the backend over at most that many.
    let field = |key: &str| -> usize { out.split(key).nth(1).and_then(|t| t.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX) };
    let (upstreams, workers) = (field("api-ports="), field("workers="));
    assert!(upstreams >= 1 && upstreams <= workers, "{upstreams} upstream connections for {workers} workers: {out}");
    let rss: u64 = out.split("proxy-rss-kib=").nth(1).and_then(|t| t.lines().next()).and_then(|n| n.trim().parse().ok()).unwrap_or(u64::MAX);
    assert!(rss < 32 * 1024, "a 64 MiB response must stream, not sit in the proxy's memory (peak {rss} KiB)");
}

#[test]
fn gc_removes_the_network_of_a_container_that_vanished() {
    let out = Lab::new().ok(&format!(
        r#"
        {STATE}
        shibafu run --rm busybox true
        state > $LAB/before
        shibafu run --name lost -p 80 busybox {WEB} lost >/dev/null
        # A crash: the monitor and the container die, and the row is lost with them.
        pkill -9 -f 'shibafu.*monitor' ; pkill -9 httpd; sleep 0.2
        sqlite3 $SHIBAFU_ROOT/state.db "DELETE FROM containers WHERE name = 'lost'"
        echo leases-before-gc=$(sqlite3 $SHIBAFU_ROOT/state.db 'SELECT count(*) FROM leases')
        shibafu gc | grep -c 'network of container'
        state > $LAB/after
        diff $LAB/before $LAB/after && echo unchanged
        "#
    ));
    assert!(out.contains("leases-before-gc=1") && out.contains("unchanged"), "{out}");
}

#[test]
fn networks_are_isolated_and_a_container_on_both_reaches_each() {
    let out = Lab::new().ok(
        r#"
        shibafu network create frontend 172.21.0.0/24 >/dev/null
        shibafu network create backend 172.22.0.0/24 >/dev/null
        db_id=$(shibafu run -d --name db --network backend busybox sh -c 'nc -ll -p 5432 -e echo tcp-ok & sleep 1000')
        web_id=$(shibafu run -d --name web --network frontend busybox sh -c 'nc -ll -p 5432 -e echo tcp-ok & sleep 1000')
        api_id=$(shibafu run -d --name api --network backend --network frontend busybox sleep 1000)
        ip_of() { shibafu exec $1 ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1; }
        db=$(ip_of db); web=$(ip_of web)
        # UDP: an echo server and a client in the containers' own network namespaces.
        in_ns() { id=$1; shift; nsenter --net=$SHIBAFU_ROOT/run/netns/$id "$@"; }
        udp_server='import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))
while True:
    d, a = s.recvfrom(100); s.sendto(b"udp-ok", a)'
        udp_client='import socket, sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.sendto(b"x", (sys.argv[1], 5353))
try: print(s.recv(100).decode())
except OSError: pass'
        in_ns $db_id python3 -c "$udp_server" & in_ns $web_id python3 -c "$udp_server" &
        sleep 0.5
        try() {  # try FROM FROM_ID TO: ping, TCP and UDP
            shibafu exec $1 ping -c1 -W1 $3 >/dev/null 2>&1 && p=ping || p=-
            t=$(shibafu exec $1 timeout 2 nc $3 5432 </dev/null 2>/dev/null | tr -d '\n')
            u=$(in_ns $2 python3 -c "$udp_client" $3 | tr -d '\n')
            echo "$1->$3: $p ${t:--} ${u:--}"
        }
        try web $web_id $db; try db $db_id $web; try api $api_id $db; try api $api_id $web
        busybox ping -c1 -W1 $db >/dev/null && echo host-reaches-db
        busybox ping -c1 -W1 $web >/dev/null && echo host-reaches-web
        iptables -S SHIBAFU-FORWARD | grep -c DROP | sed 's/^/drops=/'
        shibafu rm -f db web api >/dev/null
        shibafu network rm frontend backend >/dev/null
        echo "drops-after=$(iptables -S SHIBAFU-FORWARD 2>/dev/null | grep -c DROP || true)"
        "#,
    );
    assert!(out.lines().any(|l| l.starts_with("web->") && l.ends_with(": - - -")), "frontend may not reach backend: {out}");
    assert!(out.lines().any(|l| l.starts_with("db->") && l.ends_with(": - - -")), "nor back: {out}");
    assert!(out.lines().any(|l| l.starts_with("api->172.22") && l.ends_with(": ping tcp-ok udp-ok")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("api->172.21") && l.ends_with(": ping tcp-ok udp-ok")), "{out}");
    assert!(out.contains("host-reaches-db") && out.contains("host-reaches-web"), "{out}");
    assert!(out.contains("drops=2"), "frontend and backend, both ways: {out}");
    assert!(out.contains("drops-after=0"), "{out}");
}

/// The proxy serves through the same connection handling as the registry: a head sent a byte a
/// second is cut at the header timeout, a kept-alive connection goes at the idle timeout, and a
/// 200 KB path is answered 414 in the proxy's own words (plain text), not with hyper's empty 414.
const PROXY_LIMITS: &str = r#"
import socket, select, time
ADDR = ("127.0.0.1", 80)
def wait_closed(s, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if select.select([s], [], [], 0.05)[0]:
            try:
                if s.recv(65536) == b"":
                    return time.monotonic() - start
            except OSError:
                return time.monotonic() - start
    return None
def head_and_body(s):
    data = b""
    while True:
        more = s.recv(65536)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body.decode()
slow = socket.create_connection(ADDR)
slow.sendall(b"GET / HTTP/1.1\r\nHost: x.localhost\r\nX-Slow: ")
start, cut = time.monotonic(), None
for _ in range(30):
    try:
        slow.send(b"x")
    except OSError:
        cut = time.monotonic() - start
        break
    if wait_closed(slow, 1.0) is not None:
        cut = time.monotonic() - start
        break
print("slowloris", "never" if cut is None else ("early" if cut < 1.5 else "at-header-timeout"))
kept = socket.create_connection(ADDR)
kept.sendall(b"GET / HTTP/1.1\r\nHost: nosuch.localhost\r\n\r\n")
print("kept-first", kept.recv(65536).split(b"\r\n")[0].decode())
gone = wait_closed(kept, 30)
print("kept-idle", "never" if gone is None else ("early" if gone < 2.5 else "at-idle-timeout"))
long = socket.create_connection(ADDR)
long.settimeout(10)
try:
    long.sendall(b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x.localhost\r\n\r\n")
except OSError:
    pass
lines, body = head_and_body(long)
print("long-path", lines[0], [l for l in lines if l.lower().startswith("content-type")], body.strip())
"#;

#[test]
fn the_proxy_closes_slow_and_idle_connections_and_answers_long_heads_itself() {
    let out = Lab::new().ok(&format!(
        r#"
        shibafu proxy serve --port 80 --header-timeout 2 --idle-timeout 4 2>$LAB/proxy.log &
        for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1/ && break; sleep 0.1; done
        python3 - <<'PY'
{PROXY_LIMITS}
PY
        echo after=$(curl -s -H 'Host: nosuch.localhost' -o /dev/null -w '%{{http_code}}' http://127.0.0.1/)
        "#
    ));
    for want in [
        "slowloris at-header-timeout",
        "kept-first HTTP/1.1 404 Not Found",
        "kept-idle at-idle-timeout",
        "long-path HTTP/1.1 414 URI Too Long ['content-type: text/plain; charset=utf-8'] the request line is over 65536 bytes",
        "after=404",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// A WebSocket echo server (RFC 6455 by hand: python has none), on port 3000: it answers the
/// handshake with the key's accept value and echoes each message as `echo: MESSAGE`; a request
/// without an upgrade gets a plain answer.
const WS_ECHO: &str = r#"
import base64, hashlib, socket, struct
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def frame(data):
    n = len(data)
    size = bytes([n]) if n < 126 else bytes([126]) + struct.pack(">H", n) if n < 65536 else bytes([127]) + struct.pack(">Q", n)
    return bytes([0x81]) + size + data
def serve(c):
    f = c.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += f.readline()
    fields = dict(l.split(":", 1) for l in head.decode().split("\r\n")[1:] if ":" in l)
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    if fields.get("upgrade", "").lower() != "websocket":
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nplain\n")
        return
    accept = base64.b64encode(hashlib.sha1((fields["sec-websocket-key"] + GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    while True:
        b0, b1 = f.read(2)
        n = b1 & 127
        if n == 126: n = struct.unpack(">H", f.read(2))[0]
        elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4)
        data = bytes(x ^ mask[i % 4] for i, x in enumerate(f.read(n)))
        if b0 & 15 == 8:
            c.sendall(bytes([0x88, 0]))
            return
        c.sendall(frame(b"echo: " + data))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 3000))
s.listen()
while True:
    c, _ = s.accept()
    try:
        serve(c)
    finally:
        c.close()
"#;

/// The client: a WebSocket through the proxy on port 80 to `ws.localhost`, a short message and
/// one of 200 KB (over any head limit), then a close.
const WS_CLIENT: &str = r#"
import base64, hashlib, os, socket, struct
key = base64.b64encode(os.urandom(16)).decode()
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
c = socket.create_connection(("127.0.0.1", 80), timeout=10)
c.sendall(("GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
f = c.makefile("rb")
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += f.readline()
lines = head.decode().split("\r\n")
fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
print("status", lines[0])
print("upgrade", fields.get("upgrade"), fields.get("connection"), "accept-ok" if fields.get("sec-websocket-accept") == want else "accept-wrong")
def send(op, data):
    mask = os.urandom(4)
    n = len(data)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n)
    c.sendall(bytes([0x80 | op]) + size + mask + bytes(x ^ mask[i % 4] for i, x in enumerate(data)))
def receive():
    b0, b1 = f.read(2)
    n = b1 & 127
    if n == 126: n = struct.unpack(">H", f.read(2))[0]
    elif n == 127: n = struct.unpack(">Q", f.read(8))[0]
    return b0 & 15, f.read(n)
send(1, b"hello")
print("message", receive()[1].decode())
big = b"x" * 200_000
send(1, big)
op, data = receive()
print("big", len(data), data == b"echo: " + big)
send(8, b"")
print("close", receive()[0])
"#;

#[test]
fn the_proxy_passes_websocket_upgrades_through() {
    let out = Lab::new().ok(&format!(
        r#"
        {app}
        shibafu proxy serve --port 80 --idle-timeout 2 2>$LAB/proxy.log &
        shibafu run -d --name ws -p 3000 --layers base,python,app python /ws.py >/dev/null
        for i in $(seq 100); do curl -s --max-time 2 -H 'Host: ws.localhost' http://127.0.0.1/ | grep -q plain && break; sleep 0.1; done
        echo plain=$(curl -s --max-time 2 -H 'Host: ws.localhost' http://127.0.0.1/)
        python3 - <<'PY'
{WS_CLIENT}
PY
        # A quiet WebSocket is not an idle HTTP connection: it outlives the idle timeout.
        python3 - <<'PY'
import socket, time
c = socket.create_connection(("127.0.0.1", 80), timeout=10)
c.sendall(b"GET / HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += c.recv(1)
time.sleep(3)
c.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")
print("after-idle", c.recv(100)[2:].decode())
PY
        "#,
        app = python_app("ws.py", WS_ECHO)
    ));
    for want in [
        "plain=plain",
        "status HTTP/1.1 101 Switching Protocols",
        "upgrade websocket upgrade accept-ok",
        "message echo: hello",
        "big 200006 True",
        "close 8",
        "after-idle echo: hi",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn an_internal_network_has_no_way_out_and_inspect_shows_who_is_on_it() {
    let out = Lab::new().ok(&format!(
        r#"
        {internet}
        shibafu network create --internal db 172.23.0.0/24 >/dev/null
        shibafu run -d --name pg --network db busybox sleep 1000 >/dev/null
        shibafu run -d --name app --network db --network bridge busybox sleep 1000 >/dev/null
        shibafu exec pg ip route | sed 's/^/pg-route: /'
        shibafu exec app ip route | grep default | sed 's/^/app-route: /'
        shibafu exec pg ping -c1 -W1 198.51.100.1 >/dev/null 2>&1 && echo pg-out || echo pg-stays-in
        shibafu exec app ping -c1 -W1 198.51.100.1 >/dev/null 2>&1 && echo app-out || echo app-stays-in
        shibafu exec app ping -c1 -W1 172.23.0.2 >/dev/null 2>&1 && echo app-reaches-pg
        shibafu network inspect db
        iptables -t nat -S SHIBAFU-POSTROUTING | grep -c '172.23.0.0/24 ! -o br-db' | sed 's/^/masquerade-out=/' || true
        "#,
        internet = common::internet()
    ));
    assert!(!out.lines().any(|l| l.starts_with("pg-route: default")), "no default route on an internal network: {out}");
    assert!(out.contains("app-route: default via 172.20.0.1 dev eth1"), "the default route goes through the first network with a way out: {out}");
    assert!(out.contains("pg-stays-in") && out.contains("app-out") && out.contains("app-reaches-pg"), "{out}");
    assert!(out.contains("masquerade-out=0"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&out[out.find('[').unwrap()..out.rfind(']').unwrap() + 1]).unwrap();
    let db = &json[0];
    assert_eq!(db["name"], "db");
    assert_eq!(db["internal"], true);
    assert_eq!(db["network_interface"], "br-db");
    assert_eq!(db["subnets"][0]["subnet"], "172.23.0.0/24");
    assert_eq!(db["subnets"][0]["gateway"], "172.23.0.1");
    let containers = db["containers"].as_object().unwrap();
    let mut seen: Vec<(String, String)> = containers
        .values()
        .map(|c| {
            let (iface, v) = c["interfaces"].as_object().unwrap().iter().next().unwrap();
            (format!("{}:{iface}", c["name"].as_str().unwrap()), v["subnets"][0]["ipnet"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("app:eth0".to_string(), "172.23.0.3/24".to_string()), ("pg:eth0".to_string(), "172.23.0.2/24".to_string())]);
}

#[test]
fn replies_leave_by_the_interface_their_request_came_in_on() {
    // The port is published from eth0 on an internal network; the default route is eth1's.
    let out = Lab::new().ok(&format!(
        r#"
        {internet}
        # Strict reverse-path filtering (the lab's own namespace): a reply that left by the
        # wrong interface arrives on a bridge its source does not route to, and is dropped.
        sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
        shibafu network create --internal db 172.23.0.0/24 >/dev/null
        shibafu run -d --name web --network db --network bridge -p 8080:80 busybox nc -ll -p 80 -e echo hello-from-web >/dev/null
        sleep 0.3
        shibafu exec web ip rule | sed 's/^/rule: /'
        echo "host: $(curl -s --http0.9 -m 3 http://127.0.0.1:8080/ || echo failed)"
        echo "internet: $(ip netns exec internet curl -s --http0.9 -m 3 http://198.51.100.254:8080/ || echo failed)"
        "#,
        internet = common::internet()
    ));
    assert!(out.contains("host: hello-from-web"), "{out}");
    assert!(out.contains("internet: hello-from-web"), "{out}");
    assert!(out.contains("from 172.23.0.2 lookup"), "a rule per interface address: {out}");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let out = Lab::new().ok(
        r#"
        shibafu network create backend 172.22.0.0/24 >/dev/null
        shibafu run -d --name db --network backend busybox sh -c 'nc -ll -p 5432 -e echo tcp-ok & sleep 1000' >/dev/null
        shibafu run -d --name app busybox sleep 1000 >/dev/null
        snap() { echo "$(ip -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ') | $(sqlite3 $SHIBAFU_ROOT/state.db 'SELECT network, address, interface FROM leases ORDER BY 1, 2' | tr '\n' ' ') | $(iptables-save | grep -v '^#' | sed 's/\[[0-9:]*\]//' | md5sum)"; }
        before=$(snap)
        shibafu exec app timeout 2 nc 172.22.0.2 5432 </dev/null 2>/dev/null || echo before-blocked
        shibafu network connect backend app
        shibafu exec app ip -4 -o addr show eth1 | awk '{print "eth1:", $4}'
        shibafu exec app ip rule | grep -c 'lookup 10[01]' | sed 's/^/rules=/'
        echo "after-connect: $(shibafu exec app timeout 2 nc 172.22.0.2 5432 </dev/null)"
        shibafu exec app cat /etc/resolv.conf | grep -E '^(nameserver|search)' | tr '\n' ' ' | sed 's/^/resolv-connected: /'; echo
        shibafu network connect backend app 2>&1 | sed 's/^/twice: /' || true
        shibafu network inspect backend | grep -c '"name": "app"' | sed 's/^/inspect-app=/'
        shibafu network disconnect backend app
        shibafu exec app ip -o link | grep -c eth1 | sed 's/^/eth1-left=/' || true
        shibafu exec app ip rule | grep -c 'lookup 101' | sed 's/^/rule-101-left=/' || true
        shibafu exec app timeout 2 nc 172.22.0.2 5432 </dev/null 2>/dev/null || echo after-disconnect-blocked
        shibafu exec app cat /etc/resolv.conf | grep -c 'backend.local' | sed 's/^/resolv-backend-left=/' || true
        [ "$(snap)" = "$before" ] && echo "as-before" || { echo "changed:"; echo "$before"; snap; }
        shibafu network disconnect backend app 2>&1 | sed 's/^/not-on: /' || true
        shibafu network connect backend nosuch 2>&1 | sed 's/^/nosuch: /' || true
        "#,
    );
    for want in [
        "before-blocked",
        "app eth1 172.22.0.3",
        "eth1: 172.22.0.3/24",
        "rules=2",
        "after-connect: tcp-ok",
        "twice: shibafu: container app is on network backend already",
        "inspect-app=1",
        "eth1-left=0",
        "rule-101-left=0",
        "resolv-connected: search bridge.local backend.local nameserver 172.20.0.1",
        "resolv-backend-left=0",
        "after-disconnect-blocked",
        "as-before",
        "not-on: shibafu: container app is not on network backend",
        "nosuch: shibafu: no such container",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}
