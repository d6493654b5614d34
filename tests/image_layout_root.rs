//! Root tests of OCI image layout import: layouts written by umoci (a real client), as a
//! directory and as a tar, with several layers and an OCI whiteout; corrupt layouts are refused
//! and store nothing.

mod common;

use common::Lab;

/// Builds $LAB/oci with umoci: `base` = the busybox rootfs, `two` = base plus a layer that
/// adds /etc/second and deletes /etc/motd (a whiteout).
const UMOCI_LAYOUT: &str = "
    umoci init --layout $LAB/oci
    umoci new --image $LAB/oci:base
    umoci unpack --image $LAB/oci:base $LAB/bundle >/dev/null
    tar -C $LAB/bundle/rootfs -xf $BUSYBOX_TAR
    umoci repack --image $LAB/oci:base $LAB/bundle
    rm -rf $LAB/bundle
    umoci unpack --image $LAB/oci:base $LAB/bundle >/dev/null
    echo second-layer > $LAB/bundle/rootfs/etc/second
    rm $LAB/bundle/rootfs/etc/motd
    umoci repack --image $LAB/oci:two $LAB/bundle
    rm -rf $LAB/bundle
    test $(jq '.layers | length' $LAB/oci/blobs/sha256/$(jq -r '.manifests[1].digest[7:]' $LAB/oci/index.json)) = 2
";

