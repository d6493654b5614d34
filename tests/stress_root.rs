//! Phase 7's "state you can trust", under load: 8 clients at once, each in a loop for a minute
//! (SHIBAFU_STRESS_SECS), making a network, running a container on it with a published port,
//! exec'ing into it, running a throwaway container on the shared default bridge, stopping and
//! removing, and removing the network. No command may fail but the ones meant to, the counts
//! must add up, and afterwards nothing may be left: no container, network, lease, port, link,
//! rule, namespace file, mount or process, and the database must pass its integrity check.

mod common;

use common::Lab;

#[test]
fn eight_clients_at_once_for_a_minute_leave_nothing_behind() {
    let secs: u64 = std::env::var("SHIBAFU_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let out = Lab::new().ok(&format!(
        r#"
        state() {{
            ip -o link | awk '{{print $2}}' | cut -d@ -f1 | sort
            iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
            sqlite3 $SHIBAFU_ROOT/state.db 'SELECT * FROM leases; SELECT * FROM ports; SELECT name FROM networks'
            ls $SHIBAFU_ROOT/run/netns
            grep -c "$SHIBAFU_ROOT" /proc/self/mountinfo || true
        }}
        shibafu run --rm busybox true
        state > $LAB/before
        # step K I WANT COMMAND...: runs COMMAND, counts it, and notes it in $LAB/errors.K when
        # its exit code is not WANT.
        step() {{
            local k=$1 i=$2 want=$3 code=0
            shift 3
            "$@" >$LAB/out.$k 2>&1 || code=$?
            echo "$2 $3" >> $LAB/ops.$k
            if [ "$code" != "$want" ]; then
                echo "client $k round $i: '$*' exited $code, not $want: $(cat $LAB/out.$k)" >> $LAB/errors.$k
            fi
        }}
        client() {{
            local k=$1 i=0 end=$(( $(date +%s) + {secs} ))
            : > $LAB/errors.$k
            while [ "$(date +%s)" -lt "$end" ]; do
                i=$(( i + 1 ))
                local net=n$k-$i c=c$k-$i
                step $k $i 0 shibafu network create $net 10.$(( 100 + k )).$(( i % 250 )).0/24
                step $k $i 0 shibafu run -d --name $c --network $net -p 80 busybox httpd -f -p 80 -h /
                step $k $i 0 shibafu exec $c true
                step $k $i 3 shibafu exec $c sh -c 'exit 3'
                step $k $i 0 shibafu run --rm busybox true
                step $k $i 0 shibafu stop -t 1 $c
                step $k $i 0 shibafu rm $c
                step $k $i 0 shibafu network rm $net
            done
            echo $i > $LAB/rounds.$k
        }}
        for k in 1 2 3 4 5 6 7 8; do client $k & done
        wait
        cat $LAB/errors.* > $LAB/errors
        echo errors=$(wc -l < $LAB/errors)
        cat $LAB/errors
        rounds=$(cat $LAB/rounds.* | awk '{{s += $1}} END {{print s}}')
        echo rounds=$rounds
        for op in "network create" "run -d" "exec" "run --rm" "stop" "rm" "network rm"; do
            echo "$op=$(cat $LAB/ops.* | grep -c "^$op" || true)"
        done
        echo containers-left=$(shibafu list -aq | wc -l)
        echo rows-left=$(sqlite3 $SHIBAFU_ROOT/state.db 'SELECT count(*) FROM containers')
        echo integrity=$(sqlite3 $SHIBAFU_ROOT/state.db 'PRAGMA integrity_check')
        state > $LAB/after
        if diff $LAB/before $LAB/after; then echo state-as-before; fi
        echo monitors-left=$(pgrep -f 'shibafu [m]onitor' | wc -l)
        echo dirs-left=$(ls $SHIBAFU_ROOT/containers | wc -l)
        "#
    ));
    assert!(out.contains("errors=0"), "{out}");
    let count = |key: &str| -> u64 {
        out.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {key}= in {out}"))
    };
    let rounds = count("rounds");
    assert!(rounds >= 8, "every client ran at least one round: {out}");
    // Each round runs every step once (a round cut by the deadline still finishes).
    for op in ["network create", "run -d", "run --rm", "stop", "rm", "network rm"] {
        assert_eq!(count(op), rounds, "{op}: {out}");
    }
    assert_eq!(count("exec"), 2 * rounds, "{out}");
    for want in ["containers-left=0", "rows-left=0", "integrity=ok", "state-as-before", "monitors-left=0", "dirs-left=0"] {
        assert!(out.contains(want), "{want}: {out}");
    }
}
