//! Phase 4 of shared/PHASES.md, as written (node-app = the lab's node-app image, a small server
//! on port 3000): published ports in 30000-32767, DNAT from the host, and the reverse proxy.
//! The steps, what each must show and the hints are src/lab/phases/phase4.toml, which
//! `shibafu lab check 4` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase4_port_mapping_and_publishing_services() {
    let mut vm = Vm::boot("phase4", Duration::from_secs(900));
    vm.play_phase(4);
}
