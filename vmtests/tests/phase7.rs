//! Phase 7 of shared/PHASES.md, as written: the integrated runtime. The lab's nginx image
//! stands for the web app: it is pushed to the appliance's own registry (its unit) as
//! localhost:5000/apps/webapp:latest and removed locally, then `run --image` pulls it (its
//! layers are in the cache), makes the missing network `production` from the pool, publishes
//! port 80, and the app answers on that port and through the proxy; `inspect` shows the
//! container's address, ports, layers and networks; `logs -f` follows its requests.
//! The steps, what each must show and the hints are src/lab/phases/phase7.toml, which
//! `shibafu lab check 7` plays too.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase7_the_integrated_runtime() {
    let mut vm = Vm::boot("phase7", Duration::from_secs(900));
    vm.play_phase(7);
}
