//! A container's network, set up before it starts and torn down when it stops: its namespace,
//! a veth pair and an address on each bridge network, published ports with their DNAT rules,
//! and /etc/hostname, /etc/hosts and /etc/resolv.conf. Everything is recorded before it is
//! made, so `detach_network` (on a failed run, on exit, on rm, on gc) undoes it exactly.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::{Engine, EngineError, Result};
use crate::network::firewall::iptables::Iptables;
use crate::network::firewall::FirewallDriver;
use crate::network::netlink::{self, VethPlan};
use crate::network::ports::{self, PortMap, PortRequest, Protocol};
use crate::network::{files, ipam, lock, netns, Network, NetworkError, NetworkMode, DEFAULT_NETWORK, DNS_ZONE};
use crate::state::containers::DnsSettings;
use crate::state::network::{LeaseRow, NetworkRow, PortRow};

/// What `run` asked of the network.
pub struct NetworkRequest<'a> {
    /// The container's ID.
    pub id: &'a str,
    /// Its name and host name, for /etc/hosts.
    pub names: [&'a str; 2],
    /// How it is connected.
    pub mode: &'a NetworkMode,
    /// `-p` requests.
    pub publish: &'a [PortRequest],
    /// `--add-host` entries for its /etc/hosts.
    pub extra_hosts: &'a [files::ExtraHost],
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: &'a DnsSettings,
}

/// A container's network, as set up.
#[derive(Debug, Default)]
pub struct Attached {
    /// The namespace file to join (bridge networks), if any.
    pub netns: Option<PathBuf>,
    /// Files to bind into the container: (path inside, file on the host).
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Its published ports.
    pub ports: Vec<PortMap>,
}

impl From<NetworkError> for EngineError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Invalid(text) => EngineError::Invalid(text),
            other => EngineError::Network(other),
        }
    }
}

/// The routing tables of a multi-homed container's interfaces: eth0 uses 100, eth1 101, ...
const POLICY_TABLES: u32 = 100;

impl Engine {
    /// Sets up a container's network. On failure, the caller's undo calls `detach_network`.
    pub fn attach_network(&self, req: &NetworkRequest) -> Result<Attached> {
        let mut attached = Attached::default();
        let mut first_address = None;
        let mut resolver = None;
        let mut gateway = None;
        if !req.dns.is_empty() && *req.mode == NetworkMode::Host {
            return Err(EngineError::Invalid("--dns, --dns-search and --dns-option do not go with --network host: the container uses the host's resolv.conf".into()));
        }
        if let NetworkMode::Bridges(names) = req.mode {
            let networks = names.iter().map(|n| self.network_named(n)).collect::<Result<Vec<_>>>()?;
            resolver = Resolver::for_networks(&networks);
            gateway = networks.first().map(|n| n.gateway);
            let path = netns::path_for(&self.run_dir, req.id);
            netns::create(&path)?;
            attached.netns = Some(path.clone());
            crate::fault::point("run:netns");
            // Under the lock: `network rm` and `prune` must not take a bridge away mid-connect.
            let lock = lock::take(&self.run_dir)?;
            // The default route goes through the first network that has a way out.
            let routed = networks.iter().position(|n| !n.internal);
            let multi = networks.len() > 1;
            for (k, net) in networks.iter().enumerate() {
                self.ensure_network_locked(net)?;
                let address = self.connect(req.id, k, net, &path, routed == Some(k), multi)?;
                first_address.get_or_insert(address);
                crate::fault::point("run:connected");
            }
            attached.ports = self.publish(req.id, first_address.expect("one network at least"), req.publish)?;
            crate::fault::point("run:published");
            drop(lock);
        } else if !req.publish.is_empty() {
            return Err(EngineError::Invalid(format!("--publish needs a bridge network, not --network {}", req.mode)));
        }
        attached.files = self.write_files(req, first_address, gateway, resolver.as_ref())?;
        Ok(attached)
    }

    /// Tears a container's network down; safe to call again, and for a container with none.
    /// Every step is tried even when one fails (the first failure is returned); a port's row
    /// goes only once its rule is gone, so a later try still knows to remove it.
    pub fn detach_network(&self, id: &str) -> Result<()> {
        self.begin_detach(id).complete()
    }

