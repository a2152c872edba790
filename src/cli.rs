//! Command-line interface: clap commands, each mapped to one `run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "infra", version, about = "Provision the books API stack on AWS by calling AWS APIs directly")]
pub struct Cli {
    /// Path of the config file.
    #[arg(long, global = true, default_value = "infra.toml")]
    pub config: PathBuf,
    /// Stack name (overrides `stack` in the config; `init` writes it there).
    #[arg(long, global = true)]
    pub stack: Option<String>,
    /// Directory holding `<stack>.json` state files (with `state = "s3://…"` in the
    /// config: only the local side of `state push` / `state pull`).
    #[arg(long, global = true, default_value = "state")]
    pub state_dir: PathBuf,
    /// Wait this long for the state lock when another run holds it (e.g. 30s, 2m);
    /// default: fail at once, naming the holder.
    #[arg(long, global = true, env = "INFRA_LOCK_WAIT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
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
    Init {
        /// Keep the state and its lock in S3 (`s3://bucket/prefix/`) instead of `state/`.
        #[arg(long, value_name = "S3_URL")]
        state: Option<String>,
    },
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
    /// Remove the stack's state lock left by a run that is gone, after showing its holder.
    Unlock {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Move the state between this machine and the `state` location in S3.
    #[command(subcommand)]
    State(StateCommand),
    /// Manage users of the stack's Cognito user pool (email as the user name).
    #[command(subcommand)]
    User(UserCommand),
    /// Sign in as a user (password on stdin) and print only the access token, for
    /// `ACCESS_TOKEN=$(printf '%s\n' "$PASSWORD" | infra token EMAIL)`.
    Token {
        /// The user's email address.
        email: String,
    },
    /// The API stage's response cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Walk through the deployed API as the seed's curl examples do; exit 1 on any mismatch.
    Smoke {
        /// Skip the 29-second integration timeout check (GET /limits/time/exceed).
        #[arg(long)]
        quick: bool,
        /// Base URL of the API stage (default: the stack's ApiGwUrl output).
        #[arg(long, value_name = "URL", conflicts_with = "service")]
        url: Option<String>,
        /// Talk to books-api itself at this URL (e.g. http://10.0.70.12:8080), as the load
        /// balancer does: HTTP basic auth as `http_basic_auth_user`, with the password from
        /// stdin (else read from its SSM parameter). Only the book steps run.
        #[arg(long, value_name = "URL")]
        service: Option<String>,
    },
    /// Draw the stack's dependency graph, as `up` runs it: tiers, live status, hidden
    /// delete-order edges, and the slowest chain of the last `up` / `down`.
    Graph {
        /// dot (Graphviz source), mermaid, or svg (rendered by Graphviz's `dot`).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
        /// The desired graph without any AWS call: no status colours, placeholder AZ names.
        #[arg(long)]
        offline: bool,
    },
    /// The stack's monthly cost as configured, per resource and in total (no AWS call).
    Cost,
    /// Print a shell completion script: `infra completions bash > /etc/bash_completion.d/infra`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff): `infra man > infra.1; man -l infra.1`.
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Svg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a permanent password: the first line of stdin when stdin is not
    /// a terminal, else a generated one printed once (it is stored nowhere).
    Create {
        /// The user's email address (the user name).
        email: String,
    },
    /// Delete a user (a user that does not exist is not an error).
    Delete {
        /// The user's email address.
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Flush the `prod` stage's cache (FlushStageCache): every cached response is dropped.
    Flush,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Upload `<state-dir>/<stack>.json` to the S3 state (refuses another lineage or a newer copy).
    Push,
    /// Download the S3 state to `<state-dir>/<stack>.json` for inspection.
    Pull,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Plan => "plan",
            Command::Up => "up",
            Command::Down { .. } => "down",
            Command::Status => "status",
            Command::Outputs => "outputs",
            Command::Unlock { .. } => "unlock",
            Command::State(StateCommand::Push) => "state push",
            Command::State(StateCommand::Pull) => "state pull",
            Command::User(UserCommand::Create { .. }) => "user create",
            Command::User(UserCommand::Delete { .. }) => "user delete",
            Command::Token { .. } => "token",
            Command::Cache(CacheCommand::Flush) => "cache flush",
            Command::Smoke { .. } => "smoke",
            Command::Graph { .. } => "graph",
            Command::Cost => "cost",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}
