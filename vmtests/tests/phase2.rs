//! Phase 2 of shared/PHASES.md, as written (alpine = the lab's busybox image): the bridge ctr0,
//! a veth pair and an address per container, NAT out to the pretend internet.

use std::time::Duration;

use vmtests::Vm;

#[test]
fn phase2_basic_container_networking() {
    let mut vm = Vm::boot("phase2", Duration::from_secs(600));
    let link = vm.sh("ip link show ctr0");
    vm.check(link.contains("ctr0: <") && link.contains(",UP"), &format!("the appliance makes ctr0 at boot:\n{link}"));
    let addr = vm.sh("ip addr show ctr0");
    vm.check(addr.contains("inet 172.20.0.1/24"), &format!("ctr0 should hold 172.20.0.1/24:\n{addr}"));
    let ping = vm.sh("./container-tool run --network bridge busybox ping -c 3 google.com");
    vm.check(ping.contains("3 packets transmitted, 3 packets received, 0% packet loss"), &format!("ping through our NAT:\n{ping}"));
    // The plan's `exec mycontainer` needs a running container of that name.
    vm.sh("./container-tool run -d --name mycontainer busybox sleep 1000");
    let eth0 = vm.sh("./container-tool exec mycontainer ip addr show eth0");
    vm.check(eth0.contains("inet 172.20.0.2/24"), &format!("the first container's address:\n{eth0}"));
    // The pretend internet saw the VM's address, not the container's: that is the MASQUERADE.
    let seen = vm.sh("./container-tool exec mycontainer wget -qO- http://google.com/cgi-bin/whoami");
    vm.check(seen.trim() == "198.51.100.254", &format!("the internet should see 198.51.100.254:\n{seen}"));
    let counted = vm.sh("iptables -t nat -L SHIBAFU-POSTROUTING -v -n -x | awk '$3 == \"MASQUERADE\" && $7 == \"!ctr0\" {print $1}'");
    vm.check(counted.trim().parse::<u64>().is_ok_and(|n| n > 0), &format!("the MASQUERADE rule should count packets: {counted}"));
    vm.sh("./container-tool rm -f mycontainer");
    let leftovers = vm.sh("ip -o link | grep -c veth || true");
    vm.check(leftovers.trim() == "0", &format!("rm should remove the veth: {leftovers}"));
}
