//! Phase 5 of shared/PHASES.md, and the registry checked the way the OCI distribution-spec
//! conformance suite checks it (pull, push, content discovery, content management), with curl
//! on loopback inside the test's own network namespace.

mod common;

use common::Lab;

/// Starts `registry serve` on 127.0.0.1:5000 and waits for it.
const SERVE: &str = r#"
    shibafu registry serve --port 5000 --address 127.0.0.1 2>$LAB/registry.log &
    for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
    R=http://127.0.0.1:5000
"#;

#[test]
fn phase5_push_layers_create_a_manifest_and_run_it() {
    let out = Lab::new().ok(&format!(
        r#"
        {python}
        mkdir -p $LAB/alpine-rootfs && tar -C $LAB/alpine-rootfs -xf $BUSYBOX_TAR
        shibafu prepare-layer alpine-base $LAB/alpine-rootfs >/dev/null
        shibafu prepare-layer python-3.11 $LAB/python-3.11 >/dev/null
        before=$(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l)
        {SERVE}
        shibafu push-layer alpine-base localhost:5000/base/alpine:latest
        shibafu push-layer python-3.11 localhost:5000/runtime/python:3.11
        shibafu create-manifest --layers base/alpine:latest,runtime/python:3.11 localhost:5000/apps/python-app:v1
        shibafu run localhost:5000/apps/python-app:v1 python --version
        echo new-blobs=$(( $(ls $SHIBAFU_ROOT/blobs/sha256 | wc -l) - before ))
        curl -s $R/v2/_catalog; echo
        # Pushing again sends no layer bytes: the registry has them (HEAD first).
        shibafu push-layer python-3.11 localhost:5000/runtime/python:3.11 >/dev/null
        # A second data root pulls it over HTTP, verifying every digest.
        SHIBAFU_ROOT=$LAB/other shibafu run --rm localhost:5000/apps/python-app:v1 python -c 'print("pulled and ran")'
        SHIBAFU_ROOT=$LAB/other shibafu images | grep -c python-app
        "#,
        python = common::PYTHON_DIR
    ));
    for want in [
        "localhost:5000/apps/python-app:v1 sha256:",
        "Python 3.11.",
        // The registry shares the store: the two layers are there already; new are the two
        // one-layer images' configs and manifests and the app's config and manifest. The
        // app's layers are mounted, not copied, and the pull finds them stored.
        "new-blobs=6",
        r#"{"repositories":["apps/python-app","base/alpine","runtime/python"]}"#,
        "pulled and ran",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

#[test]
fn skopeo_copies_in_and_out_with_identical_digests() {
    let out = Lab::new().ok(&format!(
        r#"
        {SERVE}
        # A gzip layer (prepare-layer's), which skopeo pushes as it is (it would compress a
        # plain tar on the way, and the digests would rightly differ).
        mkdir -p $LAB/rootfs && tar -C $LAB/rootfs -xf $BUSYBOX_TAR
        shibafu prepare-layer base $LAB/rootfs >/dev/null
        shibafu run --rm --layers base true
        shibafu image export $(shibafu images | awk '$1 == "layers" {{print $1 ":" $2}}') $LAB/layout >/dev/null
        skopeo copy -q --dest-tls-verify=false oci:$LAB/layout docker://127.0.0.1:5000/lab/busybox:1
        skopeo copy -q --src-tls-verify=false docker://127.0.0.1:5000/lab/busybox:1 oci:$LAB/back:1
        echo in=$(skopeo inspect --raw oci:$LAB/layout | sha256sum | cut -c1-64)
        echo out=$(skopeo inspect --raw oci:$LAB/back:1 | sha256sum | cut -c1-64)
        echo served=$(curl -s $R/v2/lab/busybox/manifests/1 | sha256sum | cut -c1-64)
        skopeo inspect --tls-verify=false docker://127.0.0.1:5000/lab/busybox:1 | grep -c '"Layers"'
        "#
    ));
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_else(|| panic!("{k} missing: {out}")).to_string();
    assert_eq!(field("in="), field("out="), "{out}");
    assert_eq!(field("in="), field("served="), "{out}");
}

/// The conformance suite's checks, one `check NAME EXPECTED ACTUAL` each.
const CONFORMANCE: &str = r#"
    fails=0
    check() { if [ "$2" = "$3" ]; then echo "ok $1"; else echo "FAIL $1: wanted [$2], got [$3]"; fails=$((fails+1)); fi; }
    code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
    hdr() { curl -s -D - -o /dev/null "${@:2}" | tr -d '\r' | awk -v h="$1" 'tolower($1) == tolower(h) ":" {print $2}'; }
    dg() { printf 'sha256:%s' "$(sha256sum "$1" | cut -c1-64)"; }
    N=conformance/repo
    # --- push: a blob in one POST, POST then PUT, chunks, mounts
    printf 'layer-bytes' > $LAB/layer; L=$(dg $LAB/layer)
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > $LAB/config; C=$(dg $LAB/config)
    check monolithic-post 201 $(code -X POST --data-binary @$LAB/layer "$R/v2/$N/blobs/uploads/?digest=$L")
    check blob-get 200 $(code $R/v2/$N/blobs/$L)
    check blob-head-digest "$L" "$(hdr docker-content-digest -I $R/v2/$N/blobs/$L)"
    loc=$(hdr location -X POST $R/v2/$N/blobs/uploads/)
    check post-put 201 $(code -X PUT --data-binary @$LAB/config "$R$loc?digest=$C")
    check wrong-digest 400 $(code -X POST --data-binary 'other' "$R/v2/$N/blobs/uploads/?digest=$L")
    L512=sha512:$(sha512sum $LAB/layer | cut -c1-128)
    check sha512-post 201 $(code -X POST --data-binary @$LAB/layer "$R/v2/$N/blobs/uploads/?digest=$L512")
    check sha512-get layer-bytes "$(curl -s $R/v2/$N/blobs/$L512)"
    check sha512-wrong 400 $(code -X POST --data-binary 'other-bytes' "$R/v2/$N/blobs/uploads/?digest=$L512")
    check sha512-wrong-stored-nothing no "$(test -e $SHIBAFU_ROOT/blobs/sha256/$(printf other-bytes | sha256sum | cut -c1-64) && echo yes || echo no)"
    head -c 42 /dev/urandom > $LAB/blobB; B=$(dg $LAB/blobB)
    head -c 22 $LAB/blobB > $LAB/c1; tail -c 20 $LAB/blobB > $LAB/c2
    loc=$(hdr location -X POST $R/v2/$N/blobs/uploads/)
    check out-of-order-first-chunk 416 $(code -X PATCH -H 'Content-Range: 22-41' --data-binary @$LAB/c2 "$R$loc")
    loc=$(hdr location -X POST $R/v2/$N/blobs/uploads/)
    check chunk1-range 0-21 "$(hdr range -X PATCH -H 'Content-Range: 0-21' -H 'Content-Type: application/octet-stream' --data-binary @$LAB/c1 "$R$loc")"
    check chunk1-again 416 $(code -X PATCH -H 'Content-Range: 0-21' --data-binary @$LAB/c1 "$R$loc")
    check status 204 $(code "$R$loc")
    check status-range 0-21 "$(hdr range "$R$loc")"
    check chunk2-range 0-41 "$(hdr range -X PATCH -H 'Content-Range: 22-41' --data-binary @$LAB/c2 "$R$loc")"
    check chunked-put 201 $(code -X PUT "$R$loc?digest=$B")
    check chunked-blob "$(cat $LAB/blobB | sha256sum)" "$(curl -s $R/v2/$N/blobs/$B | sha256sum)"
    loc=$(hdr location -X POST $R/v2/$N/blobs/uploads/)
    check streamed-patch 202 $(code -X PATCH --data-binary @$LAB/blobB "$R$loc")
    check cancel 204 $(code -X DELETE "$R$loc")
    check cancelled 404 $(code "$R$loc")
    check mount-unknown 202 $(code -X POST "$R/v2/other/repo/blobs/uploads/?mount=sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
    check mount 201 $(code -X POST "$R/v2/other/repo/blobs/uploads/?mount=$B&from=$N")
    check mount-location "/v2/other/repo/blobs/$B" "$(hdr location -X POST "$R/v2/other/repo/blobs/uploads/?mount=$B&from=$N")"
    check mounted-get 200 $(code $R/v2/other/repo/blobs/$B)
    check not-in-other-repo 404 $(code $R/v2/other/repo/blobs/$L)
    # --- manifests
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s,"newUnspecifiedField":null},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":11}]}' $C $(stat -c %s $LAB/config) $L > $LAB/m1; M1=$(dg $LAB/m1)
    MT=application/vnd.oci.image.manifest.v1+json
    check manifest-put 201 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m1 $R/v2/$N/manifests/v1)
    check manifest-digest "$M1" "$(hdr docker-content-digest -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m1 $R/v2/$N/manifests/test0)"
    check manifest-bytes "$(sha256sum < $LAB/m1)" "$(curl -s $R/v2/$N/manifests/v1 | sha256sum)"
    check manifest-type "$MT" "$(hdr content-type $R/v2/$N/manifests/$M1)"
    check invalid-name-404 404 $(code $R/v2/$N/manifests/.INVALID_MANIFEST_NAME)
    check invalid-name-head-404 404 $(code -I $R/v2/$N/manifests/.INVALID_MANIFEST_NAME)
    check bad-digest 400 $(code $R/v2/$N/manifests/sha256:totallywrong)
    sed "s/$L/sha256:$(printf 0%.0s $(seq 64))/" $LAB/m1 > $LAB/m-missing
    check missing-blob 400 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m-missing $R/v2/$N/manifests/missing)
    check missing-blob-code MANIFEST_BLOB_UNKNOWN "$(curl -s -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m-missing $R/v2/$N/manifests/missing | grep -o MANIFEST_BLOB_UNKNOWN)"
    check digest-mismatch 400 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m1 $R/v2/$N/manifests/$B)
    head -c $((4*1024*1024+1)) /dev/zero > $LAB/huge
    check too-large 413 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/huge $R/v2/$N/manifests/huge)
    # A body far shorter than its Content-Length: the upload fails when the client gives up,
    # and nothing is stored or left staged.
    staged_before=$(ls -A $SHIBAFU_ROOT/registry/uploads | wc -l)
    code --max-time 2 -X POST -H 'Content-Length: 99999999999' --data-binary 'short' "$R/v2/$N/blobs/uploads/?digest=$B" >/dev/null || true
    sleep 0.5
    check huge-content-length-stored-nothing $staged_before "$(ls -A $SHIBAFU_ROOT/registry/uploads | wc -l)"
    check uppercase-name 400 $(code $R/v2/Bad/Name/manifests/v1)
    check dotdot-name 400 $(code --path-as-is $R/v2/a/../b/manifests/v1)
    check range 206 $(code -r 0-3 $R/v2/$N/blobs/$L)
    check range-bytes laye "$(curl -s -r 0-3 $R/v2/$N/blobs/$L)"
    check range-past-end 416 $(code -r 100- $R/v2/$N/blobs/$L)
    check range-416-content-range 'bytes */11' "$(curl -s -D - -o /dev/null -r 100- $R/v2/$N/blobs/$L | tr -d '\r' | sed -n 's/^content-range: //Ip')"
    # --- referrers: an artifact whose subject is m1, and one whose subject does not exist
    printf '{}' > $LAB/empty; E=$(dg $LAB/empty)
    check empty-blob 201 $(code -X POST --data-binary @$LAB/empty "$R/v2/$N/blobs/uploads/?digest=$E")
    printf '{"schemaVersion":2,"mediaType":"%s","artifactType":"application/vnd.test.sig","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2}],"subject":{"mediaType":"%s","digest":"%s","size":%s},"annotations":{"org.example":"sig"}}' $MT $E $E $MT $M1 $(stat -c %s $LAB/m1) > $LAB/ref1; F1=$(dg $LAB/ref1)
    check oci-subject "$M1" "$(hdr oci-subject -X PUT -H "Content-Type: $MT" --data-binary @$LAB/ref1 $R/v2/$N/manifests/$F1)"
    sed 's/application\/vnd.test.sig/application\/vnd.test.sbom/' $LAB/ref1 > $LAB/ref2; F2=$(dg $LAB/ref2)
    check second-referrer 201 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/ref2 $R/v2/$N/manifests/$F2)
    # No artifactType: the config's media type stands for it.
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.test.bagel","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2}],"subject":{"mediaType":"%s","digest":"%s","size":%s}}' $MT $E $E $MT $M1 $(stat -c %s $LAB/m1) > $LAB/ref3; F3=$(dg $LAB/ref3)
    check config-type-referrer 201 $(code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/ref3 $R/v2/$N/manifests/$F3)
    check config-type-as-artifact-type 1 "$(curl -s "$R/v2/$N/referrers/$M1?artifactType=application%2Fvnd.test.bagel" | grep -o '"digest"' | wc -l)"
    # An index can refer to a subject too.
    IT=application/vnd.oci.image.index.v1+json
    printf '{"schemaVersion":2,"mediaType":"%s","artifactType":"application/vnd.test.bundle","manifests":[{"mediaType":"%s","digest":"%s","size":%s}],"subject":{"mediaType":"%s","digest":"%s","size":%s}}' $IT $MT $F1 $(stat -c %s $LAB/ref1) $MT $M1 $(stat -c %s $LAB/m1) > $LAB/idx; FI=$(dg $LAB/idx)
    check index-subject "$M1" "$(hdr oci-subject -X PUT -H "Content-Type: $IT" --data-binary @$LAB/idx $R/v2/$N/manifests/$FI)"
    check referrers-type application/vnd.oci.image.index.v1+json "$(hdr content-type $R/v2/$N/referrers/$M1)"
    check referrers-count 4 "$(curl -s $R/v2/$N/referrers/$M1 | grep -o '"digest"' | wc -l)"
    check referrers-filter 1 "$(curl -s "$R/v2/$N/referrers/$M1?artifactType=application%2Fvnd.test.sig" | grep -o '"digest"' | wc -l)"
    check filters-applied artifactType "$(hdr oci-filters-applied "$R/v2/$N/referrers/$M1?artifactType=application%2Fvnd.test.sig")"
    check referrers-annotation 1 "$(curl -s "$R/v2/$N/referrers/$M1?artifactType=application%2Fvnd.test.sig" | grep -c '"org.example":"sig"')"
    check referrers-unknown '"manifests":[]' "$(curl -s $R/v2/$N/referrers/sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9 | grep -o '"manifests":\[\]')"
    # --- tags: byte order, n, last, Link
    for t in test1 test2 TEST0 latest; do code -X PUT -H "Content-Type: $MT" --data-binary @$LAB/m1 $R/v2/$N/manifests/$t >/dev/null; done
    check tags '["TEST0","latest","test0","test1","test2","v1"]' "$(curl -s $R/v2/$N/tags/list | grep -o '\[.*\]')"
    check tags-n '["TEST0","latest"]' "$(curl -s "$R/v2/$N/tags/list?n=2" | grep -o '\[.*\]')"
    check tags-link '</v2/conformance/repo/tags/list?n=2&last=latest>; rel="next"' "$(curl -s -D - -o /dev/null "$R/v2/$N/tags/list?n=2" | tr -d '\r' | sed -n 's/^link: //Ip')"
    check tags-last '["test0","test1"]' "$(curl -s "$R/v2/$N/tags/list?n=2&last=latest" | grep -o '\[.*\]')"
    check tags-unknown-repo 404 $(code $R/v2/no/such/tags/list)
    # --- management: deletes answer 202, a digest takes its tags along
    check delete-tag 202 $(code -X DELETE $R/v2/$N/manifests/latest)
    check deleted-tag 404 $(code $R/v2/$N/manifests/latest)
    check manifest-stays 200 $(code $R/v2/$N/manifests/$M1)
    check delete-manifest 202 $(code -X DELETE $R/v2/$N/manifests/$M1)
    check manifest-gone 404 $(code $R/v2/$N/manifests/$M1)
    check tags-gone '[]' "$(curl -s $R/v2/$N/tags/list | grep -o '\[.*\]')"
    check referrer-survives 200 $(code $R/v2/$N/manifests/$F1)
    check delete-blob 202 $(code -X DELETE $R/v2/$N/blobs/$C)
    check blob-gone 404 $(code $R/v2/$N/blobs/$C)
    check delete-again 404 $(code -X DELETE $R/v2/$N/blobs/$C)
    check wrong-method 405 $(code -X POST $R/v2/$N/manifests/v1)
    echo fails=$fails
