//! Docker's everyday `run` flags (phase 7): -w, -u, --entrypoint, --cap-drop, --read-only,
//! --add-host, --dns, labels with `list --filter` and `--format`, and -t with a working
//! terminal (resize included). Each test runs in namespaces of its own with a temp data root.

mod common;

use common::Lab;

#[test]
fn workdir_user_and_entrypoint_change_the_process() {
    let out = Lab::new().ok(
        r#"
        echo pwd=$(shibafu run --rm -w /made/here busybox pwd)
        shibafu run --rm -u nobody busybox id
        shibafu run --rm -u 1234:5 busybox id
        shibafu run --rm -u nobody busybox sh -c 'echo home=$HOME'
        shibafu run --rm --entrypoint echo busybox from entrypoint
        echo cleared=$(shibafu run --rm --entrypoint '' busybox echo no-entrypoint)
        shibafu run --rm --hostname web1 busybox sh -c 'echo host=$(hostname) file=$(cat /etc/hostname); grep -c web1 /etc/hosts'
        "#,
    );
    assert!(out.contains("pwd=/made/here"), "{out}");
    assert!(out.contains("uid=65534(nobody) gid=65534(nogroup)"), "{out}");
    assert!(out.contains("uid=1234 gid=5(tty)"), "{out}");
    assert!(out.contains("home=/nonexistent"), "{out}");
    assert!(out.contains("from entrypoint"), "{out}");
    assert!(out.contains("cleared=no-entrypoint"), "{out}");
    assert!(out.contains("host=web1 file=web1\n1\n"), "{out}");
}

