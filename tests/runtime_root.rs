//! Root tests of the OCI runtime and the phase 0/1 commands, on this machine's real kernel.

mod common;

use common::Lab;

#[test]
fn ps_inside_shows_only_the_container_with_the_command_as_pid_1() {
    let out = Lab::new().ok("shibafu run busybox ps -o pid,args");
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].trim().starts_with("1 ps -o pid,args"), "{out}");
}

#[test]
fn hostname_ipc_and_uts_are_the_containers_own() {
    let out = Lab::new().ok(
        "hostname lab-host
         echo host $(hostname) $(readlink /proc/self/ns/ipc) $(readlink /proc/self/ns/uts)
         shibafu run busybox sh -c 'echo ctr $(hostname) $(readlink /proc/self/ns/ipc) $(readlink /proc/self/ns/uts)'",
    );
    let host: Vec<&str> = out.lines().find(|l| l.starts_with("host")).unwrap().split(' ').collect();
    let ctr: Vec<&str> = out.lines().find(|l| l.starts_with("ctr")).unwrap().split(' ').collect();
    for i in 1..4 {
        assert_ne!(host[i], ctr[i], "{out}");
    }
    assert_eq!(ctr[1].len(), 12, "the hostname is the short ID: {out}");
}

#[test]
fn host_mounts_are_not_visible_and_proc_sys_is_read_only() {
    let out = Lab::new().ok(
        "mkdir -p $LAB/hostonly && mount -t tmpfs marker-host-only $LAB/hostonly
         shibafu run busybox sh -c 'cat /proc/self/mountinfo; echo 1 > /proc/sys/kernel/shmmax 2>/dev/null && echo WRITABLE || echo READONLY'",
    );
    assert!(!out.contains("marker-host-only"), "{out}");
    assert!(!out.contains("hostonly"), "{out}");
    assert!(out.contains("READONLY"), "{out}");
}

