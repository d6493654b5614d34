//! Phase 7 of shared/PHASES.md, as written: the integrated runtime. The lab's nginx image
//! stands for the web app: it is pushed to the appliance's own registry (its unit) as
//! localhost:5000/apps/webapp:latest and removed locally, then `run --image` pulls it (its
//! layers are in the cache), makes the missing network `production` from the pool, publishes
//! port 80, and the app answers on that port and through the proxy; `inspect` shows the
//! container's address, ports, layers and networks; `logs -f` follows its requests.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase7_the_integrated_runtime() {
    let mut vm = Vm::boot("phase7", Duration::from_secs(900));
    vm.sh("systemctl start shibafu-registry.service; for i in $(seq 50); do curl -sf localhost:5000/v2/ >/dev/null && break; sleep 0.2; done");
    let pushed = vm.sh("./container-tool push nginx localhost:5000/apps/webapp:latest 2>&1");
    vm.check(pushed.contains("localhost:5000/apps/webapp:latest sha256:"), &format!("push to the appliance's registry:\n{pushed}"));
    vm.sh("./container-tool image rm localhost:5000/apps/webapp:latest >/dev/null 2>&1 || true");
    let run = vm.sh(
        "./container-tool run \\\n  --image localhost:5000/apps/webapp:latest \\\n  --network production \\\n  --publish 80 \\\n  --env NODE_ENV=production \\\n  --name webapp 2>&1",
    );
    vm.check(run.contains("Already exists") || run.contains("already exists"), &format!("the pull takes the layers from the cache:\n{run}"));
    vm.check(run.contains("network production created: 10.89.0.0/24"), &format!("the missing network is made from the pool:\n{run}"));
    vm.check(run.contains("Container webapp started, accessible at localhost:30001"), &format!("run:\n{run}"));
    vm.sh("for i in $(seq 60); do curl -s -o /dev/null http://localhost:30001 && break; sleep 1; done");
    let page = vm.sh("curl -s http://localhost:30001/");
    vm.check(page.contains("Welcome to nginx!"), &format!("the app on its published port:\n{page}"));
    let proxied = vm.sh("curl -s -H 'Host: webapp.localhost' http://127.0.0.1/");
    vm.check(proxied.contains("Welcome to nginx!"), &format!("the app through the proxy:\n{proxied}"));
    let inspect = vm.sh("./container-tool inspect webapp");
    for want in ["\"Name\": \"/webapp\"", "\"Running\": true", "\"IPAddress\": \"10.89.0.2\"", "\"production\"", "\"HostPort\": \"30001\"", "\"Name\": \"overlay\"", "NODE_ENV=production", "localhost:5000/apps/webapp:latest"] {
        vm.check(inspect.contains(want), &format!("inspect should show {want}:\n{inspect}"));
    }
    let pid = vm.sh("./container-tool inspect --format '{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' webapp");
    let own = vm.sh("pid=$(./container-tool inspect --format '{{.State.Pid}}' webapp); nsenter -t $pid -n ip -4 -o addr show eth0");
    vm.check(pid.contains("10.89.0.2") && own.contains("10.89.0.2/24"), &format!("inspect --format, and the kernel agrees:\n{pid}\n{own}"));
    let logs = vm.sh("timeout 3 ./container-tool logs -f webapp; true");
    vm.check(logs.contains("GET / HTTP/1.1"), &format!("logs -f shows the requests:\n{logs}"));
    // The lab's target wants it (as every lab unit): it ran at this boot and stays active.
    let unit = vm.sh("systemctl is-active shibafu-restart.service; systemctl show -p WantedBy shibafu-restart.service");
    vm.check(unit.contains("active") && unit.contains("shibafu-lab.target"), &format!("always containers come back at boot through shibafu-restart.service:\n{unit}"));
    vm.sh("./container-tool rm -f webapp >/dev/null; ./container-tool network rm production");
}
