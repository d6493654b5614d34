//! `scripts/bench-start-vm [N]`: the runtime half of `scripts/bench-start` inside a throwaway
//! appliance, where cgroup v2 has its controllers and every runtime makes a cgroup (this
//! machine's hybrid cgroups keep crun from making one). Sends scripts/lib/bench-start-in-vm.sh
//! over the serial console and prints what it prints.

use std::time::Duration;

use base64::Engine;

use vmtests::{repo, Vm};

fn main() {
    let runs: u32 = std::env::args().nth(1).map(|n| n.parse().expect("N is a number of runs")).unwrap_or(20);
    let script = std::fs::read(repo().join("scripts/lib/bench-start-in-vm.sh")).expect("scripts/lib/bench-start-in-vm.sh");
    let encoded = base64::engine::general_purpose::STANDARD.encode(script);
    let limit = Duration::from_secs(300 + 10 * u64::from(runs));
    let mut vm = Vm::boot("bench-start", limit);
    // Lines well under the terminal's 4095 characters, as base64: nothing in them is the shell's.
    vm.sh(": > /tmp/bench-start.b64");
    for piece in encoded.as_bytes().chunks(1000) {
        vm.sh(&format!("echo {} >> /tmp/bench-start.b64", std::str::from_utf8(piece).expect("base64 is ASCII")));
    }
    vm.sh("base64 -d /tmp/bench-start.b64 > /tmp/bench-start.sh");
    vm.send(&format!("bash /tmp/bench-start.sh {runs} 2>&1; echo bench-start-''done"));
    let out = vm.wait_for("bench-start-done", limit);
    print!("{}", out.trim_start());
}