"#;

#[test]
fn the_registry_answers_as_the_conformance_suite_expects() {
    let out = Lab::new().ok(&format!("{SERVE}\n{CONFORMANCE}"));
    assert!(out.contains("fails=0"), "{}", out.lines().filter(|l| l.starts_with("FAIL")).collect::<Vec<_>>().join("\n") + "\n" + &out);
    assert!(out.matches("\nok ").count() >= 60, "{out}");
}

#[test]
fn podman_pulls_from_us_and_we_push_to_and_pull_from_docker_registry() {
    let out = Lab::new().ok(&format!(
        r#"
        mount -t tmpfs tmpfs /run
        export TMPDIR=$LAB/tmp && mkdir -p $TMPDIR
        {SERVE}
        shibafu push busybox localhost:5000/lab/busybox:1
        pod() {{ podman --root $LAB/p --runroot $LAB/pr --storage-driver vfs --events-backend file --cgroup-manager cgroupfs "$@"; }}
        pod pull -q --tls-verify=false 127.0.0.1:5000/lab/busybox:1 >/dev/null
        echo podman-has=$(pod images --format '{{{{.Repository}}}}:{{{{.Tag}}}}')
        echo podman-digest=$(pod inspect --format '{{{{.Digest}}}}' 127.0.0.1:5000/lab/busybox:1)
        printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5001\n' $LAB/dr > $LAB/reg.yml
        docker-registry serve $LAB/reg.yml > $LAB/dr.log 2>&1 &
        for i in $(seq 50); do curl -sf http://127.0.0.1:5001/v2/ >/dev/null && break; sleep 0.1; done
        shibafu push busybox localhost:5001/lab/busybox:1
        SHIBAFU_ROOT=$LAB/other shibafu pull localhost:5001/lab/busybox:1
        mkdir -p $LAB/rootfs && tar -C $LAB/rootfs -xf $BUSYBOX_TAR
        shibafu prepare-layer base $LAB/rootfs >/dev/null
        shibafu push-layer base localhost:5001/base/alpine:latest >/dev/null
        shibafu create-manifest --layers base/alpine:latest localhost:5001/apps/x:v1 >/dev/null
        SHIBAFU_ROOT=$LAB/other shibafu run --rm localhost:5001/apps/x:v1 echo ran-from-docker-registry
        "#
    ));
    let pushed = out.lines().find_map(|l| l.strip_prefix("localhost:5000/lab/busybox:1 ")).unwrap_or_else(|| panic!("no push: {out}"));
    assert!(out.contains("podman-has=127.0.0.1:5000/lab/busybox:1"), "{out}");
    assert!(out.contains(&format!("podman-digest={pushed}")), "podman sees the digest we pushed: {out}");
    assert!(out.contains(&format!("localhost:5001/lab/busybox:1 {pushed}")), "the same manifest through docker-registry: {out}");
    assert!(out.contains("ran-from-docker-registry"), "{out}");
}

