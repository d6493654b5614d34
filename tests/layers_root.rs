//! Phase 3 of shared/PHASES.md, as written (alpine-base = the busybox rootfs, python-3.11 =
//! Debian's python3.11 files, app-code = a small app.py): layers prepared by hand, combined at
//! run time by overlay, shared by every container; commit, export and gc around them.

mod common;

use common::Lab;

/// The three layers of the plan, from directories the way a person would have them.
fn prepare() -> String {
    format!(
        r#"
    mkdir -p $LAB/alpine-rootfs $LAB/myapp
    tar -C $LAB/alpine-rootfs -xf $BUSYBOX_TAR
    {PYTHON_DIR}
    printf 'import sys\nprint("hello from app.py on python", sys.version.split()[0])\n' > $LAB/myapp/app.py
    shibafu prepare-layer alpine-base $LAB/alpine-rootfs
    shibafu prepare-layer python-3.11 $LAB/python-3.11
    shibafu prepare-layer app-code $LAB/myapp
"#,
        PYTHON_DIR = common::PYTHON_DIR
    )
}

#[test]
fn phase3_layers_by_hand_are_shared_by_every_container() {
    let out = Lab::new().ok(&format!(
        r#"{prepare}
        cd $LAB/myapp
        shibafu run --rm --layers alpine-base,python-3.11,app-code python app.py
        layers_before=$(du -sk $SHIBAFU_ROOT/layers | cut -f1)
        containers_before=$(du -sk $SHIBAFU_ROOT/containers | cut -f1)
        for i in 1 2 3 4 5 6 7 8 9 10; do
            shibafu run --name c$i --layers alpine-base,python-3.11,app-code sh -c 'dd if=/dev/zero of=/data bs=1k count=100 2>/dev/null; rm /etc/motd'
        done
        echo layers-grew=$(( $(du -sk $SHIBAFU_ROOT/layers | cut -f1) - layers_before ))
        echo containers-grew=$(( $(du -sk $SHIBAFU_ROOT/containers | cut -f1) - containers_before ))
        base=$(shibafu layers | awk '$1 == "alpine-base" {{print $2}}')
        test -e $SHIBAFU_ROOT/layers/$(ls $SHIBAFU_ROOT/layers | grep ^${{base#sha256:}})/etc/motd && echo motd-kept-in-layer
        shibafu run --rm --layers alpine-base,python-3.11,app-code cat /etc/motd >/dev/null && echo motd-in-new-container
        blobs=$(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l)
        shibafu prepare-layer alpine-again $LAB/alpine-rootfs | cut -d' ' -f2 > $LAB/again
        echo same-digest=$(shibafu layers | grep -c $(cut -c1-19 $LAB/again))
        echo blobs-grew=$(( $(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l) - blobs ))
        shibafu layers
        shibafu layer rm app-code 2>&1 || echo rm-refused
        "#,
        prepare = prepare()
    ));
    assert!(out.contains("hello from app.py on python 3.11."), "{out}");
    let grew = |key: &str| -> i64 { out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("{key} missing:\n{out}")).parse().unwrap() };
    // Ten containers add nothing to layers/, and about what each wrote (100 KiB) to containers/,
    // plus its bundle: config.json (some 20 KiB with the seccomp profile's syscall list),
    // hostname, hosts, resolv.conf, a few 4 KiB blocks each.
    assert_eq!(grew("layers-grew="), 0, "{out}");
    let containers = grew("containers-grew=");
    assert!((1000..2000).contains(&containers), "containers/ grew by {containers} KiB for 10 x 100 KiB:\n{out}");
    assert!(out.contains("motd-kept-in-layer") && out.contains("motd-in-new-container"), "{out}");
    // Preparing the same tree again names the same layer and stores nothing new.
    assert_eq!(grew("same-digest="), 1, "{out}");
    assert_eq!(grew("blobs-grew="), 0, "{out}");
    let base = out.lines().find(|l| l.starts_with("alpine-again,alpine-base") || l.starts_with("alpine-base,alpine-again")).unwrap_or_else(|| panic!("{out}"));
    assert!(base.split_whitespace().next_back() == Some("10"), "ten containers use the base:\n{out}");
    assert!(out.contains("is in use by") && out.contains("rm-refused"), "{out}");
}

#[test]
fn commit_writes_oci_whiteouts_and_export_is_a_layout_skopeo_copies() {
    let out = Lab::new().ok(
        r#"
        shibafu run --name box busybox sh -c 'echo new > /etc/added; rm /etc/motd; rm -r /home; mkdir /home; echo x > /home/only'
        shibafu commit box boxed:1 >/dev/null
        shibafu run --rm boxed:1 sh -c 'cat /etc/added; test -e /etc/motd || echo motd-gone; ls /home'
        shibafu image export boxed:1 $LAB/layout
        top=$(jq -r '.layers[-1].digest[7:]' $LAB/layout/blobs/sha256/$(jq -r '.manifests[0].digest[7:]' $LAB/layout/index.json))
        tar -tzf $LAB/layout/blobs/sha256/$top | sort | tr '\n' ' '; echo
        skopeo copy --quiet oci:$LAB/layout:1 oci:$LAB/copied:1 && echo skopeo-copied
        shibafu image export boxed:1 $LAB/boxed.tar
        shibafu image rm busybox 2>&1 | grep -o 'used by 1 container' || true
        shibafu rm box >/dev/null
        shibafu image rm boxed:1
        shibafu image import $LAB/boxed.tar fromtar:1 >/dev/null && shibafu run --rm fromtar:1 cat /home/only
        shibafu image import $LAB/copied >/dev/null
        shibafu run --rm copied:1 cat /etc/added
        shibafu image inspect copied:1 | jq -r '.layers | length'
        "#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0..3], ["new", "motd-gone", "only"], "{out}");
    // The commit's layer: the new file, a whiteout for motd, and /home made opaque.
    for entry in ["etc/added", "etc/.wh.motd", "home/.wh..wh..opq", "home/only"] {
        assert!(lines[3].contains(entry), "{entry} missing from the layer: {}", lines[3]);
    }
    assert!(out.contains("skopeo-copied") && out.contains("used by 1 container") && out.contains("untagged boxed:1"), "{out}");
    assert!(out.contains("untagged boxed:1\nx\n"), "our own exported tar imports and runs:\n{out}");
    assert_eq!(lines[lines.len() - 2..], ["new", "2"], "{out}");
}

#[test]
fn two_hundred_layers_stack_in_one_overlay() {
    let out = Lab::new().ok(
        r#"
        mkdir -p $LAB/base && tar -C $LAB/base -xf $BUSYBOX_TAR
        shibafu prepare-layer base $LAB/base >/dev/null
        names=base
        for i in $(seq 1 199); do
            mkdir -p $LAB/l$i && echo $i > $LAB/l$i/f$i && echo $i > $LAB/l$i/top
            shibafu prepare-layer l$i $LAB/l$i >/dev/null
            names=$names,l$i
        done
        shibafu run --rm --layers $names sh -c 'ls / | grep -c "^f"; cat /top'
        "#,
    );
    assert_eq!(out, "199\n199\n", "199 files from 199 layers, and the last named on top");
}

#[test]
fn gc_removes_what_nothing_uses_and_crash_leftovers() {
    let out = Lab::new().ok(
        r#"
        mkdir -p $LAB/x && echo x > $LAB/x/x
        shibafu prepare-layer x $LAB/x >/dev/null
        shibafu layer rm x >/dev/null
        mkdir -p $SHIBAFU_ROOT/containers/deadbeef/upper $SHIBAFU_ROOT/layers/.unpack-crash $SHIBAFU_ROOT/layers/.unpack-running
        touch -d '1 hour ago' $SHIBAFU_ROOT/containers/deadbeef
        # A staging dir an import owns right now (its flock) stays; no age is asked of the others.
        flock $SHIBAFU_ROOT/layers/.unpack-running sleep 60 & owner=$!
        while ! grep -q ":$(stat -c %i $SHIBAFU_ROOT/layers/.unpack-running) " /proc/locks; do sleep 0.01; done
        echo junk > $SHIBAFU_ROOT/blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000
        shibafu gc | tail -1
        ls -a $SHIBAFU_ROOT/containers $SHIBAFU_ROOT/layers | grep -e deadbeef -e unpack | tr '\n' ' '; echo
        kill $owner
        shibafu run --rm busybox echo still-runs
        shibafu gc | tail -1
        "#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("gc: 3 removed"), "{out}");
    assert_eq!(lines[1..3], [".unpack-running ", "still-runs"], "{out}");
    assert!(lines[3].starts_with("gc: 0 removed"), "{out}");
}
