//! One `run` per command; shared set-up (config → lock → AWS → desired stack) lives here.

mod cache;
mod down;
mod init;
mod outputs;
mod plan;
mod smoke;
mod state;
mod status;
mod token;
mod unlock;
mod up;
mod user;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::aws::Aws;
use crate::cli::{Cli, Command};
use crate::config::{Config, Settings};
use crate::engine::Engine;
use crate::graph::Outcome;
use crate::progress::Progress;
use crate::resources::Ctx;
use crate::stack::Stack;
use crate::state::{Location, OpenOptions, State, StateStore};

pub async fn run(cli: Cli) -> Result<u8> {
    if let Command::Init { state } = &cli.command {
        return init::run(&cli, state.as_deref());
    }
    let settings = load_settings(&cli)?;
    match &cli.command {
        Command::Outputs => outputs::run(&cli, &settings).await,
        Command::Plan => plan::run(&cli, &settings).await,
        Command::Up => up::run(&cli, &settings).await,
        Command::Down { yes } => down::run(&cli, &settings, *yes).await,
        Command::Status => status::run(&cli, &settings).await,
        Command::Unlock { yes } => unlock::run(&cli, &settings, *yes).await,
        Command::State(command) => state::run(&cli, &settings, command).await,
        Command::User(command) => user::run(&cli, &settings, command).await,
        Command::Token { email } => token::run(&cli, &settings, email).await,
        Command::Cache(command) => cache::run(&cli, &settings, command).await,
        Command::Smoke { quick, url } => smoke::run(&cli, &settings, *quick, url.as_deref()).await,
        Command::Init { .. } => unreachable!("handled above"),
    }
}

/// Where the stack's state lives: the `state` key, else the local state directory.
fn state_location(cli: &Cli, settings: &Settings) -> Location {
    match &settings.state {
        Some(url) => Location::S3(url.clone()),
        None => Location::Local(cli.state_dir.clone()),
    }
}

fn open_options<'a>(cli: &'a Cli, settings: &'a Settings, location: &'a Location) -> OpenOptions<'a> {
    OpenOptions {
        location,
        stack: &settings.config.stack,
        command: cli.command.name(),
        lock_wait: cli.lock_wait.unwrap_or(Duration::ZERO),
    }
}

/// Reads and validates the config: every problem surfaces here, before any AWS call.
fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut config = Config::load(&cli.config)?;
    if let Some(stack) = &cli.stack {
        config.stack = stack.clone();
    }
    let mut settings = config.validate().with_context(|| format!("{}", cli.config.display()))?;
    settings.base_dir = match cli.config.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => ".".into(),
    };
    Ok(settings)
}

/// Everything a command that talks to AWS needs, with the state locked.
pub(crate) struct Session {
    pub engine: Arc<Engine>,
    pub started: Instant,
}

impl Session {
    /// `resolve_azs`: whether the AZ names matter (not for `down`, which deletes by id).
    async fn open(cli: &Cli, settings: &Settings, resolve_azs: bool) -> Result<Session> {
        let started = Instant::now();
        let aws = Aws::connect(settings.config.region.as_deref()).await?;
        // The state (and its lock) first: a missing bucket or a held lock stops the run
        // before any stack resource is touched.
        let location = state_location(cli, settings);
        let store = Arc::new(StateStore::open(&open_options(cli, settings, &location), &aws).await?);
        let ctx = Ctx { aws, stack: settings.config.stack.clone() };
        let (azs, account) = if resolve_azs {
            let state = store.snapshot();
            tokio::try_join!(availability_zones(&ctx, settings, &state), account_id(&ctx))?
        } else {
            (vec!["(unused)".to_string(), "(unused)".to_string()], "(unused)".to_string())
        };
        let stack = Stack::desired(settings, &azs, &ctx.aws.region, &account)?;
        let engine = Arc::new(Engine::new(ctx, store, stack, Progress::new(cli.verbose > 0)));
        Ok(Session { engine, started })
    }

