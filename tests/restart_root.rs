//! Root tests of restart policies, `start`, boot restarts, health checks and `logs` (follow
//! across restarts, tail/since/until/timestamps, rotation). Waits have generous deadlines;
//! nothing asserts how long anything took.

mod common;

use common::Lab;

/// Shell helpers: `info NAME FIELD` reads a field of `list -a --format json`; `wait_until
/// CONDITION` retries it for up to 60 s.
const HELPERS: &str = r#"
info() { shibafu list -a --format json | jq -r --arg n "$1" "select(.name == \$n) | .$2"; }
wait_until() {
    for i in $(seq 1200); do
        if eval "$1"; then return 0; fi
        sleep 0.05
    done
    echo "gave up waiting for: $1" >&2
    shibafu list -a >&2
    return 1
}
"#;

fn lab_ok(lab: &Lab, script: &str) -> String {
    lab.ok(&format!("{HELPERS}{script}"))
}

/// The `[shibafu]` marks of a log, in order.
fn marks(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.contains("[shibafu]")).collect()
}

#[test]
fn on_failure_2_restarts_twice_then_stays_exited() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name f --restart on-failure:2 busybox sh -c 'echo run; exit 1' >/dev/null
         wait_until '[ \"$(info f state)\" = exited ]'
         echo count=$(info f restart_count) code=$(info f exit_code) policy=$(info f restart_policy)
         shibafu list -a
         shibafu logs f 2>&1",
    );
    assert!(out.contains("count=2 code=1 policy=on-failure:2"), "{out}");
    assert_eq!(out.lines().filter(|l| *l == "run").count(), 3, "{out}");
    assert_eq!(
        marks(&out),
        [
            "[shibafu] exited with code 1; restarting in 100ms (restart 1)",
            "[shibafu] exited with code 1; restarting in 200ms (restart 2)",
            "[shibafu] exited with code 1",
        ],
        "{out}"
    );
    assert!(out.contains("Exited (1)") && out.contains("restarted 2 times"), "{out}");
}

#[test]
fn always_restarts_with_a_growing_backoff_until_stop_ends_it() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name a --restart always busybox sh -c 'exit 3' >/dev/null
         wait_until '[ \"$(info a restart_count)\" -ge 4 ]'
         shibafu stop a
         echo state=$(info a state)
         echo left=$(ps -eo args | awk '$2 == \"--root\" && $4 == \"monitor\"' | wc -l)
         echo runtime=$(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list -q | wc -l)
         n=$(info a restart_count)
         sleep 1
         echo still=$([ \"$(info a restart_count)\" = \"$n\" ] && echo same)
         shibafu logs -t a 2>&1",
    );
    assert!(out.contains("state=exited"), "{out}");
    assert!(out.contains("left=0"), "no monitor is left: {out}");
    assert!(out.contains("runtime=0"), "no container is left: {out}");
    assert!(out.contains("still=same"), "no restart after stop: {out}");
    let restarts: Vec<(&str, &str)> = out.lines().filter(|l| l.contains("restarting in")).map(|l| (l.split(' ').next().unwrap(), l)).collect();
    assert!(restarts.len() >= 4, "{out}");
    for (k, want) in ["100ms (restart 1)", "200ms (restart 2)", "400ms (restart 3)", "800ms (restart 4)"].iter().enumerate() {
        assert!(restarts[k].1.ends_with(&format!("exited with code 3; restarting in {want}")), "{out}");
    }
    let times: Vec<&str> = restarts.iter().map(|r| r.0).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "the marks come in time order: {times:?}");
}

