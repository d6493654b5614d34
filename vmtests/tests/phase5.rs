//! Phase 5 of shared/PHASES.md, as written (alpine-base = the busybox rootfs, python-3.11 = the
//! python image's python3.11 files): our own registry, layers pushed to it, an image made of
//! them in the registry, and run from there. Then the same registry as the appliance's unit.
//! The steps, what each must show and the hints are src/lab/phases/phase5.toml, which
//! `shibafu lab check 5` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase5_our_own_oci_registry() {
    let mut vm = Vm::boot("phase5", Duration::from_secs(900));
    vm.play_phase(5);
}
