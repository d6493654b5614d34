//! A container as `docker inspect` shows one, where the concept is shared, made from the
//! facts `container` gathered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::Serialize;
use serde_json::{json, Value};

use super::container::{ContainerFacts, LayerFacts, IMAGE_ID_ANNOTATION};
use crate::state::network::PortRow;
use crate::storage::overlay::OverlayDirs;

/// Docker's time for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The document, as Docker names its fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerDoc {
    id: String,
    created: String,
    path: String,
    args: Vec<String>,
    state: StateDoc,
    image: String,
    resolv_conf_path: PathBuf,
    hostname_path: PathBuf,
    hosts_path: PathBuf,
    log_path: PathBuf,
    name: String,
    restart_count: u64,
    driver: &'static str,
    platform: &'static str,
    host_config: HostConfigDoc,
    graph_driver: GraphDriverDoc,
    mounts: Vec<MountDoc>,
    config: ConfigDoc,
    network_settings: NetworkSettingsDoc,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateDoc {
    status: &'static str,
    running: bool,
    paused: bool,
    restarting: bool,
    pid: i32,
    exit_code: i32,
    error: String,
    started_at: String,
    finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfigDoc {
    network_mode: String,
    port_bindings: BTreeMap<String, Vec<PortBindingDoc>>,
    restart_policy: RestartPolicyDoc,
    runtime: String,
    memory: i64,
    nano_cpus: i64,
    pids_limit: Option<i64>,
    security_opt: Vec<String>,
    privileged: bool,
    userns_mode: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RestartPolicyDoc {
    name: String,
    maximum_retry_count: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PortBindingDoc {
    host_ip: String,
    host_port: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GraphDriverDoc {
    name: &'static str,
    data: BTreeMap<&'static str, String>,
    layers: Vec<LayerFacts>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct MountDoc {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    source: String,
    destination: String,
    mode: String,
    #[serde(rename = "RW")]
    rw: bool,
    propagation: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigDoc {
    hostname: String,
    user: String,
    tty: bool,
    env: Vec<String>,
    cmd: Vec<String>,
    image: String,
    working_dir: String,
    entrypoint: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
    exposed_ports: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettingsDoc {
    sandbox_key: String,
    ports: BTreeMap<String, Vec<PortBindingDoc>>,
    networks: BTreeMap<String, EndpointDoc>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EndpointDoc {
    #[serde(rename = "NetworkID")]
    network_id: String,
    gateway: String,
    #[serde(rename = "IPAddress")]
    ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    ip_prefix_len: u8,
    mac_address: String,
    aliases: Vec<String>,
    #[serde(rename = "DNSNames")]
    dns_names: Vec<String>,
}

/// Turns the facts into the document.
pub fn document(f: &ContainerFacts) -> ContainerDoc {
    let process = f.spec.as_ref().and_then(|s| s.process().clone());
    let args = process.as_ref().and_then(|p| p.args().clone()).unwrap_or_else(|| f.row.command.clone());
    let dirs = OverlayDirs::in_dir(&f.dir);
    let ports = port_map(&f.ports);
    ContainerDoc {
        id: f.row.id.clone(),
        created: f.row.created_at.clone(),
        path: args.first().cloned().unwrap_or_default(),
        args: args.iter().skip(1).cloned().collect(),
        state: StateDoc {
            status: f.status,
            running: f.status == "running",
            paused: false,
            restarting: f.row.state == "restarting",
            pid: f.pid.unwrap_or(0),
            exit_code: f.row.exit_code.unwrap_or(0),
            error: f.error.clone(),
            started_at: f.started_at.clone().or_else(|| f.row.started_at.clone()).unwrap_or_else(|| ZERO_TIME.into()),
            finished_at: f.row.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            // Absent for a container without a check, as Docker's.
            health: f.row.health.as_ref().and_then(|h| serde_json::to_value(h).ok()),
        },
        image: f.image_id.clone(),
        resolv_conf_path: f.dir.join("resolv.conf"),
        hostname_path: f.dir.join("hostname"),
        hosts_path: f.dir.join("hosts"),
        log_path: crate::engine::logfile::log_path(&f.dir),
        name: format!("/{}", f.row.name),
        restart_count: u64::from(f.row.restart_count),
        driver: "overlay",
        platform: "linux",
        host_config: host_config(f, ports.clone()),
        graph_driver: GraphDriverDoc {
            name: "overlay",
            data: BTreeMap::from([
                // Top first, as the overlay stacks them (Docker lists its "-init" layer first too).
                ("LowerDir", f.init_layer.iter().chain(f.layers.iter().rev().map(|l| &l.dir)).map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")),
                ("UpperDir", dirs.upper.display().to_string()),
                ("WorkDir", dirs.work.display().to_string()),
                ("MergedDir", dirs.merged.display().to_string()),
            ]),
            layers: f.layers.clone(),
        },
        mounts: f.spec.as_ref().map(|s| user_mounts(s, &f.dir, &f.root)).unwrap_or_default(),
        config: config(f, &args),
        network_settings: NetworkSettingsDoc {
            sandbox_key: f.sandbox.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            ports,
            networks: endpoints(f),
        },
    }
}

/// `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "30001"}]}`.
fn port_map(ports: &[PortRow]) -> BTreeMap<String, Vec<PortBindingDoc>> {
    let mut map: BTreeMap<String, Vec<PortBindingDoc>> = BTreeMap::new();
    for p in ports {
        map.entry(format!("{}/{}", p.container_port, p.protocol)).or_default().push(PortBindingDoc { host_ip: p.host_ip.clone(), host_port: p.host_port.to_string() });
    }
    map
}

fn host_config(f: &ContainerFacts, ports: BTreeMap<String, Vec<PortBindingDoc>>) -> HostConfigDoc {
    let resources = f.spec.as_ref().and_then(|s| s.linux().as_ref()).and_then(|l| l.resources().clone());
    let memory = resources.as_ref().and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).unwrap_or(0);
    let cpu = resources.as_ref().and_then(|r| r.cpu().clone());
    let nano_cpus = cpu.and_then(|c| Some(c.quota()? * 1_000_000_000 / c.period()?.max(1) as i64)).unwrap_or(0);
    let pids_limit = resources.as_ref().and_then(|r| r.pids().as_ref()).map(|p| p.limit());
    HostConfigDoc {
        network_mode: f.row.network.split(',').next().unwrap_or_default().to_string(),
        port_bindings: ports,
        restart_policy: restart_policy(&f.row.restart_policy),
        runtime: f.row.runtime.clone(),
        memory,
        nano_cpus,
        pids_limit,
        security_opt: f.spec.as_ref().map(crate::engine::security::SecurityOpts::shown).unwrap_or_default(),
        privileged: f.spec.as_ref().and_then(|s| s.annotations().as_ref()).is_some_and(|a| a.contains_key(crate::engine::spec::PRIVILEGED_ANNOTATION)),
        userns_mode: f.spec.as_ref().and_then(|s| s.annotations().as_ref()).and_then(|a| a.get(crate::engine::userns::ANNOTATION).cloned()).unwrap_or_default(),
    }
}

/// `on-failure:3` -> {Name: on-failure, MaximumRetryCount: 3}, as Docker's.
fn restart_policy(text: &str) -> RestartPolicyDoc {
    match crate::engine::restart::RestartPolicy::parse(text) {
        Ok(crate::engine::restart::RestartPolicy::OnFailure(n)) => RestartPolicyDoc { name: "on-failure".into(), maximum_retry_count: n },
        _ => RestartPolicyDoc { name: if text.is_empty() { "no".into() } else { text.into() }, maximum_retry_count: 0 },
    }
}

fn config(f: &ContainerFacts, args: &[String]) -> ConfigDoc {
    let process = f.spec.as_ref().and_then(|s| s.process().clone());
    let image_entrypoint: Vec<String> = serde_json::from_value(f.image_config["Entrypoint"].clone()).unwrap_or_default();
    let (entrypoint, cmd) = if !image_entrypoint.is_empty() && args.starts_with(&image_entrypoint) {
        (Some(image_entrypoint.clone()), args[image_entrypoint.len()..].to_vec())
    } else {
        (None, args.to_vec())
    };
    let user = process.as_ref().map(|p| (p.user().uid(), p.user().gid())).filter(|ids| *ids != (0, 0)).map(|(u, g)| format!("{u}:{g}")).unwrap_or_default();
    let mut exposed: BTreeMap<String, Value> = f.image_config["ExposedPorts"].as_object().map(|m| m.keys().map(|k| (k.clone(), json!({}))).collect()).unwrap_or_default();
    for p in &f.ports {
        exposed.insert(format!("{}/{}", p.container_port, p.protocol), json!({}));
    }
    let labels = labels(f.spec.as_ref());
    ConfigDoc {
        hostname: f.row.hostname.clone(),
        user,
        tty: process.as_ref().and_then(|p| p.terminal()).unwrap_or(false),
        env: crate::engine::hide_secret_env(process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default(), &labels),
        cmd,
        image: f.row.image.clone(),
        working_dir: process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default(),
        entrypoint,
        labels,
        exposed_ports: exposed,
    }
}

/// The container's labels: its config.json annotations, but for our own records.
fn labels(spec: Option<&Spec>) -> BTreeMap<String, String> {
    let annotations = spec.and_then(|s| s.annotations().clone()).unwrap_or_default();
    annotations.into_iter().filter(|(k, _)| k != IMAGE_ID_ANNOTATION && !k.starts_with("io.shibafu.")).collect()
}

/// One entry per network: its address, gateway, MAC and names there. With `--network none`
/// or `host`, one empty entry of that name, as Docker shows.
fn endpoints(f: &ContainerFacts) -> BTreeMap<String, EndpointDoc> {
    let mut out = BTreeMap::new();
    if f.networks.is_empty() {
        out.insert(f.row.network.clone(), EndpointDoc::default());
    }
    for n in &f.networks {
        let mut names = vec![f.row.name.clone()];
        for extra in std::iter::once(&f.row.hostname).chain(&f.row.aliases) {
            if !extra.is_empty() && !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        let lease = n.lease.as_ref();
        out.insert(
            n.network.name.clone(),
            EndpointDoc {
                network_id: crate::engine::networks::network_id(&n.network.name),
                gateway: lease.map(|_| n.network.gateway.to_string()).unwrap_or_default(),
                ip_address: lease.map(|l| l.address.clone()).unwrap_or_default(),
                ip_prefix_len: lease.map_or(0, |_| n.network.subnet.prefix_len()),
                mac_address: n.mac.clone().unwrap_or_default(),
                aliases: f.row.aliases.clone(),
                dns_names: names,
            },
        );
    }
    out
}

/// The mounts the user asked for: every mount of config.json but the default ones every
/// container has (/proc, /dev, /sys, ...) and the /etc files the engine writes.
fn user_mounts(spec: &Spec, dir: &Path, root: &Path) -> Vec<MountDoc> {
    let defaults: Vec<PathBuf> = crate::runtime::spec::default_spec().mounts().clone().unwrap_or_default().iter().map(|m| m.destination().clone()).collect();
    let volumes = root.join("volumes");
    let mut out = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let source = m.source().clone().unwrap_or_default();
        if defaults.contains(m.destination()) || source.parent() == Some(dir) {
            continue;
        }
        let options = m.options().clone().unwrap_or_default();
        let volume = source.strip_prefix(&volumes).ok().and_then(|rest| rest.components().next()).map(|c| c.as_os_str().to_string_lossy().into_owned());
        let kind = match (&volume, m.typ().as_deref()) {
            (Some(_), _) => "volume",
            (None, Some("tmpfs")) => "tmpfs",
            (None, Some(other)) if other != "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") => other,
            _ => "bind",
        };
        out.push(MountDoc {
            kind: kind.to_string(),
            name: volume,
            source: source.display().to_string(),
            destination: m.destination().display().to_string(),
            mode: options.iter().find(|o| *o == "ro" || *o == "rw").cloned().unwrap_or_default(),
            rw: !options.iter().any(|o| o == "ro"),
            propagation: options.iter().find(|o| ["rprivate", "private", "rshared", "shared", "rslave", "slave"].contains(&o.as_str())).cloned().unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::container::NetworkFacts;
    use super::*;
    use crate::engine::network::Attached;
    use crate::network::{Network, NetworkMode};
    use crate::state::containers::ContainerRow;
    use crate::state::network::LeaseRow;
    use crate::engine::spec::{container_spec, Limits, SpecInput};
    use crate::image::ImageConfig;

    fn facts() -> ContainerFacts {
        let root = PathBuf::from("/var/lib/shibafu");
        let id = "ab".repeat(32);
        let dir = root.join("containers").join(&id);
        let image = ImageConfig { entrypoint: vec!["/entry".into()], cmd: vec!["serve".into()], ..Default::default() };
        let mut spec = container_spec(&SpecInput {
            image: &image,
            command: &[],
            env: &["NODE_ENV=production".to_string()],
            rootfs: dir.join("rootfs"),
            rootfs_on_disk: Path::new("/nonexistent"),
            hostname: id[..12].to_string(),
            terminal: false,
            limits: &Limits { memory: Some(64 << 20), cpus: Some(0.5), pids: Some(100) },
            cgroup: Some(PathBuf::from("shibafu").join(&id)),
            nofile: 1024,
            process: &crate::engine::spec::ProcessOverrides::default(),
        })
        .unwrap();
        let files = ["hostname", "hosts", "resolv.conf"].map(|f| (Path::new("/etc").join(f), dir.join(f)));
        let attached = Attached { netns: Some(root.join("run/netns").join(&id)), files: files.to_vec(), ports: Vec::new() };
        crate::engine::spec::apply_network(&mut spec, &NetworkMode::Bridges(vec!["production".into()]), &attached);
        crate::engine::spec::annotate(&mut spec, IMAGE_ID_ANNOTATION, "sha256:image");
        crate::engine::spec::annotate(&mut spec, "tier", "front");
        let mut mounts = spec.mounts().clone().unwrap();
        mounts.push(oci_spec::runtime::MountBuilder::default().destination("/data").typ("bind").source(root.join("volumes/db/_data")).options(vec!["rbind".into(), "ro".into()]).build().unwrap());
        spec.set_mounts(Some(mounts));
        let network = Network::parse("production", "br-production", "10.89.0.0/24", "10.89.0.1").unwrap();
        let lease = LeaseRow { network: "production".into(), address: "10.89.0.2".into(), container_id: id.clone(), interface: "eth0".into(), host_veth: "vethababababa0".into() };
        ContainerFacts {
            row: ContainerRow {
                id: id.clone(),
                name: "webapp".into(),
                image: "localhost:5000/apps/webapp:latest".into(),
                command: vec!["/entry".into(), "serve".into()],
                layers: vec!["sha256:l1".into(), "sha256:l2".into()],
                runtime: "shibafu".into(),
                created_at: "2026-01-02T03:04:05Z".into(),
                state: "running".into(),
                monitor_pid: Some(99),
                monitor_start: Some(1),
                exit_code: None,
                finished_at: None,
                network: "production".into(),
                hostname: id[..12].to_string(),
                aliases: vec!["web".into()],
                ..Default::default()
            },
            spec: Some(spec),
            status: "running",
            error: String::new(),
            pid: Some(4242),
            started_at: Some("2026-01-02T03:04:06.000Z".into()),
            image_id: "sha256:image".into(),
            image_config: json!({"Entrypoint": ["/entry"], "Cmd": ["serve"], "ExposedPorts": {"8080/tcp": {}}}),
            networks: vec![NetworkFacts { network, lease: Some(lease), mac: Some("02:42:0a:59:00:02".into()) }],
            ports: vec![PortRow { container_id: id.clone(), host_ip: "0.0.0.0".into(), host_port: 30001, container_ip: "10.89.0.2".into(), container_port: 80, protocol: "tcp".into() }],
            layers: ["sha256:l1", "sha256:l2"].iter().map(|d| LayerFacts { diff_id: d.to_string(), digest: format!("{d}-blob"), dir: root.join("layers").join(&d[7..]) }).collect(),
            init_layer: Some(root.join("init/755-0-0")),
            sandbox: Some(root.join("run/netns").join(&id)),
            dir,
            root,
        }
    }

    #[test]
    fn a_running_container_document() {
        insta::assert_json_snapshot!(document(&facts()));
    }

    #[test]
    fn a_stopped_container_has_no_pid_and_empty_endpoints() {
        let mut f = facts();
        f.status = "exited";
        f.pid = None;
        f.started_at = None;
        f.row.exit_code = Some(3);
        f.row.finished_at = Some("2026-01-02T04:00:00Z".into());
        f.networks[0].lease = None;
        f.networks[0].mac = None;
        f.ports.clear();
        f.sandbox = None;
        let doc = serde_json::to_value(document(&f)).unwrap();
        assert_eq!(doc["State"]["Pid"], 0);
        assert_eq!(doc["State"]["ExitCode"], 3);
        assert_eq!(doc["State"]["StartedAt"], ZERO_TIME);
        assert_eq!(doc["NetworkSettings"]["Networks"]["production"]["IPAddress"], "");
        assert_eq!(doc["NetworkSettings"]["Ports"], json!({}));
    }

    #[test]
    fn host_and_none_show_one_empty_endpoint() {
        let mut f = facts();
        f.row.network = "host".into();
        f.networks.clear();
        let doc = serde_json::to_value(document(&f)).unwrap();
        assert_eq!(doc["NetworkSettings"]["Networks"]["host"]["IPAddress"], "");
        assert_eq!(doc["HostConfig"]["NetworkMode"], "host");
    }
}