#[test]
fn start_runs_an_exited_container_again_on_its_network() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "id=$(shibafu run -d --name s -p 8080:80 busybox sh -c 'echo hi; ip -4 -o addr show eth0; exec sleep 1000')
         wait_until 'shibafu logs s | grep -q eth0'
         shibafu stop -t 1 s
         echo after-stop=$(info s state) leases=$(info s 'addresses | length') ports=$(shibafu port s | wc -l)
         shibafu start s
         wait_until '[ \"$(shibafu logs s | grep -c eth0)\" = 2 ]'
         echo after-start=$(info s state) ports=$(shibafu port s)
         shibafu exec s hostname
         shibafu logs s
         shibafu rm -f s",
    );
    assert!(out.contains("after-stop=exited leases=0 ports=0"), "{out}");
    assert!(out.contains("after-start=running ports=80/tcp -> 0.0.0.0:8080"), "{out}");
    assert_eq!(out.lines().filter(|l| *l == "hi").count(), 2, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("inet 172.20.0.")).count(), 2, "{out}");
}

#[test]
fn boot_brings_back_always_and_unless_stopped_after_their_monitors_died() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name b --restart always busybox sleep 1000 >/dev/null
         shibafu run -d --name u --restart unless-stopped busybox sleep 1000 >/dev/null
         shibafu run -d --name down --restart unless-stopped busybox sleep 1000 >/dev/null
         shibafu run -d --name plain busybox sleep 1000 >/dev/null
         shibafu stop -t 1 down
         # A reboot, as far as processes go: every monitor and container dies at once.
         for pid in $(ps -eo pid,args | awk '$3 == \"--root\" && $5 == \"monitor\" {print $1}'); do kill -9 $pid; done
         for pid in $(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list --format json | jq -r '.[].pid'); do kill -9 $pid; done
         shibafu list -a
         echo booting
         shibafu start --all --filter restart-policy=always --filter restart-policy=unless-stopped
         wait_until '[ \"$(info b state)\" = running ] && [ \"$(info u state)\" = running ]'
         shibafu exec b echo b-is-back
         echo down=$(info down state) plain=$(info plain state)
         shibafu list -a",
    );
    let (before, after) = out.split_once("booting").unwrap();
    assert_eq!(before.matches("its monitor is gone").count(), 3, "{out}");
    let started: Vec<&str> = after.lines().take_while(|l| !l.starts_with("b-is-back")).filter(|l| ["b", "u", "down", "plain"].contains(l)).collect();
    assert_eq!(started, ["b", "u"], "{out}");
    assert!(out.contains("b-is-back"), "{out}");
    assert!(out.contains("down=exited plain=exited"), "{out}");
}

#[test]
fn boot_restart_works_when_the_kernel_state_went_with_the_reboot_too() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name web --restart always -p 8080:80 busybox sleep 1000 >/dev/null
         for pid in $(ps -eo pid,args | awk '$3 == \"--root\" && $5 == \"monitor\" {print $1}'); do kill -9 $pid; done
         for pid in $(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list --format json | jq -r '.[].pid'); do kill -9 $pid; done
         # What a reboot takes too: mounts, /run, links, firewall rules.
         for m in $(awk -v root=$SHIBAFU_ROOT 'index($5, root) == 1 {print $5}' /proc/self/mountinfo | sort -r); do umount -l $m; done
         rm -rf $SHIBAFU_ROOT/run
         for l in $(ip -o link | grep -o 'veth[0-9a-f]*@' | tr -d @); do ip link del $l; done
         ip link del ctr0
         iptables -t nat -F && iptables -t nat -X && iptables -F && iptables -X
         shibafu start --all --filter restart-policy=always --filter restart-policy=unless-stopped
         wait_until '[ \"$(info web state)\" = running ]'
         shibafu exec web ping -c 1 -W 5 172.20.0.1 | grep -c ' 0% packet loss'
         echo ports=$(shibafu port web)
         echo rules=$(iptables -t nat -S | grep -c 'dport 8080')",
    );
    assert!(out.starts_with("web\n"), "{out}");
    assert!(out.contains("\n1\n"), "the gateway answers: {out}");
    assert!(out.contains("ports=80/tcp -> 0.0.0.0:8080"), "{out}");
    assert!(!out.contains("rules=0"), "{out}");
}

