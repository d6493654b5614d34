//! Phase 0 of shared/PHASES.md, as written (alpine -> the lab's busybox image): a rootfs from
//! `shibafu export`, a config.json from `runc spec`, and `sudo runc run mycontainer` with a
//! terminal, where `ps aux` shows only the container's processes and `hostname` its own name.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase0_runc_runs_an_exported_rootfs() {
    let mut vm = Vm::boot("phase0", Duration::from_secs(600));
    vm.sh("mkdir -p container/rootfs");
    vm.sh("shibafu export busybox | tar -C container/rootfs -xf -");
    vm.sh("cd container && runc spec");
    let host_hostname = vm.sh("hostname");
    vm.send("sudo runc run mycontainer");
    vm.wait_for("/ # ", Duration::from_secs(60));
    vm.send("ps aux");
    let ps = vm.wait_for("/ # ", Duration::from_secs(30));
    let processes: Vec<&str> = ps.lines().skip_while(|l| !l.contains("PID")).skip(1).filter(|l| !l.trim().is_empty()).collect();
    vm.check(processes.len() == 2, &format!("ps aux inside should list sh and ps only, got:\n{ps}"));
    vm.check(processes[0].trim_start().starts_with("1 ") && processes[0].ends_with("sh"), &format!("PID 1 should be the container's sh:\n{ps}"));
    vm.check(!ps.contains("systemd") && !ps.contains("agetty"), &format!("host processes are visible:\n{ps}"));
    vm.send("hostname");
    let hostname = vm.wait_for("/ # ", Duration::from_secs(30));
    vm.check(hostname.lines().any(|l| l.trim() == "runc"), &format!("hostname inside should be runc's default, got {hostname:?}"));
    vm.check(!hostname.contains(host_hostname.trim()), "the container shares the VM's hostname");
    vm.send("exit");
    vm.wait_prompt("exit in the container");
    let state = vm.sh("runc list");
    vm.check(!state.contains("mycontainer"), &format!("runc still lists the container after exit:\n{state}"));
}
