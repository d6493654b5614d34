//! Phase 6 of shared/PHASES.md, as written (postgres:15 stands for postgres:14; node-api is the
//! lab's image with psql and ping): two networks, postgres on one, the API on both, the API
//! finds postgres by name through shibafu-dns.service, and a container on frontend alone can
//! neither resolve nor reach it.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase6_networks_between_containers_and_dns() {
    let mut vm = Vm::boot("phase6", Duration::from_secs(900));
    let made = vm.sh("./container-tool network create frontend 172.21.0.0/24; ./container-tool network create backend 172.22.0.0/24");
    vm.check(made.contains("frontend") && made.contains("backend"), &format!("network create:\n{made}"));
    // The servers run in the foreground as in phase 1; the test puts them in the background.
    vm.sh("./container-tool run --name postgres --network backend postgres:15 >/tmp/postgres.log 2>&1 &");
    vm.sh("for i in $(seq 120); do ./container-tool list | grep -q postgres && break; sleep 0.5; done");
    vm.sh("./container-tool run --name api --network backend --network frontend node-api >/tmp/api.log 2>&1 &");
    vm.sh("for i in $(seq 120); do ./container-tool list | grep -q ' api ' && break; sleep 0.5; done");
    let ping = vm.sh("./container-tool exec api ping -c 3 postgres.backend.local");
    vm.check(ping.contains("3 packets transmitted, 3 received") && ping.contains("172.22.0.2"), &format!("ping postgres.backend.local:\n{ping}"));
    // postgres makes its cluster on first start: wait for it to answer, then ask as the plan does.
    vm.sh("for i in $(seq 120); do ./container-tool exec api psql -h postgres.backend.local -U user -c 'select 1' >/dev/null 2>&1 && break; sleep 1; done");
    let row = vm.sh("./container-tool exec api psql -h postgres.backend.local -U user -c 'select 1'");
    if !row.contains("(1 row)") {
        let logs = vm.sh("tail -5 /tmp/postgres.log /tmp/api.log");
        vm.fail(&format!("psql -h postgres.backend.local -U user:\n{row}\n{logs}"));
    }
    let api = vm.sh("for i in $(seq 60); do curl -sf http://172.21.0.2:3000/ && break; sleep 1; done");
    vm.check(api.contains("\"database\":\"user\""), &format!("node-api reads from postgres:\n{api}"));
    vm.sh("./container-tool run -d --name web --network frontend busybox sleep 600 >/dev/null");
    let hidden = vm.sh("./container-tool exec web nslookup postgres.backend.local 2>&1; ./container-tool exec web ping -c 1 -W 2 172.22.0.2 2>&1 || true");
    vm.check(hidden.contains("NXDOMAIN") && hidden.contains("100% packet loss"), &format!("frontend alone neither resolves nor reaches postgres:\n{hidden}"));
    let out = vm.sh("./container-tool exec api ping -c 1 google.com");
    vm.check(out.contains("1 received"), &format!("other names go to the pretend internet:\n{out}"));
    vm.sh("./container-tool rm -f api postgres web >/dev/null");
}