#[test]
fn health_goes_healthy_or_unhealthy_after_its_retries() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name good --health-cmd 'test -f /tmp/ok' --health-interval 200ms busybox sh -c 'touch /tmp/ok; exec sleep 1000' >/dev/null
         shibafu run -d --name bad --health-cmd 'echo failing; exit 1' --health-interval 200ms --health-retries 2 busybox sleep 1000 >/dev/null
         shibafu run -d --name slow --health-cmd 'sleep 30' --health-interval 100ms --health-timeout 300ms --health-retries 1 busybox sleep 1000 >/dev/null
         echo first=$(info bad health)
         wait_until '[ \"$(info good health)\" = healthy ]'
         wait_until '[ \"$(info bad health)\" = unhealthy ]'
         wait_until '[ \"$(info slow health)\" = unhealthy ]'
         shibafu list",
    );
    assert!(out.contains("first=starting"), "{out}");
    assert!(out.contains("(healthy)") && out.contains("(unhealthy)"), "{out}");
}

#[test]
fn an_image_healthcheck_is_used_unless_switched_off() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu image export busybox $LAB/bb >/dev/null && cd $LAB/bb
         # A Docker image's config carries config.Healthcheck: give busybox one, digests and all.
         manifest=$(jq -r '.manifests[0].digest' index.json | cut -d: -f2)
         config=$(jq -r '.config.digest' blobs/sha256/$manifest | cut -d: -f2)
         jq -c '.config.Healthcheck = {\"Test\": [\"CMD-SHELL\", \"test -f /tmp/ok\"], \"Interval\": 200000000, \"Retries\": 2}' blobs/sha256/$config > new
         c=$(sha256sum new | cut -d' ' -f1) && mv new blobs/sha256/$c
         jq -c --arg d sha256:$c --argjson s $(stat -c %s blobs/sha256/$c) '.config.digest = $d | .config.size = $s' blobs/sha256/$manifest > new
         m=$(sha256sum new | cut -d' ' -f1) && mv new blobs/sha256/$m
         jq -c --arg d sha256:$m --argjson s $(stat -c %s blobs/sha256/$m) '.manifests[0].digest = $d | .manifests[0].size = $s' index.json > new && mv new index.json
         cd / && shibafu image import $LAB/bb checked >/dev/null
         shibafu run -d --name img checked sh -c 'touch /tmp/ok; exec sleep 1000' >/dev/null
         shibafu run -d --name off --no-healthcheck checked sleep 1000 >/dev/null
         wait_until '[ \"$(info img health)\" = healthy ]'
         echo off=$(info off health)",
    );
    assert!(out.contains("off=null"), "{out}");
}

#[test]
fn logs_follow_across_restarts_and_end_when_the_container_is_removed() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name l --restart always busybox sh -c 'echo tick; sleep 0.2; exit 1' >/dev/null
         shibafu logs -f l >$LAB/follow 2>&1 & follower=$!
         wait_until '[ \"$(grep -c restarting $LAB/follow)\" -ge 2 ]'
         shibafu rm -f l
         wait_until '! kill -0 $follower 2>/dev/null'
         wait $follower && echo follower-done
         cat $LAB/follow",
    );
    assert!(out.contains("follower-done"), "{out}");
    assert!(out.lines().filter(|l| *l == "tick").count() >= 2, "{out}");
    let marks = marks(&out);
    assert!(marks[0] == "[shibafu] exited with code 1; restarting in 100ms (restart 1)", "{out}");
    assert!(marks[1] == "[shibafu] exited with code 1; restarting in 200ms (restart 2)", "{out}");
}

