use anyhow::{Context as _, Result};

use super::{interrupt_channel, report_outcome, Session};
use crate::cli::Cli;
use crate::config::Settings;
use crate::resources::compute::image;

/// Converges the stack without a prompt.
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    // Installed first, so a Ctrl-C at any point takes the graceful path.
    let interrupted = interrupt_channel();
    // The image's source is read (and hashed) before any AWS call; the builder is looked
    // for only when there is something to build, so an unchanged image costs no probe.
    let source = image::Source::read(settings).with_context(|| cli.config.display().to_string())?;
    let session = Session::open(cli, settings, true).await?;
    if let Some(source) = &source {
        if !image::recorded(&session.engine.store.snapshot(), &source.tag) {
            image::builder::resolve(settings.image_builder).await.map_err(anyhow::Error::msg)?;
        }
    }
    let outcome = session.engine.apply(interrupted).await?;
    let code = report_outcome(outcome, "up", session.engine.store.location());
    session.summary(cli, "up");
    Ok(code)
}
