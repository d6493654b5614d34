//! The hostile-input corpus (tests/common/hostile.rs makes it): every crafted archive, lying
//! layout, abusive registry request and bad command-line value is refused with a clear error,
//! and changes nothing: a canary tree outside the data root keeps every name, mode, size and
//! time; the data root keeps its files and its state.db; nothing is registered.

mod common;

use std::path::Path;

use common::hostile::{self, Lie, Tar, BLOCK, CHAR, FIFO, FILE, SYMLINK};
use common::Lab;

/// One corpus case: its name, the shell command to run, and a phrase its error must hold.
struct Case {
    name: String,
    command: String,
    phrase: &'static str,
}

fn case(name: &str, command: String, phrase: &'static str) -> Case {
    Case { name: name.into(), command, phrase }
}

/// The crafted layer archives, as (file name, bytes, phrase of the error).
fn archives(canary: &Path) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let c = canary.display().to_string();
    let long_escape = format!("{}/../../../../../escape-long", "d".repeat(120));
    vec![
        ("dotdot.tar", Tar::new().file("../escape", b"x").finish(), "climbs out"),
        ("dotdot-deep.tar", Tar::new().dir("a/").file("a/../../escape", b"x").finish(), "climbs out"),
        ("absolute.tar", Tar::new().file(&format!("{c}/pwned"), b"x").finish(), "absolute"),
        ("symlink-then-write.tar", Tar::new().symlink("x", &c).file("x/pwned", b"x").finish(), "goes through a symlink"),
        ("symlink-climbs.tar", Tar::new().symlink("x", "../../../../../../..").finish(), "outside the tree"),
        ("symlink-nested-climbs.tar", Tar::new().dir("a/").symlink("a/up", "../..").finish(), "outside the tree"),
        ("hardlink-dotdot.tar", Tar::new().hardlink("h", "../escape").finish(), "climbs out"),
        ("hardlink-absolute.tar", Tar::new().hardlink("h", &format!("{c}/file")).finish(), "absolute"),
        ("hardlink-through-symlink.tar", Tar::new().symlink("s", &c).hardlink("h", "s/file").finish(), "goes through a symlink"),
        ("whiteout-dotdot.tar", Tar::new().file(".wh...", b"").finish(), "whiteout"),
        ("whiteout-dot.tar", Tar::new().file(".wh..", b"").finish(), "whiteout"),
        ("whiteout-empty.tar", Tar::new().file(".wh.", b"").finish(), "whiteout"),
        ("whiteout-dotdot-nested.tar", Tar::new().dir("a/").file("a/.wh...", b"").finish(), "whiteout"),
        ("whiteout-dotdot-dir.tar", Tar::new().dir(".wh.../").finish(), "whiteout"),
        ("dir-becomes-symlink.tar", Tar::new().dir("x/").symlink("x", &c).finish(), "replaces a directory"),
        ("dir-becomes-symlink-nested.tar", Tar::new().dir("a/b/").symlink("a", &c).file("a/b/f", b"x").finish(), "replaces a directory"),
        ("dir-becomes-file.tar", Tar::new().dir("x/").file("x", b"x").finish(), "replaces a directory"),
        ("gnu-longname-dotdot.tar", Tar::new().gnu_long(&long_escape, FILE, b"x").finish(), "climbs out"),
        ("pax-path-dotdot.tar", Tar::new().pax(&[("path", "../pax-escape")], "innocent", FILE, "", b"x").finish(), "climbs out"),
        ("pax-linkpath-climbs.tar", Tar::new().pax(&[("linkpath", "../../../../..")], "innocent", SYMLINK, "ok", b"").finish(), "outside the tree"),
        ("truncated.tar", Tar::new().file("big", &[7u8; 8192]).finish()[..2048].to_vec(), "unreadable archive"),
        ("truncated.tar.gz", { let g = hostile::gzip(&Tar::new().file("big", &[7u8; 65536]).finish()); g[..g.len() / 2].to_vec() }, "unreadable archive"),
        ("not-a-tar.bin", (0..20000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(), "unreadable archive"),
        ("empty.tar", Vec::new(), "empty"),
        ("bomb.tar.gz", hostile::bomb(320 << 20, false), "decompression bomb"),
        ("bomb.tar.zst", hostile::bomb(320 << 20, true), "decompression bomb"),
        ("trailing.tar", { let mut t = Tar::new().file("a", b"x").finish(); t.extend(std::iter::repeat_n(1u8, 5 << 20)); t }, "follow the archive's end marker"),
    ]
}

