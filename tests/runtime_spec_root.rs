//! Root tests of configs runc accepts that the runtime got wrong (issue 17): root and mount
//! propagation, hooks that fail where the spec says warn and go on, the state the early hooks
//! see, a mount namespace joined by path, a cgroup that cannot be set up, resource settings
//! cgroup v2 cannot express, and seccomp profiles (filtered as under runc).

mod common;

use common::Lab;

/// A bundle from busybox in $LAB/b (runtime spec, no terminal), `base.json` its config, and
/// `R` the runtime on a state root of the lab's.
const BUNDLE: &str = r#"
    mkdir -p $LAB/b/rootfs && cd $LAB/b && shibafu export busybox | tar -C rootfs -xf -
    shibafu runtime spec && jq '.process.terminal = false' config.json > base.json
    R="shibafu runtime --root $LAB/rt"
    with() { jq "$1" base.json > config.json; }
"#;

#[test]
fn shared_root_propagation_and_a_shared_tmpfs_run_as_under_runc() {
    let out = Lab::new().ok(&format!(
        r#"{BUNDLE}
        with '.linux.rootfsPropagation = "shared" | .process.args = ["sh", "-c", "sed -n 1p /proc/self/mountinfo"]'
        echo "shared: $($R run p1)"
        with '.linux.rootfsPropagation = "rslave" | .process.args = ["true"]'
        $R run p2 && echo rslave-ran
        with '.mounts += [{{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}}] | .process.args = ["grep", "/mnt/t", "/proc/self/mountinfo"]'
        echo "tmpfs: $($R run p3)"
        "#
    ));
    let root = out.lines().find(|l| l.starts_with("shared: ")).unwrap_or_default();
    assert!(root.contains(" / ") && root.contains("shared:"), "the root is shared: {out}");
    assert!(out.contains("rslave-ran"), "{out}");
    let tmpfs = out.lines().find(|l| l.starts_with("tmpfs: ")).unwrap_or_default();
    assert!(tmpfs.contains("/mnt/t") && tmpfs.contains("shared:"), "the tmpfs is shared: {out}");
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_rest_run_and_prestart_sees_created() {
    let r = Lab::new().sh(&format!(
        r#"{BUNDLE}
        with '.process.args = ["true"] | .hooks = {{
            "prestart": [{{"path": "/bin/sh", "args": ["sh", "-c", "cat > '$LAB'/prestart.json"]}}],
            "poststart": [{{"path": "/bin/false"}}, {{"path": "/bin/sh", "args": ["sh", "-c", "echo ran > '$LAB'/poststart"]}}],
            "poststop": [{{"path": "/bin/false"}}, {{"path": "/bin/sh", "args": ["sh", "-c", "echo ran > '$LAB'/poststop"]}}]}}'
        $R run h1; echo "run=$?"
        echo "prestart $(jq -r .status $LAB/prestart.json)"
        echo "poststart $(cat $LAB/poststart)"
        echo "poststop $(cat $LAB/poststop)"
        $R state h1 2>/dev/null || echo deleted
        "#
    ));
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    for want in ["run=0", "prestart created", "poststart ran", "poststop ran", "deleted"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
    assert!(r.err.contains("warning: poststart hook /bin/false failed") && r.err.contains("warning: poststop hook /bin/false failed"), "{}", r.err);
}

#[test]
fn a_mount_namespace_given_by_path_is_joined_as_runc_joins_it_and_none_at_all_is_refused() {
    // A mount namespace (a copy of the lab's, held by a sleeping process) for each runtime: the
    // container is set up and pivoted inside it, its mounts stay out of the lab's own table, and
    // afterwards that namespace's root is the container's rootfs.
    let r = Lab::new().sh(&format!(
        r#"{BUNDLE}
        for rt in shibafu runc; do
            unshare --mount sleep 1000 & holder=$!
            ns=/proc/$holder/ns/mnt
            while [ "$(stat -L -c %i $ns)" = "$(stat -L -c %i /proc/self/ns/mnt)" ]; do sleep 0.01; done
            with '.linux.namespaces |= map(if .type == "mount" then .path = "'$ns'" else . end)
                | .mounts += [{{"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs"}}]
                | .process.args = ["sh", "-c", "echo inode $(stat -L -c %i /proc/self/ns/mnt); grep -c \" /mnt/t \" /proc/self/mountinfo"]'
            [ $rt = runc ] && run="runc --root $LAB/runc run" || run="$R run"
            echo "== $rt"
            echo "inode $(stat -L -c %i $ns)"
            $run j-$rt 2>&1
            echo "lab sees the tmpfs: $(grep -c "/mnt/t " /proc/self/mountinfo || true)"
            echo "namespace root: $(nsenter --mount=$ns ls /bin/busybox)"
            kill $holder
        done
        set +e
        with '.process.args = ["true"] | .linux.namespaces |= map(select(.type != "mount"))'
        $R run none; echo "none=$?"
        "#
    ));
    let sides: Vec<&str> = r.out.split("== ").skip(1).collect();
    assert_eq!(sides.len(), 2, "{}\n{}", r.out, r.err);
    for side in &sides {
        let inodes: Vec<&str> = side.lines().filter(|l| l.starts_with("inode ")).collect();
        assert!(inodes.len() == 2 && inodes[0] == inodes[1], "the container is in the given namespace: {side}\n{}", r.err);
        for want in ["\n1\n", "lab sees the tmpfs: 0", "namespace root: /bin/busybox"] {
            assert!(side.contains(want), "{want}: {side}\n{}", r.err);
        }
    }
    assert!(r.out.contains("none=125") && r.err.contains("no mount namespace"), "{}\n{}", r.out, r.err);
    assert!(!r.out.contains("none=0"), "{}", r.out);
}

