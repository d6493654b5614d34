//! Hostile input (issue 12) in the appliance, where cgroup v2 is whole: a layer carrying nodes
//! of the VM's own disk and kernel devices is run by our runtime, runc and crun, and none of
//! them lets the container open those nodes, while /dev/null works and no cgroup is left.

use std::time::Duration;

use vmtests::Vm;

/// Host devices every appliance has: its disk, the kernel log, a PM QoS knob.
const HOST_DEVICES: [&str; 3] = ["/dev/vda", "/dev/kmsg", "/dev/cpu_dma_latency"];

#[test]
fn host_device_nodes_in_a_layer_stay_shut() {
    let mut vm = Vm::boot("devices", Duration::from_secs(600));
    let nodes = HOST_DEVICES.join(" ");
    // The host opens each itself: a refusal in the container is the device cgroup's doing.
    let host = vm.sh(&format!("for f in {nodes}; do (: < $f) && echo host-opens-$f; done"));
    for dev in HOST_DEVICES {
        vm.check(host.contains(&format!("host-opens-{dev}")), &format!("the VM should open {dev} itself:\n{host}"));
    }
    vm.sh(&format!("mkdir -p /tmp/evil/evil /tmp/base && cp -a {nodes} /tmp/evil/evil/ && tar -C /tmp/evil -cf /tmp/evil.tar evil"));
    vm.sh("shibafu export busybox | tar -C /tmp/base -xf - && shibafu prepare-layer base /tmp/base && shibafu prepare-layer evil /tmp/evil.tar");
    let probe = "for f in /evil/*; do (: < $f) 2>&1 && echo \"read $f\"; done; echo x > /dev/null && echo null-ok";
    for rt in ["shibafu", "runc", "crun"] {
        let out = vm.sh(&format!("shibafu run --rm --runtime {rt} --layers base,evil sh -c '{probe}'"));
        for dev in HOST_DEVICES {
            let name = dev.rsplit('/').next().unwrap();
            vm.check(
                out.contains(&format!("can't open /evil/{name}: Operation not permitted")) && !out.contains(&format!("read /evil/{name}")),
                &format!("{rt}: the container should get EPERM for /evil/{name}:\n{out}"),
            );
        }
        vm.check(out.contains("null-ok"), &format!("{rt}: /dev/null should work:\n{out}"));
    }
    // Limits and the device program share the container's cgroup.
    let both = vm.sh("shibafu run --rm --memory 32m --pids-limit 20 --layers base,evil sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; (: < /evil/kmsg) 2>&1; true'");
    vm.check(
        both.contains("33554432\n20\n") && both.contains("can't open /evil/kmsg: Operation not permitted"),
        &format!("limits should apply beside the device rules:\n{both}"),
    );
    // runc keeps the parent (shibafu/) of the cgroups it made; the containers' own are gone.
    let left = vm.sh("find /sys/fs/cgroup/shibafu -mindepth 1 -type d 2>/dev/null | grep -c . || true");
    vm.check(left.lines().last().map(str::trim) == Some("0"), &format!("cgroups left behind: {left}"));
}
