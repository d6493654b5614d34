//! Keeping apps up: every interval, each app's live version is asked for its health path, as
//! the go-live check asked; after `retries` failed checks in a row it is restarted (a crash is
//! the engine's: the restart policy `always` brings it back with back-off). The app's record
//! shows the last result, the restarts made, and the last failure.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::probe;
use crate::engine::Engine;

/// How often, and after how many failures in a row a version is restarted.
#[derive(Debug, Clone, Copy)]
pub struct KeepOptions {
    /// The time between checks.
    pub interval: Duration,
    /// Failed checks in a row before a restart.
    pub retries: u32,
}

/// Checks forever (a thread of `paas serve`).
pub fn keep(root: &Path, domain: &str, opts: KeepOptions) {
    let engine = match Engine::open(root) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("shibafu paas: the health checks cannot open {}: {e}", root.display());
            return;
        }
    };
    let mut failures: HashMap<String, u32> = HashMap::new();
    loop {
        std::thread::sleep(opts.interval);
        if let Err(e) = check_all(&engine, domain, opts, &mut failures) {
            eprintln!("shibafu paas: health checks: {e}");
        }
    }
}

fn check_all(engine: &Engine, domain: &str, opts: KeepOptions, failures: &mut HashMap<String, u32>) -> crate::state::Result<()> {
    let apps = engine.db.apps()?;
    failures.retain(|app, _| apps.iter().any(|a| &a.name == app));
    for app in apps {
        let Some(dep) = app.live_deployment.map(|id| engine.db.deployment(id)).transpose()?.flatten() else { continue };
        let Some(cid) = dep.container_id.as_deref() else { continue };
        let Some(c) = engine.db.containers_by_id(cid)?.pop() else { continue };
        if !engine.is_running(&c) {
            // Between restarts of the engine's policy: its back-off, not ours.
            continue;
        }
        let Some(lease) = engine.db.leases_of(cid)?.into_iter().next() else { continue };
        let Ok(ip) = lease.address.parse::<std::net::Ipv4Addr>() else { continue };
        let outcome = probe::get((ip, dep.port).into(), &dep.health_path, &format!("{}.{domain}", app.name));
        let failure = match outcome {
            Ok(status) if (200..400).contains(&status) => None,
            Ok(status) => Some(format!("GET {} answered {status}", dep.health_path)),
            Err(e) => Some(e),
        };
        let Some(failure) = failure else {
            failures.remove(&app.name);
            engine.db.set_app_health(&app.name, "healthy", false, None)?;
            continue;
        };
        let count = failures.entry(app.name.clone()).or_default();
        *count += 1;
        let health = format!("unhealthy ({count} of {} failed checks): {failure}", opts.retries);
        if *count < opts.retries {
            engine.db.set_app_health(&app.name, &health, false, None)?;
            continue;
        }
        failures.remove(&app.name);
        let restarted = engine.restart(cid, super::jobs::STOP_GRACE);
        let what = match &restarted {
            Ok(()) => format!("{} failed checks in a row ({failure}): restarted {}", opts.retries, c.name),
            Err(e) => format!("{} failed checks in a row ({failure}); the restart of {} failed: {e}", opts.retries, c.name),
        };
        eprintln!("shibafu paas: {}: {what}", app.name);
        engine.db.set_app_health(&app.name, "restarted", restarted.is_ok(), Some(&format!("{} {what}", crate::state::now())))?;
        if let Some(pid) = c.monitor_pid {
            // The monitor before the restart was started by this process or its worker.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
    }
    Ok(())
}
