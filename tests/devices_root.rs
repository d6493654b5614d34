//! Hostile input (issue 12): an image layer that carries device nodes of the host's own
//! devices. The device cgroup (a BPF program on the container's cgroup v2 directory) must keep
//! a container from opening them, under our runtime, runc and crun alike, while /dev/null and
//! friends work and a spec's explicit allow rule is honoured.

mod common;

use common::Lab;

/// The host devices the layer points at: (path in the layer, type, major, minor, host node).
/// Each exists on the host (the test opens it there first), so a refusal in the container is
/// the device cgroup's doing, not a missing driver.
const NODES: [(&str, tar::EntryType, u32, u32, &str); 3] = [
    ("evil/tun", tar::EntryType::Char, 10, 200, "/dev/net/tun"),
    ("evil/loop0", tar::EntryType::Block, 7, 0, "/dev/loop0"),
    ("evil/cpu_dma_latency", tar::EntryType::Char, 10, 259, "/dev/cpu_dma_latency"),
];

/// Writes a layer tarball holding the nodes (mode 0666, so file permissions allow any open).
fn evil_layer(lab: &Lab) -> std::path::PathBuf {
    let path = lab.dir.path().join("evil.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let header = || {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h
    };
    let mut dir = header();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_path("evil/").unwrap();
    dir.set_mode(0o755);
    dir.set_cksum();
    tar.append(&dir, std::io::empty()).unwrap();
    for (name, kind, major, minor, _) in NODES {
        let mut h = header();
        h.set_entry_type(kind);
        h.set_path(name).unwrap();
        h.set_mode(0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        tar.append(&h, std::io::empty()).unwrap();
    }
    tar.finish().unwrap();
    path
}

/// What the container runs: tries to open every node, for reading and for writing, then the
/// harmless devices, then makes a node of its own (mknod is allowed, opening it is not).
const PROBE: &str = r#"for f in /evil/tun /evil/loop0 /evil/cpu_dma_latency; do (: < $f) 2>&1 && echo "read $f"; (: > $f) 2>&1 && echo "wrote $f"; done
echo x > /dev/null && echo null-ok; echo zero=$(head -c 4 /dev/zero | wc -c) urandom=$(head -c 4 /dev/urandom | wc -c) full=$( (echo x > /dev/full) 2>&1 | grep -c "No space")
mknod /tmp/loop b 7 0 2>&1 && echo mknod-ok && (: < /tmp/loop) 2>&1; echo probe-done"#;

/// Asserts, for each node, whether reading and writing it opened or was refused with EPERM,
/// and that the harmless devices worked.
fn assert_verdicts(out: &str, who: &str, want: [(&str, bool, bool); 3]) {
    for (name, read, write) in want {
        for (allowed, opened, refused) in [(read, format!("read /{name}"), format!("can't open /{name}: Operation not permitted")), (write, format!("wrote /{name}"), format!("can't create /{name}: Operation not permitted"))] {
            let (must, must_not) = if allowed { (&opened, &refused) } else { (&refused, &opened) };
            assert!(out.contains(must.as_str()) && !out.contains(must_not.as_str()), "{who}: wanted {must:?}:\n{out}");
        }
    }
    assert!(out.contains("null-ok") && out.contains("zero=4 urandom=4 full=1"), "{who}: the harmless devices must work:\n{out}");
    assert!(out.contains("probe-done"), "{who}: {out}");
}

/// Every node refused, for reading and writing.
const ALL_REFUSED: [(&str, bool, bool); 3] = [("evil/tun", false, false), ("evil/loop0", false, false), ("evil/cpu_dma_latency", false, false)];

/// runc 1.1 (Debian's) adds c 10:200 rwm (/dev/net/tun) to every container's rules by itself
/// (runc's own default list; runc 1.2 dropped it), so under runc the tun node opens.
const RUNC_1_1: [(&str, bool, bool); 3] = [("evil/tun", true, true), ("evil/loop0", false, false), ("evil/cpu_dma_latency", false, false)];

/// Whether /sys/fs/cgroup is cgroup v2 as a whole. On a hybrid host crun 1.8 refuses to run any
/// container ("cgroups in hybrid mode not supported"), whatever its spec says.
fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Checks crun's part: its verdicts on a unified host, its refusal of the hybrid layout on another.
fn assert_crun(out: &str, want: [(&str, bool, bool); 3]) {
    if unified_host() {
        assert_verdicts(out, "crun", want);
    } else {
        assert!(out.contains("cgroups in hybrid mode not supported"), "crun on a hybrid host refuses every container:\n{out}");
    }
}

/// Prepares `base` (busybox) and `evil` layers, and checks the host itself opens every node.
fn prepare(lab: &Lab) -> String {
    let tar = evil_layer(lab);
    let host_opens: String = NODES.iter().map(|(.., host)| format!("(: < {host}) && echo host-opens-{host}\n")).collect();
    format!(
        "{host_opens}
         mkdir -p $LAB/base && tar -C $LAB/base -xf $BUSYBOX_TAR
         shibafu prepare-layer base $LAB/base >/dev/null
         shibafu prepare-layer evil {tar} >/dev/null
         node=$(find $SHIBAFU_ROOT/layers -path '*/evil/tun')
         test -c $node && (: < $node) && echo host-opens-the-layer-node\n",
        tar = tar.display()
    )
}

fn assert_host_opens(out: &str) {
    for (.., host) in NODES {
        assert!(out.contains(&format!("host-opens-{host}")), "the host must open {host} itself, or the test proves nothing:\n{out}");
    }
    assert!(out.contains("host-opens-the-layer-node"), "the unpacked node must be a live device on the host:\n{out}");
}

#[test]
fn a_layer_with_host_device_nodes_cannot_open_them_in_any_runtime() {
    let lab = Lab::new();
    let out = lab.ok(&format!(
        "{prepare}
         for rt in shibafu runc crun; do
             echo \"== $rt\"
             shibafu run --rm --runtime $rt --layers base,evil sh -c '{PROBE}' 2>&1 || true
         done
         echo \"== explain\"
         shibafu --explain run --rm --layers base,evil true 2>&1 | grep 'bpftool cgroup attach'
         for id in $(ls $SHIBAFU_ROOT/containers); do test ! -e /sys/fs/cgroup/unified/shibafu/$id && test ! -e /sys/fs/cgroup/shibafu/$id || echo cgroup-left-$id; done
         echo cgroups-checked",
        prepare = prepare(&lab)
    ));
    assert_host_opens(&out);
    let part = |name: &str| out.split(&format!("== {name}\n")).nth(1).and_then(|s| s.split("\n== ").next()).unwrap_or_else(|| panic!("no {name} part:\n{out}")).to_string();
    assert_verdicts(&part("shibafu"), "shibafu", ALL_REFUSED);
    assert_verdicts(&part("runc"), "runc", RUNC_1_1);
    assert_crun(&part("crun"), ALL_REFUSED);
    for rt in ["shibafu", "runc"] {
        let got = part(rt);
        assert!(got.contains("mknod-ok\nsh: can't open /tmp/loop: Operation not permitted"), "{rt}: CAP_MKNOD makes the node, the cgroup refuses it:\n{got}");
    }
    let explain = part("explain");
    assert!(
        explain.contains(" device name shibafu_device multi   # ") && explain.contains("deny a *:* rwm, allow c *:* m, allow b *:* m, allow c 1:3 rwm"),
        "--explain tells the device program and its rules:\n{explain}"
    );
    assert!(out.contains("cgroups-checked") && !out.contains("cgroup-left-"), "{out}");
}

#[test]
fn an_explicit_allow_rule_opens_that_device_and_no_other_in_every_runtime() {
    let lab = Lab::new();
    let tar = evil_layer(&lab);
    // One bundle, run unchanged by each runtime: first as the engine wrote it, then with an
    // allow rule appended for reading (only) the cpu_dma_latency node.
    let out = lab.ok(&format!(
        r#"(: < /dev/cpu_dma_latency) && echo host-opens-/dev/cpu_dma_latency
         shibafu bundle busybox $LAB/b sh -c '{PROBE}' >/dev/null
         tar -C $LAB/b/rootfs -xf {tar}
         python3 - $LAB/b/config.json <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["linux"]["resources"]["devices"].append({{"allow": True, "type": "c", "major": 10, "minor": 259, "access": "r"}})
json.dump(spec, open(path + ".allow", "w"))
PY
         for rule in deny allow; do
             test $rule = allow && mv $LAB/b/config.json.allow $LAB/b/config.json
             echo "== shibafu $rule"; shibafu runtime --root $LAB/rt run -b $LAB/b s-$rule
             echo "== runc $rule"; runc --root $LAB/runc run -b $LAB/b r-$rule
             echo "== crun $rule"; crun --root $LAB/crun run -b $LAB/b c-$rule 2>&1 || true
         done
         echo "== end"
         for id in s-deny s-allow; do test ! -e /sys/fs/cgroup/unified/shibafu/$id || echo cgroup-left-$id; done"#,
        tar = tar.display()
    ));
    assert!(out.contains("host-opens-/dev/cpu_dma_latency") && out.contains("== end") && !out.contains("cgroup-left-"), "{out}");
    let part = |name: &str| out.split(&format!("== {name}\n")).nth(1).and_then(|s| s.split("\n== ").next()).unwrap_or_else(|| panic!("no {name} part:\n{out}")).to_string();
    let read_only = |base: [(&'static str, bool, bool); 3]| base.map(|(n, r, w)| if n == "evil/cpu_dma_latency" { (n, true, false) } else { (n, r, w) });
    assert_verdicts(&part("shibafu deny"), "shibafu", ALL_REFUSED);
    assert_verdicts(&part("shibafu allow"), "shibafu", read_only(ALL_REFUSED));
    assert_verdicts(&part("runc deny"), "runc", RUNC_1_1);
    assert_verdicts(&part("runc allow"), "runc", read_only(RUNC_1_1));
    assert_crun(&part("crun deny"), ALL_REFUSED);
    assert_crun(&part("crun allow"), read_only(ALL_REFUSED));
}

#[test]
fn the_kernel_verifier_accepts_every_shape_of_program() {
    use shibafu::runtime::{bpf, device_filter};
    let lists = [
        r#"[]"#,
        r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","access":"m"},{"allow":true,"type":"b","major":7,"access":"rw"}]"#,
        r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":10,"minor":200,"access":"w"}]"#,
        r#"[{"allow":true,"type":"c","major":1,"minor":3,"access":"r"},{"allow":false,"access":"rwm"}]"#,
        r#"[{"allow":true,"type":"p","access":"rwm"},{"allow":true,"type":"b","minor":0,"access":"m"}]"#,
    ];
    for list in lists {
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_str(&format!(r#"{{"devices":{list}}}"#)).unwrap();
        let rules = device_filter::rules(Some(&resources), &[]).unwrap();
        let prog = bpf::load_device_program(&device_filter::program(&rules));
        assert!(prog.is_ok(), "{list}: {}", prog.err().unwrap());
    }
}

#[test]
fn limits_without_their_controller_are_refused_and_leave_no_cgroup() {
    let out = Lab::new().ok(
        "SHIBAFU_EXPLAIN_FILE=$LAB/explain shibafu run --rm --memory 32m busybox cat /sys/fs/cgroup/memory.max 2>&1 || echo code=$?
         cgroup=$(grep -o 'mkdir -p /sys/fs/cgroup/.*shibafu/.*' $LAB/explain | cut -d' ' -f3)
         echo made=$cgroup
         test -n \"$cgroup\" && test ! -e $cgroup && echo removed",
    );
    assert!(out.contains("made=/sys/fs/cgroup/") && out.contains("removed"), "the cgroup was made, then removed:\n{out}");
    if unified_host() {
        assert!(out.contains("33554432"), "a unified host applies the limit:\n{out}");
    } else {
        // The hybrid layout: cgroup v2 (for the device program) without the memory controller.
        assert!(
            out.contains("cgroup memory.max cannot be applied: the cgroup v2 hierarchy at /sys/fs/cgroup/unified (a hybrid layout: the controllers are on cgroup v1) does not offer their controllers")
                && out.contains("code=125"),
            "{out}"
        );
    }
}

#[test]
fn exec_lands_in_the_containers_cgroup_and_its_device_rules() {
    let lab = Lab::new();
    let out = lab.ok(&format!(
        "{prepare}
         shibafu run -d --name d --layers base,evil sleep 100 >/dev/null
         shibafu exec d sh -c '{PROBE}'
         echo procs=$(shibafu exec d cat /sys/fs/cgroup/cgroup.procs | wc -l)
         shibafu rm -f d >/dev/null",
        prepare = prepare(&lab)
    ));
    assert_host_opens(&out);
    assert_verdicts(&out, "exec", ALL_REFUSED);
    // The container's own cgroup (its cgroup namespace root) holds sleep and the exec'd cat.
    assert!(out.contains("procs=2"), "{out}");
}

#[test]
fn a_container_a_script_leaves_running_leaves_no_cgroup_behind() {
    let lab = Lab::new();
    let out = lab.ok(
        "SHIBAFU_EXPLAIN_FILE=$LAB/explain shibafu run -d busybox sleep 1000 >/dev/null
         grep -o 'mkdir -p /sys/fs/cgroup/.*shibafu/.*' $LAB/explain | cut -d' ' -f3",
    );
    let cgroup = std::path::PathBuf::from(out.trim());
    // The script's PID namespace took the container's processes with it, but not its cgroup,
    // which is the host's: the harness removes it when the lab goes.
    assert!(cgroup.starts_with("/sys/fs/cgroup") && cgroup.exists(), "{out}");
    drop(lab);
    assert!(!cgroup.exists(), "{} is left behind", cgroup.display());
}

#[test]
fn without_any_cgroup_v2_device_rules_are_refused_and_a_plain_spec_still_runs() {
    // This test's own mount namespace hides the hybrid layout's v2 tree: a v1-only host.
    let out = Lab::new().ok(
        "mount -t tmpfs none /sys/fs/cgroup/unified
         shibafu run --rm busybox true 2>&1 || echo code=$?
         shibafu bundle busybox $LAB/b sh -c 'echo ran-without-cgroup' >/dev/null
         python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); del s[\"linux\"][\"resources\"]; json.dump(s, open(sys.argv[1], \"w\"))' $LAB/b/config.json
         shibafu runtime --root $LAB/rt run -b $LAB/b plain",
    );
    assert!(
        out.contains("cgroup devices cannot be applied: this host mounts no cgroup v2 hierarchy (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is cgroup2)")
            && out.contains("code=125"),
        "device rules need cgroup v2, and the engine always writes them:\n{out}"
    );
    assert!(out.contains("ran-without-cgroup"), "a spec asking nothing of cgroups runs as before:\n{out}");
}