#[test]
fn exit_codes_pass_through_including_137_after_kill_9() {
    let lab = Lab::new();
    let out = lab.ok(
        "set +e
         shibafu run busybox true; echo code=$?
         shibafu run busybox sh -c 'exit 3'; echo code=$?
         shibafu run --name victim busybox sleep 100 & runner=$!
         for i in $(seq 100); do shibafu list | grep -q victim && break; sleep 0.05; done
         id=$(shibafu list -q)
         pid=$(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list --format json | sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/')
         kill -9 $pid
         wait $runner; echo code=$?
         shibafu list -a | grep victim",
    );
    let codes: Vec<&str> = out.lines().filter(|l| l.starts_with("code=")).collect();
    assert_eq!(codes, ["code=0", "code=3", "code=137"], "{out}");
    assert!(out.contains("Exited (137)"), "{out}");
}

#[test]
fn two_concurrent_named_containers_are_listed_and_a_taken_name_is_refused() {
    let lab = Lab::new();
    let r = lab.sh(
        "shibafu run --name container1 busybox sleep 100 &
         shibafu run --name container2 busybox sleep 100 &
         for i in $(seq 100); do [ $(shibafu list -q | wc -l) = 2 ] && break; sleep 0.05; done
         shibafu list
         shibafu run --name container1 busybox true || echo refused=$?
         shibafu exec container1 ps -o pid,args
         shibafu rm -f container1 container2 >/dev/null",
    );
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    assert!(r.out.contains("container1") && r.out.contains("container2"), "{}", r.out);
    assert!(r.out.contains("refused=125"), "{}", r.out);
    assert!(r.err.contains("already in use"), "{}", r.err);
    assert!(r.out.lines().any(|l| l.trim() == "1 sleep 100"), "exec sees the container's PID namespace: {}", r.out);
}

#[test]
fn rm_leaves_no_mount_and_no_directory() {
    let out = Lab::new().ok(
        "shibafu run -d --name d busybox sleep 100 >/dev/null
         grep -c \"$SHIBAFU_ROOT/containers\" /proc/self/mountinfo
         shibafu rm d || echo refused
         shibafu rm -f d
         echo mounts=$(grep -c \"$SHIBAFU_ROOT\" /proc/self/mountinfo || true)
         echo dirs=$(ls $SHIBAFU_ROOT/containers | wc -l)
         echo rows=$(shibafu list -a -q | wc -l)
         echo runtime=$(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list -q | wc -l)",
    );
    assert!(out.contains("refused"), "{out}");
    for want in ["mounts=0", "dirs=0", "rows=0", "runtime=0"] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[test]
fn detached_output_goes_to_the_log_and_logs_follow_ends_with_the_container() {
    let out = Lab::new().ok(
        "shibafu run -d --name talk busybox sh -c 'echo one; echo two >&2; sleep 0.5; echo three' >/dev/null
         shibafu logs -f talk 2>&1
         shibafu list -a | grep talk
         head -1 $SHIBAFU_ROOT/containers/*/log.jsonl",
    );
    assert!(out.contains("one\ntwo\nthree\n"), "{out}");
    assert!(out.contains("Exited (0)"), "{out}");
    assert!(out.contains(r#""stream":"stdout""#) && out.contains(r#""text":"one""#), "{out}");
}

#[test]
fn a_terminal_is_given_when_stdin_is_one() {
    let out = Lab::new().ok("script -qec 'shibafu run busybox tty' /dev/null");
    assert!(out.contains("/dev/pts/0"), "{out}");
}

#[test]
fn a_failed_run_leaves_nothing_behind() {
    let out = Lab::new().ok(
        "set +e
         shibafu run busybox no-such-command; echo code=$?
         echo mounts=$(grep -c \"$SHIBAFU_ROOT/containers\" /proc/self/mountinfo)
         echo dirs=$(ls $SHIBAFU_ROOT/containers | wc -l) rows=$(shibafu list -a -q | wc -l) runtime=$(shibafu runtime --root $SHIBAFU_ROOT/run/runtime list -q | wc -l)",
    );
    assert!(out.contains("code=127"), "{out}");
    assert!(out.contains("mounts=0") && out.contains("dirs=0 rows=0 runtime=0"), "{out}");
}

#[test]
fn runc_runs_our_bundle_and_we_run_runcs() {
    let out = Lab::new().ok(
        "shibafu bundle busybox $LAB/ours sh -c 'echo ours-in-runc; hostname' >/dev/null
         runc --root $LAB/runc run -b $LAB/ours from-us
         mkdir -p $LAB/theirs/rootfs && cd $LAB/theirs
         shibafu export busybox | tar -C rootfs -xf -
         runc spec
         sed -i 's/\"terminal\": true/\"terminal\": false/; s/\"sh\"$/\"sh\", \"-c\", \"echo runc-spec-in-shibafu; hostname\"/' config.json
         shibafu runtime --root $LAB/rt run from-runc",
    );
    assert!(out.contains("ours-in-runc\nbusybox"), "{out}");
    assert!(out.contains("runc-spec-in-shibafu\nrunc"), "{out}");
}

#[test]
fn the_same_container_runs_through_runc() {
    // runc leaves the parent of the container's cgroup (shibafu/) in each v1 hierarchy: remove it.
    let out = Lab::new().ok(
        "trap 'rmdir /sys/fs/cgroup/*/shibafu 2>/dev/null || true' EXIT
         shibafu run --runtime runc --rm busybox sh -c 'echo via-runc; ps -o pid,args > /tmp/ps; wc -l < /tmp/ps'",
    );
    assert!(out.contains("via-runc\n3"), "header, sh and ps: {out}");
}

#[test]
fn an_external_runtimes_create_error_reaches_the_user_and_leaves_nothing() {
    // Its stderr is the container's; the error comes from its --log instead.
    let out = Lab::new().ok(
        "trap 'rmdir /sys/fs/cgroup/*/shibafu 2>/dev/null || true' EXIT
         shibafu run --runtime runc -d --name bad busybox /nonexistent 2>&1 || echo code=$?
         echo left=$(shibafu list -a -q | wc -l)",
    );
    assert!(out.contains("runc create failed") && out.contains("exec: \"/nonexistent\": stat /nonexistent: no such file or directory"), "{out}");
    assert!(out.contains("code=125\nleft=0\n"), "{out}");
}

#[test]
fn runtime_lifecycle_follows_runc() {
    let out = Lab::new().ok(
        "mkdir -p $LAB/b/rootfs && cd $LAB/b && shibafu export busybox | tar -C rootfs -xf -
         shibafu runtime spec
         sed -i 's/\"terminal\": true/\"terminal\": false/; s/\"sh\"$/\"sleep\", \"100\"/' config.json
         R=\"shibafu runtime --root $LAB/rt\"
         $R create --pid-file $LAB/pid c1
         $R state c1 | grep -o '\"status\": \"[a-z]*\"'
         $R start c1
         $R state c1 | grep -o '\"status\": \"[a-z]*\"'
         test \"$($R state c1 | grep -o '\"pid\": [0-9]*' | grep -o '[0-9]*')\" = \"$(cat $LAB/pid)\" && echo pid-file-ok
         $R exec c1 sh -c 'exit 5' || echo exec=$?
         $R delete c1 || echo delete-refused
         $R kill c1 KILL
         for i in $(seq 100); do $R state c1 | grep -q stopped && break; sleep 0.02; done
         $R state c1 | grep -o '\"status\": \"[a-z]*\"'
         $R delete c1 && echo deleted
         $R state c1 || echo gone",
    );
    let want = ["\"status\": \"created\"", "\"status\": \"running\"", "pid-file-ok", "exec=5", "delete-refused", "\"status\": \"stopped\"", "deleted", "gone"];
    let mut rest = out.as_str();
    for w in want {
        let at = rest.find(w).unwrap_or_else(|| panic!("{w} missing (in order) from:\n{out}"));
        rest = &rest[at + w.len()..];
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let lab = Lab::new();
    let r = lab.sh(
        "set +e
         snapshot() { echo $(ls $SHIBAFU_ROOT/layers | wc -l) $(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l) $(shibafu images | wc -l) $(ls $SHIBAFU_ROOT/containers | wc -l); }
         before=$(snapshot)
         shibafu run no-such-image true; echo code=$?
         shibafu run --name ../x busybox true; echo code=$?
         shibafu run --name '' busybox true; echo code=$?
         shibafu run --name $(printf 'x%.0s' $(seq 300)) busybox true; echo code=$?
         shibafu image import $LAB/missing.tar bad; echo code=$?
         head -c 3000 /dev/urandom > $LAB/garbage.tar; shibafu image import $LAB/garbage.tar bad; echo code=$?
         python3 - $LAB <<'PY'
import io, sys, tarfile
lab = sys.argv[1]
def make(name, entries):
    with tarfile.open(f'{lab}/{name}', 'w') as t:
        for e in entries:
            t.addfile(e, io.BytesIO(b'x') if e.isfile() else None)
def f(name):
    i = tarfile.TarInfo(name); i.size = 1; return i
def link(name, target, kind):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; return i
make('dotdot.tar', [f('ok'), f('../../escape')])
make('abs.tar', [f('/etc/escape')])
make('hardlink.tar', [link('x', '/etc/passwd', tarfile.LNKTYPE)])
make('symlink.tar', [link('up', '../../..', tarfile.SYMTYPE)])
make('through.tar', [link('d', '/tmp', tarfile.SYMTYPE), f('d/through-link')])
PY
         for t in dotdot abs hardlink symlink; do shibafu image import $LAB/$t.tar bad; echo code=$?; done
         gzip -c $LAB/dotdot.tar | head -c 100 > $LAB/truncated.tar.gz; shibafu image import $LAB/truncated.tar.gz bad; echo code=$?
         after=$(snapshot)
         [ \"$before\" = \"$after\" ] && echo unchanged
         shibafu image import $LAB/through.tar confined >/dev/null || echo through-refused
         test -e /tmp/through-link && echo ESCAPED || true
         shibafu images | grep -c bad || true",
    );
    let codes: Vec<&str> = r.out.lines().filter(|l| l.starts_with("code=")).collect();
    assert_eq!(codes.len(), 11, "{}\n{}", r.out, r.err);
    assert!(codes.iter().all(|c| *c == "code=125"), "{codes:?}\n{}", r.err);
    assert!(r.out.contains("unchanged"), "{}", r.out);
    // A path through a symlink is refused outright (it used to be confined inside the layer).
    assert!(r.out.contains("through-refused") && !r.out.contains("ESCAPED"), "{}", r.out);
    for msg in ["unknown image", "invalid container name", "cannot read", "unreadable archive", "climbs out", "absolute", "outside the tree", "goes through a symlink"] {
        assert!(r.err.contains(msg), "{msg} missing from:\n{}", r.err);
    }
}

#[test]
fn the_container_has_its_own_network_with_lo_up() {
    let out = Lab::new().ok("ip link add hostveth0 type veth peer name hostveth1 && shibafu run busybox ip -o link");
    assert!(!out.contains("hostveth"), "{out}");
    let lo = out.lines().find(|l| l.contains(": lo:")).unwrap_or_else(|| panic!("no lo: {out}"));
    assert!(lo.contains("UP"), "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.contains(": eth0@")), "lo, then eth0 on the bridge: {out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    // With --network none, and under runc as well, the runtime brings lo up itself.
    for runtime in ["shibafu", "runc"] {
        let out = Lab::new().ok(&format!("shibafu run --runtime {runtime} --network none busybox ip -o link"));
        assert!(out.lines().count() == 1 && out.contains(": lo:") && out.contains("UP"), "{runtime}: {out}");
    }
}

#[test]
fn export_gives_the_images_rootfs() {
    let out = Lab::new().ok("shibafu export busybox | tar -t | grep -E '^(bin/busybox|etc/passwd)$'");
    assert_eq!(out, "bin/busybox\netc/passwd\n");
}

#[test]
fn a_gzip_rootfs_imports_and_explain_tells_the_steps() {
    let out = Lab::new().ok(
        "gzip -c $BUSYBOX_TAR > $LAB/bb.tar.gz
         shibafu image import $LAB/bb.tar.gz bbgz:1 >/dev/null
         shibafu images | grep -c 'bbgz'
         shibafu --explain run --rm bbgz:1 true 2>&1 | grep -E '^\\+ (unshare|mount -t overlay|cd .* pivot_root|exec true)' | cut -d' ' -f2-3",
    );
    assert!(out.starts_with("1\n"), "{out}");
    for step in ["mount -t", "unshare --pid", "cd ", "exec true"] {
        assert!(out.contains(step), "{step} missing: {out}");
    }
}

#[test]
fn the_cgroup_tree_is_shown_read_only_and_a_cgroup_namespace_gets_its_own_root() {
    // Without a cgroup namespace /sys/fs/cgroup is a read-only bind of the runtime's own cgroup2
    // mount (the whole tree, as a fresh mount would show it); with one, a fresh mount whose
    // root is the container's cgroup.
    let out = Lab::new().ok(
        r#"mount -t cgroup2 none /sys/fs/cgroup
         mkdir -p $LAB/b/rootfs && cd $LAB/b && shibafu export busybox | tar -C rootfs -xf -
         cat > rootfs/check <<'SH'
c=$(grep ^0:: /proc/self/cgroup | cut -d: -f3)
echo "cgroup $c"
grep -qx 1 /sys/fs/cgroup${c%/}/cgroup.procs && echo "its cgroup is at /sys/fs/cgroup$c"
mkdir /sys/fs/cgroup/x 2>&1 || true
SH
         shibafu runtime spec
         sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "\/check"/' config.json
         shibafu runtime --root $LAB/rt run whole
         sed -i 's/"type": "mount"/"type": "cgroup" }, { "type": "mount"/' config.json
         shibafu runtime --root $LAB/rt run own"#,
    );
    let want = "cgroup /shibafu/whole\nits cgroup is at /sys/fs/cgroup/shibafu/whole\nmkdir: can't create directory '/sys/fs/cgroup/x': Read-only file system\n\
                cgroup /\nits cgroup is at /sys/fs/cgroup/\nmkdir: can't create directory '/sys/fs/cgroup/x': Read-only file system\n";
    assert_eq!(out, want);
}