    /// The closing line: what happened, how long it took, how many AWS calls.
    fn summary(&self, cli: &Cli, verb: &str) {
        let t = self.engine.tally();
        let (mutating, read) = self.engine.ctx.aws.recorder.counts();
        let store = &self.engine.store;
        eprintln!(
            "{verb}: {} created, {} adopted, {} updated, {} deleted, {} unchanged in {:.2}s; AWS calls: {mutating} mutating, {read} read; state: {} writes for {} changes to {}",
            t.created,
            t.adopted,
            t.updated,
            t.deleted,
            t.unchanged,
            self.started.elapsed().as_secs_f64(),
            store.writes(),
            store.changes(),
            store.location()
        );
        self.chain();
        self.call_detail(cli);
    }

    /// Which chain of resources set the wall time, each with its own time: what to look
    /// at first when a run is slow (on AWS, the database or the VPC link).
    fn chain(&self) {
        let (chain, total) = self.engine.critical_chain();
        if chain.is_empty() {
            return;
        }
        let links: Vec<String> = chain.iter().map(|(id, d)| format!("{id} {}", crate::progress::short_duration(*d))).collect();
        eprintln!("slowest chain ({}): {}", crate::progress::short_duration(total), links.join(" → "));
    }

    fn call_detail(&self, cli: &Cli) {
        if cli.verbose > 0 {
            for (op, n) in self.engine.ctx.aws.recorder.summary() {
                eprintln!("  {n:>4}  {op}");
            }
        }
    }
}

/// The AZ names: from the config, else those the state's subnets live in (so a region
/// gaining an AZ never moves a subnet), else the region's first two.
async fn availability_zones(ctx: &Ctx, settings: &Settings, state: &State) -> Result<Vec<String>> {
    if let Some(azs) = &settings.config.availability_zones {
        return Ok(azs.clone());
    }
    let from_state: Option<Vec<String>> = ["subnet.public.a", "subnet.public.b"]
        .iter()
        .map(|id| state.resources.get(*id).and_then(|r| r.attributes.get("availability_zone").cloned()))
        .collect();
    if let Some(azs) = from_state {
        return Ok(azs);
    }
    let resp = ctx
        .ec2()
        .await
        .describe_availability_zones()
        .filters(aws_sdk_ec2::types::Filter::builder().name("state").values("available").build())
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("DescribeAvailabilityZones", ctx.aws.region.clone(), e))?;
    let mut names: Vec<String> = resp
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect();
    names.sort();
    if names.len() < settings.config.az_count as usize {
        anyhow::bail!("region {} has {} available zones; the stack needs {}", ctx.aws.region, names.len(), settings.config.az_count);
    }
    names.truncate(settings.config.az_count as usize);
    Ok(names)
}

/// The account the credentials belong to: it names the payload bucket (bucket names are
/// global) and scopes the Lambda permission to this account's API.
async fn account_id(ctx: &Ctx) -> Result<String> {
    let resp = ctx.sts().await.get_caller_identity().send().await.map_err(|e| crate::aws::aws_error("GetCallerIdentity", "caller", e))?;
    resp.account().map(str::to_string).context("GetCallerIdentity returned no account")
}

/// First Ctrl-C: stop starting work, let calls in flight finish, save state. Second: exit.
fn interrupt_channel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: starting nothing new, finishing calls in flight and saving state (Ctrl-C again to exit now)");
            let _ = tx.send(true);
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted again: exiting; the state file holds every id recorded so far");
            std::process::exit(130);
        }
    });
    rx
}

/// Prints an executor outcome and turns it into an exit code.
fn report_outcome(outcome: Outcome, verb: &str, state_location: &str) -> u8 {
    match outcome {
        Outcome::Completed => 0,
        Outcome::Failed { failed, skipped } => {
            for (id, e) in &failed {
                eprintln!("error: {id}: {e:#}");
            }
            if !skipped.is_empty() {
                eprintln!("skipped (they depend on a failed resource): {}", skipped.join(", "));
            }
            eprintln!("{verb} failed; everything that succeeded is recorded in {state_location}; re-run `infra {verb}` to continue");
            1
        }
        Outcome::Cancelled { failed, not_started } => {
            for (id, e) in &failed {
                eprintln!("error: {id}: {e:#}");
            }
            eprintln!(
                "{verb} interrupted; {} resources not started; state saved in {}; re-run `infra {verb}` to continue",
                not_started.len(),
                state_location
            );
            1
        }
    }
}
