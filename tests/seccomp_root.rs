//! Root tests of seccomp (issue 17): engine-made containers run under the default profile
//! (containers-common's, tightened to Docker's), which refuses what Docker's refuses while the
//! lab's programs run; runc given the same config.json refuses the same; `seccomp=unconfined`
//! and `--privileged` lift it, and `exec` is filtered as the container is.

mod common;

use common::{lab_image, Lab};

/// A python program that tries system calls Docker's profile refuses (x86_64 numbers) and
/// prints NAME=ok or NAME=ERRNO for each. argv[1] is a host pid to ptrace.
const PROBE: &str = r#"
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
calls = [
    ("keyctl", 250, (L(0), L(-3), L(0))),
    ("add_key", 248, (b"user", b"k", b"v", L(1), L(-3))),
    ("unshare-user", 272, (L(0x10000000),)),
    ("unshare-mount", 272, (L(0x20000),)),
    ("mount", 165, (b"none", b"/mnt", b"tmpfs", L(0), L(0))),
    ("kexec_load", 246, (L(0), L(0), L(0), L(0))),
    ("ptrace-host", 101, (L(16), L(int(sys.argv[1])), L(0), L(0))),
    ("getpid", 39, ()),
]
for name, nr, args in calls:
    r = libc.syscall(L(nr), *args)
    e = ctypes.get_errno()
    print(f"{name}={'ok' if r >= 0 else errno.errorcode[e]}")
"#;

fn probe_script(run_flags: &str) -> String {
    format!(
        r#"shibafu image import {python} python:3.11 >/dev/null
        sleep 1000 & host=$!
        cat > $LAB/probe.py <<'EOF'
{PROBE}
EOF
        shibafu run --rm {run_flags} -v $LAB/probe.py:/probe.py:ro python:3.11 python3 /probe.py $host
        kill $host
        "#,
        python = lab_image("python").display()
    )
}

/// The probe's answers as NAME=RESULT lines.
fn answers(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.contains('=') && !l.contains(' ')).collect()
}

#[test]
fn the_default_profile_refuses_what_dockers_does_under_shibafu_and_runc() {
    let lab = Lab::new();
    let ours = lab.ok(&probe_script(""));
    for want in ["keyctl=EPERM", "add_key=EPERM", "unshare-user=EPERM", "unshare-mount=EPERM", "mount=EPERM", "kexec_load=EPERM", "ptrace-host=ESRCH", "getpid=ok"] {
        assert!(answers(&ours).contains(&want), "{want}:\n{ours}");
    }
    let runc = lab.ok(&probe_script("--runtime runc"));
    assert_eq!(answers(&ours), answers(&runc), "runc, given the same config.json, refuses the same");
    // crun refuses every container on a cgroup v1/v2 hybrid host; where it runs, it must agree.
    let crun = lab.sh(&probe_script("--runtime crun"));
    if crun.code == 0 {
        assert_eq!(answers(&ours), answers(&crun.out), "crun too");
    } else {
        eprintln!("crun did not run here (compared where it does): {}", crun.err.lines().last().unwrap_or_default());
    }
    // Without the filter, what only seccomp refused goes through: the keyring answers, and a
    // user namespace is made (whose root may then make a mount namespace and mount in it).
    let open = lab.ok(&probe_script("--security-opt seccomp=unconfined"));
    let open = answers(&open);
    for want in ["keyctl=ok", "add_key=ok", "unshare-user=ok", "unshare-mount=ok", "ptrace-host=ESRCH"] {
        assert!(open.contains(&want), "{want}: {open:?}");
    }
}

#[test]
fn the_labs_programs_run_under_the_default_profile() {
    let r = Lab::new().sh(&format!(
        r#"set +e
        shibafu image import {python} python:3.11 >/dev/null
        shibafu image import {node} node:18 >/dev/null
        shibafu image import {postgres} postgres:15 >/dev/null
        shibafu run --rm busybox sh -c 'grep -E "^Seccomp(_filters)?:" /proc/self/status | tr -d "\t" | tr "\n" " "; echo; ls -l / >/dev/null && ps >/dev/null && ping -c 1 -W 2 127.0.0.1 >/dev/null && tar -cf /tmp/t.tar /etc && echo busybox=ok'
        shibafu run --rm python:3.11 python3 -c '
import multiprocessing, socket, sqlite3, subprocess, threading
db = sqlite3.connect(":memory:"); db.execute("create table t (x)")
t = threading.Thread(target=lambda: None); t.start(); t.join()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
assert subprocess.run(["true"]).returncode == 0
with multiprocessing.Pool(2) as p: assert p.map(abs, [-1, -2]) == [1, 2]
print("python=ok")'
        shibafu run --rm node:18 node -e '
const {{ Worker }} = require("worker_threads");
const http = require("http");
new Worker("0", {{ eval: true }}).on("exit", () => {{
  const s = http.createServer((q, a) => a.end("ok")).listen(0, "127.0.0.1", () =>
    http.get("http://127.0.0.1:" + s.address().port, r => r.on("data", d => {{ console.log("node=" + d); process.exit(0); }})));
}});'
        shibafu run -d --name pg postgres:15 >/dev/null
        for i in $(seq 120); do shibafu exec pg pg_isready -q 2>/dev/null && break; sleep 0.5; done
        echo "postgres=$(shibafu exec pg psql -U user -d postgres -tAc 'select 6 * 7' 2>&1)"
        echo "pg-seccomp=$(shibafu exec pg grep -c 'Seccomp:.2' /proc/1/status)"
        echo "exec-unshare=$(shibafu exec pg unshare -U true 2>&1; echo $?)"
        shibafu rm -f pg >/dev/null
        "#,
        python = lab_image("python").display(),
        node = lab_image("node").display(),
        postgres = lab_image("postgres").display(),
    ));
    let out = &r.out;
    for want in ["Seccomp:2 Seccomp_filters:1", "busybox=ok", "python=ok", "node=ok", "postgres=42", "pg-seccomp=1"] {
        assert!(out.contains(want), "{want}:\n{out}\n{}", r.err);
    }
    assert!(out.contains("exec-unshare=") && out.contains("Operation not permitted"), "exec'd processes are filtered too:\n{out}");
}

