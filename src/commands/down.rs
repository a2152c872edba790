use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Result};

use super::{interrupt_channel, report_outcome, Session};
use crate::cli::Cli;
use crate::config::Settings;

/// Destroys the stack: state resources plus anything tagged with the stack.
pub async fn run(cli: &Cli, settings: &Settings, yes: bool) -> Result<u8> {
    let stack = &settings.config.stack;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("`infra down` destroys stack {stack:?}; pass --yes to confirm when stdin is not a terminal");
        }
        eprint!("Destroy every resource of stack {stack:?} (state and anything tagged infra:stack={stack})? Type the stack name to confirm: ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != stack {
            eprintln!("aborted: nothing was deleted");
            return Ok(1);
        }
    }
    let interrupted = interrupt_channel();
    let session = Session::open(cli, settings, false).await?;
    let outcome = session.engine.destroy(interrupted).await?;
    let code = report_outcome(outcome, "down", session.engine.store.location());
    session.summary(cli, "down");
    Ok(code)
}
