//! `./run-vm` as a user boots it: this machine's 127.0.0.1:8080 leads to the PaaS API and
//! console in the VM, 127.0.0.1:8088 to the proxy's port 80; the VM still reaches nothing out
//! here (QEMU's user network in restricted mode): not this machine, not its DNS.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use vmtests::Vm;

/// `curl ARGS` on this machine: what it printed (and its exit status).
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(["-s", "--max-time", "20"]).args(args).output().expect("curl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn host_ports_reach_the_console_and_the_proxy_and_the_vm_reaches_nothing() {
    for port in [8080, 8088] {
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "127.0.0.1:{port} is taken on this machine: the test needs it free");
    }
    // Something listening on this machine's loopback that the guest must not reach.
    let bait = TcpListener::bind("127.0.0.1:0").expect("a port");
    bait.set_nonblocking(true).expect("nonblocking");
    let bait_port = bait.local_addr().expect("addr").port();

    let mut vm = Vm::boot_forwarding("forward", Duration::from_secs(600));
    vm.check(vm.transcript().contains("http://localhost:8080/  the PaaS console"), "the banner prints the forwarded URLs");
    vm.sh("systemctl start shibafu-paas.service; for i in $(seq 100); do curl -sf localhost:8080/api/apps >/dev/null && break; sleep 0.2; done");
    vm.sh("./container-tool run -d --name web nginx >/dev/null; for i in $(seq 100); do curl -sf -H 'Host: web.localhost' http://127.0.0.1/ >/dev/null && break; sleep 0.2; done");
    let token = vm.sh("cat /var/lib/shibafu/paas/api.token").trim().to_string();
    vm.check(token.len() == 64, &format!("the API token: {token:?}"));

    // From here, a forwarded connection is not loopback in the VM: the API wants the token,
    // the console a sign-in.
    let (_, anonymous) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8080/api/apps"]);
    let (_, apps) = curl(&["-H", &format!("Authorization: Bearer {token}"), "http://127.0.0.1:8080/api/apps"]);
    let (_, console) = curl(&["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://127.0.0.1:8080/"]);
    let (_, login) = curl(&["http://127.0.0.1:8080/login"]);
    let (_, proxied) = curl(&["-H", "Host: web.localhost", "http://127.0.0.1:8088/"]);
    vm.check(anonymous == "401" && apps.trim() == "[]", &format!("the API from the host: {anonymous} / {apps}"));
    vm.check(console.starts_with("303 ") && console.contains("/login?next=") && login.contains("API token"), &format!("the console from the host: {console}"));
    vm.check(proxied.contains("Welcome to nginx!"), &format!("the proxy from the host:\n{proxied}"));

    // The guest: no route out by its link, nothing of this machine, no DNS from outside; its
    // own pretend internet still answers.
    let routes = vm.sh("ip route show default; ip route get 203.0.113.9; ip -6 route show default; ip -6 addr show dev eth0");
    vm.check(!routes.contains("eth0"), &format!("a route leads out by the forwarding link:\n{routes}"));
    let addr = vm.sh("ip -4 addr show eth0");
    vm.check(addr.contains("10.0.2.15/24"), &format!("the forwarding link:\n{addr}"));
    let (reached, _) = vm.sh_status(&format!("curl -s --max-time 5 http://10.0.2.2:{bait_port}/ -o /dev/null"));
    vm.check(reached != 0 && bait.accept().is_err(), &format!("the guest reached this machine's 127.0.0.1:{bait_port} (curl exit {reached})"));
    let dns = vm.sh("dig +time=2 +tries=1 @10.0.2.3 example.com 2>&1 || true");
    vm.check(!dns.contains("ANSWER SECTION") && !dns.contains("status: NOERROR"), &format!("QEMU's DNS answered the guest:\n{dns}"));
    let internet = vm.sh("curl -s --max-time 5 http://google.com/ | head -3");
    vm.check(!internet.is_empty(), "the lab's pretend internet still answers");
    vm.poweroff();
}
