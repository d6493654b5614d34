//! The phases' scenarios, as data: src/lab/phases/phaseN.toml, embedded in the binary and read
//! by the VM tests too. A scenario holds the plan's commands (steps), what each must show, a
//! hint for each way it can go wrong, and the checks of a learner's own work (mine).
//! vmtests includes this file (and play.rs) as its own module: they use std, serde and toml only.

use serde::Deserialize;

/// A scenario that cannot be read or played, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadScenario(pub String);

/// The nine phases' definitions, in order.
const PHASES: [&str; 9] = [
    include_str!("phases/phase0.toml"),
    include_str!("phases/phase1.toml"),
    include_str!("phases/phase2.toml"),
    include_str!("phases/phase3.toml"),
    include_str!("phases/phase4.toml"),
    include_str!("phases/phase5.toml"),
    include_str!("phases/phase6.toml"),
    include_str!("phases/phase7.toml"),
    include_str!("phases/phase8.toml"),
];

/// One phase of shared/PHASES.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its number in the plan.
    pub phase: u8,
    /// What it builds, in a few words.
    pub title: String,
    /// What a person learns from it.
    pub teaches: String,
    /// The first command to try.
    pub next: String,
    /// `planned` while the lab cannot run it yet.
    #[serde(default)]
    pub planned: bool,
    /// The lab's images it runs (NAME:TAG).
    #[serde(default)]
    pub images: Vec<String>,
    /// The appliance's units it needs started (beyond those every boot starts).
    #[serde(default)]
    pub units: Vec<String>,
    /// Shell lines making what the plan assumes exists before its commands (sources, servers
    /// waited for); not the learner's work, so not reported step by step.
    #[serde(default)]
    pub setup: Vec<String>,
    /// The plan's commands, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// Checks of the learner's own state: read-only commands.
    #[serde(default, rename = "mine")]
    pub mine: Vec<Step>,
}

/// One command typed at the shell, and what must come of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The command line, as a person types it.
    pub run: String,
    /// The exit status it must end with.
    #[serde(default)]
    pub status: i32,
    /// What to look at when the status is another.
    #[serde(default)]
    pub hint: String,
    /// Set for a program that talks on the terminal: its prompt, awaited before each line of
    /// `send`. The last line of `send` leaves it, back to the shell.
    pub prompt: Option<String>,
    /// The lines typed into that program.
    #[serde(default)]
    pub send: Vec<Exchange>,
    /// What the output must show.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Only in the appliance itself (it checks its systemd units), not in a scratch check.
    #[serde(default)]
    pub appliance: bool,
}

/// One line typed into an interactive program, and what its answer must show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The line.
    pub line: String,
    /// What the answer must show.
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// One thing an output must show, and the hint when it does not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Text the output contains.
    pub contains: Option<String>,
    /// Text the output must not contain.
    pub lacks: Option<String>,
    /// The whole output, trimmed (or one of its lines, trimmed).
    pub equals: Option<String>,
    /// How many non-empty lines the output has.
    pub lines: Option<usize>,
    /// What to look at when it does not hold.
    pub hint: String,
}

impl Expect {
    /// Whether `output` shows it.
    pub fn holds(&self, output: &str) -> bool {
        let trimmed = output.trim();
        self.contains
            .as_ref()
            .is_none_or(|c| output.contains(c.as_str()))
            && self
                .lacks
                .as_ref()
                .is_none_or(|l| !output.contains(l.as_str()))
            && self
                .equals
                .as_ref()
                .is_none_or(|e| trimmed == e || output.lines().any(|l| l.trim() == e))
            && self
                .lines
                .is_none_or(|n| output.lines().filter(|l| !l.trim().is_empty()).count() == n)
    }

    /// What it asks, in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.contains {
            parts.push(format!("output containing {c:?}"));
        }
        if let Some(l) = &self.lacks {
            parts.push(format!("output without {l:?}"));
        }
        if let Some(e) = &self.equals {
            parts.push(format!("a line {e:?}"));
        }
        if let Some(n) = self.lines {
            parts.push(format!("{n} non-empty lines"));
        }
        parts.join(" and ")
    }
}