    /// The first half of `detach_network`: the ports are unpublished and the namespace is
    /// dropped. The kernel frees its links meanwhile (see `Detaching`), so the caller can do
    /// other work, such as removing the rootfs, before `Detaching::complete`.
    pub fn begin_detach(&self, id: &str) -> Detaching<'_> {
        let mut d = Detaching { engine: self, id: id.to_string(), leases: Vec::new(), watch: None, first_error: None };
        let unpublished = self.unpublish(id);
        d.note(unpublished);
        match self.db.leases_of(id) {
            Ok(leases) => d.leases = leases,
            Err(e) => d.note(Err(e.into())),
        }
        let path = netns::path_for(&self.run_dir, id);
        let watch = (path.exists() && !d.leases.is_empty()).then(netlink::LinkWatch::open);
        let removed = netns::remove(&path).map_err(EngineError::from);
        if let (Some(Ok(watch)), Ok(())) = (watch, &removed) {
            crate::explain::step(|| format!("# {} go with the namespace: the kernel frees both ends of each pair (ip monitor link shows Deleted)", d.veths().join(", ")));
            d.watch = Some(watch);
        }
        d.note(removed);
        d
    }

    /// `network connect NET CONTAINER`: a running container joins one more network: a new
    /// interface (eth1, eth2, ...), an address, and a routing table of its own for each of its
    /// interfaces (replies leave where their request came in). Returns the new address.
    pub fn connect_network(&self, network: &str, container: &str) -> Result<(String, Ipv4Addr)> {
        let c = self.find(container)?;
        let path = netns::path_for(&self.run_dir, &c.id);
        if !path.exists() {
            return Err(EngineError::Invalid(format!("container {} has no network of ours to join another to (it runs with --network none or host, or is not running)", c.name)));
        }
        let net = self.network_named(network)?;
        let _lock = lock::take(&self.run_dir)?;
        let leases = self.db.leases_of(&c.id)?;
        if leases.iter().any(|l| l.network == net.name) {
            return Err(EngineError::Invalid(format!("container {} is on network {} already", c.name, net.name)));
        }
        let k = leases.iter().filter_map(|l| l.interface.strip_prefix("eth")?.parse::<usize>().ok()).max().map_or(0, |m| m + 1);
        self.ensure_network_locked(&net)?;
        let joined = self.connect(&c.id, k, &net, &path, false, true).and_then(|address| {
            // The one interface it had has no table of its own yet.
            if let [only] = leases.as_slice() {
                self.route_replies_of(only, &path)?;
            }
            Ok(address)
        });
        let joined = joined.and_then(|address| self.refresh_resolv_conf(&c.id).map(|()| address));
        joined.inspect_err(|_| {
            let _ = netlink::delete_link(&format!("veth{}{k}", &c.id[..9]));
            let _ = self.db.release_lease(&c.id, &net.name);
        })
        .map(|address| (format!("eth{k}"), address))
    }

    /// Rewrites a running container's /etc/resolv.conf for the networks it is on now (in
    /// place: the container sees the file bound in, not a name).
    fn refresh_resolv_conf(&self, id: &str) -> Result<()> {
        let networks = self.db.leases_of(id)?.iter().map(|l| self.network_named(&l.network)).collect::<Result<Vec<_>>>()?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let dns = self.db.containers_by_id(id)?.pop().map(|c| c.dns).unwrap_or_default();
        let text = resolv_conf(&host_resolv, Resolver::for_networks(&networks).as_ref(), &dns);
        let path = self.container_dir(id).join("resolv.conf");
        std::fs::write(&path, text).map_err(EngineError::io(format!("write {}", path.display())))
    }

    /// `network disconnect NET CONTAINER`: the container leaves a network: its interface and
    /// address there go, and the rule that routed replies through it. A network that carries
    /// the container's published ports cannot be left.
    pub fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let c = self.find(container)?;
        let _lock = lock::take(&self.run_dir)?;
        let lease = self.db.leases_of(&c.id)?.into_iter().find(|l| l.network == network).ok_or_else(|| EngineError::Invalid(format!("container {} is not on network {network}", c.name)))?;
        if self.db.ports_of(&c.id)?.iter().any(|p| p.container_ip == lease.address) {
            return Err(EngineError::Invalid(format!("container {}'s published ports go through network {network}; stop the container instead", c.name)));
        }
        netlink::delete_link(&lease.host_veth)?;
        if let (Ok(address), Some(k)) = (lease.address.parse(), lease.interface.strip_prefix("eth").and_then(|k| k.parse::<u32>().ok())) {
            let path = netns::path_for(&self.run_dir, &c.id);
            if path.exists() {
                netlink::forget_replies(&path, address, POLICY_TABLES + k)?;
            }
        }
        self.db.release_lease(&c.id, network)?;
        self.refresh_resolv_conf(&c.id)
    }

    /// Gives an interface a container already has its own routing table (see `connect`).
    fn route_replies_of(&self, lease: &LeaseRow, path: &Path) -> Result<()> {
        let net = self.network_named(&lease.network)?;
        let k: u32 = lease.interface.strip_prefix("eth").and_then(|k| k.parse().ok()).unwrap_or(0);
        let address: Ipv4Addr = lease.address.parse().map_err(|_| EngineError::Invalid(format!("the state holds a bad address {:?}", lease.address)))?;
        Ok(netlink::route_replies(&VethPlan {
            bridge: net.bridge.clone(),
            host: lease.host_veth.clone(),
            inside: lease.interface.clone(),
            netns: path.to_path_buf(),
            address,
            prefix: net.subnet.prefix_len(),
            gateway: None,
            policy: Some((net.gateway, POLICY_TABLES + k)),
        })?)
    }

    /// Removes a container's port rules, then its port rows.
    fn unpublish(&self, id: &str) -> Result<()> {
        let published = self.db.ports_of(id)?;
        if published.is_empty() {
            return Ok(());
        }
        let maps = published.iter().map(port_map).collect::<Result<Vec<_>>>()?;
        let _lock = lock::take(&self.run_dir)?;
        if Iptables.remove_ports(&maps).is_err() {
            // A rule was gone already (a flushed firewall): rewrite our chains from the state,
            // without this container's ports.
            self.sync_firewall_without(Some(id))?;
        }
        self.db.unpublish(id)?;
        Ok(())
    }

    /// A network by name, parsed.
    pub fn network_named(&self, name: &str) -> Result<Network> {
        let row = self.db.network(name)?.ok_or_else(|| EngineError::Invalid(format!("no such network: {name} (see `shibafu network ls`)")))?;
        parse_network(&row)
    }

    /// Makes the network's bridge and firewall rules on first use; ten racing callers agree.
    pub fn ensure_network(&self, net: &Network) -> Result<()> {
        let _lock = lock::take(&self.run_dir)?;
        self.ensure_network_locked(net)
    }

    /// `ensure_network` with the lock held. A bridge whose set-up fails half-way is deleted
    /// again, so the next run makes it whole instead of trusting a bridge with no rules.
    fn ensure_network_locked(&self, net: &Network) -> Result<()> {
        if !netlink::ensure_bridge(&net.bridge, net.gateway, net.subnet.prefix_len())? {
            return Ok(());
        }
        let finish = || -> Result<()> {
            crate::network::sysctl("net/ipv4/ip_forward", "1")?;
            // DNAT from 127.0.0.1 (curl localhost:PORT) routes out through the bridge.
            crate::network::sysctl(&format!("net/ipv4/conf/{}/route_localnet", net.bridge), "1")?;
            self.sync_firewall()
        };
        finish().inspect_err(|_| {
            let _ = netlink::delete_link(&net.bridge);
        })
    }

    /// Rewrites our firewall chains from the state: every network whose bridge exists, every
    /// published port. Call with the network lock held.
    pub fn sync_firewall(&self) -> Result<()> {
        self.sync_firewall_without(None)
    }

    /// `sync_firewall`, leaving out one container's ports.
    fn sync_firewall_without(&self, container: Option<&str>) -> Result<()> {
        let mut live = Vec::new();
        for row in self.db.networks()? {
            let net = parse_network(&row)?;
            if netlink::link_exists(&net.bridge)? {
                live.push(net);
            }
        }
        let maps = self.db.ports()?.iter().filter(|p| Some(p.container_id.as_str()) != container).map(port_map).collect::<Result<Vec<_>>>()?;
        Ok(Iptables.sync(&live, &maps)?)
    }

    /// Leases an address and makes the veth pair for network number `k` of a container; the
    /// default route goes through it when `route`, and with `policy` (a container on several
    /// networks) what leaves from its address leaves by it.
    fn connect(&self, id: &str, k: usize, net: &Network, path: &Path, route: bool, policy: bool) -> Result<Ipv4Addr> {
        let lease = LeaseRow {
            network: net.name.clone(),
            address: String::new(),
            container_id: id.to_string(),
            interface: format!("eth{k}"),
            host_veth: format!("veth{}{k}", &id[..9]),
        };
        let address = self.db.lease(&lease, |used| {
            let used: Vec<Ipv4Addr> = used.iter().filter_map(|a| a.parse().ok()).collect();
            ipam::next_free(net.subnet, net.gateway, &used).map(|a| a.to_string())
        })?;
        let address: Ipv4Addr = address.parse().expect("leases hold addresses");
        crate::fault::point("run:leased");
        netlink::add_veth(&VethPlan {
            bridge: net.bridge.clone(),
            host: lease.host_veth,
            inside: lease.interface,
            netns: path.to_path_buf(),
            address,
            prefix: net.subnet.prefix_len(),
            gateway: route.then_some(net.gateway),
            policy: policy.then_some((net.gateway, POLICY_TABLES + k as u32)),
        })?;
        let name = self.db.containers_by_id(id)?.into_iter().next().map_or_else(|| id[..12].to_string(), |c| c.name);
        crate::explain::step(|| {
            let record = format!("{name}.{}.{DNS_ZONE}", net.name);
            format!("# DNS: dns serve answers {record} A {address}, TTL 0, from state.db (dig @{} {record})", net.gateway)
        });
        Ok(address)
    }

    /// Records and installs the published ports of a container at `address` (network lock held).
    fn publish(&self, id: &str, address: Ipv4Addr, wanted: &[PortRequest]) -> Result<Vec<PortMap>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        for w in wanted {
            if let Some(port) = w.host_port.filter(|p| ports::in_use_on_host(w.host_ip, *p, w.protocol)) {
                return Err(EngineError::Invalid(format!(
                    "host port {}:{port}/{} is in use by a process on this host; choose another",
                    w.host_ip,
                    w.protocol.as_str()
                )));
            }
        }
        let rows: Vec<PortRow> = wanted
            .iter()
            .map(|w| PortRow {
                container_id: id.to_string(),
                host_ip: w.host_ip.to_string(),
                host_port: w.host_port.unwrap_or(0),
                container_ip: address.to_string(),
                container_port: w.container_port,
                protocol: w.protocol.as_str().to_string(),
            })
            .collect();
        let pick = |last: u16, taken: &mut dyn FnMut(u16) -> bool| {
            ports::next_dynamic(last, |p| taken(p) || wanted.iter().any(|w| ports::in_use_on_host(w.host_ip, p, w.protocol)))
        };
        // The caller holds the network lock: no `sync_firewall` can write these rows' rules
        // between the rows and the append (which would leave a rule twice).
        let made = self.db.publish(&rows, pick, (ports::DYNAMIC_FIRST, ports::DYNAMIC_LAST))?;
        let maps = made.iter().map(port_map).collect::<Result<Vec<_>>>()?;
        Iptables.add_ports(&maps)?;
        Ok(maps)
    }

    /// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
    fn write_files(&self, req: &NetworkRequest, address: Option<Ipv4Addr>, gateway: Option<Ipv4Addr>, resolver: Option<&Resolver>) -> Result<Vec<(PathBuf, PathBuf)>> {
        let dir = self.container_dir(req.id);
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let [name, hostname] = req.names;
        let resolv = match req.mode {
            NetworkMode::Host => host_resolv,
            _ => resolv_conf(&host_resolv, resolver, req.dns),
        };
        let hosts = files::hosts(address, &[hostname, name]) + &files::extra_hosts(req.extra_hosts, gateway)?;
        // In the order of the init layer's names, which are these files' bind targets.
        let texts = [files::hostname(hostname), hosts, resolv];
        let mut out = Vec::new();
        for (file, text) in crate::storage::initlayer::BIND_TARGETS.into_iter().zip(texts) {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(EngineError::io(format!("write {}", path.display())))?;
            out.push((Path::new("/etc").join(file), path));
        }
        Ok(out)
    }
}