#[test]
fn a_cgroup_that_cannot_be_set_up_leaves_no_directory_and_v1_only_settings_are_refused() {
    let r = Lab::new().sh(&format!(
        r#"{BUNDLE}
        set +e
        v2=/sys/fs/cgroup; [ -d /sys/fs/cgroup/unified ] && v2=/sys/fs/cgroup/unified
        parent=shibafu-test-$$
        with '.process.args = ["true"] | .linux.cgroupsPath = "/'$parent'/c1" | .linux.resources.unified = {{"memory.no-such-file": "1"}}'
        $R run c1; echo "unified=$?"
        echo "left: $(ls -d $v2/$parent 2>/dev/null | wc -l)"
        with '.process.args = ["true"] | .linux.resources.memory = {{"swappiness": 10}}'
        $R run c2; echo "swappiness=$?"
        with '.process.args = ["true"] | .linux.resources.blockIO = {{"weight": 10}}'
        $R run c3; echo "blockio=$?"
        with '.process.args = ["true"] | .linux.resources.unified = {{"../escape": "1"}}'
        $R run c4; echo "escape=$?"
        echo "states: $(ls $LAB/rt 2>/dev/null | wc -l)"
        "#
    ));
    for want in ["unified=125", "left: 0", "swappiness=125", "blockio=125", "escape=125", "states: 0"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
    assert!(r.err.contains("memory.no-such-file"), "{}", r.err);
    assert!(r.err.contains("memory.swappiness") && r.err.contains("cgroup v1 settings"), "{}", r.err);
    assert!(r.err.contains("blockIO") && r.err.contains("\"../escape\""), "{}", r.err);
}

/// A profile that uses each kind of rule: an errno of its own, a condition on an argument, two
/// alternatives on one argument, killing the process, logging.
const PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 2, "value": 448, "op": "SCMP_CMP_EQ"}, {"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
        {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["getcwd"], "action": "SCMP_ACT_LOG"}]}"#;

#[test]
fn a_seccomp_profile_filters_as_under_runc_with_and_without_no_new_privileges() {
    let r = Lab::new().sh(&format!(
        r#"{BUNDLE}
        set +e
        script='mkdir /tmp/x 2>&1; sleep 100 & kill -9 $! 2>/dev/null; echo kill9=$?; kill -15 $!; echo kill15=$?
            touch /tmp/f; chmod 700 /tmp/f 2>&1; echo chmod700=$?; chmod 777 /tmp/f 2>&1; chmod 644 /tmp/f; echo chmod644=$?
            hostname h; echo hostname=$?; pwd; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status | tr -d "\t"'
        for nnp in true false; do
            jq --arg s "$script" '.root.readonly = false | .process.noNewPrivileges = '$nnp' | .process.args = ["sh", "-c", $s] | .linux.seccomp = {PROFILE}' base.json > config.json
            echo "== shibafu nnp=$nnp"; $R run s-$nnp 2>&1
            echo "== runc nnp=$nnp"; runc --root $LAB/runc run r-$nnp 2>&1
        done
        "#
    ));
    let sections: Vec<&str> = r.out.split("== ").skip(1).collect();
    assert_eq!(sections.len(), 4, "{}\n{}", r.out, r.err);
    for pair in sections.chunks(2) {
        // The same lines; stderr and stdout may interleave differently.
        let body = |s: &str| {
            let mut lines: Vec<String> = s.lines().skip(1).map(str::to_string).collect();
            lines.sort();
            lines
        };
        assert_eq!(body(pair[0]), body(pair[1]), "shibafu and runc differ:\n{}\n{}", pair[0], pair[1]);
    }
    let ours = sections[0];
    for want in ["Function not implemented", "kill9=1", "kill15=0", "Permission denied", "chmod700=1", "chmod644=0", "hostname=159", "Seccomp:2", "NoNewPrivs:1"] {
        assert!(ours.contains(want), "{want}:\n{ours}\n{}", r.err);
    }
    assert!(sections[2].contains("NoNewPrivs:0") && sections[2].contains("Seccomp:2"), "loaded before the capabilities went:\n{}", sections[2]);
}

#[test]
fn seccomp_notify_and_selinux_labels_are_refused_with_the_reason_and_apparmor_where_it_is_off() {
    let r = Lab::new().sh(&format!(
        r#"{BUNDLE}
        set +e
        with '.process.args = ["true"] | .linux.seccomp = {{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}}]}}'
        $R run s1; echo "seccomp=$?"
        with '.process.args = ["true"] | .linux.mountLabel = "system_u:object_r:container_file_t:s0"'
        $R run s2; echo "label=$?"
        with '.process.args = ["true"] | .process.apparmorProfile = "shibafu-test-no-such-profile"'
        $R run s3; echo "apparmor=$?"
        echo "states: $(ls $LAB/rt 2>/dev/null | wc -l)"
        "#
    ));
    for want in ["seccomp=125", "label=125", "apparmor=125", "states: 0"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
    assert!(r.err.contains("SCMP_ACT_NOTIFY: user notification needs a seccomp agent"), "{}", r.err);
    assert!(r.err.contains("linux.mountLabel"), "{}", r.err);
    // Off: refused before anything starts; on: the profile is not loaded, and init says so.
    assert!(r.err.contains("does not run AppArmor") || r.err.contains("apply the AppArmor profile \"shibafu-test-no-such-profile\""), "{}", r.err);
}
