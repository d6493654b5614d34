//! Phase 6 of shared/PHASES.md: `dns serve` answers containers by name on the networks they
//! share, forwards the rest to the host's servers, and follows networks and containers as they
//! come and go. Each test runs in namespaces of its own; queries are made from a container's
//! own network namespace (busybox's nslookup and ping inside, or the host's dig entered into
//! it), so the server sees the container's address, as it would in the lab.

mod common;

use common::{internet, Lab};

/// Shell helpers: `listening ADDR` (a DNS listener on ADDR:53), `await_listeners ADDR...`,
/// `ask LABEL ID SERVER NAME [TYPE] [dig options]` (dig from container ID's namespace, printed
/// as `LABEL: status=... answer=TTL/TYPE/DATA ... ms=N`), and `start_dns`.
const HELPERS: &str = r#"
listening() { ss -lnu | grep -q " $1:53 " && ss -lnt | grep -q " $1:53 "; }
await_listeners() { for i in $(seq 100); do ok=1; for a in "$@"; do listening $a || ok=; done; [ -n "$ok" ] && return 0; sleep 0.1; done; return 1; }
ask() {
    label=$1 id=$2 server=$3 name=$4 type=${5:-A}; shift $(( $# < 5 ? $# : 5 ))
    out=$(nsenter --net=$SHIBAFU_ROOT/run/netns/$id dig +time=5 +tries=1 "$@" @$server $name $type || true)
    status=$(echo "$out" | grep -o 'status: [A-Z]*' | cut -d' ' -f2)
    answer=$(echo "$out" | sed -n '/ANSWER SECTION/,/^$/p' | grep -v '^;' | awk 'NF {printf "%s/%s/%s ", $2, $4, $5}')
    echo "$label: status=$status answer=$answer ms=$(echo "$out" | grep -o 'Query time: [0-9]*' | cut -d' ' -f3)"
    [ -n "$status" ] || echo "$label: dig said: $out"
}
start_dns() { shibafu dns serve >>$LAB/dns.out 2>>$LAB/dns.err & dns=$!; }
"#;

fn assert_all(out: &str, wants: &[&str]) {
    for want in wants {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn phase6_containers_find_each_other_by_name_on_the_networks_they_share_only() {
    let out = Lab::new().ok(&format!(
        r#"{internet}{HELPERS}
        shibafu network create frontend 172.21.0.0/24 >/dev/null
        shibafu network create backend 172.22.0.0/24 >/dev/null
        start_dns
        await_listeners 172.20.0.1 172.21.0.1 172.22.0.1
        pg=$(shibafu run -d --name postgres --network backend busybox sleep 1000)
        api=$(shibafu run -d --name api --network backend --network frontend busybox sleep 1000)
        web=$(shibafu run -d --name web --network frontend busybox sleep 1000)
        echo "api resolv.conf: $(shibafu exec api cat /etc/resolv.conf | tr '\n' '|')"
        echo "web resolv.conf: $(shibafu exec web cat /etc/resolv.conf | tr '\n' '|')"
        echo "bridge resolv.conf: $(shibafu run --rm busybox cat /etc/resolv.conf | tr '\n' '|')"
        echo "none resolv.conf: $(shibafu run --rm --network none busybox cat /etc/resolv.conf | tr '\n' '|')"
        shibafu exec api ping -c 1 postgres.backend.local | grep 'packets received'
        echo "api nslookup: $(shibafu exec api nslookup postgres.backend.local 2>&1 | tr '\n' '|')"
        echo "web nslookup: $(shibafu exec web nslookup postgres.backend.local 2>&1 | tr '\n' '|')"
        ask api-fqdn $api 172.22.0.1 postgres.backend.local
        ask api-bare $api 172.22.0.1 postgres
        ask api-docker $api 172.22.0.1 postgres.backend
        ask api-short-id $api 172.22.0.1 ${{pg:0:12}}
        ask api-other-net $api 172.22.0.1 web.frontend.local
        ask api-tcp $api 172.22.0.1 postgres.backend.local A +tcp
        ask api-aaaa $api 172.22.0.1 postgres.backend.local AAAA
        ask api-ptr $api 172.22.0.1 2.0.22.172.in-addr.arpa PTR
        ask api-unknown $api 172.22.0.1 nosuch.backend.local
        ask web-fqdn $web 172.21.0.1 postgres.backend.local
        ask web-other-gateway $web 172.22.0.1 postgres.backend.local
        ask web-ptr $web 172.21.0.1 2.0.22.172.in-addr.arpa PTR
        ask web-api $web 172.21.0.1 api.frontend.local
        echo "host: $(dig +short +time=5 +tries=1 @172.21.0.1 postgres.backend.local)"
        new=$(shibafu run -d --name cache --network backend busybox sleep 1000)
        ask at-once $api 172.22.0.1 cache.backend.local
        shibafu rm -f postgres >/dev/null
        ask after-rm $api 172.22.0.1 postgres.backend.local
        "#,
        internet = internet()
    ));
    assert_all(
        &out,
        &[
            "api resolv.conf: search backend.local frontend.local|nameserver 172.22.0.1|",
            "web resolv.conf: search frontend.local|nameserver 172.21.0.1|",
            // Phase 2's default network and `none` keep the host's servers, as before.
            "bridge resolv.conf: nameserver 198.51.100.1|",
            "none resolv.conf: nameserver 198.51.100.1|",
            "1 packets transmitted, 1 packets received",
            "api-fqdn: status=NOERROR answer=0/A/172.22.0.2 ",
            "api-bare: status=NOERROR answer=0/A/172.22.0.2 ",
            "api-docker: status=NOERROR answer=0/A/172.22.0.2 ",
            "api-short-id: status=NOERROR answer=0/A/172.22.0.2 ",
            "api-other-net: status=NOERROR answer=0/A/172.21.0.3 ",
            "api-tcp: status=NOERROR answer=0/A/172.22.0.2 ",
            "api-aaaa: status=NOERROR answer= ms",
            "api-ptr: status=NOERROR answer=0/PTR/postgres.backend.local. ",
            // The pretend internet answers every name: NXDOMAIN proves it was never asked.
            "api-unknown: status=NXDOMAIN answer= ms",
            "web-fqdn: status=NXDOMAIN answer= ms",
            "web-other-gateway: status=NXDOMAIN answer= ms",
            "web-ptr: status=NXDOMAIN answer= ms",
            "web-api: status=NOERROR answer=0/A/172.21.0.2 ",
            "host: 172.22.0.2",
            "at-once: status=NOERROR answer=0/A/172.22.0.4 ",
            "after-rm: status=NXDOMAIN answer= ms",
        ],
    );
    let line = |label: &str| out.lines().find(|l| l.starts_with(label)).unwrap_or_default().to_string();
    assert!(line("api nslookup:").contains("Name:\tpostgres.backend.local|Address: 172.22.0.2|"), "{out}");
    assert!(line("web nslookup:").contains("can't find postgres.backend.local: NXDOMAIN"), "{out}");
    assert!(!line("web nslookup:").contains("172.22.0.2"), "{out}");
}

#[test]
fn phase6_other_names_are_forwarded_and_a_dead_upstream_is_a_servfail_in_time() {
    let out = Lab::new().ok(&format!(
        r#"{internet}{HELPERS}
        shibafu network create backend 172.22.0.0/24 >/dev/null
        start_dns
        await_listeners 172.22.0.1
        c=$(shibafu run -d --name client --network backend busybox sleep 1000)
        shibafu exec client ping -c 1 google.com | grep 'packets received'
        ask forwarded $c 172.22.0.1 google.com
        ask forwarded-tcp $c 172.22.0.1 google.com A +tcp
        printf 'nameserver 198.51.100.2\n' > $LAB/resolv.conf
        ask dead $c 172.22.0.1 example.org
        printf 'nameserver 198.51.100.2\nnameserver 198.51.100.3\nnameserver 198.51.100.4\nnameserver 198.51.100.1\n' > $LAB/resolv.conf
        ask fourth-never-asked $c 172.22.0.1 example.org
        printf 'nameserver 198.51.100.2\nnameserver 198.51.100.1\n' > $LAB/resolv.conf
        ask second-answers $c 172.22.0.1 example.org
        ask local-still-ours $c 172.22.0.1 client.backend.local
        "#,
        internet = internet()
    ));
    assert_all(
        &out,
        &[
            "1 packets transmitted, 1 packets received",
            "forwarded: status=NOERROR answer=0/A/198.51.100.1 ",
            "forwarded-tcp: status=NOERROR answer=0/A/198.51.100.1 ",
            "dead: status=SERVFAIL answer= ms",
            "fourth-never-asked: status=SERVFAIL answer= ms",
            "second-answers: status=NOERROR answer=0/A/198.51.100.1 ",
            "local-still-ours: status=NOERROR answer=0/A/172.22.0.2 ",
        ],
    );
    // The one timed assertion the lab allows: the client hears back within the 5 s it waits.
    for label in ["dead", "fourth-never-asked", "second-answers"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{label}:"))).unwrap_or_default();
        let ms: u64 = line.rsplit("ms=").next().and_then(|n| n.trim().parse().ok()).unwrap_or(u64::MAX);
        assert!(ms < 5000, "{label} took {ms} ms: {out}");
    }
}

#[test]
fn phase6_listeners_follow_networks_survive_a_restart_and_leave_nothing_behind() {
    let out = Lab::new().ok(&format!(
        r#"{HELPERS}
        : > $LAB/resolv.conf && mount --bind $LAB/resolv.conf /etc/resolv.conf
        shibafu network create backend 172.22.0.0/24 >/dev/null
        start_dns
        await_listeners 172.22.0.1
        c=$(shibafu run -d --name one --network backend busybox sleep 1000)
        ask before-restart $c 172.22.0.1 one.backend.local
        kill $dns; wait $dns || true
        echo "stopped: $(listening 172.22.0.1 && echo still-listening || echo none)"
        start_dns
        await_listeners 172.22.0.1
        ask after-restart $c 172.22.0.1 one.backend.local
        shibafu network create gamma 172.23.0.0/24 >/dev/null
        await_listeners 172.23.0.1 && echo gamma-listening
        g=$(shibafu run -d --name two --network gamma busybox sleep 1000)
        ask on-gamma $g 172.23.0.1 two.gamma.local
        ask gamma-sees-not-backend $g 172.23.0.1 one.backend.local
        shibafu network connect gamma one >/dev/null
        ask after-connect $g 172.23.0.1 one.gamma.local
        ask connected-sees-gamma $c 172.22.0.1 two.gamma.local
        shibafu network disconnect gamma one >/dev/null
        ask after-disconnect $g 172.23.0.1 one.gamma.local
        shibafu rm -f two >/dev/null
        shibafu network rm gamma >/dev/null
        for i in $(seq 100); do listening 172.23.0.1 || break; sleep 0.1; done
        echo "gamma after rm: $(listening 172.23.0.1 && echo still-listening || echo none)"
        kill $dns; wait $dns || true
        shibafu rm -f one >/dev/null
        shibafu network rm backend >/dev/null
        echo "listeners at the end: $(ss -lnut | grep -c ':53 ' || true)"
        cat $LAB/dns.out
        "#,
    ));
    assert_all(
        &out,
        &[
            "before-restart: status=NOERROR answer=0/A/172.22.0.2 ",
            "stopped: none",
            "after-restart: status=NOERROR answer=0/A/172.22.0.2 ",
            "gamma-listening",
            "on-gamma: status=NOERROR answer=0/A/172.23.0.2 ",
            "gamma-sees-not-backend: status=NXDOMAIN",
            "after-connect: status=NOERROR answer=0/A/172.23.0.3 ",
            "connected-sees-gamma: status=NOERROR answer=0/A/172.23.0.2 ",
            "after-disconnect: status=NXDOMAIN",
            "gamma after rm: none",
            "listeners at the end: 0",
            "shibafu dns: network gamma: listening on 172.23.0.1:53 (udp, tcp)",
            "shibafu dns: network gamma: stopped listening on 172.23.0.1:53",
        ],
    );
}

#[test]
fn a_hostname_and_network_aliases_resolve_on_the_container_networks() {
    let out = Lab::new().ok(
        r#"
        shibafu network create backend 172.22.0.0/24 >/dev/null
        shibafu network create frontend 172.21.0.0/24 >/dev/null
        shibafu dns serve 2>$LAB/dns.log &
        for i in $(seq 50); do ss -lun | grep -q '172.22.0.1:53 ' && break; sleep 0.1; done
        shibafu run -d --name postgres --hostname pg-host --network-alias db --network-alias primary --network backend busybox sleep 1000 >/dev/null
        shibafu run -d --name api --network backend busybox sleep 1000 >/dev/null
        shibafu run -d --name web --network frontend busybox sleep 1000 >/dev/null
        shibafu exec postgres hostname | sed 's/^/hostname: /'
        for q in db primary.backend.local pg-host db.backend; do
            echo "$q: $(shibafu exec api nslookup $q 2>&1 | grep -A1 "^Name:" | grep -o '172\.22\.0\.[0-9]*' | head -1)"
        done
        shibafu exec web nslookup db.backend.local 2>&1 | grep -q NXDOMAIN && echo web-db-nxdomain
        shibafu run --rm --network-alias '../x' --network backend busybox true 2>&1 | sed 's/^/bad-alias: /' || true
        "#,
    );
    for want in ["hostname: pg-host", "db: 172.22.0.2", "primary.backend.local: 172.22.0.2", "pg-host: 172.22.0.2", "db.backend: 172.22.0.2", "web-db-nxdomain", "bad-alias: shibafu: invalid network alias"] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

#[test]
fn twenty_containers_started_in_parallel_all_resolve_each_other() {
    let out = Lab::new().ok(
        r#"
        shibafu network create backend 172.22.0.0/24 >/dev/null
        shibafu dns serve 2>$LAB/dns.log &
        for i in $(seq 50); do ss -lun | grep -q '172.22.0.1:53 ' && break; sleep 0.1; done
        runs=""
        for i in $(seq 20); do shibafu run -d --name c$i --network backend busybox sleep 1000 >/dev/null & runs="$runs $!"; done
        wait $runs
        for i in $(seq 20); do
            shibafu exec c$i sh -c 'for j in $(seq 20); do nslookup c$j.backend.local 2>/dev/null | grep -A1 "^Name:" | grep -o "172\.22\.0\.[0-9]*"; done' | sort -u | wc -l | sed "s/^/c$i sees /"
        done
        "#,
    );
    let seen: Vec<&str> = out.lines().filter(|l| l.contains(" sees ")).collect();
    assert_eq!(seen.len(), 20, "{out}");
    assert!(seen.iter().all(|l| l.ends_with(" sees 20")), "every container resolves all twenty to distinct addresses:\n{out}");
}

#[test]
fn dns_trace_explains_a_lookup_query_by_query() {
    let out = Lab::new().ok(&format!(
        r#"
        {internet}
        shibafu network create backend 172.22.0.0/24 >/dev/null
        shibafu network create frontend 172.21.0.0/24 >/dev/null
        shibafu run -d --name postgres --network backend busybox sleep 1000 >/dev/null
        shibafu run -d --name api --network backend --network frontend busybox sleep 1000 >/dev/null
        shibafu run -d --name web --network frontend busybox sleep 1000 >/dev/null
        echo "== api postgres"; shibafu dns trace api postgres
        echo "== web postgres.backend.local"; shibafu dns trace web postgres.backend.local
        echo "== api google.com"; shibafu dns trace api google.com
        shibafu --explain run --rm --name probe --network backend busybox true 2>&1 | grep '# DNS' | sed 's/^/explain: /'
        "#,
        internet = internet()
    ));
    for want in [
        "api: nameserver 172.22.0.1, search [backend.local frontend.local], ndots 1",
        "postgres.backend.local: A 172.22.0.2 (from the state",
        "dig @172.22.0.1 postgres.backend.local",
        "web: nameserver 172.21.0.1, search [frontend.local], ndots 1",
        "postgres.backend.local: NXDOMAIN (the name is on a network this container is not on: isolation hides it)",
        "no query answered: postgres.backend.local does not resolve from web",
        "google.com: forwarded to [198.51.100.1:53]: NOERROR 198.51.100.1",
        "explain: + # DNS: dns serve answers probe.backend.local A 172.22.0.4, TTL 0, from state.db (dig @172.22.0.1 probe.backend.local)",
        "explain: + # DNS: the names of 172.22.0.4 on backend go with its lease",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}