/// Every phase's scenario, in order.
pub fn all() -> Vec<Scenario> {
    PHASES
        .iter()
        .map(|text| parse(text).expect("the embedded scenarios parse (a unit test checks it)"))
        .collect()
}

/// Phase `n`'s scenario.
pub fn phase(n: u8) -> Result<Scenario, BadScenario> {
    all().into_iter().find(|s| s.phase == n).ok_or_else(|| {
        BadScenario(format!(
            "no phase {n}: the lab has phases 0 to {}",
            PHASES.len() - 1
        ))
    })
}

/// Reads a scenario from its TOML text (a phase's, or a learner's own file).
pub fn parse(text: &str) -> Result<Scenario, BadScenario> {
    let scenario: Scenario = toml::from_str(text)
        .map_err(|e| BadScenario(format!("the scenario does not parse: {e}")))?;
    for step in scenario.steps.iter().chain(&scenario.mine) {
        check_step(step)?;
    }
    Ok(scenario)
}

/// Refuses what cannot be played: an expectation asking nothing, `send` without a prompt.
fn check_step(step: &Step) -> Result<(), BadScenario> {
    let expects = step
        .expect
        .iter()
        .chain(step.send.iter().flat_map(|x| &x.expect));
    if let Some(empty) = expects.clone().find(|e| e.describe().is_empty()) {
        return Err(BadScenario(format!(
            "step `{}`: an expect with hint {:?} asks nothing (contains, lacks, equals or lines)",
            step.run, empty.hint
        )));
    }
    if step.prompt.is_some() == step.send.is_empty() {
        return Err(BadScenario(format!(
            "step `{}`: `prompt` and `send` go together",
            step.run
        )));
    }
    if expects.clone().any(|e| e.hint.trim().is_empty()) {
        return Err(BadScenario(format!(
            "step `{}`: every expect needs a hint",
            step.run
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_parses_in_order_with_steps_and_checks_of_the_learners_work() {
        let all = all();
        assert_eq!(
            all.iter().map(|s| s.phase).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        for s in &all {
            assert!(
                !s.steps.is_empty() && !s.mine.is_empty(),
                "phase {} needs steps and mine checks",
                s.phase
            );
            assert!(
                s.mine.iter().all(|m| !m.appliance && m.prompt.is_none()),
                "phase {}: mine checks run plain commands",
                s.phase
            );
        }
    }

    #[test]
    fn expectations_hold_on_the_output_they_describe() {
        let e =
            |text: &str| -> Expect { toml::from_str(&format!("{text}\nhint = \"h\"")).unwrap() };
        assert!(e("contains = \"pid 1\"").holds("inside x pid 1\n"));
        assert!(!e("lacks = \"systemd\"").holds("1 root sh\n2 root systemd\n"));
        assert!(e("equals = \"runc\"").holds("hostname\nruncs\nrunc\n"));
        assert!(!e("equals = \"2\"").holds("12\n"));
        assert!(e("lines = 3").holds("PID USER\n 1 root sh\n\n 7 root ps aux\n"));
        assert_eq!(
            e("contains = \"a\"\nlines = 1").describe(),
            "output containing \"a\" and 1 non-empty lines"
        );
    }

    #[test]
    fn a_scenario_that_cannot_be_played_is_refused_with_the_reason() {
        let head = "phase = 9\ntitle = \"t\"\nteaches = \"t\"\nnext = \"n\"\n";
        let err = parse(&format!(
            "{head}[[step]]\nrun = \"true\"\n[[step.expect]]\nhint = \"h\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("asks nothing"), "{err}");
        let err = parse(&format!("{head}[[step]]\nrun = \"sh\"\nprompt = \"$ \"\n")).unwrap_err();
        assert!(
            err.to_string().contains("`prompt` and `send` go together"),
            "{err}"
        );
        let err = parse(&format!("{head}[[step]]\nrun = \"true\"\nstatuss = 1\n")).unwrap_err();
        assert!(err.to_string().contains("statuss"), "{err}");
        assert!(phase(9).unwrap_err().to_string().contains("phases 0 to 8"));
    }
}
