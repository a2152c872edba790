//! `infra`: provisions the books API stack on AWS with direct API calls.

mod aws;
mod cli;
mod commands;
mod config;
mod cost;
mod engine;
mod graph;
mod progress;
mod resources;
mod stack;
mod state;
mod timings;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 success / in sync, 1 error, 2 `plan`/`status` found changes or drift.
pub const EXIT_CHANGES: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The credential chain warns for every provider that has nothing (instance metadata on a
    // laptop); infra says in one line what was tried, so that warning waits for -vv.
    let filter = match cli.verbose {
        0 => "warn,aws_config::meta::credentials::chain=error",
        1 => "warn,aws_config::meta::credentials::chain=error,infra=info",
        _ => "info,infra=debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("INFRA_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