/// Shell lines that snapshot what must not change: the canary (names, kinds, modes, sizes,
/// times), the data root (names and kinds, file sizes), and the whole state database.
const SNAPSHOT: &str = r#"
snap() {
    find "$LAB/canary" -printf '%y %p %m %s %T@\n' | sort
    (cd "$SHIBAFU_ROOT" && find . \( -name 'state.db*' -o -path ./run \) -prune -o \( -type d -printf '%y %p\n' \) -o -printf '%y %p %s\n' | sort)
    sqlite3 "$SHIBAFU_ROOT/state.db" .dump
}
"#;

/// Runs the cases in one lab; returns what each printed (name -> (code, changed, stderr)).
fn run_cases(lab: &Lab, setup: &str, cases: &[Case]) -> Vec<(String, i32, String, String)> {
    let mut script = format!("{SNAPSHOT}\nmkdir -p $LAB/canary/dir && echo canary > $LAB/canary/file && touch -d 2001-01-01 $LAB/canary/dir $LAB/canary/file $LAB/canary\n{setup}\n");
    for c in cases {
        script.push_str(&format!(
            "before=$(snap)\nset +e\nerr=$( {cmd} 2>&1 >/dev/null )\ncode=$?\nset -e\nafter=$(snap)\n[ \"$before\" = \"$after\" ] && changed=no || changed=\"$(diff <(echo \"$before\") <(echo \"$after\") | grep '^[<>]' | head -5 | tr '\\n\\t' '  ')\"\nprintf 'CASE\\t%s\\t%s\\t%s\\t%s\\n' {name} \"$code\" \"$changed\" \"$(echo \"$err\" | tr '\\n\\t' '  ')\"\n",
            cmd = c.command,
            name = c.name,
        ));
    }
    let ran = lab.sh(&script);
    assert_eq!(ran.code, 0, "the corpus script failed:\n{}\n{}", ran.out, ran.err);
    let results: Vec<_> = ran
        .out
        .lines()
        .filter_map(|l| l.strip_prefix("CASE\t"))
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            (f[0].to_string(), f[1].parse().unwrap_or(-1), f[2].to_string(), f.get(3).unwrap_or(&"").to_string())
        })
        .collect();
    assert_eq!(results.len(), cases.len(), "every case reports:\n{}\n{}", ran.out, ran.err);
    results
}

