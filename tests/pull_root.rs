//! Pulls as phase 7 wants them: layers fetched concurrently (bounded), the layers a data root
//! has skipped (`Already exists`), a blob cut half-way resumed with a Range request, and the
//! partials a cut pull keeps removed by `gc`. A relay in front of our registry, on loopback in
//! the test's own network namespace, observes the requests (how many blob GETs overlap, which
//! Range each asks for) and misbehaves on demand (cuts a body, ignores Range, redirects blobs to
//! another host name). Nothing here is timed: overlap is proven by the relay holding the first
//! blob GETs until three are open at once.

mod common;

use common::Lab;

/// Starts `registry serve` on 127.0.0.1:5000 and the relay on 127.0.0.1:5002; builds two
/// images of one-layer images pushed to the registry: lab/multi:1 (busybox, l1..l4) and
/// lab/shares:1 (busybox, l2, l5), and names their layer digests ($BASE, $L1..$L5).
const SETUP: &str = r#"
    shibafu registry serve --port 5000 --address 127.0.0.1 2>$LAB/registry.log &
    for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
    R=http://127.0.0.1:5000
    echo '{}' > $LAB/relay.json
    python3 $LAB/relay.py $LAB 2>$LAB/relay.err &
    for i in $(seq 50); do curl -sf http://127.0.0.1:5002/v2/ >/dev/null && break; sleep 0.1; done
    mkdir -p $LAB/base && tar -C $LAB/base -xf $BUSYBOX_TAR
    shibafu prepare-layer base $LAB/base >/dev/null
    shibafu push-layer base localhost:5000/lab/base:1 >/dev/null
    for i in 1 2 3 4 5; do
        mkdir -p $LAB/l$i && head -c 400000 /dev/urandom > $LAB/l$i/f$i
        shibafu prepare-layer l$i $LAB/l$i >/dev/null
        shibafu push-layer l$i localhost:5000/lab/l$i:1 >/dev/null
    done
    shibafu create-manifest --layers lab/base:1,lab/l1:1,lab/l2:1,lab/l3:1,lab/l4:1 localhost:5000/lab/multi:1 >/dev/null
    shibafu create-manifest --layers lab/base:1,lab/l2:1,lab/l5:1 localhost:5000/lab/shares:1 >/dev/null
    layer() { curl -s $R/v2/lab/$1/manifests/1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])'; }
    BASE=$(layer base); L1=$(layer l1); L2=$(layer l2); L3=$(layer l3); L4=$(layer l4); L5=$(layer l5)
    hex() { echo ${1#sha256:}; }
    short() { hex $1 | cut -c1-12; }
    relay() { echo "$1" > $LAB/relay.json; : > $LAB/relay.log; }
    # Every stored blob (if any: a cut pull may have stored none) has the digest it is named by.
    verified() { for f in $1/blobs/sha256/*; do [ ! -e $f ] || [ "$(sha256sum < $f | cut -c1-64)" = "$(basename $f)" ] || echo "UNVERIFIED $f"; done; }
"#;

/// The relay: forwards to our registry; logs each blob GET (its Range, the status, how many
/// blob GETs were open when it arrived); reads $LAB/relay.json on every request:
/// `barrier` holds the first blob GETs until that many are open at once (then never again);
/// `cut` sends only the first N bytes of a blob's body, once per digest and config (a `round`
/// tells two alike apart), then closes the
/// connection; `ignore_range` drops the Range header (the registry then answers 200);
/// `redirect` sends blob GETs to http://localhost:5002/cdn/..., another host name; `auth`
/// wants a bearer token from /token (401 with a challenge without it), and a new one after each
/// manifest it serves, as if the first had expired; `stall` sends half of each blob that is not
/// cut and holds the rest until the client closes the connection (logged `cancelled`), or 30 s
/// pass (logged `waited`).
const RELAY: &str = r#"
import http.client, http.server, json, sys, threading
LAB = sys.argv[1]
cond = threading.Condition()
state = {"open": 0, "released": False, "cut": set(), "token": 1}
CHALLENGE = 'Bearer realm="http://127.0.0.1:5002/token",service="lab",scope="repository:lab/multi:pull"'
def config():
    with open(LAB + "/relay.json") as f:
        return json.load(f)
def log(line):
    with open(LAB + "/relay.log", "a") as f:
        f.write(line + "\n")
class Relay(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def send_head(self, status, headers, length):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
    def upstream(self, path, rng):
        up = http.client.HTTPConnection("127.0.0.1", 5000)
        headers = {"Range": rng} if rng else {}
        up.request(self.command, path, headers=headers)
        r = up.getresponse()
        body = r.read()
        keep = [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        return r.status, keep, body
    def any(self):
        cfg = config()
        path = self.path
        cdn = path.startswith("/cdn/")
        if cdn:
            path = path[len("/cdn"):]
        blob = self.command == "GET" and "/blobs/sha256:" in path
        if path.startswith("/token"):
            body = json.dumps({"token": "t%d" % state["token"]}).encode()
            self.send_head(200, [("Content-Type", "application/json")], len(body))
            return self.wfile.write(body)
        if cfg.get("auth") and not cdn and self.headers.get("Authorization") != "Bearer t%d" % state["token"]:
            log("unauthorized " + path)
            return self.send_head(401, [("WWW-Authenticate", CHALLENGE)], 0)
        if not blob:
            status, headers, body = self.upstream(path, None)
            if cfg.get("auth") and "/manifests/" in path:
                # The token expires as soon as the manifest is served.
                state["token"] += 1
            self.send_head(status, headers, len(body))
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if cfg.get("redirect") and not cdn:
            log("redirect " + path)
            return self.send_head(307, [("Location", "http://localhost:5002/cdn" + path)], 0)
        with cond:
            state["open"] += 1
            open_now = state["open"]
            cond.notify_all()
            if cfg.get("barrier") and not state["released"]:
                cond.wait_for(lambda: state["open"] >= cfg["barrier"], timeout=30)
                state["released"] = True
                cond.notify_all()
        rng = self.headers.get("Range")
        digest = path.rsplit("/", 1)[1]
        status, headers, body = self.upstream(path, None if cfg.get("ignore_range") else rng)
        cut = cfg.get("cut", {}).get(digest)
        once = (json.dumps(cfg, sort_keys=True), digest)
        if cut is not None and once not in state["cut"]:
            state["cut"].add(once)
        else:
            cut = None
        log(f"GET {self.path} range={rng or '-'} status={status} open={open_now}" + (f" cut={cut}" if cut is not None else ""))
        sent = body[:cut] if cut is not None else body
        if cfg.get("stall") and cut is None:
            half = len(body) // 2
            if self.stall(status, headers, body, half, path):
                return
            sent = body[half:]
        else:
            self.send_head(status, headers, len(body))
        # Closed before the last byte leaves: the client cannot start its next GET (and be
        # counted) before this one stops counting.
        self.wfile.write(sent[:-1])
        self.wfile.flush()
        with cond:
            state["open"] -= 1
        self.wfile.write(sent[-1:])
        if cut is not None:
            self.close_connection = True
    def stall(self, status, headers, body, half, path):
        """Sends the head and the first `half` bytes of `body`, then waits for the client to
        close the connection (true) or for 30 s to pass (false, and the rest is sent). A
        client that closed before (a write fails) counts as closed too."""
        try:
            self.send_head(status, headers, len(body))
            self.wfile.write(body[:half])
            self.wfile.flush()
            self.connection.settimeout(30)
            closed = self.connection.recv(1) == b""
        except TimeoutError:
            closed = False
        except OSError:
            closed = True
        self.connection.settimeout(None)
        log(("cancelled " if closed else "waited ") + path)
        if closed:
            with cond:
                state["open"] -= 1
            self.close_connection = True
        return closed
    do_GET = do_HEAD = any
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 5002), Relay)
server.daemon_threads = True
server.serve_forever()
"#;

fn lab() -> Lab {
    let lab = Lab::new();
    std::fs::write(lab.dir.path().join("relay.py"), RELAY).unwrap();
    lab
}

/// The value of `key=` on the first line that has it.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} missing: {out}"))
}

#[test]
fn layers_are_fetched_three_at_a_time_and_stored_ones_already_exist() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        relay '{{"barrier": 3}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 2>$LAB/multi.err
        echo blob-gets=$(grep -c '^GET' $LAB/relay.log)
        echo most-open=$(grep -o 'open=[0-9]*' $LAB/relay.log | cut -d= -f2 | sort -n | tail -1)
        echo multi-complete=$(grep -c ': Pull complete$' $LAB/multi.err)
        echo multi-cached=$(grep -c ': Already exists$' $LAB/multi.err || true)
        relay '{{}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/shares:1 2>$LAB/shares.err
        echo shares-cached=$(grep ': Already exists$' $LAB/shares.err | cut -d: -f1 | sort | tr '\n' ' ')
        echo want-cached=$(printf '%s\n' $(short $BASE) $(short $L2) | sort | tr '\n' ' ')
        echo shares-complete=$(grep ': Pull complete$' $LAB/shares.err | cut -d: -f1)
        echo want-complete=$(short $L5)
        echo shares-gets=$(grep -o 'blobs/sha256:[0-9a-f]*' $LAB/relay.log | cut -c14-25 | sort | tr '\n' ' ')
        verified $LAB/p
        echo partials=$(ls -A $LAB/p/blobs/partial | wc -l)
        # A run of an image that is not here pulls it first, the same way.
        SHIBAFU_ROOT=$LAB/r shibafu run --rm 127.0.0.1:5002/lab/shares:1 sha256sum /f5 2>$LAB/run.err | cut -c1-64 > $LAB/f5.ran
        sha256sum < $LAB/l5/f5 | cut -c1-64 | cmp - $LAB/f5.ran && echo ran-the-pulled-image
        echo run-complete=$(grep -c ': Pull complete$' $LAB/run.err)
        cat $LAB/multi.err
        "#
    ));
    assert_eq!(field(&out, "blob-gets="), "6", "five layers and the config: {out}");
    assert_eq!(field(&out, "most-open="), "3", "three blob GETs at once, never more: {out}");
    assert_eq!(field(&out, "multi-complete="), "5", "{out}");
    assert_eq!(field(&out, "multi-cached="), "0", "{out}");
    assert_eq!(field(&out, "shares-cached="), field(&out, "want-cached="), "busybox and l2 are stored: {out}");
    assert_eq!(field(&out, "shares-complete="), field(&out, "want-complete="), "{out}");
    // Only l5's blob and the new config were asked for.
    assert_eq!(field(&out, "shares-gets=").split_whitespace().count(), 2, "{out}");
    assert!(field(&out, "shares-gets=").contains(field(&out, "want-complete=")), "{out}");
    assert!(!out.contains("UNVERIFIED"), "{out}");
    assert_eq!(field(&out, "partials="), "0", "{out}");
    assert!(out.contains("ran-the-pulled-image"), "{out}");
    assert_eq!(field(&out, "run-complete="), "3", "{out}");
    assert!(out.contains("1: Pulling from lab/multi") && out.contains("Status: Downloaded newer image for 127.0.0.1:5002/lab/multi:1"), "{out}");
}

#[test]
fn a_cut_blob_resumes_with_a_range_request() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        SIZE=$(stat -c %s $SHIBAFU_ROOT/blobs/sha256/$(hex $L1))
        echo size=$SIZE
        # Our registry answers ranges: 206 with Content-Range, 416 past the end.
        echo range=$(curl -s -o /dev/null -w '%{{http_code}}' -r 150000- $R/v2/lab/l1/blobs/$L1) $(curl -s -D - -o /dev/null -r 150000- $R/v2/lab/l1/blobs/$L1 | tr -d '\r' | sed -n 's/^content-range: //Ip')
        echo past-the-end=$(curl -s -o /dev/null -w '%{{http_code}}' -r $SIZE- $R/v2/lab/l1/blobs/$L1) $(curl -s -D - -o /dev/null -r $SIZE- $R/v2/lab/l1/blobs/$L1 | tr -d '\r' | sed -n 's/^content-range: //Ip')

        relay '{{"cut": {{"'$L1'": 150000}}}}'
        if SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 2>$LAB/cut.err; then echo the-cut-pull-succeeded; fi
        echo cut-error=$(grep -c "stopped after 150000 of $SIZE bytes.*pulling again continues from there" $LAB/cut.err)
        echo kept=$(stat -c %s $LAB/p/blobs/partial/$(hex $L1))
        verified $LAB/p
        relay '{{}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 >$LAB/resumed.out 2>$LAB/resumed.err
        echo resumed-with=$(grep "blobs/$L1 " $LAB/relay.log | grep -o 'range=[^ ]* status=[0-9]*')
        echo resumed-line=$(grep -c "^$(short $L1): Resuming from 150kB of" $LAB/resumed.err)
        echo partials-after=$(ls -A $LAB/p/blobs/partial | wc -l)
        verified $LAB/p
        SHIBAFU_ROOT=$LAB/p shibafu run --rm 127.0.0.1:5002/lab/multi:1 sha256sum /f1 | cut -c1-64 > $LAB/f1.ran
        sha256sum < $LAB/l1/f1 | cut -c1-64 | cmp - $LAB/f1.ran && echo resumed-layer-is-whole

        # Across a redirect to another host name, the Range goes along.
        relay '{{"redirect": true, "cut": {{"'$L1'": 150000}}}}'
        SHIBAFU_ROOT=$LAB/q shibafu pull 127.0.0.1:5002/lab/multi:1 2>/dev/null || echo redirected-cut-failed
        relay '{{"redirect": true}}'
        SHIBAFU_ROOT=$LAB/q shibafu pull 127.0.0.1:5002/lab/multi:1 >/dev/null 2>&1 && echo redirected-resume-pulled
        echo redirected-with=$(grep "^GET /cdn/v2/lab/multi/blobs/$L1 " $LAB/relay.log | grep -o 'range=[^ ]* status=[0-9]*')
        echo partials-after-redirect=$(ls -A $LAB/q/blobs/partial | wc -l)
        "#
    ));
    let size: u64 = field(&out, "size=").parse().unwrap();
    assert_eq!(field(&out, "range="), format!("206 bytes 150000-{}/{size}", size - 1), "{out}");
    assert_eq!(field(&out, "past-the-end="), format!("416 bytes */{size}"), "{out}");
    assert!(!out.contains("the-cut-pull-succeeded"), "{out}");
    assert_eq!(field(&out, "cut-error="), "1", "the error says where it stopped: {out}");
    assert_eq!(field(&out, "kept="), "150000", "{out}");
    assert!(!out.contains("UNVERIFIED"), "{out}");
    assert_eq!(field(&out, "resumed-with="), "range=bytes=150000- status=206", "{out}");
    assert_eq!(field(&out, "resumed-line="), "1", "{out}");
    assert_eq!(field(&out, "partials-after="), "0", "{out}");
    assert!(out.contains("resumed-layer-is-whole"), "{out}");
    assert!(out.contains("redirected-cut-failed") && out.contains("redirected-resume-pulled"), "{out}");
    assert_eq!(field(&out, "redirected-with="), "range=bytes=150000- status=206", "{out}");
    assert_eq!(field(&out, "partials-after-redirect="), "0", "{out}");
}

#[test]
fn a_registry_that_ignores_range_and_a_corrupt_partial_still_give_the_right_blob() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        # A registry that ignores Range answers 200 with the whole blob: taken from the start.
        relay '{{"cut": {{"'$L1'": 150000}}}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 2>/dev/null || true
        relay '{{"ignore_range": true}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 >/dev/null 2>&1 && echo pulled-without-range
        echo ignored=$(grep "blobs/$L1 " $LAB/relay.log | grep -o 'range=[^ ]* status=[0-9]*')
        echo partials-ignored=$(ls -A $LAB/p/blobs/partial | wc -l)
        verified $LAB/p

        # A partial whose bytes were changed is caught by the digest and fetched again whole.
        relay '{{"round": 2, "cut": {{"'$L1'": 150000}}}}'
        SHIBAFU_ROOT=$LAB/q shibafu pull 127.0.0.1:5002/lab/multi:1 2>/dev/null && echo the-cut-pull-succeeded
        echo kept=$(stat -c %s $LAB/q/blobs/partial/$(hex $L1))
        printf 'XXXXXXXX' | dd of=$LAB/q/blobs/partial/$(hex $L1) bs=1 seek=1000 conv=notrunc status=none
        relay '{{}}'
        SHIBAFU_ROOT=$LAB/q shibafu pull 127.0.0.1:5002/lab/multi:1 >/dev/null 2>$LAB/corrupt.err && echo pulled-after-corruption
        echo corrupt=$(grep "blobs/$L1 " $LAB/relay.log | grep -o 'range=[^ ]* status=[0-9]*' | tr '\n' ' ')
        echo refetch-line=$(grep -c "^$(short $L1): Downloading again from the start: the 150000 bytes kept did not verify" $LAB/corrupt.err)
        echo partials-corrupt=$(ls -A $LAB/q/blobs/partial | wc -l)
        verified $LAB/q
        "#
    ));
    assert!(out.contains("pulled-without-range"), "{out}");
    assert_eq!(field(&out, "ignored="), "range=bytes=150000- status=200", "{out}");
    assert_eq!(field(&out, "partials-ignored="), "0", "{out}");
    assert!(!out.contains("the-cut-pull-succeeded"), "{out}");
    assert_eq!(field(&out, "kept="), "150000", "{out}");
    assert!(out.contains("pulled-after-corruption"), "{out}");
    assert_eq!(field(&out, "corrupt=").trim(), "range=bytes=150000- status=206 range=- status=200", "{out}");
    assert_eq!(field(&out, "refetch-line="), "1", "{out}");
    assert_eq!(field(&out, "partials-corrupt="), "0", "{out}");
    assert!(!out.contains("UNVERIFIED"), "{out}");
}

