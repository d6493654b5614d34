//! The command line: clap definitions, one file per command group, turned into calls.

pub mod runtime;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// shibafu: a container lab, from an OCI runtime up to a small PaaS.
#[derive(Debug, Parser)]
#[command(name = "shibafu", version, about)]
pub struct Cli {
    /// Data root (images, layers, containers, state.db).
    #[arg(long, env = "SHIBAFU_ROOT", default_value = "/var/lib/shibafu")]
    pub root: PathBuf,
    /// Print every kernel-facing step as the command a person would type.
    #[arg(long, global = true)]
    pub explain: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The OCI runtime, with runc's command line.
    Runtime(runtime::RuntimeArgs),
}

/// Runs the parsed command line; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    crate::explain::enable(cli.explain);
    match cli.command {
        Command::Runtime(args) => runtime::run(args),
    }
}

/// Docker's exit codes for our own failures: 127 not found, 126 cannot execute, else 125.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<crate::runtime::RuntimeError>() {
            return e.exit_code();
        }
    }
    125
}
