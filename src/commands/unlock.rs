use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};

use super::state_location;
use crate::aws::Aws;
use crate::cli::Cli;
use crate::config::Settings;
use crate::state::{LocalBackend, Location, S3Backend};

/// Removes a lock left by a run that is gone, after showing whose it is and asking.
pub async fn run(cli: &Cli, settings: &Settings, yes: bool) -> Result<u8> {
    let stack = &settings.config.stack;
    let url = match state_location(cli, settings) {
        Location::S3(url) => url,
        Location::Local(dir) => {
            // A local lock is a kernel lock on an open file: it dies with its process.
            return match LocalBackend::open(&dir, stack, "unlock", std::time::Duration::ZERO).await {
                Ok(_) => {
                    eprintln!("state for stack {stack:?} in {} is not locked", dir.display());
                    Ok(0)
                }
                Err(e) => bail!("{e:#}. A local lock is released when its process exits: stop that process instead"),
            };
        }
    };
    let aws = Aws::connect(settings.config.region.as_deref()).await?;
    let Some(lock) = S3Backend::current_lock(&url, &aws, stack).await? else {
        eprintln!("state for stack {stack:?} is not locked (no {})", url.lock_url(stack));
        return Ok(0);
    };
    let age = lock.age().as_secs();
    let lease = lock.lease().as_secs();
    let liveness = if age > lease {
        format!("its {lease}s lease lapsed {}s ago", age - lease)
    } else {
        format!("its {lease}s lease was renewed {age}s ago: that run may still be alive")
    };
    eprintln!("lock {} is held by {}; {liveness}", url.lock_url(stack), lock.describe());
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("`infra unlock` removes the lock of stack {stack:?}; pass --yes to confirm when stdin is not a terminal");
        }
        eprint!("Remove it? A run still holding it would then lose its lock. Type the stack name to confirm: ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).context("reading the confirmation")?;
        if answer.trim() != stack {
            eprintln!("aborted: the lock was left in place");
            return Ok(1);
        }
    }
    // Conditional on the ETag shown, so a lock renewed or taken meanwhile is never removed.
    if S3Backend::delete_lock(&url, &aws, stack, &lock.etag).await? {
        eprintln!("removed the lock of stack {stack:?}");
        Ok(0)
    } else {
        bail!("the lock of stack {stack:?} changed while you decided (renewed or taken by another run); it was left in place: run `infra unlock` again to see its holder")
    }
}
