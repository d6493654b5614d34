//! Phase 1 of shared/PHASES.md, as written (alpine -> the lab's busybox image; `cargo build` is
//! done by the appliance build, whose binary sits in root's home as ./shibafu): our own runtime
//! runs an interactive shell, two named containers in the background, and lists them.
//! The steps, what each must show and the hints are src/lab/phases/phase1.toml, which
//! `shibafu lab check 1` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase1_our_runtime_runs_and_lists_containers() {
    let mut vm = Vm::boot("phase1", Duration::from_secs(600));
    vm.play_phase(1);
}