#[test]
fn gc_removes_an_abandoned_partial_and_keeps_an_owned_one() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        relay '{{"cut": {{"'$L1'": 150000}}}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 2>/dev/null || true
        P=$LAB/p/blobs/partial/$(hex $L1)
        touch -d '1 minute ago' $P
        # While a process holds its lock (as a running pull does), gc leaves it.
        flock $P env SHIBAFU_ROOT=$LAB/p shibafu gc > $LAB/gc-owned.out
        echo owned-kept=$(test -e $P && echo yes || echo no)
        SHIBAFU_ROOT=$LAB/p shibafu gc > $LAB/gc.out
        echo abandoned-removed=$(test -e $P && echo no || echo yes)
        echo gc-said=$(grep -c "removed leftover $P" $LAB/gc.out)
        "#
    ));
    assert_eq!(field(&out, "owned-kept="), "yes", "{out}");
    assert_eq!(field(&out, "abandoned-removed="), "yes", "{out}");
    assert_eq!(field(&out, "gc-said="), "1", "{out}");
}

#[test]
fn a_token_that_expires_during_a_pull_is_renewed_for_the_blobs() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        relay '{{"auth": true}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 >/dev/null 2>$LAB/auth.err && echo pulled-with-a-renewed-token
        echo refused-blob-gets=$(grep -c '^unauthorized .*/blobs/' $LAB/relay.log)
        echo blob-gets=$(grep -c '^GET .* status=200' $LAB/relay.log)
        "#
    ));
    assert!(out.contains("pulled-with-a-renewed-token"), "{out}");
    assert_ne!(field(&out, "refused-blob-gets="), "0", "the old token was refused: {out}");
    assert_eq!(field(&out, "blob-gets="), "6", "{out}");
}

