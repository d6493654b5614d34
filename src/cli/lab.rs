//! `lab`: where the learner stands in the plan, and `lab check` of a phase (in a scratch
//! appliance, or of the learner's own work with --mine).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::lab::play::Outcome;
use crate::lab::scenario::{self, Scenario};
use crate::lab::{scratch, Standing};

/// `lab [--brief] [check ...]`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// One line a phase, for the login banner.
    #[arg(long)]
    pub brief: bool,
    #[command(subcommand)]
    pub cmd: Option<LabCommand>,
}

/// `lab ...`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Run a phase's commands in a scratch appliance (its own data root and namespaces: your
    /// containers, networks and rules are untouched) and say which step fails, and why.
    Check {
        /// Check your own work instead: what the phase's commands leave behind, read only.
        #[arg(long)]
        mine: bool,
        /// A phase number, `all` (every ready phase), or a scenario file of your own (TOML).
        phase: String,
    },
    /// Bring the appliance back to its first boot: every container, app, network (but
    /// bridge), volume, layer name, registry repository and image the lab did not ship goes;
    /// the lab's images and ctr0 come back. Asks first.
    Reset {
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
    },
}

/// Runs `lab ...`.
pub fn lab(root: &Path, args: LabArgs) -> Result<i32> {
    match args.cmd {
        None => {
            show(root, args.brief);
            Ok(0)
        }
        Some(LabCommand::Check { mine, phase }) => check(root, &phase, mine),
        Some(LabCommand::Reset { yes }) => reset(root, yes),
    }
}

/// Runs `lab reset`, after a confirmation unless `yes`.
fn reset(root: &Path, yes: bool) -> Result<i32> {
    if !yes {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            anyhow::bail!(
                "lab reset asks before it removes anything: answer on a terminal, or give --yes"
            );
        }
        println!("lab reset removes every container, app and deployment, network but bridge, volume, layer");
        println!(
            "name and registry repository, and every image the lab did not ship, from {}.",
            root.display()
        );
        print!("Type yes to go on: ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            println!("nothing removed");
            return Ok(1);
        }
    }
    crate::lab::reset::reset(root, &scratch::Sources::from_env().images, &mut |line| {
        println!("{line}")
    })?;
    println!("the lab is as at its first boot");
    Ok(0)
}

/// Prints each phase with its standing, what it teaches and the command to try.
fn show(root: &Path, brief: bool) {
    let standings = crate::lab::standings(root);
    if !brief {
        println!("The lab's phases (shared/PHASES.md). `shibafu lab check N` runs phase N's commands in a scratch");
        println!("appliance; `shibafu lab check --mine N` checks what your own commands left.\n");
    }
    for (s, standing) in &standings {
        let word = standing.word();
        println!("  phase {}  {word:<11}  {}", s.phase, s.title);
        if !brief {
            println!("      teaches: {}", s.teaches);
            if *standing == Standing::Ready {
                println!("      try:     {}", s.next);
            }
        }
    }
    if let (false, Some((s, _))) = (
        brief,
        standings.iter().find(|(_, st)| *st == Standing::Ready),
    ) {
        println!("\nNext: phase {} ({}): {}", s.phase, s.title, s.next);
    }
}

/// Runs `lab check [--mine] PHASE|all|FILE`; exit status 1 when a step fails.
fn check(root: &Path, which: &str, mine: bool) -> Result<i32> {
    let scenarios = chosen(which)?;
    let mut failed = Vec::new();
    for s in &scenarios {
        let place = if mine {
            "your own work, read only"
        } else {
            "a scratch appliance"
        };
        println!("phase {}: {} ({place})", s.phase, s.title);
        let outcomes = if mine {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            crate::lab::check_mine(root, s, &cwd, &mut print_outcome)?
        } else {
            scratch::check(s, &scratch::Sources::from_env(), &mut print_outcome)?
        };
        let steps = if mine {
            s.mine.len()
        } else {
            s.steps.iter().filter(|st| !st.appliance).count()
        };
        let passed = outcomes.iter().filter(|o| o.failure.is_none()).count();
        let ok = crate::lab::play::went_through(&outcomes, steps);
        println!(
            "phase {}: {}\n",
            s.phase,
            if ok {
                format!("passed, {steps} of {steps} steps")
            } else {
                format!("FAILED after {passed} of {steps} steps")
            }
        );
        if !ok {
            failed.push(s.phase);
        }
    }
    if scenarios.len() > 1 {
        match failed.as_slice() {
            [] => println!("all {} phases passed", scenarios.len()),
            _ => println!(
                "failed: phase {}",
                failed
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", phase ")
            ),
        }
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// The scenarios `which` names: a phase number, `all` ready phases, or a TOML file.
fn chosen(which: &str) -> Result<Vec<Scenario>> {
    if which == "all" {
        return Ok(scenario::all().into_iter().filter(|s| !s.planned).collect());
    }
    if let Ok(n) = which.parse::<u8>() {
        return Ok(vec![scenario::phase(n)?]);
    }
    let path = Path::new(which);
    if !path.is_file() {
        anyhow::bail!("{which:?} is neither a phase (0 to 8, or all) nor a scenario file");
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
    Ok(vec![
        scenario::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    ])
}

/// Prints one step's outcome as it comes: `ok` or `FAIL` with what was expected, what came,
/// the explain trail and the hint.
fn print_outcome(o: &Outcome) {
    let first = o.run.lines().next().unwrap_or_default();
    let more = if o.run.lines().count() > 1 {
        " ..."
    } else {
        ""
    };
    let Some(f) = &o.failure else {
        println!("  ok    {first}{more}");
        return;
    };
    println!("  FAIL  {first}{more}");
    println!("        expected: {}", f.expected);
    println!("        came:     {}", indent(&f.came));
    if !f.trail.trim().is_empty() {
        println!(
            "        trail (the kernel-facing steps it took, as commands):\n          {}",
            indent_by(f.trail.trim_end(), 10)
        );
    }
    if !f.hint.is_empty() {
        println!("        hint:     {}", f.hint);
    }
}

/// `text` with its later lines indented under the first (after a 18-column label).
fn indent(text: &str) -> String {
    indent_by(text, 18)
}

/// `text` with its later lines indented by `n` spaces.
fn indent_by(text: &str, n: usize) -> String {
    text.lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{}", " ".repeat(n)))
}
