//! Root tests of user namespaces (issue 17): the runtime maps ids as runc does; the engine's
//! `--userns=auto` and `--uidmap` make the container's root an unprivileged host user whose
//! files come from the shared layers through idmapped mounts, and whose workdir, volumes and
//! commits are its own; and that root, reaching host files, holds no privilege over them.

mod common;

use common::{lab_image, Lab};

#[test]
fn the_runtime_maps_ids_as_runc_does() {
    let r = Lab::new().sh(
        r#"chmod 711 $LAB
        mkdir -p $LAB/b/rootfs && cd $LAB/b && shibafu export busybox | tar -C rootfs -xf -
        chown -R 100000:100000 rootfs
        shibafu runtime spec
        script='id; cat /proc/self/uid_map /proc/self/gid_map; ls -ln /bin/busybox | cut -c1-30; echo x > /tmp/f && ls -ln /tmp/f | cut -c1-30
            ls -l /dev/null | cut -c1-10; hostname; grep -c " /sys " /proc/self/mounts; echo hi > /dev/null && echo devnull-ok'
        jq --arg s "$script" '.process.terminal = false | .root.readonly = false | .process.args = ["sh", "-c", $s]
            | .linux.namespaces += [{"type": "user"}]
            | .linux.uidMappings = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            | .linux.gidMappings = [{"containerID": 0, "hostID": 100000, "size": 65536}]' config.json > c && mv c config.json
        echo "== shibafu"; shibafu runtime --root $LAB/rt run u1 2>&1
        echo "== runc"; runc --root $LAB/runc run r1 2>&1
        echo "== owner"; stat -c %u:%g rootfs/tmp/f
        jq '.process.args = ["sleep", "100"]' config.json > c && mv c config.json
        shibafu runtime --root $LAB/rt run -d u2 >/dev/null
        pid=$(shibafu runtime --root $LAB/rt state u2 | jq .pid)
        echo "== host sees uid $(ps -o uid= -p $pid | tr -d ' ')"
        echo "== exec $(shibafu runtime --root $LAB/rt exec u2 id)"
        shibafu runtime --root $LAB/rt delete -f u2
        jq '.linux.namespaces -= [{"type": "user"}]' config.json > c && mv c config.json
        shibafu runtime --root $LAB/rt run u3 2>&1 || echo "maps-without-userns=$?"
        "#,
    );
    let sections: Vec<&str> = r.out.split("== ").collect();
    let ours = sections.iter().find(|s| s.starts_with("shibafu")).copied().unwrap_or_default();
    let theirs = sections.iter().find(|s| s.starts_with("runc")).copied().unwrap_or_default();
    assert_eq!(ours.lines().skip(1).collect::<Vec<_>>(), theirs.lines().skip(1).collect::<Vec<_>>(), "{}\n{}", r.out, r.err);
    for want in ["uid=0(root) gid=0(root)", "0     100000      65536", "-rwxr-xr-x    1 0        0", "-rw-r--r--    1 0        0", "crw-rw-rw-", "devnull-ok"] {
        assert!(ours.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
    for want in ["== owner\n100000:100000", "== host sees uid 100000", "== exec uid=0(root) gid=0(root)", "maps-without-userns=125"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
}

#[test]
fn auto_gives_each_container_its_own_unprivileged_range_over_the_shared_layers() {
    let r = Lab::new().sh(
        r#"set +e
        chmod 711 $LAB
        shibafu run -d --name a --userns=auto busybox sleep 100 >/dev/null
        shibafu run -d --name b --userns=auto busybox sleep 100 >/dev/null
        shibafu run -d --name c --uidmap 0:300000:1000 busybox sleep 100 >/dev/null
        for c in a b c; do
            pid=$(shibafu inspect --format '{{.State.Pid}}' $c)
            echo "$c: host uid $(ps -o uid= -p $pid | tr -d ' '), map $(shibafu exec $c cat /proc/self/uid_map | tr -s ' '), mode $(shibafu inspect --format '{{.HostConfig.UsernsMode}}' $c)"
        done
        echo "a sees $(shibafu exec a sh -c 'id -u; ls -ln /bin/busybox' | tr -s ' ' | tr '\n' ' ')"
        shibafu exec a sh -c 'echo written > /etc/motd && mkdir -p /srv/new && echo root-writes=ok'
        upper=$SHIBAFU_ROOT/containers/$(shibafu inspect --format '{{.Id}}' a)/upper
        echo "on disk $(stat -c %u:%g $upper/etc/motd $upper/srv/new | tr '\n' ' ')"
        echo "layer owner $(stat -c %u $SHIBAFU_ROOT/layers/*/bin/busybox | sort -u)"
        shibafu inspect --explain a 2>&1 | grep uid_map
        shibafu stop a >/dev/null && shibafu start a >/dev/null
        echo "after restart $(shibafu exec a cat /etc/motd) uid $(ps -o uid= -p $(shibafu inspect --format '{{.State.Pid}}' a) | tr -d ' ')"
        shibafu rm -f a b c >/dev/null
        echo "idmapped mounts left: $(grep -c idmapped /proc/self/mountinfo)"
        shibafu run -d --name d --userns=auto busybox sleep 100 >/dev/null
        echo "d reuses $(shibafu exec d cat /proc/self/uid_map | tr -s ' ')"
        shibafu rm -f d >/dev/null
        shibafu run --rm --userns=auto --uidmap 0:1:2 busybox true; echo "both=$?"
        "#,
    );
    let out = &r.out;
    for want in [
        "a: host uid 100000, map  0 100000 65536, mode auto",
        "b: host uid 165536, map  0 165536 65536, mode auto",
        "c: host uid 300000, map  0 300000 1000, mode private",
        "a sees 0 -rwxr-xr-x 1 0 0",
        "root-writes=ok",
        "on disk 100000:100000 100000:100000",
        "layer owner 0\n",
        "after restart written uid 100000",
        "idmapped mounts left: 0",
        "d reuses  0 100000 65536",
        "both=125",
    ] {
        assert!(out.contains(want), "{want}:\n{out}\n{}", r.err);
    }
    assert!(out.contains("its root is host uid 100000"), "--explain names the map:\n{out}");
}

#[test]
fn a_root_that_escapes_to_host_files_holds_no_privilege_over_them() {
    // The worst escape a container can make is to reach the host's files. Here the host hands
    // them in on purpose (a bind of a root-owned directory): under --userns=host the container's
    // root reads and writes them; under --userns=auto it is host uid 100000 and can do neither,
    // nor gain anything by a setuid file or a device node it makes.
    let r = Lab::new().sh(
        r#"set +e
        chmod 711 $LAB $LAB/root
        mkdir -m 755 $LAB/host && echo secret > $LAB/host/secret && chmod 600 $LAB/host/secret
        probe='cat /host/secret 2>&1; touch /host/new 2>&1 && echo wrote; chmod 666 /host/secret 2>&1 && echo chmodded
            mknod /tmp/sda b 8 0 2>&1 && echo mknod-ok; echo "uid $(id -u) caps $(grep CapEff /proc/self/status | cut -f2)"'
        echo "== host mode"; shibafu run --rm -v $LAB/host:/host busybox sh -c "$probe"
        rm -f $LAB/host/new; chmod 600 $LAB/host/secret
        echo "== auto"; shibafu run --rm --userns=auto -v $LAB/host:/host busybox sh -c "$probe"
        echo "== after: $(ls $LAB/host | tr '\n' ' ')$(stat -c %a $LAB/host/secret)"
        "#,
    );
    let out = &r.out;
    let host = out.split("== auto").next().unwrap_or_default();
    let auto = out.split("== auto").nth(1).unwrap_or_default();
    assert!(host.contains("secret\n") && host.contains("wrote") && host.contains("chmodded"), "the host's root: {out}\n{}", r.err);
    for want in ["cat: can't open '/host/secret': Permission denied", "touch: /host/new: Permission denied", "Operation not permitted", "uid 0 caps 00000000a80425fb"] {
        assert!(auto.contains(want), "{want}:\n{out}\n{}", r.err);
    }
    assert!(!auto.contains("wrote") && !auto.contains("chmodded") && !auto.contains("mknod-ok") && !auto.contains("secret\n"), "{out}");
    assert!(out.contains("== after: secret 600"), "nothing changed on the host: {out}");
}

#[test]
fn the_workdir_an_empty_volume_and_a_commit_belong_to_the_containers_root() {
    // What the engine makes for a user-namespaced container is its root's, not the host's
    // (which it would see as nobody and could not write to); what `commit` packs from it has
    // the owners the container saw, so the image runs the same without a user namespace.
    let r = Lab::new().sh(
        r#"set +e
        chmod 711 $LAB
        shibafu run -d --name w --userns=auto -w /new/work -v data:/data busybox sleep 100 >/dev/null
        shibafu exec w sh -c 'echo "workdir $(pwd) $(stat -c %u:%g /new /new/work | tr "\n" " ")"
            touch /data/f && echo "volume writable $(stat -c %u:%g /data)"
            echo hi > /made && chown 1000:1001 /made && mkdir /made-dir && echo made'
        echo "volume on disk $(stat -c %u:%g $SHIBAFU_ROOT/volumes/data/_data)"
        shibafu commit w committed >/dev/null && echo committed
        echo "image has $(shibafu run --rm committed stat -c %u:%g /made /made-dir /new/work | tr '\n' ' ')"
        shibafu rm -f w >/dev/null
        "#,
    );
    for want in [
        "workdir /new/work 0:0 0:0",
        "volume writable 0:0",
        "made",
        "volume on disk 100000:100000",
        "committed",
        "image has 1000:1001 0:0 0:0",
    ] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
}

#[test]
fn a_containers_network_namespace_has_dockers_defaults_so_an_auto_root_serves_port_80() {
    // The network namespace belongs to the host, so a user-namespaced root holds no
    // CAP_NET_BIND_SERVICE over it: Docker's defaults let any port be bound and any group
    // send ICMP echo through datagram sockets. nginx also opens /dev/stdout again for its
    // logs: the monitor's pipes must be the container root's.
    let r = Lab::new().sh(&format!(
        r#"chmod 711 $LAB
        shibafu run --rm busybox sh -c 'echo "ports from $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"'
        nsenter --net=/proc/self/ns/net cat /proc/sys/net/ipv4/ip_unprivileged_port_start | sed 's/^/lab ports from /'
        shibafu run --rm --userns=auto busybox sh -c 'nc -l -p 80 & sleep 0.5; netstat -ltn | grep -c ":80 " | sed "s/^/listening on 80: /"; kill $!'
        shibafu image import {nginx} nginx >/dev/null
        shibafu run -d --name web --userns=auto --publish 18081:80 nginx >/dev/null
        for i in $(seq 50); do curl -sf localhost:18081 >/dev/null && break; sleep 0.1; done
        echo "nginx: $(curl -s localhost:18081 | grep -c 'Welcome to nginx')"
        echo "its log: $(shibafu logs web 2>&1 | grep -c 'GET / HTTP')"  # the wait's request and the count's
        shibafu rm -f web >/dev/null
        "#,
        nginx = lab_image("nginx").display()
    ));
    for want in ["ports from 0\n", "lab ports from 1024", "listening on 80: 1", "nginx: 2", "its log: 2"] {
        assert!(r.out.contains(want), "{want}:\n{}\n{}", r.out, r.err);
    }
}
