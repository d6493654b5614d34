//! `stop` and `rm`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::oci::OciRuntime;
use super::{Engine, EngineError, Result};
use crate::state::containers::ContainerRow;

impl Engine {
    /// Ends a container for good: records that the user stopped it (so its monitor does not
    /// restart it, and an `unless-stopped` one stays down at boot), sends SIGTERM, waits up to
    /// `timeout`, then SIGKILL; returns once the exit is recorded. A container between two
    /// restarts just stays down.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<()> {
        let c = self.find(name)?;
        if c.state == "running" || c.state == "restarting" {
            self.db.set_stopped_by_user(&c.id, true)?;
        }
        if !self.is_active(&c) {
            self.reconcile(&c)?;
            return Ok(());
        }
        let oci = OciRuntime::choose(&c.runtime, &self.run_dir)?;
        let _ = oci.kill(&c.id, Signal::SIGTERM);
        if self.wait_exit(&c, timeout) {
            return Ok(());
        }
        let _ = oci.kill(&c.id, Signal::SIGKILL);
        if self.wait_exit(&c, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(EngineError::Invalid(format!("container {} did not exit after SIGKILL", c.name)))
        }
    }

    /// Every running container stopped at once (each as `stop` does, `timeout` before
    /// SIGKILL), as Podman's `stop --all`; returns each one's name and how its stop went. With
    /// `shutdown`, the stop is the machine's, not the user's (what the appliance runs at
    /// poweroff, as dockerd stops its containers when it shuts down): once each has exited,
    /// the mark that the user stopped it goes again, so its restart policy holds at the next
    /// boot and an `unless-stopped` one comes back.
    pub fn stop_all(&self, timeout: Duration, shutdown: bool) -> Result<Vec<(String, Result<()>)>> {
        let running: Vec<ContainerRow> = self.db.containers()?.into_iter().filter(|c| self.is_active(c)).collect();
        let root = self.root.as_path();
        let stops: Vec<Result<()>> = std::thread::scope(|s| {
            let each: Vec<_> = running.iter().map(|c| s.spawn(move || stop_with_own_engine(root, &c.id, timeout, shutdown))).collect();
            each.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(EngineError::Invalid("the stop panicked".into())))).collect()
        });
        Ok(running.into_iter().map(|c| c.name).zip(stops).collect())
    }

    /// Removes a container; a running (or restarting) one only with `force` (it is stopped
    /// first); with `volumes`, its anonymous volumes too (`rm -v`).
    pub fn rm(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.find(name)?;
        if self.is_active(&c) {
            if !force {
                return Err(EngineError::StillRunning(c.name));
            }
            self.stop(&c.id, Duration::ZERO)?;
            crate::fault::point("rm:stopped");
        }
        let oci = OciRuntime::choose(&c.runtime, &self.run_dir)?;
        if volumes {
            self.remove_container_and_volumes(&c.id, Some(&oci))
        } else {
            self.remove_container(&c.id, Some(&oci))
        }
    }

    /// Waits for the container's monitor to finish; true when it did in time.
    fn wait_exit(&self, c: &ContainerRow, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_active_now(&c.id) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// `stop` for one of `stop_all`'s threads, each with an engine of its own: a database
/// connection is not shared between threads.
fn stop_with_own_engine(root: &std::path::Path, id: &str, timeout: Duration, shutdown: bool) -> Result<()> {
    let engine = Engine::open(root)?;
    engine.stop(id, timeout)?;
    if shutdown {
        engine.db.set_stopped_by_user(id, false)?;
    }
    Ok(())
}
