//! Phase 0 of shared/PHASES.md, as written (alpine -> the lab's busybox image): a rootfs from
//! `shibafu export`, a config.json from `runc spec`, and `sudo runc run mycontainer` with a
//! terminal, where `ps aux` shows only the container's processes and `hostname` its own name.
//! The steps, what each must show and the hints are src/lab/phases/phase0.toml, which
//! `shibafu lab check 0` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase0_runc_runs_an_exported_rootfs() {
    let mut vm = Vm::boot("phase0", Duration::from_secs(600));
    vm.play_phase(0);
}
