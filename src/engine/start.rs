//! `start`: an exited container runs again, detached, with the same config: its rootfs (the
//! writable layer kept), its bundle, its networks and published ports (asked for again), its
//! restart policy and health check. And what makes a container whose monitor is gone (a
//! reboot, a killed monitor) exited again, so it can be started: `reconcile`.

use super::oci::OciRuntime;
use super::restart::RestartPolicy;
use super::{monitor, Engine, EngineError, Result};
use crate::network::NetworkMode;
use crate::state::containers::ContainerRow;
use crate::storage::overlay::{self, OverlayDirs};

/// The exit code recorded for a container whose monitor vanished without recording one.
pub const LOST_EXIT_CODE: i32 = 255;

/// Which containers `start --all` takes (`--filter restart-policy=NAME`, repeatable: any).
#[derive(Debug, Clone, Default)]
pub struct StartFilter {
    /// Policy names (`always`, `unless-stopped`, `on-failure`, `no`); empty: every policy.
    pub restart_policies: Vec<String>,
}

impl StartFilter {
    /// Parses `restart-policy=NAME` filters.
    pub fn parse(filters: &[String]) -> Result<StartFilter> {
        let mut out = StartFilter::default();
        for f in filters {
            match f.split_once('=') {
                Some(("restart-policy", name)) if ["no", "on-failure", "always", "unless-stopped"].contains(&name) => out.restart_policies.push(name.to_string()),
                _ => return Err(EngineError::Invalid(format!("invalid filter {f:?}: use restart-policy=no|on-failure|always|unless-stopped"))),
            }
        }
        Ok(out)
    }

    /// Whether `start --all` takes the container: stopped (or with its monitor gone), made to
    /// run before (not a half-made run), of a wanted policy, and not an `unless-stopped` one
    /// the user stopped (Docker's daemon brings back the same at its start).
    fn takes(&self, c: &ContainerRow, policy: RestartPolicy) -> bool {
        let ran_before = c.state != "created";
        let policy_wanted = self.restart_policies.is_empty() || self.restart_policies.iter().any(|p| p == policy.name());
        let stays_down = policy == RestartPolicy::UnlessStopped && c.stopped_by_user;
        ran_before && policy_wanted && !stays_down
    }
}

impl Engine {
    /// `restart`: stops a container (as `stop`, `timeout` before SIGKILL) and starts it again,
    /// as a new run with its restart count and back-off reset, as Docker's.
    pub fn restart(&self, name: &str, timeout: std::time::Duration) -> Result<()> {
        let c = self.find(name)?;
        self.stop(&c.id, timeout)?;
        self.start(&c.id)
    }

    /// Starts a stopped container again (a running one is left as it is).
    pub fn start(&self, name: &str) -> Result<()> {
        let c = self.find(name)?;
        if self.is_active(&c) {
            return Ok(());
        }
        self.reconcile(&c)?;
        let c = self.find(&c.id)?;
        if c.state == "created" {
            return Err(EngineError::Invalid(format!("container {} never started (a run that failed half-way): remove it", c.name)));
        }
        self.db.set_stopped_by_user(&c.id, false)?;
        let oci = OciRuntime::choose(&c.runtime, &self.run_dir)?;
        let started = self.prepare_start(&c).and_then(|()| monitor::start(self, &c.id, &oci, &monitor::MonitorMode::default()));
        if started.is_err() {
            let _ = self.detach_network(&c.id);
            let _ = overlay::unmount(&OverlayDirs::in_dir(&self.container_dir(&c.id)).merged);
        }
        started
    }

    /// Every stopped container `filter` takes, started again (what the appliance's
    /// shibafu-restart.service runs at boot). Returns each container's name and how its start went.
    pub fn start_all(&self, filter: &StartFilter) -> Result<Vec<(String, Result<()>)>> {
        let mut out = Vec::new();
        for c in self.db.containers()? {
            let policy = RestartPolicy::parse(&c.restart_policy).unwrap_or_default();
            if self.is_active(&c) || !filter.takes(&c, policy) {
                continue;
            }
            let started = self.start(&c.id);
            out.push((c.name, started));
        }
        Ok(out)
    }

