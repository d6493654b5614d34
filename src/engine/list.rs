//! `list` / `ps`: containers with their live status.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::restart::show_duration;
use super::{Engine, EngineError, Result};
use crate::state::containers::ContainerRow;
use crate::network::ports::PortMap;

/// One line of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command.
    pub command: Vec<String>,
    /// Creation time.
    pub created: String,
    /// `running`, `restarting`, `exited` or `created`.
    pub state: String,
    /// Docker-style status text.
    pub status: String,
    /// Exit code once exited (or between restarts).
    pub exit_code: Option<i32>,
    /// `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    pub restart_policy: String,
    /// Restarts by its monitor since it was last started by hand.
    pub restart_count: u32,
    /// The back-off before the next restart, while restarting.
    pub restart_backoff_ms: u64,
    /// `starting`, `healthy` or `unhealthy`, with a health check.
    pub health: Option<String>,
    /// Its networks (`bridge`, `none`, `host`, or names).
    pub network: String,
    /// Its addresses, one per network.
    pub addresses: Vec<String>,
    /// Its published ports, as `0.0.0.0:30001->80/tcp`.
    #[serde(serialize_with = "as_text")]
    pub ports: Vec<PortMap>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its mounts: volume names, else host paths (tmpfs: the path inside).
    pub mounts: Vec<String>,
}

impl ContainerSummary {
    /// Its networks, each by name (`bridge`, `none`, `host`, user networks).
    pub fn networks(&self) -> Vec<&str> {
        self.network.split(',').filter(|n| !n.is_empty()).collect()
    }
}

/// `list --filter KEY=VALUE`s, as Docker's: the same key given twice matches either value,
/// different keys must all match.
#[derive(Debug, Default, Clone)]
pub struct Filters(BTreeMap<String, Vec<String>>);

/// The keys `--filter` takes.
pub const FILTER_KEYS: [&str; 13] = ["id", "name", "label", "status", "ancestor", "network", "exited", "volume", "health", "publish", "expose", "before", "since"];

/// The values `health=` takes (`none`: no health check).
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];

/// The statuses Docker knows (`status=`); ours are created, running and exited.
const STATUSES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

impl Filters {
    /// Parses `KEY=VALUE` filters; an unknown key or a bad value is refused.
    pub fn parse(specs: &[String]) -> Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for spec in specs {
            let (key, value) = spec.split_once('=').ok_or_else(|| EngineError::Invalid(format!("bad format of filter {spec:?} (expected name=value)")))?;
            let key = key.trim().to_lowercase();
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(EngineError::Invalid(format!("invalid filter {key:?}: use one of {}", FILTER_KEYS.join(", "))));
            }
            if key == "status" && !STATUSES.contains(&value) {
                return Err(EngineError::Invalid(format!("invalid filter 'status={value}': use one of {}", STATUSES.join(", "))));
            }
            if key == "health" && !HEALTH.contains(&value) {
                return Err(EngineError::Invalid(format!("invalid filter 'health={value}': use one of {}", HEALTH.join(", "))));
            }
            if (key == "publish" || key == "expose") && PortRange::parse(value).is_none() {
                return Err(EngineError::Invalid(format!("invalid filter '{key}={value}': give PORT, PORT/PROTO or FIRST-LAST[/PROTO] (PROTO: tcp or udp)")));
            }
            if key == "exited" && value.parse::<i32>().is_err() {
                return Err(EngineError::Invalid(format!("invalid filter 'exited={value}': give an exit code")));
            }
            map.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters(map))
    }

    /// Whether a filter asks for stopped containers as well (status=, exited=), so `list`
    /// shows them without `-a`, as Docker's.
    pub fn includes_stopped(&self) -> bool {
        self.0.contains_key("status") || self.0.contains_key("exited")
    }

    /// Whether a container passes every filter but `before` and `since` (which need the
    /// order of all containers: see `Engine::list_filtered`).
    pub fn matches(&self, c: &ContainerSummary) -> bool {
        self.0.iter().filter(|(key, _)| !ORDER_KEYS.contains(&key.as_str())).all(|(key, values)| values.iter().any(|v| matches_one(key, v, c)))
    }

    /// The values given for a key.
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }
}

/// The filters that name another container and select by creation order.
const ORDER_KEYS: [&str; 2] = ["before", "since"];

/// A `publish=` or `expose=` value: `80`, `80/udp`, `8000-8080/tcp` (tcp when no protocol).
#[derive(Debug, PartialEq, Eq)]
struct PortRange {
    first: u16,
    last: u16,
    protocol: String,
}

impl PortRange {
    fn parse(text: &str) -> Option<PortRange> {
        let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
        if protocol != "tcp" && protocol != "udp" {
            return None;
        }
        let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        (first <= last).then(|| PortRange { first, last, protocol: protocol.into() })
    }

    fn takes(&self, port: u16, protocol: &str) -> bool {
        (self.first..=self.last).contains(&port) && self.protocol == protocol
    }
}

