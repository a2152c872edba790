//! Command-line interface: clap commands, each mapped to one `run`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "infra", version, about = "Provision the books API stack on AWS by calling AWS APIs directly")]
pub struct Cli {
    /// Path of the config file.
    #[arg(long, global = true, default_value = "infra.toml")]
    pub config: PathBuf,
    /// Stack name (overrides `stack` in the config; `init` writes it there).
    #[arg(long, global = true)]
    pub stack: Option<String>,
    /// Directory holding `<stack>.json` state files.
    #[arg(long, global = true, default_value = "state")]
    pub state_dir: PathBuf,
    /// Machine-readable output (plan, status, outputs).
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail: unchanged resources, AWS call counts per operation.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented infra.toml with defaults in the current directory.
    Init,
    /// Show what `up` would do; exit 2 when there are changes.
    Plan,
    /// Create or converge the stack (no prompt).
    Up,
    /// Destroy everything of the stack.
    Down {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Compare every resource with the desired spec; exit 2 on drift.
    Status,
    /// Print the stack's outputs.
    Outputs,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init => "init",
            Command::Plan => "plan",
            Command::Up => "up",
            Command::Down { .. } => "down",
            Command::Status => "status",
            Command::Outputs => "outputs",
        }
    }
}
