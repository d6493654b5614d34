//! The appliance itself: cgroup v2 only, the data root and its container-tool link, the
//! preloaded images, resource limits that really apply (cgroup v2 is only here, not on the
//! build hosts), and the pretend internet that phase 2 reaches.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn appliance_is_what_the_phases_expect() {
    let mut vm = Vm::boot("appliance", Duration::from_secs(600));
    let fs = vm.sh("stat -fc %T /sys/fs/cgroup");
    vm.check(fs.trim() == "cgroup2fs", &format!("/sys/fs/cgroup should be cgroup v2 only, is {fs}"));
    vm.sh("test \"$(readlink -f /var/lib/container-tool)\" = /var/lib/shibafu");
    vm.sh("test \"$(readlink -f $(command -v container-tool))\" = /usr/local/bin/shibafu");
    let images = vm.sh("shibafu images");
    for name in ["busybox", "debian", "python", "node", "node-app", "node-api", "nginx", "postgres"] {
        vm.check(images.contains(name), &format!("{name} should be preloaded:\n{images}"));
    }
    // The Debian images share one base layer, stored and unpacked once.
    let layers = vm.sh("ls /var/lib/container-tool/layers | wc -l");
    vm.check(layers.trim() == "8", &format!("busybox, the Debian base, five package layers and node-app's files make 8 layers, found {layers}"));
    let versions = vm.sh("shibafu run --rm python:3.11 python --version; shibafu run --rm node:18 node --version; shibafu run --rm postgres:15 postgres --version");
    vm.check(versions.contains("Python 3.11.") && versions.contains("v18.") && versions.contains("(PostgreSQL) 15."), &format!("the images' programs:\n{versions}"));

    // Limits: the container's own cgroup files show them, and the kernel enforces them.
    let limits = vm.sh("shibafu run --rm --memory 32m --pids-limit 20 --cpus 0.5 busybox cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max");
    let lines: Vec<&str> = limits.lines().map(str::trim).collect();
    vm.check(lines == ["33554432", "20", "50000 100000"], &format!("cgroup limits inside the container:\n{limits}"));
    let (status, out) = vm.sh_status("shibafu run --rm --pids-limit 5 busybox sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait' 2>&1");
    vm.check(status != 0 || out.contains("fork") || out.contains("Resource temporarily unavailable"), &format!("pids.max 5 should stop the 8th fork:\n{out}"));
    let leftovers = vm.sh("ls /sys/fs/cgroup/shibafu 2>/dev/null | grep -c . || true");
    vm.check(leftovers.trim() == "0", &format!("cgroups left behind: {leftovers}"));

    // The pretend internet: DNS answers every name with its own address, which answers ping
    // and HTTP; nothing leaves the VM (it has no network device but lo, the veth, and the
    // containers' bridge made at boot).
    vm.sh("systemctl is-active lab-internet.service lab-internet-dns.service lab-internet-http.service");
    let addr = vm.sh("dig +short google.com");
    vm.check(addr.trim() == "198.51.100.1", &format!("google.com should resolve to the pretend internet: {addr}"));
    vm.sh("ping -c 1 -W 5 google.com");
    let page = vm.sh("curl -s --max-time 10 http://google.com/");
    vm.check(page.contains("pretend internet"), &format!("http://google.com should be the pretend internet's page:\n{page}"));
    let links = vm.sh("ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1");
    vm.check(links.split_whitespace().all(|l| ["lo", "inet0", "ctr0"].contains(&l)), &format!("the VM should have no network device but lo, inet0 and ctr0:\n{links}"));
}