fn matches_one(key: &str, value: &str, c: &ContainerSummary) -> bool {
    match key {
        "id" => c.id.starts_with(value),
        "name" => name_matches(&c.name, value),
        "label" => match value.split_once('=') {
            Some((k, v)) => c.labels.get(k).is_some_and(|have| have == v),
            None => c.labels.contains_key(value),
        },
        "status" => c.state == value,
        "exited" => c.state == "exited" && c.exit_code.map(|e| e.to_string()).as_deref() == Some(value),
        "ancestor" => same_image(&c.image, value),
        "network" => c.networks().contains(&value),
        "volume" => c.mounts.iter().any(|m| m == value),
        "health" => c.health.as_deref().unwrap_or("none") == value,
        // As Docker's: publish= by the host's port, expose= by the container's.
        "publish" => PortRange::parse(value).is_some_and(|r| c.ports.iter().any(|p| r.takes(p.host_port, p.protocol.as_str()))),
        "expose" => PortRange::parse(value).is_some_and(|r| c.ports.iter().any(|p| r.takes(p.container_port, p.protocol.as_str()))),
        _ => false,
    }
}

/// Docker matches names as a regular expression; the plain text and the `^`, `$` anchors
/// people use with it are taken here (`web` anywhere, `^web$` exactly).
fn name_matches(name: &str, pattern: &str) -> bool {
    let pattern = pattern.trim_start_matches('/');
    let (start, pattern) = pattern.strip_prefix('^').map_or((false, pattern), |p| (true, p));
    let (end, pattern) = pattern.strip_suffix('$').map_or((false, pattern), |p| (true, p));
    match (start, end) {
        (true, true) => name == pattern,
        (true, false) => name.starts_with(pattern),
        (false, true) => name.ends_with(pattern),
        (false, false) => name.contains(pattern),
    }
}

/// `busybox` names `busybox:latest`; `busybox:1` only itself.
fn same_image(have: &str, wanted: &str) -> bool {
    let with_tag = |r: &str| if r.rsplit('/').next().is_some_and(|last| last.contains(':')) { r.to_string() } else { format!("{r}:latest") };
    with_tag(have) == with_tag(wanted)
}

fn as_text<S: serde::Serializer>(ports: &[PortMap], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(ports.iter().map(|p| p.to_string()))
}

impl Engine {
    /// Containers (only running ones unless `all`) that pass the filters, oldest first;
    /// `before=X` and `since=X` keep those made before or after container X.
    pub fn list_filtered(&self, all: bool, filters: &Filters) -> Result<Vec<ContainerSummary>> {
        let all = all || filters.includes_stopped();
        let every = self.list(true)?;
        let place = |name: &String| every.iter().position(|c| &c.name == name || c.id.starts_with(name.as_str())).ok_or_else(|| EngineError::NoSuchContainer(name.clone()));
        let before = filters.values("before").iter().map(place).collect::<Result<Vec<_>>>()?;
        let since = filters.values("since").iter().map(place).collect::<Result<Vec<_>>>()?;
        let in_order = |i: usize| before.iter().all(|b| i < *b) && since.iter().all(|s| i > *s);
        Ok(every.into_iter().enumerate().filter(|(i, c)| (all || c.state == "running") && in_order(*i) && filters.matches(c)).map(|(_, c)| c).collect())
    }

    /// Containers (only running ones unless `all`), oldest first.
    pub fn list(&self, all: bool) -> Result<Vec<ContainerSummary>> {
        let mut out = Vec::new();
        for c in self.db.containers()? {
            let (state, status) = self.status(&c);
            if !all && state != "running" && state != "restarting" {
                continue;
            }
            let addresses = self.db.leases_of(&c.id)?.into_iter().map(|l| l.address).collect();
            let ports = self.db.ports_of(&c.id)?.iter().map(super::network::port_map).collect::<Result<_>>()?;
            let mounts = c.mounts.iter().map(|m| if m.name.is_empty() { if m.source.is_empty() { m.destination.clone() } else { m.source.clone() } } else { m.name.clone() }).collect();
            out.push(ContainerSummary {
                id: c.id,
                name: c.name,
                image: c.image,
                command: c.command,
                created: c.created_at,
                state: state.into(),
                status,
                exit_code: c.exit_code,
                restart_policy: c.restart_policy,
                restart_count: c.restart_count,
                restart_backoff_ms: c.restart_backoff_ms,
                health: c.health.map(|h| h.status),
                addresses,
                ports,
                network: c.network,
                labels: c.labels,
                mounts,
            });
        }
        Ok(out)
    }