#[test]
fn the_bound_etc_files_sit_in_the_init_layer_and_nothing_is_copied_up() {
    let out = Lab::new().ok(
        r#"
        shibafu run -d --name keep --hostname keeper busybox sleep 100 >/dev/null
        id=$(shibafu inspect --format '{{.Id}}' keep)
        if [ -e "$SHIBAFU_ROOT/containers/$id/upper/etc" ]; then echo upper-etc=yes; else echo upper-etc=no; fi
        echo lower=$(shibafu inspect --format '{{.GraphDriver.Data.LowerDir}}' keep | cut -d: -f1) mounted=$(grep -c "lowerdir=$SHIBAFU_ROOT/init/755-0-0:" /proc/self/mountinfo)
        shibafu exec keep sh -c 'echo host=$(cat /etc/hostname) mode=$(stat -c %a /etc); grep -c keeper /etc/hosts; echo x > /etc/new; cat /etc/passwd | head -1'
        echo init=$(ls "$SHIBAFU_ROOT/init") files=$(ls "$SHIBAFU_ROOT"/init/*/etc | tr '\n' ' ')
        shibafu rm -f keep >/dev/null
        echo second=$(shibafu run --rm busybox cat /etc/hostname | wc -c)
        echo left=$(ls -A "$SHIBAFU_ROOT/init" | wc -l)
        echo kept-by-gc=$(shibafu gc | grep -c 'init' || true) left=$(ls -A "$SHIBAFU_ROOT/init" | wc -l)
        "#,
    );
    assert!(out.contains("upper-etc=no"), "overlay copied /etc up:\n{out}");
    assert!(out.contains("/root/init/755-0-0 mounted=1\n"), "inspect's LowerDir starts with the init layer, as the mount does:\n{out}");
    assert!(out.contains("host=keeper mode=755\n1\n"), "{out}");
    assert!(out.contains("root:x:0:0"), "the image's own /etc shows through:\n{out}");
    assert!(out.contains("init=755-0-0 files=hostname hosts resolv.conf\n"), "{out}");
    assert!(out.contains("second=13\n"), "a second container on the same init layer:\n{out}");
    assert!(out.contains("left=1\n"), "one init layer, nothing staged left:\n{out}");
    assert!(out.contains("kept-by-gc=0 left=1\n"), "gc keeps the init layer (lab reset removes it):\n{out}");
}

#[test]
fn cap_drop_and_read_only_take_rights_away() {
    let r = Lab::new().sh(
        r#"
        rc() { name=$1; shift; if "$@"; then echo $name=0; else echo $name=$?; fi; }
        rc ping-default shibafu run --rm busybox ping -c 1 -W 2 127.0.0.1
        rc ping-no-net-raw shibafu run --rm --cap-drop NET_RAW busybox ping -c 1 -W 2 127.0.0.1
        rc ping-all-dropped shibafu run --rm --cap-drop ALL --cap-add cap_net_raw busybox ping -c 1 -W 2 127.0.0.1
        rc chown-all-dropped shibafu run --rm --cap-drop ALL busybox chown nobody /tmp
        rc read-only shibafu run --rm --read-only busybox touch /etc/x
        rc read-only-volume shibafu run --rm --read-only -v /scratch busybox touch /scratch/x
        rc bad-cap shibafu run --rm --cap-add FLY busybox true
        "#,
    );
    let out = &r.out;
    assert_eq!(r.code, 0, "{out}\n{}", r.err);
    for want in ["ping-default=0", "ping-no-net-raw=1", "ping-all-dropped=0", "chown-all-dropped=1", "read-only=1", "read-only-volume=0", "bad-cap=125"] {
        assert!(out.contains(want), "{want}: {out}\n{}", r.err);
    }
    assert!(r.err.contains("Read-only file system"), "{}", r.err);
    assert!(r.err.contains("unknown capability \"FLY\""), "{}", r.err);
}

#[test]
fn add_host_and_dns_land_in_the_containers_files() {
    let out = Lab::new().ok(
        r#"
        shibafu run --rm --add-host db:10.9.8.7 --add-host gw:host-gateway --dns 192.0.2.53 --dns 192.0.2.54 --dns-search corp.example --dns-option ndots:2 busybox cat /etc/hosts /etc/resolv.conf
        shibafu network create backend 172.22.0.0/24 >/dev/null
        shibafu run --rm --network backend --add-host gw:host-gateway busybox grep gw /etc/hosts
        shibafu run --rm --network none --add-host gw:host-gateway busybox true 2>&1 || echo gateway-without-network-refused
        "#,
    );
    assert!(out.contains("10.9.8.7\tdb\n"), "{out}");
    assert!(out.contains("172.20.0.1\tgw\n"), "host-gateway is the bridge's gateway: {out}");
    assert!(out.contains("nameserver 192.0.2.53\nnameserver 192.0.2.54\n"), "{out}");
    assert!(out.contains("search corp.example\n") && out.contains("options ndots:2\n"), "{out}");
    assert!(out.contains("172.22.0.1\tgw\n"), "{out}");
    assert!(out.contains("needs a bridge network") && out.contains("gateway-without-network-refused"), "{out}");
}

#[test]
fn labels_filters_and_formats_select_and_show_containers() {
    let out = Lab::new().ok(
        r#"
        printf '# tiers\ntier=back\nteam=lab\n' > $LAB/labels
        shibafu run -d --name front -l tier=front -l team=lab busybox sleep 100 >/dev/null
        shibafu run -d --name back --label-file $LAB/labels busybox sleep 100 >/dev/null
        shibafu run --name done -l tier=batch busybox sh -c 'exit 3'  || true
        shibafu run --name ok busybox true
        echo front=$(shibafu list --filter label=tier=front --format '{{.Names}}')
        echo team=$(shibafu list --filter label=team --format '{{.Names}}' | sort | tr '\n' ,)
        echo either=$(shibafu list --filter label=tier=front --filter label=tier=back --format '{{.Names}}' | sort | tr '\n' ,)
        echo and=$(shibafu list --filter label=team=lab --filter name=fro --format '{{.Names}}')
        echo exited=$(shibafu list --filter status=exited --format '{{.Names}}' | sort | tr '\n' ,)
        echo exit3=$(shibafu list --filter exited=3 --format '{{.Names}}')
        echo ancestor=$(shibafu list -a --filter ancestor=busybox -q | wc -l)
        echo network=$(shibafu list --filter network=bridge -q | wc -l)
        echo label-cell=$(shibafu list --filter name=back --format '{{.Label "tier"}}|{{.Labels}}|{{.State}}|{{.Image}}')
        shibafu list --filter name=front --format 'table {{.ID}}\t{{.Names}}\t{{.Status}}'
        shibafu list --filter name=front --format json
        echo before=$(shibafu list -a --filter before=back --format '{{.Names}}') since=$(shibafu list -a --filter since=back --format '{{.Names}}' | tr '\n' ,)
        echo anchored=$(shibafu list -a --filter 'name=^o' --format '{{.Names}}')
        echo latest=$(shibafu list -l --format '{{.Names}}')
        echo last2=$(shibafu list -n 2 --format '{{.Names}}' | tr '\n' ,)
        grep -o '"tier": "front"' $SHIBAFU_ROOT/containers/$(shibafu list --filter name=front -q)*/config.json
        shibafu list --filter colour=red 2>&1 || echo bad-filter-refused
        shibafu list --format '{{.Nope}}' 2>&1 || echo bad-format-refused
        shibafu run -d --name pub -p 30500:80 busybox sleep 100 >/dev/null
        echo publish=$(shibafu list --filter publish=30500 --format '{{.Names}}') range=$(shibafu list --filter publish=30400-30600/tcp --format '{{.Names}}') \
            udp=$(shibafu list --filter publish=30500/udp -q | wc -l) expose=$(shibafu list --filter expose=80 --format '{{.Names}}') \
            no-health=$(shibafu list --filter health=none -q | wc -l) healthy=$(shibafu list --filter health=healthy -q | wc -l)
        "#,
    );
    assert!(out.contains("publish=pub range=pub udp=0 expose=pub no-health=3 healthy=0\n"), "{out}");
    assert!(out.contains("front=front\n"), "{out}");
    assert!(out.contains("team=back,front,\n"), "the label file's labels: {out}");
    assert!(out.contains("either=back,front,\n"), "{out}");
    assert!(out.contains("and=front\n"), "{out}");
    assert!(out.contains("exited=done,ok,\n"), "status=exited shows stopped ones without -a: {out}");
    assert!(out.contains("exit3=done\n"), "{out}");
    assert!(out.contains("ancestor=4") && out.contains("network=2"), "{out}");
    assert!(out.contains("label-cell=back|team=lab,tier=back|running|busybox:latest"), "{out}");
    assert!(out.contains("CONTAINER ID   NAMES     STATUS\n"), "{out}");
    assert!(out.contains("   front     Up "), "{out}");
    assert!(out.contains("\"Names\":\"front\"") && out.contains("\"Labels\":\"team=lab,tier=front\""), "{out}");
    assert!(out.contains("before=front since=done,ok,\n") && out.contains("anchored=ok\n"), "{out}");
    assert!(out.contains("latest=ok\n") && out.contains("last2=done,ok,\n"), "{out}");
    assert!(out.contains("\"tier\": \"front\""), "labels are the spec's annotations: {out}");
    assert!(out.contains("invalid filter \"colour\"") && out.contains("bad-filter-refused"), "{out}");
    assert!(out.contains("can't evaluate field Nope") && out.contains("bad-format-refused"), "{out}");
}

/// Python that runs its arguments on a pty of 30x100, changes the size to 40x120 after a
/// moment, and prints what came out.
const PTY: &str = r#"
import os, pty, sys, time, fcntl, termios, struct, select
def size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    size(0, 30, 100)
    os.execvp(sys.argv[1], sys.argv[1:])
out, start, resized = b"", time.time(), False
while time.time() - start < 20:
    if not resized and time.time() - start > 0.5:
        size(fd, 40, 120)
        resized = True
    if select.select([fd], [], [], 0.1)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
_, status = os.waitpid(pid, 0)
print(out.decode(errors="replace").replace("\r", ""))
print("exit", os.waitstatus_to_exitcode(status))
"#;

#[test]
fn t_gives_a_terminal_that_follows_resizes() {
    let out = Lab::new().ok(&format!(
        r#"
        echo no-t=$(shibafu run --rm busybox tty </dev/null || true)
        echo with-t=$(shibafu run --rm -t busybox tty </dev/null)
        python3 -c '{PTY}' shibafu run --rm -it busybox sh -c 'tty; stty size; sleep 1; stty size'
        shibafu run -dt --name dt busybox sh -c 'tty; echo from-a-pty'
        shibafu run -di --name di busybox sh >/dev/null
        python3 -c '{PTY}' shibafu exec -it di sh -c 'echo exec-size=$(stty size)' 
        for i in $(seq 100); do shibafu list -a --filter name=dt --filter status=exited -q | grep -q . && break; sleep 0.05; done
        shibafu logs dt
        sleep 0.3
        echo di=$(shibafu list --filter name=di --format '{{{{.State}}}}')
        "#
    ));
    assert!(out.contains("no-t=not a tty"), "{out}");
    assert!(out.contains("with-t=/dev/pts/0"), "-t gives a pty even when stdin is none: {out}");
    assert!(out.contains("/dev/pts/0\n30 100\n40 120\n"), "the pty took the size and the resize: {out}");
    assert!(out.contains("exit 0"), "{out}");
    assert!(out.contains("from-a-pty"), "a detached -t's output reaches the log: {out}");
    assert!(out.contains("di=running"), "-di keeps a shell's stdin open: {out}");
    assert!(out.contains("exec-size=30 100"), "exec -it's pty has the terminal's size from the start: {out}");
}

#[test]
fn dt_gives_a_terminal_under_runc_too() {
    // runc sends the pty master over its --console-socket; the monitor relays it to the log.
    let out = Lab::new().ok(
        r#"trap 'rmdir /sys/fs/cgroup/*/shibafu 2>/dev/null || true' EXIT
        shibafu run --runtime runc -dt --name rt busybox sh -c 'tty; echo from-runcs-pty; exec sleep 100' >/dev/null
        for i in $(seq 100); do shibafu logs rt | grep -q from-runcs-pty && break; sleep 0.05; done
        shibafu logs rt
        echo state=$(shibafu list --filter name=rt --format '{{.State}}')
        shibafu exec rt echo exec-works
        shibafu rm -f rt >/dev/null
        ls $SHIBAFU_ROOT/containers | wc -l"#,
    );
    // (A terminal ends its lines with \r\n.)
    assert!(out.contains("/dev/pts/0\r\nfrom-runcs-pty\r\n"), "{out:?}");
    assert!(out.contains("state=running\nexec-works\n0\n"), "{out}");
}

#[test]
fn security_opts_set_no_new_privileges_and_a_seccomp_profile_every_runtime_applies() {
    let r = Lab::new().sh(
        r#"trap 'rmdir /sys/fs/cgroup/*/shibafu 2>/dev/null || true' EXIT
        set +e
        shibafu run --rm busybox grep NoNewPrivs /proc/self/status
        shibafu run --rm --security-opt no-new-privileges busybox grep NoNewPrivs /proc/self/status
        echo '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}' > $LAB/no-mkdir.json
        # crun refuses a hybrid cgroup host outright: then only runc is compared here.
        runtimes=runc; shibafu run --rm --runtime crun busybox true 2>/dev/null && runtimes="runc crun"
        echo "runtimes=$runtimes"
        for rt in shibafu $runtimes; do
            shibafu run --rm --runtime $rt --security-opt seccomp=$LAB/no-mkdir.json busybox sh -c 'mkdir /tmp/x 2>&1; echo ls-works=$(ls -d / )'
            echo "$rt=$?"
        done
        shibafu run --rm --security-opt seccomp=unconfined busybox mkdir /tmp/x; echo "unconfined=$?"
        shibafu run --security-opt bogus busybox true; echo "bogus=$?"
        shibafu run --security-opt label=type:svirt_t busybox true; echo "label=$?"
        shibafu run -d --name nnp --security-opt no-new-privileges busybox sleep 30 >/dev/null
        echo "inspect=$(shibafu inspect nnp | jq -c '.[0].HostConfig.SecurityOpt')"
        shibafu rm -f nnp >/dev/null
        echo "left=$(shibafu list -a -q | wc -l)"
        "#,
    );
    let out = &r.out;
    assert!(out.contains("NoNewPrivs:\t0\nNoNewPrivs:\t1\n"), "{out}\n{}", r.err);
    let runtimes = out.lines().find_map(|l| l.strip_prefix("runtimes=")).unwrap_or("runc");
    for rt in ["shibafu"].into_iter().chain(runtimes.split(' ')) {
        assert!(out.contains(&format!("mkdir: can't create directory '/tmp/x': Operation not permitted\nls-works=/\n{rt}=0")), "{rt} applies the profile: {out}\n{}", r.err);
    }
    for want in ["unconfined=0", "bogus=125", "label=125", r#"inspect=["no-new-privileges=true","seccomp=default"]"#, "left=0"] {
        assert!(out.contains(want), "{want}: {out}\n{}", r.err);
    }
    assert!(r.err.contains("SELinux labels") && r.err.contains("--security-opt \"bogus\" is invalid"), "{}", r.err);
}

#[test]
fn engine_containers_get_dockers_default_hardening() {
    let r = Lab::new().sh(
        r#"set +e
        shibafu run --rm busybox sh -c '
            echo "capeff=$(grep CapEff /proc/self/status | cut -f2)"
            echo "kcore=$(head -c 16 /proc/kcore | wc -c)"
            echo "keys=$(cat /proc/keys | wc -c)"
            echo 1 > /proc/sysrq-trigger 2>/dev/null; echo "sysrq=$?"
            echo 1 > /proc/sys/vm/drop_caches 2>/dev/null; echo "sysctl=$?"
            echo x > /dev/null; echo "devnull=$?"
            mknod /tmp/disk b 8 0 2>/dev/null; echo "mknod-block=$?"
            head -c 1 /tmp/disk >/dev/null 2>&1; echo "read-block=$?"
            mknod /tmp/null2 c 1 3; echo x > /tmp/null2; echo "mknod-null=$?"
            head -c 1 /dev/mem >/dev/null 2>&1; echo "devmem=$?"'
        "#,
    );
    let out = &r.out;
    // Docker's 14 default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
    // SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
    for want in ["capeff=00000000a80425fb", "kcore=0", "keys=0", "sysrq=1", "sysctl=1", "devnull=0", "mknod-null=0", "devmem=1"] {
        assert!(out.contains(want), "{want}: {out}\n{}", r.err);
    }
    // Making a node is allowed, as Docker's rules allow `m` for every device; opening a disk's
    // node is not.
    assert!(out.contains("mknod-block=0") && out.contains("read-block=1"), "{out}\n{}", r.err);
}
