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

/// Whatever `INFRA_LOG` asks for, TRACE is infra's own: at that level the SDK and its HTTP
/// stack log whole requests and responses ("transmitting request", "received response"),
/// bodies included — PutParameter's value, CreateDBCluster's password, the integration URI
/// with the basic-auth password, GetParameter's decrypted answer. A second filter, so no
/// directive (`aws_smithy_runtime=trace`) can switch it back on.
fn no_wire_trace(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() != tracing::Level::TRACE || meta.target() == "infra" || meta.target().starts_with("infra::")
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The credential chain warns for every provider that has nothing (instance metadata on a
    // laptop); infra says in one line what was tried, so that warning waits for -vv.
    let filter = match cli.verbose {
        0 => "warn,aws_config::meta::credentials::chain=error",
        1 => "warn,aws_config::meta::credentials::chain=error,infra=info",
        _ => "info,infra=debug",
    };
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("INFRA_LOG").unwrap_or_else(|_| filter.into());
    let trace_asked = env_filter.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_filter(env_filter).with_filter(tracing_subscriber::filter::filter_fn(no_wire_trace)))
        .init();
    if trace_asked {
        tracing::info!("TRACE is shown for infra only: the AWS SDK's and its HTTP stack's TRACE events carry request and response bodies (secrets), so they are withheld");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
