//! Fault injection, for the crash-safety root test: with `SHIBAFU_FAULT=POINT` in its
//! environment, a process that reaches POINT kills itself with SIGKILL there, exactly as a
//! `kill -9` or a crash at that moment would. Every point is listed in `POINTS`, which the
//! test walks; after each, the next command or `gc` must leave no veth, rule, mount, lease,
//! row or temp file behind. Without the variable a point costs one cached lookup.

use std::sync::OnceLock;

/// Every injection point, in the order a command reaches them.
pub const POINTS: &[&str] = &[
    // run
    "run:recorded",
    "run:mounted",
    "run:netns",
    "run:leased",
    "run:connected",
    "run:published",
    "run:spec-saved",
    "run:monitor-started",
    // the monitor of a detached container, once the container runs
    "monitor:running",
    // rm
    "rm:stopped",
    "rm:deleted",
    "rm:detached",
    "rm:unmounted",
    "rm:dir-removed",
    // network create
    "network-create:recorded",
    // network rm
    "network-rm:bridge-deleted",
    "network-rm:firewall-synced",
    // pull
    "pull:blob-stored",
    "pull:fetched",
    "pull:layer-unpacked",
    // prepare-layer
    "prepare-layer:blob-stored",
    "prepare-layer:unpacked",
];

/// The environment variable that names the point to die at.
pub const VARIABLE: &str = "SHIBAFU_FAULT";

/// Dies here (SIGKILL) when `SHIBAFU_FAULT` names `name`.
pub fn point(name: &'static str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    debug_assert!(POINTS.contains(&name), "fault point {name} is not in POINTS");
    if ARMED.get_or_init(|| std::env::var(VARIABLE).ok()).as_deref() == Some(name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
