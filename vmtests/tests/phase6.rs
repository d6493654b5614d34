//! Phase 6 of shared/PHASES.md, as written (postgres:15 stands for postgres:14; node-api is the
//! lab's image with psql and ping): two networks, postgres on one, the API on both, the API
//! finds postgres by name through shibafu-dns.service, and a container on frontend alone can
//! neither resolve nor reach it.
//! The steps, what each must show and the hints are src/lab/phases/phase6.toml, which
//! `shibafu lab check 6` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase6_networks_between_containers_and_dns() {
    let mut vm = Vm::boot("phase6", Duration::from_secs(900));
    vm.play_phase(6);
}