#[test]
fn a_failed_download_cancels_the_others_and_stores_nothing_unverified() {
    let out = lab().ok(&format!(
        r#"
        {SETUP}
        # busybox, l1 and l2 are fetched together; l1 is cut while the other two hang half-way.
        relay '{{"barrier": 3, "stall": true, "cut": {{"'$L1'": 150000}}}}'
        if SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 2>$LAB/cut.err; then echo the-cut-pull-succeeded; fi
        for i in $(seq 100); do [ $(grep -c '^cancelled\|^waited' $LAB/relay.log) -ge 2 ] && break; sleep 0.1; done
        echo cancelled=$(grep '^cancelled' $LAB/relay.log | grep -o 'sha256:[0-9a-f]*' | sort | tr '\n' ' ')
        echo want-cancelled=$(printf '%s\n' $BASE $L2 | sort | tr '\n' ' ')
        echo waited=$(grep -c '^waited' $LAB/relay.log)
        echo never-asked=$(grep -c "blobs/$L3 \|blobs/$L4 " $LAB/relay.log)
        echo stored=$(ls -A $LAB/p/blobs/sha256 2>/dev/null | wc -l)
        echo error=$(grep -c "stopped after 150000 of" $LAB/cut.err)
        relay '{{}}'
        SHIBAFU_ROOT=$LAB/p shibafu pull 127.0.0.1:5002/lab/multi:1 >/dev/null 2>&1 && echo pulled-after
        echo partials=$(ls -A $LAB/p/blobs/partial | wc -l)
        verified $LAB/p
        "#
    ));
    assert!(!out.contains("the-cut-pull-succeeded"), "{out}");
    assert_eq!(field(&out, "cancelled="), field(&out, "want-cancelled="), "the two downloads open beside the cut one were dropped: {out}");
    assert_eq!(field(&out, "waited="), "0", "{out}");
    assert_eq!(field(&out, "never-asked="), "0", "the waiting layers were never started: {out}");
    assert_eq!(field(&out, "stored="), "0", "nothing half-fetched is in the store: {out}");
    assert_eq!(field(&out, "error="), "1", "{out}");
    assert!(out.contains("pulled-after"), "{out}");
    assert_eq!(field(&out, "partials="), "0", "{out}");
    assert!(!out.contains("UNVERIFIED"), "{out}");
}
