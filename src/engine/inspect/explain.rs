//! `inspect --explain`: each field tied to the kernel object behind it, as a command a person
//! can type to see that object, with what it shows now as a comment.

use serde_json::Value;

use super::container::ContainerFacts;
use super::image::ImageFacts;
use super::Object;
use crate::network::firewall::port_rule;
use crate::storage::overlay::OverlayDirs;

/// The namespaces a container's init has, as /proc/PID/ns names them.
const NAMESPACES: [&str; 6] = ["mnt", "uts", "ipc", "pid", "net", "cgroup"];

/// The trail's lines for one object.
pub fn lines(object: &Object) -> Vec<String> {
    match object {
        Object::Container(f) => container(f),
        Object::Image(f) => image(f),
        Object::Network(doc) => network(doc),
    }
}

fn container(f: &ContainerFacts) -> Vec<String> {
    let name = &f.row.name;
    let Some(pid) = f.pid else {
        return vec![
            format!("# {name} is {}: no process, namespaces, mount or links to show; its files stay in {}", f.status, f.dir.display()),
            format!("tail {}  # LogPath: what it wrote", crate::engine::logfile::log_path(&f.dir).display()),
        ];
    };
    let mut out = vec![format!("ps -o pid,args -p {pid}  # State.Pid: {name}'s init, as the host numbers it")];
    for ns in NAMESPACES {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).map(|l| l.display().to_string()).unwrap_or_else(|e| format!("unreadable: {e}"));
        out.push(format!("readlink /proc/{pid}/ns/{ns}  # {link}: its {ns} namespace"));
    }
    out.push(seccomp_line(f, pid));
    if let Some(maps) = f.spec.as_ref().and_then(crate::engine::userns::of_spec) {
        let (inside, outside, count) = maps.uids.first().copied().unwrap_or_default();
        out.push(format!("cat /proc/{pid}/uid_map /proc/{pid}/gid_map  # {inside} {outside} {count}: its root is host uid {outside}, who owns nothing on the host (ps -o uid= -p {pid})"));
    }
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("?").to_string();
    out.push(format!("cat /proc/{pid}/cgroup  # 0::{path}: its cgroup"));
    if let Some(mount) = crate::runtime::cgroups::v2_mount() {
        out.push(format!("cat {}{path}/cgroup.procs  # its processes (HostConfig.Memory: memory.max, NanoCpus: cpu.max, PidsLimit: pids.max)", mount.display()));
    }
    let dirs = OverlayDirs::in_dir(&f.dir);
    out.push(format!("findmnt -o TARGET,FSTYPE,OPTIONS {}  # GraphDriver.Data: the overlay of LowerDir (its layers) and UpperDir", dirs.merged.display()));
    out.push(format!("grep {} /proc/self/mountinfo  # the same mount, as the kernel lists it", dirs.merged.display()));
    out.push(format!("findmnt --task {pid} /etc/resolv.conf  # ResolvConfPath, bound in ({} and {} too)", f.dir.join("hosts").display(), f.dir.join("hostname").display()));
    if let Some(sandbox) = &f.sandbox {
        out.push(format!("findmnt {}  # NetworkSettings.SandboxKey: a bind mount that holds its network namespace", sandbox.display()));
    }
    for n in &f.networks {
        let Some(lease) = &n.lease else { continue };
        let net = &n.network;
        out.push(format!(
            "nsenter -t {pid} -n ip addr show {}  # Networks.{}: IPAddress {}/{}, MacAddress {}",
            lease.interface,
            net.name,
            lease.address,
            net.subnet.prefix_len(),
            n.mac.as_deref().unwrap_or("?")
        ));
        out.push(format!("ip link show master {}  # {} is its port on bridge {}: the host end of {}'s veth pair", net.bridge, lease.host_veth, net.bridge, lease.interface));
    }
    if !f.networks.is_empty() {
        let gateway = f.networks.iter().find(|n| !n.network.internal && n.lease.is_some()).map(|n| n.network.gateway.to_string()).unwrap_or_else(|| "none".into());
        out.push(format!("nsenter -t {pid} -n ip route  # default via {gateway} (Networks.*.Gateway)"));
        if f.networks.len() > 1 {
            out.push(format!("nsenter -t {pid} -n ip rule  # replies leave by the interface their request came in on"));
        }
    }
    for p in &f.ports {
        let Ok(map) = crate::engine::network::port_map(p) else { continue };
        let rule = port_rule(&map);
        out.push(format!(
            "iptables -t {} -S {} | grep -- '--dport {} '  # NetworkSettings.Ports {}/{}: -A {} {}",
            rule.table, rule.chain, p.host_port, p.container_port, p.protocol, rule.chain, rule.spec
        ));
    }
    out
}

