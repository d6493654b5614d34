//! Volumes and mounts (phase 7): named volumes outlive their containers, anonymous ones go with
//! `rm -v`, copy-up from the image, read-only binds, tmpfs, a volume in use cannot be removed,
//! and a mount target that is a symlink in the image stays inside the rootfs. Each test runs
//! in namespaces of its own with a temp data root.

mod common;

use common::Lab;

#[test]
fn a_named_volume_outlives_its_container_and_is_seeded_from_the_image() {
    let out = Lab::new().ok(
        r#"
        shibafu run --name writer -v data:/etc busybox sh -c 'echo kept > /etc/mine'
        shibafu rm writer >/dev/null
        echo seen=$(shibafu run --rm -v data:/x busybox cat /x/mine)
        echo seeded=$(shibafu run --rm -v data:/x busybox cat /x/motd)
        echo on-disk=$(cat $SHIBAFU_ROOT/volumes/data/_data/mine)
        shibafu volume ls
        shibafu volume inspect data
        echo created=$(shibafu volume create)
        shibafu volume create --label team=lab named2 >/dev/null
        shibafu volume inspect named2 | grep -c '"team": "lab"' | sed 's/^/labels=/'
        "#,
    );
    assert!(out.contains("seen=kept"), "the data did not survive rm: {out}");
    assert!(out.contains("seeded=shibafu busybox image"), "the image's /etc was not copied into the new volume: {out}");
    assert!(out.contains("on-disk=kept"), "{out}");
    assert!(out.contains("local           data"), "{out}");
    for key in ["\"Driver\": \"local\"", "\"Scope\": \"local\"", "\"Name\": \"data\"", "/volumes/data/_data\"", "\"CreatedAt\""] {
        assert!(out.contains(key), "{key}: {out}");
    }
    let anonymous = out.split("created=").nth(1).and_then(|t| t.lines().next()).unwrap_or("");
    assert!(anonymous.len() == 64 && anonymous.chars().all(|c| c.is_ascii_hexdigit()), "{out}");
    assert!(out.contains("labels=1"), "{out}");
}

#[test]
fn rm_v_removes_anonymous_volumes_and_keeps_named_ones() {
    let out = Lab::new().ok(
        r#"
        shibafu run --name c1 -v /anon -v keep:/named busybox sh -c 'echo a > /anon/f; echo n > /named/f'
        echo before=$(shibafu volume ls -q | wc -l)
        anon=$(shibafu volume ls -q | grep -v keep)
        shibafu rm -v c1 >/dev/null
        echo after=$(shibafu volume ls -q | tr '\n' ' ')
        [ -e $SHIBAFU_ROOT/volumes/$anon ] && echo anon-dir-left || echo anon-dir-gone
        shibafu run --rm -v /tmp/scratch busybox true
        echo after-run-rm=$(shibafu volume ls -q | wc -l)
        shibafu run --name c2 -v /kept-anon busybox true
        shibafu rm c2 >/dev/null
        echo after-plain-rm=$(shibafu volume ls -q | wc -l)
        shibafu volume prune
        echo after-prune=$(shibafu volume ls -q | tr '\n' ' ')
        shibafu volume prune -a >/dev/null
        echo after-prune-all=$(shibafu volume ls -q | wc -l)
        mkdir -p $SHIBAFU_ROOT/volumes/.removing-cut-short-0123/_data
        shibafu gc | grep -c 'removed leftover .*removing-cut-short' | sed 's/^/gc-took=/'
        echo volume-dirs=$(ls -A $SHIBAFU_ROOT/volumes | wc -l)
        "#,
    );
    assert!(out.contains("before=2"), "{out}");
    assert!(out.contains("after=keep\n"), "{out}");
    assert!(out.contains("anon-dir-gone"), "{out}");
    assert!(out.contains("after-run-rm=1"), "run --rm removes its anonymous volume: {out}");
    assert!(out.contains("after-plain-rm=2"), "rm without -v keeps it: {out}");
    assert!(out.contains("Deleted Volumes:") && out.contains("Total reclaimed space"), "{out}");
    assert!(out.contains("after-prune=keep\n"), "prune takes anonymous ones only: {out}");
    assert!(out.contains("after-prune-all=0"), "{out}");
    assert!(out.contains("gc-took=1") && out.contains("volume-dirs=0"), "gc finishes a removal cut short: {out}");
}

