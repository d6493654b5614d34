//! Plays a scenario's steps on a console (a shell on a terminal: the appliance's serial console
//! in the VM tests, a local shell in `lab check`), as a person would type them, and judges
//! each step by its exit status and expectations. It stops at the first failure: later steps
//! stand on earlier ones.

use std::time::Duration;

use super::scenario::{Expect, Step};

/// A shell on a terminal, driven line by line.
pub trait Console {
    /// Types `line` and waits for the shell's prompt: the exit status and the output.
    fn sh_status(&mut self, line: &str) -> Result<(i32, String), String>;
    /// Types one line (into whatever runs on the terminal).
    fn send(&mut self, line: &str) -> Result<(), String>;
    /// Waits until the terminal shows `needle`; returns what came before it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String>;
    /// Waits for the shell's prompt: the exit status and the output before it.
    fn wait_prompt(&mut self) -> Result<(i32, String), String>;
}

/// How a step went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line.
    pub run: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<Failure>,
}

/// What a failed step was to show, what it showed, and where to look.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What was expected, in words.
    pub expected: String,
    /// What came: the status and the output.
    pub came: String,
    /// The explain trail of the step: the kernel-facing steps it took, as commands.
    pub trail: String,
    /// What to look at.
    pub hint: String,
}

/// Where the player keeps each step's explain trail, and which steps it plays.
pub struct Options {
    /// A folder on the console's machine for the trails (one file per step).
    pub trail_dir: String,
    /// Whether to play the steps that check the appliance's own units.
    pub appliance: bool,
}

/// Runs the setup lines; the first that fails ends the play with its failure.
pub fn setup(console: &mut dyn Console, lines: &[String]) -> Result<(), Outcome> {
    for line in lines {
        let (status, out) = console.sh_status(line).map_err(|e| broken(line, e))?;
        if status != 0 {
            let failure = Failure {
                expected: "exit status 0".into(),
                came: came(status, &out),
                trail: String::new(),
                hint: "the lab could not make what the phase's commands assume (its images, sources or servers): the output above says which".into(),
            };
            return Err(Outcome {
                run: line.clone(),
                failure: Some(failure),
            });
        }
    }
    Ok(())
}

