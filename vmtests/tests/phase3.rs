//! Phase 3 of shared/PHASES.md, as written (alpine-base = the busybox rootfs, python-3.11 = the
//! python3.11 files of the lab's python image, app-code = a small app.py): layers prepared by
//! hand, combined by overlay at run time, shared by ten containers.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase3_layers_by_hand_and_overlayfs() {
    let mut vm = Vm::boot("phase3", Duration::from_secs(900));
    // The sources the plan assumes exist on the machine.
    vm.make_layer_sources();

    vm.sh("./container-tool prepare-layer alpine-base /tmp/alpine-rootfs");
    vm.sh("./container-tool prepare-layer python-3.11 /opt/python-3.11");
    vm.sh("./container-tool prepare-layer app-code /home/user/myapp");
    let hello = vm.sh("./container-tool run --layers alpine-base,python-3.11,app-code python app.py");
    vm.check(hello.contains("hello from app.py on python 3.11."), &format!("app.py should run on the three layers:\n{hello}"));
    let layers_du = vm.sh("du -sh /var/lib/container-tool/layers/");
    let before = vm.sh("du -sk /var/lib/container-tool/layers/ /var/lib/container-tool/containers/ | cut -f1 | tr '\\n' ' '");
    vm.sh("for i in $(seq 10); do ./container-tool run --layers alpine-base,python-3.11,app-code sh -c 'dd if=/dev/zero of=/data bs=1k count=100 2>/dev/null'; done");
    let after = vm.sh("du -sk /var/lib/container-tool/layers/ /var/lib/container-tool/containers/ | cut -f1 | tr '\\n' ' '");
    let kib = |s: &str| -> Vec<i64> { s.split_whitespace().map(|n| n.parse().unwrap()).collect() };
    let (b, a) = (kib(&before), kib(&after));
    vm.check(a[0] == b[0], &format!("layers/ grew with containers: {layers_du} {before} -> {after}"));
    vm.check((1000..2000).contains(&(a[1] - b[1])), &format!("containers/ should grow by what ten containers wrote (10 x 100 KiB) and their bundles (config.json holds the seccomp profile, some 20 KiB): {before} -> {after}"));
    let users = vm.sh("./container-tool layers | awk '$1 == \"alpine-base\" {print $NF}'");
    vm.check(users.trim() == "11", &format!("eleven containers share alpine-base, the layers list says {users}"));
}