#[test]
fn privileged_and_unconfined_containers_have_no_filter_and_inspect_says_which_applies() {
    let r = Lab::new().sh(
        r#"set +e
        echo "host-capeff=$(grep CapEff /proc/self/status | cut -f2)"
        shibafu run --rm --privileged busybox sh -c '
            echo "seccomp=$(grep "^Seccomp:" /proc/self/status | cut -f2)"
            echo "capeff=$(grep CapEff /proc/self/status | cut -f2)"
            mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted
            echo "sys=$(grep " /sys " /proc/self/mounts | cut -d" " -f4 | cut -d, -f1)"
            echo "masked=$(grep -cE " /proc/(keys|kcore|sys|sysrq-trigger) " /proc/self/mountinfo)"
            [ -c /dev/kmsg ] && echo kmsg=yes'
        shibafu run -d --name def busybox sleep 100 >/dev/null
        shibafu run -d --name unc --security-opt seccomp=unconfined busybox sleep 100 >/dev/null
        shibafu run -d --name priv --privileged busybox sleep 100 >/dev/null
        for c in def unc priv; do
            echo "$c: $(shibafu inspect --format '{{json .HostConfig.SecurityOpt}} {{.HostConfig.Privileged}}' $c)"
        done
        shibafu inspect --explain def | grep -i seccomp
        echo "labels=$(shibafu inspect --format '{{json .Config.Labels}}' def)"
        shibafu rm -f def unc priv >/dev/null
        "#,
    );
    let out = &r.out;
    for want in [
        "seccomp=0",
        "mounted",
        "sys=rw",
        "masked=0",
        "kmsg=yes",
        r#"def: ["seccomp=default"] false"#,
        r#"unc: ["seccomp=unconfined"] false"#,
        r#"priv: ["seccomp=unconfined"] true"#,
        "labels={}",
    ] {
        assert!(out.contains(want), "{want}:\n{out}\n{}", r.err);
    }
    let host_caps = out.lines().find_map(|l| l.strip_prefix("host-capeff=")).unwrap_or("none");
    assert!(out.contains(&format!("\ncapeff={host_caps}")), "every capability the host has:\n{out}");
    let explained = r.err.lines().find(|l| l.contains("/status  # Seccomp:")).unwrap_or_default();
    assert!(explained.contains("Seccomp: 2 (a filter; HostConfig.SecurityOpt seccomp=default)"), "--explain shows the filter:\n{}", r.err);
}

#[test]
fn exec_applies_the_filter_kept_beside_the_record_and_refuses_without_it() {
    // The runtime keeps the compiled filter in the container's state directory (the record
    // holds the spec without its profile): `exec` loads it from there, and if it is gone,
    // runs nothing rather than an unfiltered process.
    let r = Lab::new().sh(
        r#"set +e
        shibafu run -d --name s busybox sleep 100 >/dev/null
        id=$(shibafu inspect --format '{{.Id}}' s)
        kept=$(find $SHIBAFU_ROOT -path "*/$id/seccomp.bpf")
        echo "kept: $(echo "$kept" | grep -c .) record has profile: $(jq '.config.linux.seccomp != null' $(dirname $kept)/state.json)"
        echo "exec filtered: $(shibafu exec s grep -c 'Seccomp:.2' /proc/self/status)"
        rm $kept
        shibafu exec s true; echo "exec without it=$?"
        shibafu rm -f s >/dev/null
        "#,
    );
    for want in ["kept: 1 record has profile: false", "exec filtered: 1", "exec without it=125"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
    assert!(r.err.contains("seccomp filter") && r.err.contains("no exec without it"), "{}", r.err);
}