#[test]
fn basic_auth_from_htpasswd() {
    let lab = Lab::new();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(lab.dir.path().join("htpasswd"), format!("lab:{hash}\n")).unwrap();
    let out = lab.ok(
        r#"
        shibafu registry serve --port 5000 --address 127.0.0.1 --htpasswd $LAB/htpasswd 2>$LAB/registry.log &
        for i in $(seq 50); do curl -s http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
        echo anonymous=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/)
        curl -s -D - -o /dev/null http://127.0.0.1:5000/v2/ | grep -i '^www-authenticate'
        echo wrong=$(curl -s -o /dev/null -w '%{http_code}' -u lab:nope http://127.0.0.1:5000/v2/)
        echo right=$(curl -s -o /dev/null -w '%{http_code}' -u lab:s3cret http://127.0.0.1:5000/v2/)
        if shibafu push busybox localhost:5000/lab/busybox:1 2>/dev/null; then echo pushed-without-creds; fi
        if SHIBAFU_REGISTRY_AUTH=elsewhere:5000=lab:s3cret shibafu push busybox localhost:5000/lab/busybox:1 2>/dev/null; then echo creds-for-another-host-used; fi
        SHIBAFU_REGISTRY_AUTH=other:5000=x:y,localhost:5000=lab:s3cret shibafu push busybox localhost:5000/lab/busybox:1 >/dev/null && echo pushed-with-creds
        skopeo inspect --tls-verify=false --creds lab:s3cret docker://127.0.0.1:5000/lab/busybox:1 | grep -c Digest
        "#,
    );
    for want in ["anonymous=401", "Basic realm=\"shibafu registry\"", "wrong=401", "right=200", "pushed-with-creds"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    assert!(!out.contains("pushed-without-creds") && !out.contains("creds-for-another-host-used"), "{out}");
}

#[test]
fn registry_gc_sweeps_what_no_manifest_refers_to_and_pull_takes_an_index() {
    let out = Lab::new().ok(&format!(
        r#"
        {SERVE}
        mkdir -p $LAB/a $LAB/b && tar -C $LAB/a -xf $BUSYBOX_TAR && echo a > $LAB/a/a && echo b > $LAB/b/b
        shibafu prepare-layer a $LAB/a >/dev/null && shibafu prepare-layer b $LAB/b >/dev/null
        shibafu push-layer a localhost:5000/lab/a:1 >/dev/null
        B=$(shibafu push-layer b localhost:5000/lab/b:1 | cut -d' ' -f2)
        # The layers' local names go, so only the registry holds their blobs.
        shibafu layer rm a >/dev/null && shibafu layer rm b >/dev/null
        curl -s -o /dev/null -X DELETE $R/v2/lab/b/manifests/$B
        count() {{ ls $SHIBAFU_ROOT/blobs/sha256 | wc -l; }}
        before=$(count)
        touch -d '1 hour ago' $SHIBAFU_ROOT/blobs/sha256/*
        shibafu registry gc --dry-run
        echo after-dry-run=$(( before - $(count) ))
        shibafu registry gc | sort
        echo removed=$(( before - $(count) ))
        echo again=$(shibafu registry gc | wc -l)
        SHIBAFU_ROOT=$LAB/other shibafu run --rm localhost:5000/lab/a:1 cat /a
        # An index with a linux/amd64 entry: pull takes that image.
        A=$(curl -s -D - -o /dev/null $R/v2/lab/a/manifests/1 | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {{print $2}}')
        size=$(curl -s $R/v2/lab/a/manifests/1 | wc -c)
        printf '{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}' $A $size > $LAB/index
        curl -s -o /dev/null -w 'index=%{{http_code}}\n' -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary @$LAB/index $R/v2/lab/a/manifests/multi
        SHIBAFU_ROOT=$LAB/third shibafu run --rm localhost:5000/lab/a:multi cat /a
        "#
    ));
    // b's layer, config and manifest go with their links (layer and config); a stays whole.
    for want in ["after-dry-run=0", "removed link lab/b@", "removed blob sha256:", "removed=3", "again=0", "index=201"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
    assert_eq!(out.lines().filter(|l| l.starts_with("would remove blob")).count(), 3, "{out}");
    assert_eq!(out.lines().filter(|l| *l == "a").count(), 2, "pulled by tag and through the index: {out}");
}

#[test]
fn a_zstd_layer_pulls_and_runs() {
    let out = Lab::new().ok(&format!(
        r#"
        {SERVE}
        shibafu image export busybox $LAB/plain >/dev/null
        skopeo copy -q --dest-tls-verify=false --dest-compress-format zstd oci:$LAB/plain:latest docker://127.0.0.1:5000/lab/zstd:1
        curl -s $R/v2/lab/zstd/manifests/1 | grep -o 'tar+zstd'
        SHIBAFU_ROOT=$LAB/other shibafu run --rm localhost:5000/lab/zstd:1 echo zstd-layer-ran
        "#
    ));
    assert!(out.contains("tar+zstd") && out.contains("zstd-layer-ran"), "{out}");
}

/// A TLS front for our registry that wants a bearer token, as a public registry does: 401
/// with a challenge naming /token, which hands out the token; with it, requests go through,
/// and blob GETs are redirected to a "CDN" path that refuses credentials.
const BEARER_GATE: &str = r#"
import http.client, http.server, json, ssl, sys
CHALLENGE = 'Bearer realm="https://127.0.0.1:5443/token",service="lab",scope="repository:lab/busybox:pull"'
class Gate(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def any(self):
        if self.path.startswith("/token"):
            ok = "service=lab" in self.path and "scope=repository:lab/busybox:pull" in self.path
            return self.reply(200 if ok else 400, json.dumps({"token": "t0k3n"}).encode())
        path = self.path
        if path.startswith("/cdn/"):
            # The "CDN" a blob is sent to (another host name): a signed URL, no credentials.
            if self.headers.get("Authorization"):
                return self.reply(400, b"credentials sent to the CDN")
            path = path[len("/cdn"):]
        elif self.headers.get("Authorization") != "Bearer t0k3n":
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [("WWW-Authenticate", CHALLENGE)])
        elif "/blobs/" in path and self.command == "GET":
            return self.reply(307, b"", [("Location", "https://localhost:5443/cdn" + path)])
        up = http.client.HTTPConnection("127.0.0.1", 5000)
        up.request(self.command, path)
        r = up.getresponse()
        body = r.read()
        keep = [(k, v) for k, v in r.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        self.reply(r.status, body, keep)
    do_GET = do_HEAD = any
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 5443), Gate)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

#[test]
fn pull_speaks_tls_and_follows_the_bearer_token_flow() {
    let lab = Lab::new();
    std::fs::write(lab.dir.path().join("gate.py"), BEARER_GATE).unwrap();
    let out = lab.ok(&format!(
        r#"
        {SERVE}
        shibafu push busybox localhost:5000/lab/busybox:1 >/dev/null
        # A machine with no root certificates at all (the lab VM) still pulls over plain HTTP.
        SSL_CERT_FILE=/dev/null SHIBAFU_ROOT=$LAB/no-roots shibafu pull localhost:5000/lab/busybox:1 >/dev/null && echo pulled-without-roots
        cd $LAB
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=lab-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 -extfile ext 2>/dev/null
        python3 gate.py srv.pem srv.key &
        for i in $(seq 50); do curl -s --cacert ca.pem https://127.0.0.1:5443/v2/ >/dev/null && break; sleep 0.1; done
        echo anonymous=$(curl -s -o /dev/null -w '%{{http_code}}' --cacert ca.pem https://127.0.0.1:5443/v2/lab/busybox/manifests/1)
        SSL_CERT_FILE=$LAB/ca.pem SHIBAFU_ROOT=$LAB/other shibafu run --rm 127.0.0.1:5443/lab/busybox:1 echo pulled-over-tls-with-a-token
        if SHIBAFU_ROOT=$LAB/third shibafu pull 127.0.0.1:5443/lab/busybox:1 2>$LAB/err; then echo trusted-an-unknown-ca; fi
        cat $LAB/err
        "#
    ));
    assert!(out.contains("anonymous=401") && out.contains("pulled-without-roots"), "{out}");
    assert!(out.contains("pulled-over-tls-with-a-token"), "{out}");
    assert!(!out.contains("trusted-an-unknown-ca"), "{out}");
    assert!(out.contains("invalid peer certificate"), "an untrusted certificate is named as the reason: {out}");
}

#[test]
fn open_uploads_are_capped_and_a_restart_clears_what_they_staged() {
    let out = Lab::new().ok(&format!(
        r#"
        {SERVE}
        for i in $(seq 128); do curl -s -o /dev/null -X POST $R/v2/lab/x/blobs/uploads/; done
        echo staged=$(ls -A $SHIBAFU_ROOT/registry/uploads | wc -l)
        echo over-the-cap=$(curl -s -o /dev/null -w '%{{http_code}}' -X POST $R/v2/lab/x/blobs/uploads/)
        kill %1; wait %1 || true
        {SERVE}
        echo after-restart=$(ls -A $SHIBAFU_ROOT/registry/uploads 2>/dev/null | wc -l)
        echo open-again=$(curl -s -o /dev/null -w '%{{http_code}}' -X POST $R/v2/lab/x/blobs/uploads/)
        "#
    ));
    for want in ["staged=128", "over-the-cap=429", "after-restart=0", "open-again=202"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// The conformance suite's client reuses its connection after an upload is refused (416 for an
/// out-of-order chunk) before the server read the chunk's bytes. The connection must still take
/// the next request, or say `Connection: close` when it will not.
const KEEP_ALIVE: &str = r#"
import socket, time
def response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(65536)
        if not more:
            return None, {}
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(rest) < want:
        rest += s.recv(65536)
    return int(lines[0].split()[1]), headers
s = socket.create_connection(("127.0.0.1", 5000))
s.sendall(b"POST /v2/lab/k/blobs/uploads/ HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\n\r\n")
status, h = response(s)
print("session", status)
s.sendall(f"PATCH {h['location']} HTTP/1.1\r\nHost: r\r\nContent-Length: 20\r\nContent-Range: 22-41\r\n\r\n".encode())
time.sleep(0.05)
s.sendall(b"x" * 20)
status, h = response(s)
print("out-of-order", status, h.get("connection", "keep-alive"))
s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
print("next-on-the-connection", response(s)[0])
big = 4 << 20
s.sendall(f"PATCH /v2/lab/k/blobs/uploads/nosuch HTTP/1.1\r\nHost: r\r\nContent-Length: {big}\r\n\r\n".encode())
try:
    s.sendall(b"y" * big)
except OSError:
    pass
status, h = response(s)
print("unknown-with-a-big-body", status, h.get("connection", "keep-alive"))
"#;

#[test]
fn a_refused_upload_leaves_its_connection_usable_or_says_it_closes() {
    let out = Lab::new().ok(&format!("{SERVE}\npython3 - <<'PY'\n{KEEP_ALIVE}\nPY"));
    for want in ["session 202", "out-of-order 416 keep-alive", "next-on-the-connection 200", "unknown-with-a-big-body 404 close"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// Starts `registry serve` on 127.0.0.1:5000 with the flags in $LIMITS (and through the command
/// in $WRAP, if set), and waits for it.
const SERVE_LIMITED: &str = r#"
    ${WRAP:-} shibafu registry serve --port 5000 --address 127.0.0.1 $LIMITS 2>$LAB/registry.log &
    PID=$!
    for i in $(seq 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
"#;

/// Socket helpers the connection tests share: a raw HTTP/1.1 client that reads one response.
const HTTP_PY: &str = r#"
import json, select, socket, sys, time
ADDR = ("127.0.0.1", 5000)
def response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(65536)
        if not more:
            return None, {}, b""
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(rest) < want:
        more = s.recv(65536)
        if not more:
            break
        rest += more
    return int(lines[0].split()[1]), headers, rest
def closed(s):
    """Whether the server closed s (EOF or reset), without waiting."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(65536) == b""
    except OSError:
        return True
def wait_closed(s, limit):
    """Seconds until the server closes s, or None if it is still open after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if select.select([s], [], [], 0.05)[0] and closed(s):
            return time.monotonic() - start
    return None
"#;

/// 300 idle and 300 slowloris connections against a server that takes 64 connections and has
/// 256 descriptors: each new connection takes the place of the one that waited longest, so the
/// server never holds more than its limit, a fresh client is answered, and a connection busy
/// with an upload is never the one to go.
const FLOOD: &str = r#"
pid = int(sys.argv[1])
def sockets():
    return sum(1 for fd in __import__("os").listdir(f"/proc/{pid}/fd") if __import__("os").readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"))
body = b"slow-upload-body"
digest = "sha256:" + __import__("hashlib").sha256(body).hexdigest()
upload = socket.create_connection(ADDR)
upload.sendall(f"POST /v2/lab/flood/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: r\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:4])
time.sleep(0.2)
idle = [socket.create_connection(ADDR) for _ in range(300)]
slow = []
for _ in range(300):
    s = socket.create_connection(ADDR)
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Slow: ")
    slow.append(s)
upload.sendall(body[4:8])
for s in slow:
    try:
        s.send(b"a")
    except OSError:
        pass
# The server catches up with the accepts (bounded: it either gets there or the counts say not).
for _ in range(100):
    if sum(closed(s) for s in idle + slow if s.fileno() >= 0) >= 600 - 64:
        break
    time.sleep(0.1)
shut = {"idle": 0, "slow": 0}
for kind, group in (("idle", idle), ("slow", slow)):
    for s in group:
        if closed(s):
            shut[kind] += 1
            s.close()
print("closed-idle", shut["idle"], "closed-slow", shut["slow"])
print("server-sockets", sockets())
fresh = socket.create_connection(ADDR)
fresh.settimeout(10)
fresh.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
print("fresh", response(fresh)[0])
upload.sendall(body[8:])
upload.settimeout(10)
print("busy-upload", response(upload)[0])
print("still-open", sum(1 for s in idle + slow if s.fileno() >= 0))
"#;

#[test]
fn hundreds_of_idle_and_slow_connections_leave_a_fresh_client_its_answer() {
    let lab = Lab::new();
    let out = lab.ok(&format!(
        r#"
        LIMITS="--max-connections 64 --header-timeout 60 --idle-timeout 60"
        # The server gets 256 descriptors, soft and hard: without its limit, 600 connections
        # would leave it none (accept fails with EMFILE) and nobody would be answered.
        WRAP="prlimit --nofile=256:256"
        {SERVE_LIMITED}
        grep -q 'at most 64 connections' $LAB/registry.log
        python3 - $PID <<'PY'
{HTTP_PY}
{FLOOD}
PY
        echo blob=$(curl -s http://127.0.0.1:5000/v2/lab/flood/blobs/sha256:$(printf slow-upload-body | sha256sum | cut -c1-64))
        "#
    ));
    let field = |k: &str| -> usize { out.split_whitespace().skip_while(|w| *w != k).nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{k} missing: {out}")) };
    assert!(field("server-sockets") <= 64 + 1, "the server holds its limit of 64 connections and its listener: {out}");
    assert!(field("closed-idle") + field("closed-slow") >= 600 - 64, "the rest gave way: {out}");
    assert!(field("closed-slow") > 0 && field("closed-idle") > 0, "{out}");
    assert!(out.contains("fresh 200"), "a fresh client is answered: {out}");
    assert!(out.contains("busy-upload 201") && out.contains("blob=slow-upload-body"), "the busy upload never gave way: {out}");
}

/// The timeouts, short by flag: a head sent a byte a second is cut at the header timeout (from
/// its first byte on a kept-alive connection), a kept-alive connection is closed at the idle
/// timeout (not the shorter header timeout), a fresh connection that says nothing at the header
/// timeout, and an upload body far slower than both still arrives whole.
const TIMEOUTS: &str = r#"
slowloris = socket.create_connection(ADDR)
slowloris.sendall(b"GET /v2/ HTTP/1.1\r\nX-Slow: ")
start, cut = time.monotonic(), None
for i in range(30):
    try:
        slowloris.send(b"x")
    except OSError:
        cut = time.monotonic() - start
        break
    if wait_closed(slowloris, 1.0) is not None:
        cut = time.monotonic() - start
        break
print("slowloris-cut", "never" if cut is None else ("early" if cut < 1.5 else "at-header-timeout"))
silent = socket.create_connection(ADDR)
gone = wait_closed(silent, 30)
print("silent-fresh", "never" if gone is None else ("early" if gone < 1.5 else "at-header-timeout"))
kept = socket.create_connection(ADDR)
kept.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
print("kept-first", response(kept)[0])
print("kept-after-3s-open", wait_closed(kept, 3) is None)
kept.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
print("kept-second", response(kept)[0])
gone = wait_closed(kept, 30)
print("kept-idle", "never" if gone is None else ("early" if gone < 4.5 else "at-idle-timeout"))
# A second request trickled on a kept-alive connection: its header timeout runs from its first byte.
trickle = socket.create_connection(ADDR)
trickle.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
response(trickle)
trickle.sendall(b"G")
gone = wait_closed(trickle, 30)
print("kept-trickle", "never" if gone is None else ("early" if gone < 1.5 else ("at-header-timeout" if gone < 5 else "at-idle-timeout")))
body = bytes(range(32))
digest = "sha256:" + __import__("hashlib").sha256(body).hexdigest()
upload = socket.create_connection(ADDR)
upload.sendall(f"POST /v2/lab/slow/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: r\r\nContent-Length: {len(body)}\r\n\r\n".encode())
start = time.monotonic()
for i in range(0, len(body), 2):
    upload.sendall(body[i:i + 2])
    time.sleep(0.5)
upload.settimeout(10)
print("slow-upload", response(upload)[0], "longer-than-both-timeouts", time.monotonic() - start > 6)
"#;

#[test]
fn slow_heads_and_idle_connections_are_closed_on_their_timeouts_and_slow_bodies_are_not() {
    let out = Lab::new().ok(&format!(
        r#"
        LIMITS="--header-timeout 2 --idle-timeout 6"
        {SERVE_LIMITED}
        python3 - <<'PY'
{HTTP_PY}
{TIMEOUTS}
PY
        echo blob=$(curl -s http://127.0.0.1:5000/v2/lab/slow/blobs/sha256:$(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(32)))' | sha256sum | cut -c1-64) | od -An -tx1 | tr -d ' \n')
        "#
    ));
    for want in [
        "slowloris-cut at-header-timeout",
        "silent-fresh at-header-timeout",
        "kept-first 200",
        "kept-after-3s-open True",
        "kept-second 200",
        "kept-idle at-idle-timeout",
        "kept-trickle at-header-timeout",
        "slow-upload 201 longer-than-both-timeouts True",
        "blob=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// Request heads over the limits: answered with the spec's JSON error, by our code, whether
/// hyper would have answered itself (a 200 KB path: past the `http` crate's 64 KiB URI limit;
/// 70 KB of headers) or let it through (a 60 KB path).
const LONG_HEADS: &str = r#"
def ask(head):
    s = socket.create_connection(ADDR)
    s.settimeout(10)
    try:
        s.sendall(head)
    except OSError:
        pass
    status, headers, body = response(s)
    return status, headers.get("content-type"), json.loads(body)["errors"][0]["code"]
print("path-200k", *ask(b"GET /v2/" + b"a" * 200_000 + b"/tags/list HTTP/1.1\r\nHost: r\r\n\r\n"))
print("path-60k", *ask(b"GET /v2/" + b"a" * 60_000 + b"/tags/list HTTP/1.1\r\nHost: r\r\n\r\n"))
print("headers-70k", *ask(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(70)) + b"\r\n"))
s = socket.create_connection(ADDR)
s.settimeout(10)
s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
print("kept-alive", response(s)[0])
try:
    s.sendall(b"GET /v2/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: r\r\n\r\n")
except OSError:
    pass
status, headers, body = response(s)
print("then-200k-on-it", status, json.loads(body)["errors"][0]["code"])
"#;

#[test]
fn over_long_request_heads_get_the_specs_json_error() {
    let out = Lab::new().ok(&format!(
        r#"
        LIMITS=
        {SERVE_LIMITED}
        python3 - <<'PY'
{HTTP_PY}
{LONG_HEADS}
PY
        echo after=$(curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:5000/v2/)
        "#
    ));
    for want in [
        "path-200k 414 application/json UNSUPPORTED",
        "path-60k 414 application/json UNSUPPORTED",
        "headers-70k 431 application/json UNSUPPORTED",
        "kept-alive 200",
        "then-200k-on-it 414 UNSUPPORTED",
        "after=200",
    ] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}

/// Four places, all taken by uploads whose bodies stopped coming: a new connection is answered
/// 503 with the spec's JSON at once (nothing waits to give way), and the stalled uploads are
/// closed at the idle timeout, after which a new client is served again.
const ALL_BUSY: &str = r#"
stalled = []
for i in range(4):
    s = socket.create_connection(ADDR)
    s.sendall(b"POST /v2/lab/stall/blobs/uploads/?digest=sha256:" + b"0" * 64 + b" HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    stalled.append(s)
time.sleep(1)
refused = socket.create_connection(ADDR)
refused.settimeout(10)
status, headers, body = response(refused)
print("refused", status, headers.get("retry-after"), json.loads(body)["errors"][0]["code"])
gone = [wait_closed(s, 30) for s in stalled]
print("stalled-closed", sum(g is not None for g in gone))
fresh = socket.create_connection(ADDR)
fresh.settimeout(10)
fresh.sendall(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
print("fresh", response(fresh)[0])
"#;

#[test]
fn when_every_connection_is_busy_a_new_one_is_refused_and_stalled_bodies_go_at_the_idle_timeout() {
    let out = Lab::new().ok(&format!(
        r#"
        LIMITS="--max-connections 4 --header-timeout 2 --idle-timeout 3"
        {SERVE_LIMITED}
        python3 - <<'PY'
{HTTP_PY}
{ALL_BUSY}
PY
        echo staged=$(ls -A $SHIBAFU_ROOT/registry/uploads | wc -l)
        "#
    ));
    for want in ["refused 503 1 TOOMANYREQUESTS", "stalled-closed 4", "fresh 200", "staged=0"] {
        assert!(out.contains(want), "{want:?} missing: {out}");
    }
}
