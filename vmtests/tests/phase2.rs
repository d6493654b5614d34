//! Phase 2 of shared/PHASES.md, as written (alpine = the lab's busybox image): the bridge ctr0,
//! a veth pair and an address per container, NAT out to the pretend internet.
//! The steps, what each must show and the hints are src/lab/phases/phase2.toml, which
//! `shibafu lab check 2` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase2_basic_container_networking() {
    let mut vm = Vm::boot("phase2", Duration::from_secs(600));
    vm.play_phase(2);
}