#[test]
fn logs_tail_since_until_and_timestamps() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name t busybox sh -c 'for i in 1 2 3 4 5; do echo line$i; done' >/dev/null
         wait_until '[ \"$(info t state)\" = exited ]'
         echo tail: $(shibafu logs --tail 2 t 2>/dev/null)
         echo all: $(shibafu logs --tail all t 2>/dev/null)
         echo since: $(shibafu logs --since 1h t 2>/dev/null)
         echo future: $(shibafu logs --since $(( $(date +%s) + 3600 )) t 2>/dev/null)
         echo until: $(shibafu logs --until 1h t 2>/dev/null)
         echo stamped: $(shibafu logs -t --tail 1 t 2>&1)",
    );
    assert!(out.contains("tail: line4 line5\n"), "{out}");
    assert!(out.contains("all: line1 line2 line3 line4 line5\n"), "{out}");
    assert!(out.contains("since: line1 line2 line3 line4 line5\n"), "{out}");
    assert!(out.contains("future:\n"), "{out}");
    assert!(out.contains("until:\n"), "{out}");
    let stamped = out.lines().find(|l| l.starts_with("stamped:")).unwrap();
    let words: Vec<&str> = stamped.split(' ').collect();
    assert!(humantime::parse_rfc3339(words[1]).is_ok(), "{out}");
    assert_eq!(words[2], "line5", "{out}");
    assert!(humantime::parse_rfc3339(words[3]).is_ok(), "{out}");
    assert_eq!(&words[4..], ["[shibafu]", "exited", "with", "code", "0"], "{out}");
}

#[test]
fn rotation_keeps_the_log_under_its_cap() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "id=$(shibafu run -d --name r --log-opt max-size=4k --log-opt max-file=2 busybox sh -c 'i=0; while [ $i -lt 3000 ]; do echo \"line $i padding-padding-padding\"; i=$((i+1)); done')
         wait_until '[ \"$(info r state)\" = exited ]'
         cd $SHIBAFU_ROOT/containers/$id && ls log.jsonl* && stat -c 'size %s' log.jsonl*
         shibafu logs r 2>/dev/null | awk '{print $2}' > $LAB/numbers
         echo last=$(tail -1 $LAB/numbers) count=$(wc -l < $LAB/numbers)
         awk 'NR > 1 && $1 != prev + 1 {bad=1} {prev=$1} END {print (bad ? \"gap\" : \"consecutive\")}' $LAB/numbers",
    );
    let files: Vec<&str> = out.lines().filter(|l| l.starts_with("log.jsonl")).collect();
    assert_eq!(files, ["log.jsonl", "log.jsonl.1"], "{out}");
    for size in out.lines().filter_map(|l| l.strip_prefix("size ")) {
        assert!(size.parse::<u64>().unwrap() <= 4096, "{out}");
    }
    assert!(out.contains("last=2999"), "{out}");
    assert!(out.contains("consecutive"), "{out}");
}

#[test]
fn an_external_runtime_is_restarted_through_create_and_start() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name x --runtime runc --restart on-failure:1 busybox sh -c 'echo via-runc; exit 2' >/dev/null
         wait_until '[ \"$(info x state)\" = exited ]'
         echo count=$(info x restart_count) code=$(info x exit_code)
         shibafu logs x 2>&1",
    );
    assert!(out.contains("count=1 code=2"), "{out}");
    assert_eq!(out.lines().filter(|l| *l == "via-runc").count(), 2, "{out}");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "for args in '--restart sometimes' '--restart on-failure:-1' '--health-cmd true --health-interval 0' \
                     '--health-cmd true --health-timeout soon' '--log-opt max-size=0' '--rm --restart always'; do
             set +e; shibafu run -d $args busybox true 2>$LAB/err; code=$?; set -e
             echo \"$code $(cat $LAB/err)\"
         done
         shibafu run -d --name ok busybox true >/dev/null
         set +e; shibafu logs --since yesterday ok 2>$LAB/err; echo \"$? $(cat $LAB/err)\"; set -e
         set +e; shibafu start --all --filter status=exited 2>$LAB/err; echo \"$? $(cat $LAB/err)\"; set -e
         set +e; shibafu stop --shutdown ok 2>$LAB/err; echo \"$? $(cat $LAB/err)\"; set -e
         echo containers=$(shibafu list -a -q | wc -l)",
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("125 ")).collect();
    assert_eq!(lines.len(), 9, "{out}");
    for want in ["--shutdown goes with --all", "invalid restart policy \"sometimes\"", "invalid restart policy \"on-failure:-1\"", "--health-interval must be at least 1ms", "invalid --health-timeout", "invalid --log-opt max-size=0", "--rm and --restart always conflict", "invalid time \"yesterday\"", "invalid filter"] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}: {out}");
    }
    assert!(out.contains("containers=1"), "{out}");
}

