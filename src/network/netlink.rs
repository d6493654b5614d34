//! Links, addresses and routes through rtnetlink: the bridge, and a veth pair per container
//! with its peer made directly inside the container's namespace. Each call runs a small
//! single-threaded tokio runtime on a thread of its own, so a namespace switch for the
//! container's side never touches the caller's threads.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::{NetworkError, Result};
use crate::explain;

/// One container's link to one bridge.
#[derive(Debug, Clone)]
pub struct VethPlan {
    /// The bridge to enslave the host end to.
    pub bridge: String,
    /// The host end's name (`veth...`).
    pub host: String,
    /// The container end's name (`eth0`).
    pub inside: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The default route, or none for a second network (its subnet is reached directly).
    pub gateway: Option<Ipv4Addr>,
    /// For a container on several networks: (its network's gateway, a routing table) so that
    /// what leaves from this address leaves by this interface (`ip rule from ADDR`).
    pub policy: Option<(Ipv4Addr, u32)>,
}

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |e| NetworkError::Netlink { what, reason: describe(&e) }
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

/// Runs `work` with a netlink handle opened in the calling thread's network namespace.
fn with_handle<T>(work: impl AsyncFnOnce(Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(NetworkError::io("start a tokio runtime"))?;
    rt.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::io("open a netlink socket"))?;
        tokio::spawn(connection);
        work(handle).await
    })
}

/// Runs `f` on a thread of its own (so namespace switches stay there).
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    std::thread::spawn(f).join().expect("the netlink thread does not panic")
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(failed(format!("look up link {name}"))(e)),
    }
}

/// The hardware address of a link inside a namespace (what `ip -n NETNS link show NAME`
/// prints after link/ether), or none when there is no such link.
pub fn mac_in(netns: &std::path::Path, name: &str) -> Result<Option<String>> {
    use rtnetlink::packet_route::link::LinkAttribute;
    let (netns, name) = (netns.to_path_buf(), name.to_string());
    on_thread(move || {
        super::netns::enter(&netns)?;
        with_handle(async move |h| {
            let mut links = h.link().get().match_name(name.clone()).execute();
            match links.try_next().await {
                Ok(Some(link)) => Ok(link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(mac) => Some(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                    _ => None,
                })),
                Ok(None) => Ok(None),
                Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
                Err(e) => Err(failed(format!("look up link {name}"))(e)),
            }
        })
    })
}

/// Whether a link by this name exists in our namespace.
pub fn link_exists(name: &str) -> Result<bool> {
    Ok(local_index(name)?.is_some())
}

/// The index of a link in the calling thread's namespace (the host's, for every engine thread
/// that has not entered a container's), or none when there is no such link. One ioctl
/// (SIOCGIFINDEX, as if_nametoindex(3)): no netlink socket, no thread, no runtime, which a
/// netlink dump of one link costs on every `run`.
fn local_index(name: &str) -> Result<Option<u32>> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(index) => Ok(Some(index)),
        Err(nix::errno::Errno::ENODEV) => Ok(None),
        Err(e) => Err(NetworkError::io(format!("look up link {name}"))(std::io::Error::from(e))),
    }
}

/// The host's IPv4 routes in its main table, but the default one: (destination, device).
pub fn routes() -> Result<Vec<(ipnet::Ipv4Net, String)>> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    on_thread(|| {
        with_handle(async |h| {
            let mut out = Vec::new();
            let mut dump = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
            while let Some(route) = dump.try_next().await.map_err(failed("list the host's routes"))? {
                let (prefix, main) = (route.header.destination_prefix_length, route.header.table == 254);
                let dest = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                    _ => None,
                });
                let oif = route.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None });
                let (Some(dest), true, true) = (dest, prefix > 0, main) else { continue };
                let Ok(net) = ipnet::Ipv4Net::new(dest, prefix) else { continue };
                out.push((net, oif.map(|i| i.to_string()).unwrap_or_default()));
            }
            for (_, dev) in out.iter_mut() {
                if let Ok(index) = dev.parse::<u32>() {
                    let mut links = h.link().get().match_index(index).execute();
                    if let Ok(Some(link)) = links.try_next().await {
                        *dev = link.attributes.iter().find_map(|a| match a {
                            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                            _ => None,
                        }).unwrap_or_else(|| dev.clone());
                    }
                }
            }
            Ok(out)
        })
    })
}

