//! Phase 4 of shared/PHASES.md, as written (node-app = the lab's node-app image, a small server
//! on port 3000): published ports in 30000-32767, DNAT from the host, and the reverse proxy.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase4_port_mapping_and_publishing_services() {
    let mut vm = Vm::boot("phase4", Duration::from_secs(900));
    let web = vm.sh("./container-tool run --name web --publish 80 nginx");
    vm.check(web.contains("Container web started, accessible at localhost:30001"), &format!("run --publish 80:\n{web}"));
    let api = vm.sh("./container-tool run --name api --publish 8080:3000 node-app");
    vm.check(api.contains("Container api started, accessible at localhost:8080"), &format!("run --publish 8080:3000:\n{api}"));
    // The servers take a moment to start under TCG.
    vm.sh("for i in $(seq 60); do curl -s -o /dev/null http://localhost:30001 && curl -s -o /dev/null http://localhost:8080 && break; sleep 1; done");
    let page = vm.sh("curl http://localhost:30001");
    vm.check(page.contains("Welcome to nginx!"), &format!("nginx's welcome page:\n{page}"));
    let app = vm.sh("curl http://localhost:8080");
    vm.check(app.contains("Hello from node-app"), &format!("the node app's response:\n{app}"));
    let proxied = vm.sh("curl -s -H 'Host: web.localhost' http://127.0.0.1/");
    vm.check(proxied.contains("Welcome to nginx!"), &format!("the proxy should route web.localhost to nginx:\n{proxied}"));
    let ports = vm.sh("./container-tool port web; ./container-tool list");
    vm.check(ports.contains("80/tcp -> 0.0.0.0:30001") && ports.contains("0.0.0.0:8080->3000/tcp"), &format!("port and list:\n{ports}"));
    let (status, taken) = vm.sh_status("./container-tool run --publish 8080:80 nginx 2>&1");
    vm.check(status == 125 && taken.contains("already published by container api"), &format!("a taken port is an error:\n{taken}"));
    vm.sh("./container-tool rm -f web api");
    let rules = vm.sh("iptables-save -t nat | grep -c -- '-j DNAT' || true");
    vm.check(rules.trim() == "0", &format!("rm should remove the DNAT rules: {rules}"));
}
