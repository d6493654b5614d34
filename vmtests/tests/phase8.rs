//! Phase 8 of shared/PHASES.md, as written: a node app goes to the PaaS's deploy API
//! (shibafu-paas.service) as app.tar.gz, is built on the lab's node:18, runs on the network
//! platform (its image pushed to the appliance's registry), and answers at http://myapp.platform.local, a name the VM resolves through
//! shibafu-dns.service and the proxy serves on port 80, with no /etc/hosts line.
//! The steps, what each must show and the hints are src/lab/phases/phase8.toml, which
//! `shibafu lab check 8` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase8_a_small_paas_api() {
    let mut vm = Vm::boot("phase8", Duration::from_secs(900));
    vm.play_phase(8);
}
