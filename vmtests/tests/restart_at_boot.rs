//! Phase 7's restart policies across a real reboot of the appliance: containers with
//! `--restart always` come back when it boots (shibafu-restart.service starts them), and
//! `unless-stopped` ones too unless the user stopped them; `--restart no` ones stay exited.
//! At poweroff shibafu-shutdown.service stops them, and their monitors record it.
//! Two boots of one disk kept across them (`./run-vm --persist`, in a folder of its own that
//! the test removes).

use std::time::Duration;

use vmtests::{repo, Vm};

/// Removes the kept disk, even when the test fails.
struct Kept(std::path::PathBuf);

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn always_containers_come_back_after_a_reboot() {
    let kept = Kept(repo().join("build/persist-restart-at-boot"));
    let _ = std::fs::remove_dir_all(&kept.0);
    let mut vm = Vm::boot_persistent("restart at boot (first boot)", Duration::from_secs(400), &kept.0);
    vm.sh("shibafu run -d --restart always --name keeper busybox sleep 100000 >/dev/null");
    vm.sh("shibafu run -d --restart unless-stopped --name awake busybox sleep 100000 >/dev/null");
    vm.sh("shibafu run -d --restart unless-stopped --name held busybox sleep 100000 >/dev/null && shibafu stop held >/dev/null");
    vm.sh("shibafu run -d --name plain busybox sleep 100000 >/dev/null");
    let before = vm.sh("shibafu inspect --format '{{.State.Pid}}' keeper").trim().to_string();
    vm.poweroff();
    drop(vm);

    let mut vm = Vm::boot_persistent("restart at boot (second boot)", Duration::from_secs(400), &kept.0);
    let unit = vm.sh("for i in $(seq 120); do [ \"$(systemctl show -p ActiveState --value shibafu-restart.service)\" = active ] && break; sleep 0.5; done; systemctl is-active shibafu-restart.service");
    vm.check(unit.trim() == "active", &format!("shibafu-restart.service ran at boot:\n{unit}"));
    let states = vm.sh("shibafu ps -a --format '{{.Names}} {{.State}}' | sort");
    vm.check(states == "awake running\nheld exited\nkeeper running\nplain exited\n", &format!("after the reboot, always and unless-stopped containers run again; a stopped or restart-no one does not:\n{states}"));
    let after = vm.sh("shibafu inspect --format '{{.State.Pid}}' keeper").trim().to_string();
    vm.check(after != before && after != "0", &format!("keeper runs as a new process after the reboot (pid {before} before, {after} after)"));
    // shibafu-shutdown.service stopped it at poweroff, and its monitor recorded the exit.
    let marks = vm.sh("shibafu logs keeper 2>&1 | grep -F '[shibafu]'");
    vm.check(marks.contains("killed by signal 9 (SIGKILL), exit code 137"), &format!("the shutdown's stop of keeper is in its log:\n{marks}"));
    let alive = vm.sh("shibafu exec keeper sh -c 'echo alive'");
    vm.check(alive.contains("alive"), &format!("exec into the container that came back:\n{alive}"));
    vm.sh("shibafu rm -f keeper awake held plain >/dev/null");
}