#[test]
fn restart_stops_and_starts_a_container_and_starts_a_stopped_one() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "shibafu run -d --name r --restart always busybox sh -c 'echo up; exec sleep 1000' >/dev/null
         wait_until 'shibafu logs r | grep -q up'
         before=$(shibafu inspect --format '{{.State.Pid}}' r)
         shibafu restart -t 1 r
         wait_until '[ \"$(shibafu logs r | grep -c up)\" = 2 ]'
         after=$(shibafu inspect --format '{{.State.Pid}}' r)
         [ \"$before\" != \"$after\" ] && echo new-process state=$(info r state)
         shibafu stop -t 1 r >/dev/null
         shibafu restart r
         echo stopped-then-restarted=$(info r state)
         shibafu restart nosuch 2>&1 || echo unknown-refused
         shibafu rm -f r >/dev/null",
    );
    assert!(out.contains("r\nnew-process state=running\n"), "{out}");
    assert!(out.contains("r\nstopped-then-restarted=running\n"), "{out}");
    assert!(out.contains("nosuch") && out.contains("unknown-refused"), "{out}");
}

#[test]
fn stop_all_at_shutdown_keeps_the_policies_and_monitors_outlive_their_callers_cgroup() {
    let lab = Lab::new();
    let out = lab_ok(
        &lab,
        "v2=/sys/fs/cgroup; [ \"$(stat -fc %T $v2)\" = cgroup2fs ] || v2=/sys/fs/cgroup/unified
         session=$v2/shibafu-test-session-$(basename $LAB)
         mkdir $session
         trap 'rmdir $session' EXIT
         # As from a login session that then ends: its cgroup is killed whole.
         bash -c 'echo $$ > $0/cgroup.procs
             shibafu run -d --name b --restart always busybox sleep 1000 >/dev/null
             shibafu run -d --name u --restart unless-stopped busybox sleep 1000 >/dev/null
             shibafu run -d --name plain busybox sleep 1000 >/dev/null' $session
         echo 1 > $session/cgroup.kill
         wait_until '[ -z \"$(cat $session/cgroup.procs)\" ]'
         echo session-ended b=$(info b state) u=$(info u state) plain=$(info plain state)
         shibafu exec b echo b-still-runs
         echo shutdown
         shibafu stop --all --shutdown -t 1 | sort
         echo b=$(info b state) u=$(info u state) plain=$(info plain state)
         echo left=$(ps -eo args | awk '$2 == \"--root\" && $4 == \"monitor\"' | wc -l)
         echo booting
         shibafu start --all --filter restart-policy=always --filter restart-policy=unless-stopped
         echo by-the-user
         shibafu stop --all -t 1 | sort
         shibafu start --all --filter restart-policy=always --filter restart-policy=unless-stopped
         echo end b=$(info b state) u=$(info u state) plain=$(info plain state)
         shibafu rm -f b >/dev/null",
    );
    assert!(out.contains("session-ended b=running u=running plain=running\nb-still-runs\n"), "the containers outlive the session that ran them: {out}");
    let after = out.split_once("shutdown\n").unwrap().1;
    let (stopped, after) = after.split_once("b=").unwrap();
    assert_eq!(stopped, "b\nplain\nu\n", "every running container stopped: {out}");
    assert!(after.starts_with("exited u=exited plain=exited\nleft=0\n"), "{out}");
    let (booted, after) = after.split_once("booting\n").unwrap().1.split_once("by-the-user\n").unwrap();
    assert_eq!(booted, "b\nu\n", "after the machine's stop, always and unless-stopped come back: {out}");
    assert!(after.starts_with("b\nu\nb\nend b=running u=exited plain=exited"), "after the user's stop, unless-stopped stays down: {out}");
}