#[test]
fn a_volume_in_use_is_not_removed_and_bad_input_changes_nothing() {
    let r = Lab::new().sh(
        r#"
        rc() { name=$1; shift; if "$@"; then echo $name=0; else echo $name=$?; fi; }
        shibafu run -d --name user -v busy:/data busybox sleep 100 >/dev/null
        rc rm-running shibafu volume rm busy
        shibafu stop -t 0 user >/dev/null
        rc rm-stopped shibafu volume rm busy
        rc rm-f-missing shibafu volume rm -f ghost
        rc rm-missing shibafu volume rm ghost
        shibafu rm user >/dev/null
        rc rm-unused shibafu volume rm busy
        rc bad-name shibafu run --rm -v 'bad name:/x' busybox true
        rc relative shibafu run --rm -v ok:../x busybox true
        rc mount-missing shibafu run --rm --mount type=bind,source=$LAB/missing,target=/x busybox true
        rc bad-user shibafu run --rm -v new1:/x -u ghost busybox true
        echo volumes=$(shibafu volume ls -q | wc -l) rows=$(shibafu list -aq | wc -l) dirs=$(ls $SHIBAFU_ROOT/containers | wc -l)
        [ -e $LAB/missing ] && echo missing-made || echo missing-not-made
        shibafu run --rm -v $LAB/made/by/v:/x busybox true
        [ -d $LAB/made/by/v ] && echo v-made-it
        "#,
    );
    let out = &r.out;
    assert_eq!(r.code, 0, "{out}\n{}", r.err);
    assert!(out.contains("rm-running=1") && out.contains("rm-stopped=1"), "{out}\n{}", r.err);
    assert!(r.err.contains("volume busy is in use by container"), "{}", r.err);
    assert!(out.contains("rm-f-missing=0") && out.contains("rm-missing=1") && out.contains("rm-unused=0"), "{out}");
    for (what, code) in [("bad-name", 125), ("relative", 125), ("mount-missing", 125), ("bad-user", 125)] {
        assert!(out.contains(&format!("{what}={code}")), "{what}: {out}\n{}", r.err);
    }
    assert!(r.err.contains("not a valid volume name") && r.err.contains("bind source path does not exist") && r.err.contains("unable to find user ghost"), "{}", r.err);
    assert!(out.contains("volumes=0 rows=0 dirs=0"), "a refused run left something: {out}");
    assert!(out.contains("missing-not-made") && out.contains("v-made-it"), "{out}");
}

