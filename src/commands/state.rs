use anyhow::{bail, Result};

use super::state_location;
use crate::aws::Aws;
use crate::cli::{Cli, StateCommand};
use crate::config::Settings;
use crate::state::{local_state_path, Backend, LocalBackend, Location, S3Backend, S3Url, State};

/// `state push` / `state pull`: the state between this machine and S3, serial and lineage kept.
pub async fn run(cli: &Cli, settings: &Settings, command: &StateCommand) -> Result<u8> {
    let Location::S3(url) = state_location(cli, settings) else {
        bail!(
            "`infra {}` moves the state to or from S3, but {} has no `state` key: add one like `state = \"s3://my-bucket/infra/\"`",
            cli.command.name(),
            cli.config.display()
        );
    };
    let aws = Aws::connect(settings.config.region.as_deref()).await?;
    match command {
        StateCommand::Push => push(cli, settings, &url, &aws).await,
        StateCommand::Pull => pull(cli, settings, &url, &aws).await,
    }
}

fn describe(s: &State) -> String {
    format!("serial {}, lineage {}, {} resources", s.serial, s.lineage, s.resources.len())
}

/// Uploads the local state, under both locks; refuses a remote state of another lineage,
/// a newer one, or one that diverged at the same serial.
async fn push(cli: &Cli, settings: &Settings, url: &S3Url, aws: &Aws) -> Result<u8> {
    let stack = &settings.config.stack;
    let wait = cli.lock_wait.unwrap_or_default();
    let path = local_state_path(&cli.state_dir, stack);
    let (_local, local) = LocalBackend::open(&cli.state_dir, stack, "state push", wait).await?;
    let Some(local) = local else { bail!("no local state for stack {stack:?} at {} to push", path.display()) };
    let (remote, current) = S3Backend::open(url, aws, stack, "state push", wait).await?;
    let target = url.state_url(stack);
    if let Some(current) = current {
        if current.lineage != local.lineage {
            bail!(
                "refusing to push: {target} ({}) and {} ({}) are of different lineages, i.e. different stacks or a stack re-created from scratch. Nothing was changed; if the S3 state is really to be replaced, delete that object first (versioning keeps it)",
                describe(&current),
                path.display(),
                describe(&local)
            );
        }
        if current == local {
            eprintln!("{target} already holds this state ({}); nothing to push", describe(&local));
            return Ok(0);
        }
        if current.serial >= local.serial {
            bail!(
                "refusing to push: {target} ({}) is newer than or diverged from {} ({}). Nothing was changed; `infra state pull` shows the S3 copy",
                describe(&current),
                path.display(),
                describe(&local)
            );
        }
    }
    remote.write(local.clone()).await?;
    remote.release()?;
    eprintln!(
        "pushed {} ({}) to {target}; infra now reads and writes the state there (the local file is left as it was and no longer used)",
        path.display(),
        describe(&local)
    );
    Ok(0)
}

/// Downloads the S3 state to the state directory (previous local copy kept as `.backup`).
async fn pull(cli: &Cli, settings: &Settings, url: &S3Url, aws: &Aws) -> Result<u8> {
    let stack = &settings.config.stack;
    let target = url.state_url(stack);
    let Some(remote) = S3Backend::read(url, aws, stack).await? else { bail!("no state for stack {stack:?} at {target}") };
    let (local, _) = LocalBackend::open(&cli.state_dir, stack, "state pull", cli.lock_wait.unwrap_or_default()).await?;
    local.write(remote.clone()).await?;
    eprintln!(
        "pulled {target} ({}) to {}: a copy for inspection; while `state` is set, infra uses only the S3 state",
        describe(&remote),
        local.path().display()
    );
    Ok(0)
}
