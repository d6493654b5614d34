//! `shibafu lab`: the appliance tells where the learner is and checks their work, from one
//! definition of each phase's scenario (scenario.rs, phases/*.toml) that the VM tests play too.
//!
//! The lab sits above everything: it types commands into a shell as a person would (play.rs,
//! shell.rs), in a scratch appliance of its own (scratch.rs) or in the learner's (`--mine`),
//! and records the phases whose checks of the learner's own work passed (record.rs); `lab
//! reset` (reset.rs) undoes the learner's work through the engine.

pub mod images;
pub mod play;
pub mod record;
pub mod reset;
pub mod scenario;
pub mod scratch;
pub mod shell;

use std::path::Path;

use play::Outcome;
use scenario::Scenario;

/// What the lab can fail at.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// A file operation, and what it was for.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A scenario that cannot be played.
    #[error(transparent)]
    Scenario(#[from] scenario::BadScenario),
    /// The engine, during a reset.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The image store, during a reset.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The state database, during a reset.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The shell the steps are typed into.
    #[error("the lab's shell: {0}")]
    Console(String),
}

/// Where a phase stands for this learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The lab can check it; the learner has not passed `lab check --mine` on it.
    Ready,
    /// The learner's own work passed `lab check --mine` (at this Unix time).
    Done(u64),
    /// Not in the lab yet.
    Planned,
}

impl Standing {
    /// The word the listing and the banner show.
    pub fn word(&self) -> &'static str {
        match self {
            Standing::Ready => "ready",
            Standing::Done(_) => "done by you",
            Standing::Planned => "planned",
        }
    }
}

/// Each phase with where it stands for the learner whose data root is `root`.
pub fn standings(root: &Path) -> Vec<(Scenario, Standing)> {
    let done = record::read(root);
    scenario::all()
        .into_iter()
        .map(|s| {
            let standing = match (s.planned, done.get(&s.phase)) {
                (true, _) => Standing::Planned,
                (false, Some(at)) => Standing::Done(*at),
                (false, None) => Standing::Ready,
            };
            (s, standing)
        })
        .collect()
}

/// Checks the learner's own work on `scenario` (its `mine` checks, which change nothing), in a
/// shell in `cwd` with the learner's environment; records the phase as done when every check
/// passes.
pub fn check_mine(
    root: &Path,
    scenario: &Scenario,
    cwd: &Path,
    report: &mut dyn FnMut(&Outcome),
) -> Result<Vec<Outcome>, LabError> {
    let trail = tempfile::Builder::new()
        .prefix("shibafu-lab-trail-")
        .tempdir()
        .map_err(|e| LabError::Io("make a folder for the explain trails".into(), e))?;
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(cwd).env_remove("SHIBAFU_EXPLAIN_FILE");
    let mut shell = shell::Shell::start(cmd).map_err(LabError::Console)?;
    let options = play::Options {
        trail_dir: trail.path().display().to_string(),
        appliance: true,
    };
    let outcomes = play::play(&mut shell, &scenario.mine, &options, report);
    if play::went_through(&outcomes, scenario.mine.len()) {
        record::mark_done(root, scenario.phase)?;
    }
    Ok(outcomes)
}
