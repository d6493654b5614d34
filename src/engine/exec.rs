//! `exec`: a command in a running container, joining every namespace of its init.

use super::oci::OciRuntime;
use super::{Engine, EngineError, Result};

impl Engine {
    /// Runs `command` in the container; returns its exit code.
    pub fn exec(&self, name: &str, command: &[String], env: &[String]) -> Result<i32> {
        let c = self.find(name)?;
        if c.state == "restarting" && self.is_active(&c) {
            return Err(EngineError::Invalid(format!("container {} is restarting (restart {} after a back-off): wait until it runs", c.name, c.restart_count)));
        }
        if !self.is_running(&c) {
            return Err(EngineError::NotRunning(c.name));
        }
        if command.is_empty() {
            return Err(EngineError::Invalid("exec needs a command".into()));
        }
        let oci = OciRuntime::choose(&c.runtime, &self.run_dir)?;
        oci.exec(&c.id, command, env, super::on_our_terminal())
    }
}
