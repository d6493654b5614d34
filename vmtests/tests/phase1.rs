//! Phase 1 of shared/PHASES.md, as written (alpine -> the lab's busybox image; `cargo build` is
//! done by the appliance build, whose binary sits in root's home as ./shibafu): our own runtime
//! runs an interactive shell, two named containers in the background, and lists them.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase1_our_runtime_runs_and_lists_containers() {
    let mut vm = Vm::boot("phase1", Duration::from_secs(600));
    vm.sh("test -x ./shibafu && ./shibafu --version");

    vm.send("sudo ./shibafu run busybox /bin/sh");
    vm.wait_for("/ # ", Duration::from_secs(60));
    vm.send("echo inside $(hostname) pid $$; ls /proc | grep -c '^[0-9]'");
    let inside = vm.wait_for("/ # ", Duration::from_secs(30));
    vm.check(inside.contains("pid 1"), &format!("the shell should be PID 1 in its namespace:\n{inside}"));
    vm.send("exit 3");
    let (status, _) = vm.wait_prompt("exit 3 in the container");
    vm.check(status == 3, &format!("run should pass the container's exit status on, got {status}"));

    vm.sh("sudo ./shibafu run --name container1 busybox sleep 100 &");
    vm.sh("sudo ./shibafu run --name container2 busybox sleep 100 &");
    // Both start in the background; the list shows them once their runtimes ran them.
    let list = vm.sh("for i in $(seq 50); do [ $(sudo ./shibafu list | grep -c ' Up ') = 2 ] && break; sleep 0.2; done; sudo ./shibafu list");
    for name in ["container1", "container2"] {
        let line = list.lines().find(|l| l.contains(name)).unwrap_or_else(|| vm.fail(&format!("list misses {name}:\n{list}")));
        vm.check(line.contains(" Up ") && line.contains("sleep 100"), &format!("{name} should be running sleep 100:\n{list}"));
    }
    let ps = vm.sh("ps -eo args | grep -c '^sleep 100'");
    vm.check(ps.trim() == "2", &format!("two sleep processes should run on the VM, found {ps}"));
    vm.sh("sudo ./shibafu rm -f container1 container2");
    vm.sh("wait");
    let after = vm.sh("sudo ./shibafu list -a");
    vm.check(!after.contains("container1") && !after.contains("container2"), &format!("rm -f left containers:\n{after}"));
}