/// Where the kernel shows the process's seccomp mode, and which profile made its filter.
fn seccomp_line(f: &ContainerFacts, pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(str::trim).unwrap_or("?");
    let meaning = match mode {
        "0" => "no filter",
        "2" => "a filter",
        _ => "?",
    };
    let profile = f.spec.as_ref().and_then(|s| s.annotations().as_ref()).and_then(|a| a.get(crate::engine::security::SECCOMP_ANNOTATION).cloned()).unwrap_or_else(|| "?".into());
    format!("grep -E '^(Seccomp|NoNewPrivs|CapEff)' /proc/{pid}/status  # Seccomp: {mode} ({meaning}; HostConfig.SecurityOpt seccomp={profile}), the capabilities it holds")
}

fn image(f: &ImageFacts) -> Vec<String> {
    let mut out = Vec::new();
    for (k, l) in f.layers.iter().enumerate() {
        out.push(format!("ls {}  # RootFS.Layers[{k}] {}: unpacked once, an overlay lower dir for every container of it", l.dir, l.diff_id));
        out.push(format!("sha256sum {}  # {}: the layer as stored", l.blob, l.digest));
    }
    out
}

fn network(doc: &Value) -> Vec<String> {
    let bridge = doc["network_interface"].as_str().unwrap_or("?");
    let subnet = doc["subnets"][0]["subnet"].as_str().unwrap_or("?");
    let gateway = doc["subnets"][0]["gateway"].as_str().unwrap_or("?");
    vec![
        format!("ip addr show {bridge}  # the bridge, with the gateway {gateway} (made by the first run on it)"),
        format!("ip link show master {bridge}  # its containers' veths (containers)"),
        format!("iptables -t nat -S SHIBAFU-POSTROUTING | grep -- '{subnet}'  # NAT for {subnet}"),
        format!("iptables -S SHIBAFU-FORWARD | grep -- '{bridge}'  # what may be forwarded to and from it"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_explained_by_its_namespaces_and_cgroup() {
        let me = std::process::id() as i32;
        let row = crate::state::containers::ContainerRow {
            id: "c".repeat(64),
            name: "web".into(),
            image: "busybox:latest".into(),
            command: vec!["sh".into()],
            layers: vec![],
            runtime: "shibafu".into(),
            created_at: String::new(),
            state: "running".into(),
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            finished_at: None,
            network: "none".into(),
            hostname: String::new(),
            aliases: vec![],
            ..Default::default()
        };
        let facts = ContainerFacts {
            row,
            dir: "/var/lib/shibafu/containers/c".into(),
            spec: None,
            status: "running",
            error: String::new(),
            pid: Some(me),
            started_at: None,
            image_id: String::new(),
            image_config: Value::Null,
            networks: vec![],
            ports: vec![],
            layers: vec![],
            init_layer: None,
            sandbox: None,
            root: "/var/lib/shibafu".into(),
        };
        let got = container(&facts).join("\n");
        let net = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert!(got.contains(&format!("readlink /proc/{me}/ns/net  # {}: its net namespace", net.display())), "{got}");
        assert!(got.contains(&format!("cat /proc/{me}/cgroup  # 0::")), "{got}");
        assert!(!got.contains("ip route"), "no network, no routes: {got}");
        let stopped = ContainerFacts { pid: None, status: "exited", ..facts };
        assert!(container(&stopped).join("\n").contains("web is exited: no process"));
    }

    #[test]
    fn a_network_is_explained_by_its_bridge_and_rules() {
        let doc = serde_json::json!({"network_interface": "br-backend", "subnets": [{"subnet": "172.22.0.0/24", "gateway": "172.22.0.1"}]});
        let got = network(&doc).join("\n");
        assert!(got.contains("ip addr show br-backend"), "{got}");
        assert!(got.contains("grep -- '172.22.0.0/24'"), "{got}");
    }
}
