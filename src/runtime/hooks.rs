//! OCI hooks: programs run at lifecycle points with the container's state on stdin.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::error::{Result, RuntimeError};
use crate::explain;

/// Runs each hook in order; the first failure stops the rest (createRuntime, prestart, ...).
pub fn run_all(kind: &str, hooks: &[Hook], state_json: &str) -> Result<()> {
    for hook in hooks {
        run_one(kind, hook, state_json)?;
    }
    Ok(())
}

/// Runs every hook in order; a failure is a warning on stderr and the rest still run, as the
/// spec has it for poststart and poststop.
pub fn run_all_warning(kind: &str, hooks: &[Hook], state_json: &str) {
    for hook in hooks {
        if let Err(e) = run_one(kind, hook, state_json) {
            eprintln!("shibafu: warning: {e} (the container goes on)");
        }
    }
}

fn run_one(kind: &str, hook: &Hook, state_json: &str) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |reason: String| RuntimeError::Hook { kind: kind.into(), path: path.clone(), reason };
    let args = hook.args().clone().unwrap_or_default();
    explain::step(|| format!("{} < state.json   # {kind} hook", if args.is_empty() { path.clone() } else { args.join(" ") }));
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear().stdin(Stdio::piped());
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin; that is not a failure.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook.timeout().map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    loop {
        match child.try_wait().map_err(|e| fail(e.to_string()))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(fail(format!("exited with {status}"))),
            None if deadline.is_some_and(|d| Instant::now() > d) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("timed out".into()));
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}
