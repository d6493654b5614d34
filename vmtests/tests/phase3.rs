//! Phase 3 of shared/PHASES.md, as written (alpine-base = the busybox rootfs, python-3.11 = the
//! python3.11 files of the lab's python image, app-code = a small app.py): layers prepared by
//! hand, combined by overlay at run time, shared by ten containers.
//! The steps, what each must show and the hints are src/lab/phases/phase3.toml, which
//! `shibafu lab check 3` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase3_layers_by_hand_and_overlayfs() {
    let mut vm = Vm::boot("phase3", Duration::from_secs(900));
    vm.play_phase(3);
}