/// Each case failed with its phrase in a clear message and changed nothing.
fn assert_refused(cases: &[Case], results: &[(String, i32, String, String)]) {
    let mut wrong = Vec::new();
    for (c, (name, code, changed, err)) in cases.iter().zip(results) {
        let clear = err.starts_with("shibafu: ") && err.contains(c.phrase) && !err.contains("panicked") && err.matches("(os error").count() <= 1;
        if *code == 0 || changed != "no" || !clear {
            wrong.push(format!("{name}: exit {code}, changes {changed:?}, error {err:?} (wanted {:?})", c.phrase));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases went wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn every_crafted_layer_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let canary = lab.dir.path().join("canary");
    let corpus = lab.dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let mut cases = Vec::new();
    for (i, (file, bytes, phrase)) in archives(&canary).into_iter().enumerate() {
        std::fs::write(corpus.join(file), &bytes).unwrap();
        cases.push(case(&format!("prepare-layer:{file}"), format!("shibafu prepare-layer evil{i} $LAB/corpus/{file}"), phrase));
        cases.push(case(&format!("image-import:{file}"), format!("shibafu image import $LAB/corpus/{file} evil:{i}"), phrase));
    }
    // The same archives as the one layer of an OCI layout; and as the layout's own tar.
    for (i, lie) in [Lie::LayerDigest, Lie::LayerSize, Lie::DiffId, Lie::DigestTraversal, Lie::HugeManifest, Lie::BlobSymlink, Lie::LayerWhiteoutDotDot].into_iter().enumerate() {
        let dir = corpus.join(format!("layout-{lie:?}"));
        hostile::lying_layout(&dir, lie, &canary.join("file"));
        let phrase = match lie {
            Lie::LayerDigest | Lie::LayerSize => "corrupt image",
            Lie::DiffId => "but the config says",
            Lie::DigestTraversal => "is not sha256",
            Lie::HugeManifest => "larger than",
            Lie::BlobSymlink => "cannot read",
            Lie::LayerWhiteoutDotDot => "whiteout",
        };
        cases.push(case(&format!("layout-dir:{lie:?}"), format!("shibafu image import {} lie:{i}", dir.display()), phrase));
        cases.push(case(&format!("layout-tar:{lie:?}"), format!("tar -C {} -cf {}.tar . && shibafu image import {}.tar lie:{i}", dir.display(), dir.display(), dir.display()), phrase));
    }
    // The store-wiping entry inside the layout tar itself (it used to delete blobs/ and state.db).
    let layout_tar = corpus.join("layout-whiteout.tar");
    std::fs::write(&layout_tar, Tar::new().file(".wh...", b"").file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).finish()).unwrap();
    cases.push(case("layout-tar:whiteout-of-dotdot", format!("shibafu image import {} x:1", layout_tar.display()), "whiteout"));
    // Endless and odd sources.
    cases.push(case("endless:/dev/zero-import", "timeout 60 shibafu image import /dev/zero z:1".into(), "follow the archive's end marker"));
    cases.push(case("endless:/dev/zero-layer", "timeout 60 shibafu prepare-layer z /dev/zero".into(), "follow the archive's end marker"));
    cases.push(case("endless:/dev/urandom", "timeout 60 shibafu prepare-layer r /dev/urandom".into(), "unreadable archive"));
    cases.push(case("endless:pipe-of-yes", "timeout 60 shibafu image import <(yes) y:1".into(), "unreadable archive"));
    std::fs::write(corpus.join("big.tar.gz"), hostile::gzip(&Tar::new().file("big", &vec![7u8; 3 << 20]).finish())).unwrap();
    cases.push(case("size-cap", "SHIBAFU_MAX_LAYER_SIZE=1m shibafu prepare-layer big $LAB/corpus/big.tar.gz".into(), "more than 1.0 MiB"));
    cases.push(case("size-cap-import", "SHIBAFU_MAX_LAYER_SIZE=1m shibafu image import $LAB/corpus/big.tar.gz big:1".into(), "more than 1.0 MiB"));
    cases.push(case("bad-limit-env", "SHIBAFU_MAX_LAYER_SIZE=lots shibafu prepare-layer big $LAB/corpus/big.tar.gz".into(), "SHIBAFU_MAX_LAYER_SIZE: invalid size"));
    cases.push(case("import-a-directory", "shibafu image import /proc/self x:1".into(), "no OCI image layout"));
    cases.push(case("import-missing", "shibafu image import $LAB/no-such.tar x:1".into(), "No such file"));
    // gc makes the layers lock file, which any later command would make.
    let results = run_cases(&lab, "shibafu gc >/dev/null", &cases);
    assert_refused(&cases, &results);
}

#[test]
fn a_killed_import_leaves_temp_files_that_gc_removes_at_once() {
    let lab = Lab::new();
    // The head of an archive whose one file never finishes arriving.
    let tar = Tar::new().file("slow", &vec![1u8; 1 << 20]).finish();
    std::fs::write(lab.dir.path().join("head.bin"), &tar[..4096]).unwrap();
    let out = lab.ok(
        r#"
        count() { echo "$(ls -A $SHIBAFU_ROOT/blobs/tmp | wc -l) temp, $(ls -A $SHIBAFU_ROOT/layers | grep -c '^.unpack-' || true) staging"; }
        mkfifo $LAB/pipe
        ( cat $LAB/head.bin; sleep 60 ) > $LAB/pipe &
        feeder=$!
        shibafu prepare-layer slow $LAB/pipe 2>/dev/null &
        pid=$!
        for i in $(seq 200); do [ -n "$(ls -A $SHIBAFU_ROOT/layers | grep '^.unpack-')" ] && break; sleep 0.05; done
        echo "during: $(count)"
        # gc waits for a running import (the layers lock), so the owner check matters for a
        # writer that died: past the grace period, what no live process owns goes at once.
        sleep 2.5
        kill -9 $pid; wait $pid 2>/dev/null || true
        echo "killed: $(count)"
        echo "gc-removed: $(shibafu gc | grep -c leftover)"
        echo "after-gc: $(count)"
        kill $feeder 2>/dev/null || true
        "#,
    );
    assert!(out.contains("during: 1 temp, 1 staging"), "{out}");
    assert!(out.contains("killed: 1 temp, 1 staging"), "{out}");
    assert!(out.contains("gc-removed: 2"), "{out}");
    assert!(out.contains("after-gc: 0 temp, 0 staging"), "{out}");
}

#[test]
fn fifos_from_gnu_tar_and_python_unpack_and_device_nodes_are_kept_as_nodes() {
    let lab = Lab::new();
    let dev = lab.dir.path().join("dev.tar");
    std::fs::write(&dev, Tar::new().dir("d/").entry(b"d/null", CHAR, b"", b"").entry(b"d/loop", BLOCK, b"", b"").entry(b"d/p", FIFO, b"", b"").finish()).unwrap();
    let out = lab.ok(&format!(
        r#"
        mkdir $LAB/src && mkfifo $LAB/src/pipe && echo hi > $LAB/src/file
        tar -C $LAB/src -cf $LAB/gnu.tar . && tar -C $LAB/src --format=posix -cf $LAB/pax.tar .
        python3 -c 'import tarfile,sys; t=tarfile.open(sys.argv[1],"w"); t.add(sys.argv[2]+"/pipe","pipe"); t.close()' $LAB/py.tar $LAB/src
        for f in gnu pax py; do shibafu prepare-layer fifo-$f $LAB/$f.tar >/dev/null; done
        shibafu prepare-layer devs {dev} >/dev/null
        for f in gnu pax py; do stat -c '%F' $SHIBAFU_ROOT/layers/*/pipe; done | sort | uniq -c
        stat -c '%F' $SHIBAFU_ROOT/layers/*/d/p $SHIBAFU_ROOT/layers/*/d/null $SHIBAFU_ROOT/layers/*/d/loop
        "#,
        dev = dev.display()
    ));
    assert!(out.contains("fifo"), "{out}");
    assert!(!out.contains("regular"), "{out}");
    assert!(out.contains("character special file") && out.contains("block special file"), "{out}");
}

#[test]
fn bad_command_line_values_are_refused_and_change_nothing() {
    let lab = Lab::new();
    let sh = |v: &str| format!("shibafu run --rm --network none {v} busybox true");
    let cases = vec![
        case("memory-overflow", sh("--memory 17179869184g"), "too large"),
        case("memory-zero", sh("--memory 0"), "invalid size"),
        case("memory-tiny", sh("--memory 1k"), "smallest limit is 6 MiB"),
        case("cpus-zero", sh("--cpus 0"), "invalid --cpus"),
        case("cpus-negative", sh("--cpus=-1"), "invalid --cpus"),
        case("cpus-nan", sh("--cpus nan"), "invalid --cpus"),
        case("cpus-inf", sh("--cpus inf"), "invalid --cpus"),
        case("cpus-too-many", sh("--cpus 100000"), "invalid --cpus"),
        case("pids-negative", sh("--pids-limit=-5"), "invalid --pids-limit"),
        case("pids-zero", sh("--pids-limit=0"), "invalid --pids-limit"),
        case("layer-name-dotdot", "shibafu prepare-layer '../x' $BUSYBOX_TAR".into(), "invalid layer name"),
        case("layer-name-slash", "shibafu prepare-layer 'a/b' $BUSYBOX_TAR".into(), "invalid layer name"),
        case("layer-name-taken", "shibafu prepare-layer base $BUSYBOX_TAR".into(), "base"),
        case("container-name-dotdot", "shibafu run --name '../x' --network none busybox true".into(), "invalid container name"),
        case("root-is-a-file", "shibafu --root $LAB/canary/file images".into(), "is not a directory"),
        case("publish-bad-port", "shibafu run -p 99999 busybox true".into(), "99999"),
        case("publish-word", "shibafu run -p http busybox true".into(), "http"),
        case("missing-image", "shibafu run --network none no-such-image true".into(), "unknown image"),
        case("bad-cidr", "shibafu network create n1 300.1.1.0/24".into(), "300.1.1.0/24"),
        case("bad-network-name", "shibafu network create '../n' 172.29.0.0/24".into(), "invalid network name"),
        case("network-overlaps", "shibafu network create wide 172.20.0.0/16".into(), "overlaps network \"bridge\""),
        case("network-covers-a-host-route", "ip link add v9a type veth peer name v9b && ip addr add 10.99.0.1/16 dev v9a && ip link set v9a up && shibafu network create lan 10.99.5.0/24".into(), "covers the host's route to 10.99.0.0/16"),
        case("network-name-twice", "shibafu network create bridge 172.29.0.0/24".into(), "exists already"),
    ];
    let results = run_cases(&lab, "shibafu prepare-layer base $BUSYBOX_TAR >/dev/null", &cases);
    assert_refused(&cases, &results);
}

#[test]
fn registry_abuse_gets_json_errors_and_changes_nothing() {
    let lab = Lab::new();
    let setup = r#"
        shibafu prepare-layer base $BUSYBOX_TAR >/dev/null
        shibafu registry serve --port 5000 --address 127.0.0.1 2>$LAB/registry.log &
        for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
        R=http://127.0.0.1:5000
        shibafu push-layer base localhost:5000/a:1 >/dev/null
        D=$(curl -s $R/v2/a/manifests/1 -H 'Accept: application/vnd.oci.image.manifest.v1+json' | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
        U=$(curl -s -D - -o /dev/null -X POST $R/v2/a/blobs/uploads/ | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
        case $U in http*) ;; *) U=$R$U ;; esac
        # Refused when the answer is a 4xx with the spec's JSON errors; says what came back.
        reg() {
            code=$(curl -s --path-as-is -o $LAB/body -w '%{http_code}' "$@")
            echo "shibafu: HTTP $code $(head -c 300 $LAB/body)" >&2
            case $code in 4*) grep -q '"errors"' $LAB/body && return 1 ;; esac
            return 0
        }
    "#;
    let z = "0".repeat(64);
    let cases = vec![
        case("path-dotdot", "reg $R/v2/../../etc/passwd".into(), "HTTP 404"),
        case("name-dotdot", format!("reg $R/v2/a/../../x/blobs/sha256:{z}"), "NAME_INVALID"),
        case("name-encoded-dotdot", format!("reg $R/v2/%2e%2e/%2e%2e/blobs/sha256:{z}"), "NAME_INVALID"),
        case("digest-dotdot", "reg $R/v2/a/blobs/sha256:../../../../etc/passwd".into(), "NAME_UNKNOWN"),
        case("digest-short", "reg $R/v2/a/blobs/sha256:abc".into(), "DIGEST_INVALID"),
        case("digest-algorithm", "reg $R/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".into(), "DIGEST_INVALID"),
        case("digest-uppercase", format!("reg $R/v2/a/blobs/sha256:{}", "A".repeat(64)), "DIGEST_INVALID"),
        case("blob-unknown", format!("reg $R/v2/a/blobs/sha256:{z}"), "BLOB_UNKNOWN"),
        case("manifest-traversal", "reg $R/v2/a/manifests/..%2f..%2fstate.db".into(), "MANIFEST_UNKNOWN"),
        case("manifest-garbage", "reg -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary 'not json' $R/v2/a/manifests/evil".into(), "MANIFEST_INVALID"),
        case("manifest-missing-blobs", format!("reg -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary '{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:{z}\",\"size\":2}},\"layers\":[]}}' $R/v2/a/manifests/evil"), "MANIFEST_BLOB_UNKNOWN"),
        case("range-backwards", "reg -H 'Range: bytes=5-1' $R/v2/a/blobs/$D".into(), "HTTP 416"),
        case("range-past-the-end", "reg -H 'Range: bytes=999999999999-' $R/v2/a/blobs/$D".into(), "HTTP 416"),
        case("upload-wrong-digest", format!("reg -X POST --data-binary hello \"$R/v2/a/blobs/uploads/?digest=sha256:{z}\""), "DIGEST_INVALID"),
        case("upload-bad-digest", "reg -X POST --data-binary hello \"$R/v2/a/blobs/uploads/?digest=sha256:../../x\"".into(), "DIGEST_INVALID"),
        case("chunk-out-of-order", "reg -X PATCH -H 'Content-Range: 100-104' -H 'Content-Type: application/octet-stream' --data-binary hello \"$U\"".into(), "HTTP 416"),
        case("upload-unknown-session", "reg -X PATCH --data-binary hello $R/v2/a/blobs/uploads/../../../../etc".into(), "NAME_UNKNOWN"),
        // A session of its own: a refused PUT ends the session it names.
        case("upload-put-bad-digest", "reg -X PUT --data-binary hello \"$R$(curl -s -D - -o /dev/null -X POST $R/v2/a/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')?digest=sha256:..%2f..%2fx\"".into(), "DIGEST_INVALID"),
        case("tags-bad-n", "reg \"$R/v2/a/tags/list?n=-1\"".into(), "PAGINATION_NUMBER_INVALID"),
    ];
    let results = run_cases(&lab, setup, &cases);
    assert_refused(&cases, &results);
}