/// Plays `steps` in order, telling each outcome to `report` as it comes; stops at the first
/// failure. Returns every outcome.
pub fn play(
    console: &mut dyn Console,
    steps: &[Step],
    options: &Options,
    report: &mut dyn FnMut(&Outcome),
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (n, step) in steps
        .iter()
        .enumerate()
        .filter(|(_, s)| options.appliance || !s.appliance)
    {
        let trail = format!("{}/step-{n}.explain", options.trail_dir);
        let outcome = play_step(console, step, &trail);
        report(&outcome);
        let failed = outcome.failure.is_some();
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    outcomes
}

/// Whether a play of `steps` steps went through: every one played, none failed.
pub fn went_through(outcomes: &[Outcome], steps: usize) -> bool {
    outcomes.len() == steps && outcomes.iter().all(|o| o.failure.is_none())
}

/// Plays one step with its explain trail going to `trail`.
fn play_step(console: &mut dyn Console, step: &Step, trail: &str) -> Outcome {
    let outcome = |failure| Outcome {
        run: step.run.clone(),
        failure,
    };
    if let Err(e) = console.sh_status(&format!("export SHIBAFU_EXPLAIN_FILE={trail}")) {
        return outcome(Some(broken_failure(e)));
    }
    let judged = match &step.prompt {
        None => console
            .sh_status(&step.run)
            .map(|(status, out)| judge(step, status, &out)),
        Some(prompt) => talk(console, step, prompt),
    };
    let mut failure = match judged {
        Ok(failure) => failure,
        Err(e) => Some(broken_failure(e)),
    };
    if let Some(f) = failure.as_mut() {
        f.trail = console
            .sh_status(&format!("tail -n 25 {trail} 2>/dev/null"))
            .map(|(_, t)| t)
            .unwrap_or_default();
    }
    let _ = console.sh_status("unset SHIBAFU_EXPLAIN_FILE");
    outcome(failure)
}

/// Plays an interactive step: starts the program, types each line at its prompt, and judges
/// each answer; the last line leaves the program.
fn talk(console: &mut dyn Console, step: &Step, prompt: &str) -> Result<Option<Failure>, String> {
    let wait = Duration::from_secs(60);
    console.send(&step.run)?;
    if let Err(e) = console.wait_for(prompt, wait) {
        // The program ended (or never prompted): the shell's prompt tells how.
        let (status, out) = console.wait_prompt().map_err(|_| e)?;
        return Ok(Some(Failure {
            expected: format!("the prompt {prompt:?}"),
            came: came(status, &out),
            trail: String::new(),
            hint: step.hint.clone(),
        }));
    }
    let (last, lines) = step
        .send
        .split_last()
        .expect("a step with a prompt has lines to send (checked at parse)");
    for exchange in lines {
        console.send(&exchange.line)?;
        let mut answer = console.wait_for(prompt, wait)?;
        if answer.trim().is_empty() {
            // A prompt drawn twice (a line editor redrawing it): the answer comes before the next.
            answer = console.wait_for(prompt, wait)?;
        }
        if let Some(f) = unmet(&exchange.expect, &answer) {
            // Leave the program, so the console is back at the shell for what follows.
            console.send(&last.line)?;
            console.wait_prompt()?;
            return Ok(Some(Failure {
                expected: format!("`{}`: {}", exchange.line, f.expected),
                ..f
            }));
        }
    }
    console.send(&last.line)?;
    let (status, out) = console.wait_prompt()?;
    Ok(unmet(&last.expect, &out).or_else(|| judge(step, status, &out)))
}

/// The first of the step's demands its status and output do not meet.
fn judge(step: &Step, status: i32, out: &str) -> Option<Failure> {
    if status != step.status {
        let hint = if step.hint.is_empty() {
            "the command's own message above says what went wrong".to_string()
        } else {
            step.hint.clone()
        };
        return Some(Failure {
            expected: format!("exit status {}", step.status),
            came: came(status, out),
            trail: String::new(),
            hint,
        });
    }
    unmet(&step.expect, out).map(|f| Failure {
        came: came(status, out),
        ..f
    })
}

/// The first expectation `out` does not meet.
fn unmet(expects: &[Expect], out: &str) -> Option<Failure> {
    let missed = expects.iter().find(|e| !e.holds(out))?;
    Some(Failure {
        expected: missed.describe(),
        came: came(0, out),
        trail: String::new(),
        hint: missed.hint.clone(),
    })
}

/// The status and the output's last lines, for a report.
fn came(status: i32, out: &str) -> String {
    let lines: Vec<&str> = out.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    if tail.is_empty() {
        format!("exit status {status}, no output")
    } else {
        format!("exit status {status}:\n{tail}")
    }
}

/// A step the console itself failed.
fn broken_failure(why: String) -> Failure {
    Failure {
        expected: "the console to answer".into(),
        came: why,
        trail: String::new(),
        hint: "the shell stopped answering: the command may hang (waiting for input?)".into(),
    }
}

/// `broken_failure` as a step's outcome.
fn broken(run: &str, why: String) -> Outcome {
    Outcome {
        run: run.to_string(),
        failure: Some(broken_failure(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::scenario;
    use super::*;

    /// A pretend shell: each command line gets a scripted status and output.
    struct Script {
        answers: Vec<(&'static str, i32, &'static str)>,
        typed: Vec<String>,
    }

    impl Console for Script {
        fn sh_status(&mut self, line: &str) -> Result<(i32, String), String> {
            self.typed.push(line.to_string());
            if line.starts_with("export ") || line.starts_with("unset ") {
                return Ok((0, String::new()));
            }
            if line.starts_with("tail ") {
                return Ok((0, "+ ip link add ctr0 type bridge\n".into()));
            }
            let (_, status, out) = self
                .answers
                .iter()
                .find(|(cmd, _, _)| *cmd == line)
                .ok_or(format!("unscripted {line}"))?;
            Ok((*status, out.to_string()))
        }
        fn send(&mut self, line: &str) -> Result<(), String> {
            self.typed.push(line.to_string());
            Ok(())
        }
        fn wait_for(&mut self, _: &str, _: Duration) -> Result<String, String> {
            Ok(" 1 root sh\n".into())
        }
        fn wait_prompt(&mut self) -> Result<(i32, String), String> {
            Ok((0, String::new()))
        }
    }

    fn steps(text: &str) -> Vec<Step> {
        scenario::parse(&format!(
            "phase = 9\ntitle = \"t\"\nteaches = \"t\"\nnext = \"n\"\n{text}"
        ))
        .unwrap()
        .steps
    }

    #[test]
    fn the_first_unmet_expectation_stops_the_play_with_its_hint_and_the_steps_trail() {
        let steps = steps(
            "[[step]]\nrun = \"ip addr show ctr0\"\n[[step.expect]]\ncontains = \"172.20.0.1/24\"\nhint = \"restart shibafu-network\"\n\
             [[step]]\nrun = \"never\"\n",
        );
        let mut console = Script {
            answers: vec![("ip addr show ctr0", 0, "3: ctr0: <BROADCAST>\n")],
            typed: vec![],
        };
        let mut told = 0;
        let options = Options {
            trail_dir: "/t".into(),
            appliance: false,
        };
        let outcomes = play(&mut console, &steps, &options, &mut |_| told += 1);
        assert_eq!((outcomes.len(), told), (1, 1));
        let f = outcomes[0].failure.as_ref().unwrap();
        assert_eq!(f.expected, "output containing \"172.20.0.1/24\"");
        assert!(
            f.came.contains("3: ctr0: <BROADCAST>") && f.trail.contains("ip link add ctr0"),
            "{f:?}"
        );
        assert_eq!(f.hint, "restart shibafu-network");
        assert!(
            console
                .typed
                .contains(&"export SHIBAFU_EXPLAIN_FILE=/t/step-0.explain".to_string()),
            "{:?}",
            console.typed
        );
    }

    #[test]
    fn a_wrong_status_fails_with_the_steps_hint_and_appliance_steps_are_skipped_in_scratch() {
        let steps = steps("[[step]]\nrun = \"systemctl start x\"\nappliance = true\n[[step]]\nrun = \"false\"\nhint = \"why\"\n");
        let mut console = Script {
            answers: vec![("false", 1, "")],
            typed: vec![],
        };
        let outcomes = play(
            &mut console,
            &steps,
            &Options {
                trail_dir: "/t".into(),
                appliance: false,
            },
            &mut |_| {},
        );
        assert_eq!(outcomes.len(), 1);
        let f = outcomes[0].failure.as_ref().unwrap();
        assert_eq!(
            (f.expected.as_str(), f.came.as_str(), f.hint.as_str()),
            ("exit status 0", "exit status 1, no output", "why")
        );
    }

    #[test]
    fn an_interactive_step_judges_each_answer_at_the_programs_prompt() {
        let steps = steps(
            "[[step]]\nrun = \"runc run c\"\nprompt = \"/ # \"\n[[step.send]]\nline = \"ps\"\n[[step.send.expect]]\nlacks = \"sh\"\nhint = \"host processes\"\n[[step.send]]\nline = \"exit\"\n",
        );
        let mut console = Script {
            answers: vec![],
            typed: vec![],
        };
        let outcomes = play(
            &mut console,
            &steps,
            &Options {
                trail_dir: "/t".into(),
                appliance: true,
            },
            &mut |_| {},
        );
        let f = outcomes[0].failure.as_ref().unwrap();
        assert_eq!(
            (f.expected.as_str(), f.hint.as_str()),
            ("`ps`: output without \"sh\"", "host processes")
        );
        assert!(
            console.typed.ends_with(&[
                "runc run c".into(),
                "ps".into(),
                "exit".into(),
                "tail -n 25 /t/step-0.explain 2>/dev/null".into(),
                "unset SHIBAFU_EXPLAIN_FILE".into()
            ]),
            "{:?}",
            console.typed
        );
    }
}