/// Where a container on user-defined networks asks for names: `dns serve` on the gateway of
/// its first network, searching `NET.local` for each. A container on the default `bridge`
/// alone keeps the host's servers (phase 2: it reaches them through NAT).
struct Resolver {
    nameserver: Ipv4Addr,
    search: Vec<String>,
}

impl Resolver {
    fn for_networks(networks: &[Network]) -> Option<Resolver> {
        let first = networks.first().filter(|_| networks.iter().any(|n| n.name != DEFAULT_NETWORK))?;
        let search = networks.iter().map(|n| format!("{}.{DNS_ZONE}", n.name)).collect();
        Some(Resolver { nameserver: first.gateway, search })
    }
}

/// A container's resolv.conf: dns serve's when it has a resolver, else the host's servers;
/// then its own `--dns` settings.
fn resolv_conf(host_resolv: &str, resolver: Option<&Resolver>, dns: &DnsSettings) -> String {
    let text = match resolver {
        Some(r) => files::resolv_conf(host_resolv, &[r.nameserver], &r.search),
        None => files::resolv_conf(host_resolv, &[], &[]),
    };
    files::with_settings(&text, &dns.servers, &dns.search, &dns.options)
}

/// A recorded network, parsed.
pub fn parse_network(row: &NetworkRow) -> Result<Network> {
    let mut net = Network::parse(&row.name, &row.bridge, &row.subnet, &row.gateway)?;
    net.internal = row.internal;
    Ok(net)
}