/// The bridge's own hardware address: locally administered, from the gateway (02:42 and its four
/// bytes, as Docker does). A bridge given no address takes the lowest of its ports' and changes
/// it when that port leaves, so every container on it would lose the gateway until its ARP
/// entry expired (a `rm` cut the others off from DNS and NAT for seconds).
fn bridge_mac(gateway: Ipv4Addr) -> Vec<u8> {
    [[0x02, 0x42].as_slice(), &gateway.octets()].concat()
}

/// A container's hardware address on a network: locally administered, from its address (02:42
/// and its four bytes, as Docker did), so an address given again after a `rm` comes with the
/// same hardware address. A fresh random one would be unreachable from the host and from the
/// other containers until their neighbor entries for the address expired (up to ~30 s while
/// REACHABLE): a quick redeploy that reuses the address timed out.
pub fn container_mac(address: Ipv4Addr) -> Vec<u8> {
    [[0x02, 0x42].as_slice(), &address.octets()].concat()
}

/// Makes the bridge with its gateway address, up, unless it exists; true when it was made.
pub fn ensure_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> Result<bool> {
    if local_index(bridge)?.is_some() {
        return Ok(false);
    }
    let bridge = bridge.to_string();
    on_thread(move || {
        with_handle(async move |h| {
            if index_of(&h, &bridge).await?.is_some() {
                return Ok(false);
            }
            let mac = bridge_mac(gateway);
            explain::step(|| format!("ip link add {bridge} address {} type bridge", mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")));
            h.link().add(LinkBridge::new(&bridge).address(mac.clone()).build()).execute().await.map_err(failed(format!("create bridge {bridge}")))?;
            let index = index_of(&h, &bridge).await?.ok_or_else(|| NetworkError::Invalid(format!("bridge {bridge} vanished")))?;
            explain::step(|| format!("ip addr add {gateway}/{prefix} dev {bridge}"));
            h.address().add(index, IpAddr::V4(gateway), prefix).execute().await.map_err(failed(format!("address {bridge}")))?;
            explain::step(|| format!("ip link set {bridge} up"));
            h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(failed(format!("bring {bridge} up")))?;
            Ok(true)
        })
    })
}

/// Makes the veth pair: the host end on the bridge and up, the other end inside the
/// container's namespace, named, addressed, up, with `lo` up and the default route.
pub fn add_veth(plan: &VethPlan) -> Result<()> {
    let plan = plan.clone();
    on_thread(move || {
        let ns = File::open(&plan.netns).map_err(NetworkError::io(format!("open {}", plan.netns.display())))?;
        let host_side = plan.clone();
        with_handle(async move |h| create_pair(&h, &host_side, &ns).await)?;
        super::netns::enter(&plan.netns)?;
        match plan.policy {
            // No netlink socket inside: see `ifconfig` for why.
            None => configure_by_ioctl(&plan),
            Some(_) => with_handle(async move |h| configure_inside(&h, &plan).await),
        }
    })
}

/// What `configure_inside` does for an interface without a table of its own, through ioctls.
fn configure_by_ioctl(plan: &VethPlan) -> Result<()> {
    let ifconfig = super::ifconfig::Ifconfig::open()?;
    explain::step(|| format!("ip -n {0} link set lo up; ip -n {0} addr add {1}/{2} dev {3}; ip -n {0} link set {3} up", plan.netns.display(), plan.address, plan.prefix, plan.inside));
    ifconfig.up("lo")?;
    ifconfig.address(&plan.inside, plan.address, plan.prefix)?;
    ifconfig.up(&plan.inside)?;
    if let Some(gateway) = plan.gateway {
        explain::step(|| format!("ip -n {} route add default via {gateway}", plan.netns.display()));
        ifconfig.default_route(gateway)?;
    }
    Ok(())
}

async fn create_pair(h: &Handle, plan: &VethPlan, ns: &File) -> Result<()> {
    // This thread is still in the host's namespace.
    let bridge = local_index(&plan.bridge)?.ok_or_else(|| NetworkError::Invalid(format!("bridge {} does not exist", plan.bridge)))?;
    let mac = container_mac(plan.address);
    explain::step(|| {
        let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        format!("ip link add {} master {} up type veth peer name {} address {mac} netns {}", plan.host, plan.bridge, plan.inside, plan.netns.display())
    });
    let peer = LinkMessageBuilder::<LinkUnspec>::new().name(plan.inside.clone()).address(mac.clone()).setns_by_fd(ns.as_raw_fd()).build();
    let pair = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(plan.host.clone())
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    h.link().add(pair).execute().await.map_err(failed(format!("create veth {}", plan.host)))
}

async fn configure_inside(h: &Handle, plan: &VethPlan) -> Result<()> {
    let index = index_of(h, &plan.inside).await?.ok_or_else(|| NetworkError::Invalid(format!("{} did not arrive in the namespace", plan.inside)))?;
    explain::step(|| format!("ip -n {0} link set lo up; ip -n {0} addr add {1}/{2} dev {3}; ip -n {0} link set {3} up", plan.netns.display(), plan.address, plan.prefix, plan.inside));
    if let Some(lo) = index_of(h, "lo").await? {
        h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(failed("bring lo up"))?;
    }
    h.address().add(index, IpAddr::V4(plan.address), plan.prefix).execute().await.map_err(failed(format!("address {}", plan.inside)))?;
    h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(failed(format!("bring {} up", plan.inside)))?;
    if let Some(gateway) = plan.gateway {
        explain::step(|| format!("ip -n {} route add default via {gateway}", plan.netns.display()));
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        h.route().add(route).execute().await.map_err(failed("add the default route"))?;
    }
    if let Some((gateway, table)) = plan.policy {
        add_policy(h, plan, index, gateway, table).await?;
    }
    Ok(())
}

/// Replies leave by the interface their request came in on: a table of the interface's own
/// (its subnet and a default route through its network's gateway), and a rule sending what
/// comes from its address to that table.
async fn add_policy(h: &Handle, plan: &VethPlan, index: u32, gateway: Ipv4Addr, table: u32) -> Result<()> {
    use rtnetlink::packet_route::route::RouteScope;
    let subnet = ipnet::Ipv4Net::new(plan.address, plan.prefix).map_err(|_| NetworkError::Invalid(format!("bad prefix /{}", plan.prefix)))?.trunc();
    explain::step(|| {
        let ns = plan.netns.display();
        format!(
            "ip -n {ns} route add {subnet} dev {dev} src {addr} table {table}; ip -n {ns} route add default via {gateway} table {table}; ip -n {ns} rule add from {addr} lookup {table}",
            dev = plan.inside,
            addr = plan.address
        )
    });
    let connected = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(subnet.network(), plan.prefix)
        .output_interface(index)
        .pref_source(plan.address)
        .scope(RouteScope::Link)
        .table_id(table)
        .build();
    h.route().add(connected).execute().await.map_err(failed(format!("add {subnet} to table {table}")))?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(index).table_id(table).build();
    h.route().add(default).execute().await.map_err(failed(format!("add the default route of table {table}")))?;
    h.rule().add().v4().source_prefix(plan.address, 32).table_id(table).priority(table).action(rtnetlink::packet_route::rule::RuleAction::ToTable).execute().await.map_err(failed(format!("add the rule from {}", plan.address)))
}

/// Gives an interface already inside a container's namespace its own routing table and rule
/// (what `add_veth` does with `policy`): for a container that joins a second network.
pub fn route_replies(plan: &VethPlan) -> Result<()> {
    let plan = plan.clone();
    on_thread(move || {
        super::netns::enter(&plan.netns)?;
        with_handle(async move |h| {
            let index = index_of(&h, &plan.inside).await?.ok_or_else(|| NetworkError::Invalid(format!("{} is not in the namespace", plan.inside)))?;
            let (gateway, table) = plan.policy.ok_or_else(|| NetworkError::Invalid("no routing table given".into()))?;
            add_policy(&h, &plan, index, gateway, table).await
        })
    })
}

/// Removes the rule that sends what comes from `address` to its own table, inside the
/// namespace at `netns` (the table's routes went with the interface); a missing rule is fine.
pub fn forget_replies(netns: &std::path::Path, address: Ipv4Addr, table: u32) -> Result<()> {
    let netns = netns.to_path_buf();
    on_thread(move || {
        super::netns::enter(&netns)?;
        with_handle(async move |h| {
            explain::step(|| format!("ip -n {} rule del from {address} lookup {table}", netns.display()));
            let mut wanted = h.rule().add().v4().source_prefix(address, 32).table_id(table).priority(table).action(rtnetlink::packet_route::rule::RuleAction::ToTable);
            let rule = wanted.message_mut().clone();
            match h.rule().del(rule).execute().await {
                Err(e) if errno_of(&e) != Some(libc::ENOENT) => Err(failed(format!("delete the rule from {address}"))(e)),
                _ => Ok(()),
            }
        })
    })
}

/// Link changes as the kernel announces them to the `RTMGRP_LINK` group (what `ip monitor link`
/// prints), opened in the caller's namespace: the wake-up for `wait_gone`.
pub struct LinkWatch(std::os::fd::OwnedFd);

impl LinkWatch {
    /// Subscribes; open it before the change it waits for, so no announcement is missed.
    pub fn open() -> Result<LinkWatch> {
        use nix::sys::socket::{bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        const RTMGRP_LINK: u32 = 1;
        let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
        let fd = socket(AddressFamily::Netlink, SockType::Raw, flags, SockProtocol::NetlinkRoute).map_err(|e| NetworkError::io("open a netlink socket")(e.into()))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK)).map_err(|e| NetworkError::io("join the link group")(e.into()))?;
        Ok(LinkWatch(fd))
    }

    /// Waits until no link has one of these names, at most `limit`; returns the names still
    /// there. Each announcement wakes it to look again, and it looks at least every 50 ms (an
    /// overrun socket drops announcements).
    pub fn wait_gone(&self, names: &[String], limit: std::time::Duration) -> Vec<String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left: Vec<String> = names.iter().filter(|n| !matches!(local_index(n), Ok(None))).cloned().collect();
            let now = std::time::Instant::now();
            if left.is_empty() || now >= deadline {
                return left;
            }
            let wait = (deadline - now).min(std::time::Duration::from_millis(50)).as_millis() as u16;
            let _ = poll(&mut [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)], PollTimeout::from(wait.max(1)));
            self.drain();
        }
    }

    fn drain(&self) {
        use nix::sys::socket::{recv, MsgFlags};
        let mut buf = [0u8; 16384];
        loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) if n > 0 => {}
                Err(nix::errno::Errno::ENOBUFS) => {}
                _ => return,
            }
        }
    }
}

/// Deletes a link by name (both ends of a veth go); a missing link is fine.
pub fn delete_link(name: &str) -> Result<()> {
    let name = name.to_string();
    on_thread(move || {
        with_handle(async move |h| {
            let Some(index) = index_of(&h, &name).await? else { return Ok(()) };
            explain::step(|| format!("ip link del {name}"));
            match h.link().del(index).execute().await {
                Err(e) if errno_of(&e) != Some(libc::ENODEV) => Err(failed(format!("delete link {name}"))(e)),
                _ => Ok(()),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_addresses_follow_the_ip_so_a_reused_address_keeps_its_mac() {
        assert_eq!(container_mac(Ipv4Addr::new(10, 89, 0, 2)), [0x02, 0x42, 10, 89, 0, 2]);
        assert_ne!(container_mac(Ipv4Addr::new(10, 89, 0, 1)), bridge_mac(Ipv4Addr::new(10, 89, 0, 2)));
        assert_eq!(bridge_mac(Ipv4Addr::new(172, 20, 0, 1))[..2], [0x02, 0x42], "locally administered, unicast");
    }
}