#[test]
fn a_layout_written_by_umoci_imports_with_its_layers() {
    let out = Lab::new().ok(&format!(
        "{UMOCI_LAYOUT}
         shibafu image import $LAB/oci umo:two
         shibafu run --rm umo:two sh -c 'cat /etc/second; test -e /etc/motd && echo motd-visible || echo motd-gone'
         (cd $LAB/oci && tar -cf $LAB/oci.tar .)
         shibafu image import $LAB/oci.tar
         shibafu images | awk '{{print $1\":\"$2}}' | sort | tr '\\n' ' '
         echo
         ls $SHIBAFU_ROOT/layers | grep -vc '^\\.' "
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("umo:two sha256:"), "{out}");
    assert_eq!(lines[1..3], ["second-layer", "motd-gone"], "{out}");
    // Without a name, each manifest is named after the tar and its ref.name.
    assert!(out.contains("oci:base sha256:") && out.contains("oci:two sha256:"), "{out}");
    assert!(out.contains("oci:base oci:two") && out.contains("umo:two"), "{out}");
    // busybox (imported by the harness), umoci's busybox layer and its second layer: each once.
    assert_eq!(lines.last().unwrap().trim(), "3", "{out}");
}

#[test]
fn a_corrupt_layout_is_refused_and_stores_nothing() {
    let r = Lab::new().sh(&format!(
        "{UMOCI_LAYOUT}
         set +e
         snapshot() {{ echo $(ls $SHIBAFU_ROOT/layers | wc -l) $(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l) $(shibafu images | wc -l); }}
         before=$(snapshot)
         cp -a $LAB/oci $LAB/flipped
         layer=$(ls -S $LAB/flipped/blobs/sha256 | head -1)
         printf 'x' | dd of=$LAB/flipped/blobs/sha256/$layer bs=1 seek=100 conv=notrunc 2>/dev/null
         shibafu image import $LAB/flipped x:two; echo code=$?
         # The second layer broken: the first, already unpacked, must go again.
         cp -a $LAB/oci $LAB/second
         m=$(jq -r '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"] == \"two\") | .digest[7:]' $LAB/second/index.json)
         top=$(jq -r '.layers[1].digest[7:]' $LAB/second/blobs/sha256/$m)
         printf 'x' | dd of=$LAB/second/blobs/sha256/$top bs=1 seek=20 conv=notrunc 2>/dev/null
         shibafu image import $LAB/second x:two; echo code=$?
         cp -a $LAB/oci $LAB/wrongver && echo '{{\"imageLayoutVersion\":\"9\"}}' > $LAB/wrongver/oci-layout
         shibafu image import $LAB/wrongver x:1; echo code=$?
         shibafu image import $LAB/oci x:nosuchtag; echo code=$?
         # A config that lies about the diff_id of a layer already stored (by ok:two): the
         # import fails, and the stored layer, in use, must survive it.
         after=$(snapshot)
         [ \"$before\" = \"$after\" ] && echo unchanged
         shibafu image import $LAB/oci ok:two >/dev/null
         before=$(snapshot)
         cp -a $LAB/oci $LAB/liar && cd $LAB/liar/blobs/sha256
         known=$(shibafu image inspect busybox | jq -r '.layers[0].diff_id')
         m=$(jq -r '.manifests[1].digest[7:]' ../../index.json); c=$(jq -r '.config.digest[7:]' $m)
         jq -c --arg k $known '.rootfs.diff_ids[0] = $k' $c > cfg && c2=$(sha256sum cfg | cut -c1-64) && mv cfg $c2
         jq -c --arg d sha256:$c2 --argjson n $(stat -c %s $c2) '.config.digest = $d | .config.size = $n' $m > man && m2=$(sha256sum man | cut -c1-64) && mv man $m2
         jq -c --arg d sha256:$m2 --argjson n $(stat -c %s $m2) '.manifests[1].digest = $d | .manifests[1].size = $n' ../../index.json > idx && mv idx ../../index.json
         cd - >/dev/null
         shibafu image import $LAB/liar x:two; echo code=$?
         shibafu run --rm ok:two echo layers-intact
         after=$(snapshot)
         [ \"$before\" = \"$after\" ] && echo unchanged-again"
    ));
    let codes: Vec<&str> = r.out.lines().filter(|l| l.starts_with("code=")).collect();
    assert_eq!(codes, ["code=125"; 5], "{}\n{}", r.out, r.err);
    assert!(r.out.contains("unchanged\n") && r.out.contains("unchanged-again") && r.out.contains("layers-intact"), "{}\n{}", r.out, r.err);
    for msg in ["layer sha256:", "imageLayoutVersion", "no manifest named \"nosuchtag\" (its names: base, two)"] {
        assert!(r.err.contains(msg), "{msg} missing from:\n{}", r.err);
    }
}

#[test]
fn import_and_rm_racing_leave_every_recorded_image_whole() {
    let out = Lab::new().ok(&format!(
        "{UMOCI_LAYOUT}
         for i in 1 2 3 4 5 6 7 8; do
             shibafu image import $LAB/oci r:two >/dev/null 2>&1 &
             shibafu image rm r:two >/dev/null 2>&1 &
             shibafu gc >/dev/null 2>&1 &
             wait
         done
         for image in $(shibafu images | awk 'NR > 1 {{print $1\":\"$2}}'); do
             shibafu image inspect $image | jq -r '.layers[].dir' | while read -r d; do test -d $d || echo \"$image lost $d\"; done
         done
         echo checked"
    ));
    assert!(out.ends_with("checked\n") && !out.contains("lost"), "{out}");
}

/// Builds $LAB/deep, a layout of one image `1` made of the busybox rootfs and 120 layers more,
/// layer N adding /deep/N (holding N), as nixpkgs' layered images stack up to 100.
const DEEP_LAYOUT: &str = r#"
    mkdir -p $LAB/deep/blobs/sha256
    blob() { d=$(sha256sum "$1" | cut -d' ' -f1); echo "$d $(stat -c %s "$1")"; mv "$1" $LAB/deep/blobs/sha256/$d; }
    cp $BUSYBOX_TAR $LAB/layer.tar && blob $LAB/layer.tar > $LAB/layers
    for i in $(seq 120); do
        mkdir -p $LAB/l/$i/deep && echo $i > $LAB/l/$i/deep/$i
        tar -C $LAB/l/$i -cf $LAB/layer.tar deep/$i && blob $LAB/layer.tar >> $LAB/layers
    done
    jq -Rn '[inputs | split(" ") | {mediaType: "application/vnd.oci.image.layer.v1.tar", digest: ("sha256:" + .[0]), size: (.[1] | tonumber)}]' < $LAB/layers > $LAB/layers.json
    arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
    jq -n --arg arch $arch --slurpfile l $LAB/layers.json '{architecture: $arch, os: "linux", config: {Cmd: ["sh"]}, rootfs: {type: "layers", diff_ids: [$l[0][].digest]}}' > $LAB/config.json
    config=$(blob $LAB/config.json)
    jq -n --arg c "${config% *}" --argjson s "${config#* }" --slurpfile l $LAB/layers.json '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: ("sha256:" + $c), size: $s}, layers: $l[0]}' > $LAB/manifest.json
    manifest=$(blob $LAB/manifest.json)
    jq -n --arg m "${manifest% *}" --argjson s "${manifest#* }" '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: ("sha256:" + $m), size: $s, annotations: {"org.opencontainers.image.ref.name": "1"}}]}' > $LAB/deep/index.json
    echo '{"imageLayoutVersion": "1.0.0"}' > $LAB/deep/oci-layout
"#;

/// 121 layers' full paths overflow an overlay mount's one page of options: `export` mounts
/// them by short links, as `run` does, and both see every layer.
#[test]
fn an_image_of_121_layers_exports_and_runs_whole() {
    let out = Lab::new().ok(&format!(
        "{DEEP_LAYOUT}
         shibafu image import $LAB/deep deep:1 >/dev/null
         echo layers=$(shibafu image inspect deep:1 | jq '.layers | length')
         mkdir $LAB/out
         shibafu --explain export deep:1 2>$LAB/explain | tar -C $LAB/out -xf -
         test -x $LAB/out/bin/busybox && echo busybox-exported
         for i in $(seq 120); do [ \"$(cat $LAB/out/deep/$i)\" = $i ] || echo missing-$i; done
         echo exported=$(ls $LAB/out/deep | wc -l)
         grep -c 'cd .*/export-links-[0-9]* && mount -t overlay overlay -o ro,lowerdir=120:119:' $LAB/explain
         echo left=$(ls $SHIBAFU_ROOT/tmp | tr '\\n' ' ')
         echo ran=$(shibafu run --rm deep:1 sh -c 'cat /deep/* | sort -n | uniq | wc -l')"
    ));
    assert!(out.contains("layers=121\n"), "{out}");
    assert!(out.contains("busybox-exported\n") && out.contains("exported=120\n") && !out.contains("missing-"), "every layer's file in the export:\n{out}");
    assert!(out.contains("\n1\n"), "the export mounted its layers by short links:\n{out}");
    assert!(out.contains("left=export-mnt\n"), "the export's links are gone:\n{out}");
    assert!(out.contains("ran=120\n"), "run sees every layer:\n{out}");
}