    /// A container the state says runs (or restarts) but whose monitor is gone: ends what is
    /// left of it in the runtime, undoes its network and mount, and records it exited (its
    /// last exit code, or 255). True when there was something to do.
    pub fn reconcile(&self, c: &ContainerRow) -> Result<bool> {
        if !(c.state == "running" || c.state == "restarting") || self.monitor_alive(c) {
            return Ok(false);
        }
        let oci = OciRuntime::choose(&c.runtime, &self.run_dir)?;
        oci.delete(&c.id)?;
        let code = if c.state == "restarting" { c.exit_code.unwrap_or(LOST_EXIT_CODE) } else { LOST_EXIT_CODE };
        self.finish(&c.id, code, c.auto_remove)?;
        Ok(true)
    }

    /// Mounts the rootfs, joins the networks and publishes the ports again; the bundle's
    /// config.json names the same namespace and files, so it runs unchanged (without a
    /// terminal: a detached container has none).
    fn prepare_start(&self, c: &ContainerRow) -> Result<()> {
        let dir = self.container_dir(&c.id);
        let store = self.images();
        let lowers = c.layers.iter().map(|d| store.layer_dir(d)).collect::<Vec<_>>();
        if let Some(missing) = lowers.iter().find(|d| !d.is_dir()) {
            return Err(EngineError::Invalid(format!("container {}: its layer {} is gone", c.name, missing.display())));
        }
        let mut spec = crate::runtime::spec::load(&dir)?;
        let idmapped = super::userns::of_spec(&spec).as_ref().map(super::userns::idmapped).transpose()?;
        let (lowers, init_held) = self.with_init_layer(lowers)?;
        overlay::mount_overlay(&lowers, &OverlayDirs::in_dir(&dir), idmapped.as_ref(), c.auto_remove)?;
        drop(init_held);
        let words: Vec<String> = c.network.split(',').map(String::from).collect();
        let mode = NetworkMode::parse(&words)?;
        let publish = c.publish.iter().map(|p| crate::network::ports::parse(p)).collect::<std::result::Result<Vec<_>, _>>()?;
        let hostname = if c.hostname.is_empty() { c.id[..12].to_string() } else { c.hostname.clone() };
        let extra_hosts = c.dns.hosts.iter().map(|h| crate::network::files::ExtraHost::parse(h)).collect::<std::result::Result<Vec<_>, _>>()?;
        self.attach_network(&super::network::NetworkRequest { id: &c.id, names: [&c.name, &hostname], mode: &mode, publish: &publish, extra_hosts: &extra_hosts, dns: &c.dns })?;
        if let Some(mut process) = spec.process().clone().filter(|p| p.terminal() == Some(true)) {
            process.set_terminal(Some(false));
            spec.set_process(Some(process));
            crate::runtime::spec::save(&spec, &dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, policy: &str, stopped: bool) -> ContainerRow {
        ContainerRow { state: state.into(), restart_policy: policy.into(), stopped_by_user: stopped, ..Default::default() }
    }

    fn takes(filter: &StartFilter, c: &ContainerRow) -> bool {
        filter.takes(c, RestartPolicy::parse(&c.restart_policy).unwrap())
    }

    #[test]
    fn boot_filter_takes_always_and_unless_stopped_not_stopped_by_the_user() {
        let boot = StartFilter::parse(&["restart-policy=always".into(), "restart-policy=unless-stopped".into()]).unwrap();
        assert!(takes(&boot, &row("exited", "always", false)));
        assert!(takes(&boot, &row("exited", "always", true)));
        assert!(takes(&boot, &row("running", "unless-stopped", false)));
        assert!(!takes(&boot, &row("exited", "unless-stopped", true)));
        assert!(!takes(&boot, &row("exited", "on-failure:3", false)));
        assert!(!takes(&boot, &row("exited", "no", false)));
        assert!(!takes(&boot, &row("created", "always", false)));
        assert!(takes(&StartFilter::default(), &row("exited", "no", false)));
    }

    #[test]
    fn bad_filters_are_refused() {
        for f in ["restart-policy=sometimes", "status=exited", "restart-policy"] {
            assert!(StartFilter::parse(&[f.to_string()]).unwrap_err().to_string().contains("invalid filter"), "{f}");
        }
    }
}
