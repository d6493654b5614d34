//! Crash safety (phase 7): a command killed with SIGKILL at any step leaves a state that the
//! next command or `gc` brings back to clean. The test walks every fault point of
//! `shibafu::fault::POINTS` (SHIBAFU_FAULT=POINT makes the process kill itself there), each in
//! a lab of its own, and compares what is left with what was there before: links, rules,
//! leases, ports, networks, namespace files, mounts, container rows and directories, monitors,
//! blobs, unpacked layers, partial downloads, image and layer rows, and the database's
//! integrity. A pull or prepare-layer killed half-way then works when typed again.

mod common;

use common::Lab;

/// Prints everything a run can leave on the machine (counters and ages left out).
const STATE: &str = r#"state() {
    ip -o link | awk '{print $2}' | cut -d@ -f1 | sort
    iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
    sqlite3 $SHIBAFU_ROOT/state.db 'SELECT * FROM leases; SELECT * FROM ports; SELECT name FROM networks; SELECT name, state FROM containers'
    ls $SHIBAFU_ROOT/run/netns $SHIBAFU_ROOT/containers
    grep "$SHIBAFU_ROOT" /proc/self/mountinfo | awk '{print $5}' || true
    pgrep -f 'shibafu [m]onitor' || true
    find $SHIBAFU_ROOT/tmp $SHIBAFU_ROOT/blobs/tmp $SHIBAFU_ROOT/blobs/partial -mindepth 1 2>/dev/null || true
    ls -a $SHIBAFU_ROOT $SHIBAFU_ROOT/blobs/sha256 $SHIBAFU_ROOT/layers
    sqlite3 $SHIBAFU_ROOT/state.db 'SELECT name, tag FROM images; SELECT diff_id FROM layers; SELECT name FROM layer_names'
}"#;

/// A registry of its own (another data root, on loopback in the lab's network namespace)
/// holding lab/img:1, two layers of random bytes that no lab has: a pull fetches both.
const REGISTRY: &str = r#"
    SHIBAFU_ROOT=$LAB/registry shibafu registry serve --port 5000 --address 127.0.0.1 2>$LAB/registry.log &
    for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
    for i in 1 2; do
        mkdir -p $LAB/l$i && head -c 300000 /dev/urandom > $LAB/l$i/f
        SHIBAFU_ROOT=$LAB/registry shibafu prepare-layer l$i $LAB/l$i
        SHIBAFU_ROOT=$LAB/registry shibafu push-layer l$i localhost:5000/lab/l$i:1
    done
    SHIBAFU_ROOT=$LAB/registry shibafu create-manifest --layers lab/l1:1,lab/l2:1 localhost:5000/lab/img:1
"#;

/// The script for one fault point: the command that dies there, then the next command a user
/// would type and `gc`.
fn scenario(point: &str) -> String {
    let victim = "shibafu run -d --name victim -p 80 busybox httpd -f -p 80 -h /";
    let (setup, killed, next) = match point.split(':').next() {
        // A run that had made everything leaves a running container: the user removes it.
        Some("run") if point == "run:monitor-started" => ("", victim.to_string(), "shibafu rm -f victim"),
        // A run killed half-way: `gc` alone must undo it (its row says `created`, its owner is gone).
        Some("run") => ("", victim.to_string(), "echo gc-alone"),
        // The monitor dies once the container runs: `run` itself succeeds.
        Some("monitor") => ("", format!("{victim} >/dev/null; sleep 0.3; [ -z \"$(pgrep -f 'shibafu [m]onitor')\" ] || echo monitor-alive; (exit 137)"), "shibafu rm -f victim"),
        Some("rm") => (victim, "shibafu rm -f victim".to_string(), "shibafu rm -f victim"),
        Some("network-create") => ("", "shibafu network create n 10.62.0.0/24".to_string(), "shibafu network rm n"),
        // A pull or prepare killed half-way: `gc` alone takes what it stored but did not record.
        Some("pull") => (REGISTRY, "shibafu pull localhost:5000/lab/img:1".to_string(), "echo gc-alone"),
        Some("prepare-layer") => ("mkdir -p $LAB/p && echo hi > $LAB/p/f", "shibafu prepare-layer p $LAB/p".to_string(), "echo gc-alone"),
        Some("network-rm") => (
            "shibafu network create n 10.61.0.0/24 && shibafu run --rm --network n busybox true",
            "shibafu network rm n".to_string(),
            "shibafu network rm n",
        ),
        _ => panic!("no scenario for fault point {point}"),
    };
    // What was killed works when typed again.
    let again = match point.split(':').next() {
        Some("pull") => format!("{killed} >/dev/null 2>&1 && shibafu image ls | grep -q lab/img && echo pulled-again"),
        Some("prepare-layer") => format!("{killed} >/dev/null && echo prepared-again"),
        _ => String::new(),
    };
    format!(
        r#"{STATE}
        shibafu run --rm busybox true
        state > $LAB/before
        {{ :; {setup}
        }} >/dev/null
        code=0
        ( export SHIBAFU_FAULT={point}; {killed} ) >/dev/null 2>&1 || code=$?
        echo killed-with=$code
        {next} >/dev/null
        shibafu gc >/dev/null
        state > $LAB/after
        diff $LAB/before $LAB/after && echo clean
        echo integrity=$(sqlite3 $SHIBAFU_ROOT/state.db 'PRAGMA integrity_check')
        {again}
        "#
    )
}

#[test]
fn a_command_killed_at_any_step_leaves_nothing_the_next_command_or_gc_does_not_clean() {
    let mut failures = Vec::new();
    for point in shibafu::fault::POINTS {
        let ran = Lab::new().sh(&scenario(point));
        let out = &ran.out;
        if std::env::var_os("SHIBAFU_CRASH_SHOW").is_some() {
            eprintln!("=== {point}\n{out}");
        }
        let again = match point.split(':').next() {
            Some("pull") => out.contains("pulled-again"),
            Some("prepare-layer") => out.contains("prepared-again"),
            _ => true,
        };
        let ok = ran.code == 0 && again && out.contains("killed-with=137") && out.contains("\nclean\n") && out.contains("integrity=ok") && !out.contains("monitor-alive");
        if !ok {
            failures.push(format!("=== {point} (exit {}):\n{out}\n--- stderr\n{}", ran.code, ran.err));
        }
    }
    assert!(failures.is_empty(), "{} of {} fault points left a mess:\n{}", failures.len(), shibafu::fault::POINTS.len(), failures.join("\n"));
}