    /// A container's state and Docker-style status: `Up 5 seconds (healthy)`, `Restarting (1)
    /// 2 seconds ago`, `Exited (0) 3 minutes ago`; with restarts, how many (and the back-off).
    pub fn status(&self, c: &ContainerRow) -> (&'static str, String) {
        let active = self.is_active(c);
        let exited_ago = || ago(c.finished_at.as_deref().unwrap_or(&c.created_at));
        let (state, mut status) = match c.state.as_str() {
            "running" if active => ("running", format!("Up {}{}", ago(c.started_at.as_deref().unwrap_or(&c.created_at)), health_note(c))),
            "restarting" if active => ("restarting", format!("Restarting ({}) {} ago", c.exit_code.unwrap_or(-1), exited_ago())),
            "running" | "restarting" => ("exited", "Exited (unknown): its monitor is gone".to_string()),
            "exited" => ("exited", format!("Exited ({}) {} ago", c.exit_code.unwrap_or(-1), exited_ago())),
            _ => ("created", "Created".to_string()),
        };
        match (state, c.restart_count) {
            ("restarting", n) => status.push_str(&format!(", restart {n} in {}", show_duration(Duration::from_millis(c.restart_backoff_ms)))),
            (_, 0) => {}
            (_, 1) => status.push_str(", restarted once"),
            (_, n) => status.push_str(&format!(", restarted {n} times")),
        }
        (state, status)
    }

    /// A container's published ports.
    pub fn ports(&self, name_or_id: &str) -> Result<Vec<PortMap>> {
        let c = self.find(name_or_id)?;
        self.db.ports_of(&c.id)?.iter().map(super::network::port_map).collect()
    }
}

/// ` (healthy)`, ` (health: starting)`, ` (unhealthy)`, as Docker's status shows health.
fn health_note(c: &ContainerRow) -> String {
    match c.health.as_ref().map(|h| h.status.as_str()) {
        None => String::new(),
        Some("starting") => " (health: starting)".into(),
        Some(other) => format!(" ({other})"),
    }
}

/// "3 seconds", "5 minutes", ... since an RFC 3339 time.
pub fn ago(time: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(time) else { return "a while".into() };
    let secs = SystemTime::now().duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, state: &str, labels: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            id: format!("{name:0<64}"),
            name: name.into(),
            image: "busybox:latest".into(),
            command: vec![],
            created: String::new(),
            state: state.into(),
            status: String::new(),
            exit_code: (state == "exited").then_some(3),
            network: "backend,bridge".into(),
            addresses: vec![],
            ports: vec![],
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            mounts: vec!["data".into()],
            restart_policy: "no".into(),
            restart_count: 0,
            restart_backoff_ms: 0,
            health: None,
        }
    }

    fn filters(specs: &[&str]) -> Filters {
        Filters::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn same_keys_or_and_different_keys_and() {
        let web = summary("web", "running", &[("tier", "front")]);
        let job = summary("job", "exited", &[("tier", "back"), ("batch", "")]);
        let both = filters(&["label=tier=front", "label=tier=back"]);
        assert!(both.matches(&web) && both.matches(&job));
        let and = filters(&["label=tier", "status=exited"]);
        assert!(!and.matches(&web) && and.matches(&job));
        assert!(and.includes_stopped());
        assert!(filters(&["label=batch"]).matches(&job));
        assert!(filters(&["exited=3", "name=jo"]).matches(&job));
        assert!(!filters(&["exited=0"]).matches(&job));
        assert!(filters(&["ancestor=busybox", "network=backend", "volume=data"]).matches(&web));
        assert!(!filters(&["ancestor=busybox:1"]).matches(&web));
        assert!(filters(&["id=web0"]).matches(&web));
        assert!(filters(&["name=^web$"]).matches(&web) && !filters(&["name=^we$"]).matches(&web) && filters(&["name=eb$"]).matches(&web));
    }

    #[test]
    fn health_publish_and_expose_as_dockers() {
        let mut web = summary("web", "running", &[]);
        web.health = Some("healthy".into());
        web.ports = vec![PortMap { host_ip: [0, 0, 0, 0].into(), host_port: 30001, container_ip: [10, 88, 0, 2].into(), container_port: 80, protocol: crate::network::ports::Protocol::Tcp }];
        let job = summary("job", "running", &[]);
        assert!(filters(&["health=healthy"]).matches(&web) && !filters(&["health=healthy"]).matches(&job));
        assert!(filters(&["health=none"]).matches(&job) && !filters(&["health=none"]).matches(&web));
        assert!(filters(&["publish=30001"]).matches(&web) && filters(&["publish=30000-30010/tcp"]).matches(&web));
        assert!(!filters(&["publish=80"]).matches(&web) && !filters(&["publish=30001/udp"]).matches(&web) && !filters(&["publish=30001"]).matches(&job));
        assert!(filters(&["expose=80"]).matches(&web) && filters(&["expose=1-100"]).matches(&web) && !filters(&["expose=30001"]).matches(&web));
    }

    #[test]
    fn bad_filters_are_refused() {
        for (spec, why) in [("colour=red", "invalid filter \"colour\""), ("status=sleeping", "use one of created"), ("exited=x", "exit code"), ("name", "expected name=value"),
            ("health=ok", "use one of starting"), ("publish=http", "give PORT"), ("expose=90-80", "give PORT"), ("publish=80/sctp", "give PORT")] {
            let err = Filters::parse(&[spec.to_string()]).unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }
}
