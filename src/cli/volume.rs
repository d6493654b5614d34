//! `volume`: create, ls, inspect, rm, prune (Docker's local volumes).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::engine::{Engine, EngineError};
use crate::state::StateError;

/// `volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (without NAME, an anonymous one with a 64-hex name); prints its name.
    Create {
        /// A label, KEY=VALUE (repeatable).
        #[arg(short, long = "label")]
        label: Vec<String>,
        /// The volume's name.
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show volumes as JSON (Docker's form).
    Inspect {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (never one a container, even a stopped one, mounts).
    #[command(alias = "remove")]
    Rm {
        /// No error for a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove the anonymous volumes no container mounts (with -a, named ones too).
    Prune {
        /// Named volumes too.
        #[arg(short, long)]
        all: bool,
    },
}

/// Runs `volume ...`.
pub fn volume(root: &Path, cmd: VolumeCommand) -> Result<i32> {
    let engine = Engine::open(root)?;
    match cmd {
        VolumeCommand::Create { label, name } => {
            let mut labels = BTreeMap::new();
            for l in label {
                let (k, v) = l.split_once('=').unwrap_or((&l, ""));
                if k.is_empty() {
                    bail!("invalid label {l:?}: use KEY=VALUE");
                }
                labels.insert(k.to_string(), v.to_string());
            }
            println!("{}", engine.create_volume(name.as_deref(), &labels)?);
        }
        VolumeCommand::Ls { quiet } => {
            let volumes = engine.volumes()?;
            if !quiet {
                println!("{:<16}VOLUME NAME", "DRIVER");
            }
            for v in volumes {
                if quiet {
                    println!("{}", v.name);
                } else {
                    println!("{:<16}{}", "local", v.name);
                }
            }
        }
        VolumeCommand::Inspect { names } => {
            let found = names.iter().map(|n| engine.inspect_volume(n)).collect::<std::result::Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&found)?);
        }
        VolumeCommand::Rm { force, names } => return rm(&engine, &names, force),
        VolumeCommand::Prune { all } => {
            let (removed, bytes) = engine.prune_volumes(all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                removed.iter().for_each(|n| println!("{n}"));
                println!();
            }
            println!("Total reclaimed space: {}", crate::storage::limits::human(bytes));
        }
    }
    Ok(0)
}

/// Removes each volume; one that fails is reported and the rest still go (exit 1, as Docker).
fn rm(engine: &Engine, names: &[String], force: bool) -> Result<i32> {
    let mut code = 0;
    for name in names {
        match engine.remove_volume(name) {
            Ok(()) => println!("{name}"),
            Err(EngineError::State(StateError::NoSuchVolume(_))) if force => {}
            Err(e) => {
                eprintln!("shibafu: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