#[test]
fn binds_can_be_read_only_and_tmpfs_is_tmpfs() {
    let out = Lab::new().ok(
        r#"
        mkdir -p $LAB/host && echo from-host > $LAB/host/f
        echo read=$(shibafu run --rm -v $LAB/host:/h:ro busybox cat /h/f)
        shibafu run --rm -v $LAB/host:/h:ro busybox sh -c 'echo x > /h/g' 2>&1 || echo ro-refused
        shibafu run --rm --mount type=bind,src=$LAB/host,dst=/h busybox sh -c 'echo written > /h/g'
        echo host-sees=$(cat $LAB/host/g)
        shibafu run --rm --mount type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=700 busybox sh -c 'grep " /scratch " /proc/mounts; stat -c mode=%a /scratch'
        shibafu run --rm --tmpfs /run/app:size=2m busybox grep " /run/app " /proc/mounts
        "#,
    );
    assert!(out.contains("read=from-host"), "{out}");
    assert!(out.contains("Read-only file system") && out.contains("ro-refused"), "{out}");
    assert!(out.contains("host-sees=written"), "{out}");
    assert!(out.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec") && out.contains("size=1024k"), "{out}");
    assert!(out.contains("mode=700"), "{out}");
    assert!(out.contains("tmpfs /run/app tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k"), "{out}");
}

#[test]
fn a_symlinked_mount_target_in_the_image_stays_inside_the_rootfs() {
    let out = Lab::new().ok(
        r#"
        mkdir -p $LAB/outside $LAB/src
        echo data > $LAB/src/f
        shibafu run --name mk busybox ln -s /../../../../../../..$LAB/outside /evil
        shibafu commit mk evil >/dev/null
        shibafu run --rm -v $LAB/src:/evil/x evil sh -c "cat /evil/x/f; readlink /evil"
        shibafu run --rm --mount type=tmpfs,target=/evil/t evil true
        shibafu run --rm -v vol:/evil/v evil true
        echo outside-has=$(ls -A $LAB/outside | wc -l)
        "#,
    );
    assert!(out.contains("data\n"), "the bind did not reach the container: {out}");
    assert!(out.contains("outside-has=0"), "a mount went through the image's symlink onto the host: {out}");
}

#[test]
fn racing_runs_on_one_new_volume_all_start_and_it_is_seeded_once() {
    let out = Lab::new().ok(
        r#"
        for i in 1 2 3 4 5; do (shibafu run --rm -v shared:/etc busybox cat /etc/motd >$LAB/out$i 2>&1; echo "rc$i=$?" >>$LAB/rcs) & done
        wait
        sort $LAB/rcs
        cat $LAB/out*
        echo volumes=$(shibafu volume ls -q)
        "#,
    );
    for i in 1..=5 {
        assert!(out.contains(&format!("rc{i}=0")), "{out}");
    }
    assert_eq!(out.matches("shibafu busybox image").count(), 5, "{out}");
    assert!(out.contains("volumes=shared\n"), "{out}");
}

/// Python that gives the image in the OCI layout at argv[1] the Volumes /data and /etc and
/// two labels (rewriting its config, manifest and index).
const IMAGE_WITH_VOLUMES: &str = r#"
import json, hashlib, sys
d = sys.argv[1]
idx = json.load(open(d + "/index.json"))
desc = idx["manifests"][0]
blob = lambda dg: d + "/blobs/sha256/" + dg.split(":")[1]
man = json.load(open(blob(desc["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
cfg["config"]["Volumes"] = {"/data": {}, "/etc": {}}
cfg["config"]["Labels"] = {"from": "image", "tier": "image"}
def put(obj):
    b = json.dumps(obj).encode()
    dg = "sha256:" + hashlib.sha256(b).hexdigest()
    open(blob(dg), "wb").write(b)
    return dg, len(b)
man["config"]["digest"], man["config"]["size"] = put(cfg)
desc["digest"], desc["size"] = put(man)
json.dump(idx, open(d + "/index.json", "w"))
"#;

#[test]
fn an_images_volumes_become_anonymous_volumes_and_its_labels_the_containers() {
    let out = Lab::new().ok(&format!(
        r#"
        shibafu image export busybox $LAB/layout
        python3 -c '{IMAGE_WITH_VOLUMES}' $LAB/layout
        shibafu image import $LAB/layout withvol:1 >/dev/null
        shibafu run --name c1 -l tier=run -v mine:/etc withvol:1 sh -c 'grep -c -E " /data | /etc " /proc/mounts' | sed 's/^/mounts=/'
        echo volumes=$(shibafu volume ls -q | wc -l)
        echo labels=$(shibafu list -a --format '{{{{.Labels}}}}')
        shibafu rm -v c1 >/dev/null
        echo left=$(shibafu volume ls -q)
        "#
    ));
    assert!(out.contains("mounts=2"), "{out}");
    assert!(out.contains("volumes=2"), "/etc is the run's own volume, /data an anonymous one: {out}");
    assert!(out.contains("labels=from=image,tier=run"), "the run's labels go over the image's: {out}");
    assert!(out.contains("left=mine\n"), "{out}");
}