/// A recorded published port, parsed.
pub fn port_map(row: &PortRow) -> Result<PortMap> {
    let bad = || EngineError::Invalid(format!("the state holds a bad port mapping for container {}", row.container_id));
    Ok(PortMap {
        host_ip: row.host_ip.parse().map_err(|_| bad())?,
        host_port: row.host_port,
        container_ip: row.container_ip.parse().map_err(|_| bad())?,
        container_port: row.container_port,
        protocol: Protocol::parse(&row.protocol).map_err(|_| bad())?,
    })
}

/// How long the kernel gets to free a dropped namespace's links before they are deleted one by
/// one: they go within milliseconds unless a process still holds the namespace.
const NAMESPACE_GONE_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// A container's network on its way out (`Engine::begin_detach`). Once no process is left in
/// a namespace, the kernel frees it and every link in it, taking the host end of each veth
/// pair too: the same removal as `ip link del`, without its wait in the caller (`RTM_DELLINK`
/// returns only after an `rcu_barrier`, 20-65 ms measured here; the namespace's clean-up
/// unlists the links within 1 ms of the unmount, or, for a namespace made some 10 ms before,
/// once a grace period has passed since).
pub struct Detaching<'a> {
    engine: &'a Engine,
    id: String,
    leases: Vec<LeaseRow>,
    /// Set when the namespace was dropped with links in it: their removal to wait for.
    watch: Option<netlink::LinkWatch>,
    first_error: Option<EngineError>,
}

impl Detaching<'_> {
    fn veths(&self) -> Vec<String> {
        self.leases.iter().map(|l| l.host_veth.clone()).collect()
    }

    fn note(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.first_error.get_or_insert(e);
        }
    }

    /// Waits for the links to go (up to `NAMESPACE_GONE_WITHIN`), deletes those still there
    /// (a process holds the namespace, or it was gone already) and releases the addresses.
    pub fn complete(mut self) -> Result<()> {
        let left = match &self.watch {
            Some(watch) => watch.wait_gone(&self.veths(), NAMESPACE_GONE_WITHIN),
            None => self.veths(),
        };
        for veth in &left {
            let deleted = netlink::delete_link(veth).map_err(EngineError::from);
            self.note(deleted);
        }
        for lease in &self.leases {
            crate::explain::step(|| format!("# DNS: the names of {} on {} go with its lease", lease.address, lease.network));
        }
        // Released only once the links are gone: the next container given the address comes
        // with the same hardware address, and must not meet the old port on the bridge.
        let released = self.engine.db.release_leases(&self.id).map_err(EngineError::from);
        self.note(released);
        self.first_error.map_or(Ok(()), Err)
    }
}
