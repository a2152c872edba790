use anyhow::{Context as _, Result};

use super::{interrupt_channel, report_outcome, Session};
use crate::cli::Cli;
use crate::config::Settings;

/// Converges the stack without a prompt.
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    // Installed first, so a Ctrl-C at any point takes the graceful path.
    let interrupted = interrupt_channel();
    if let (None, Some(source)) = (&settings.config.image, &settings.config.source_code_path) {
        // A missing source is the user's to fix first, whatever the builder would say.
        crate::config::check_source_code_path(&settings.base_dir, source).with_context(|| cli.config.display().to_string())?;
        crate::resources::compute::image::require_docker()?;
    }
    let session = Session::open(cli, settings, true).await?;
    let outcome = session.engine.apply(interrupted).await?;
    let code = report_outcome(outcome, "up", session.engine.store.location());
    session.summary(cli, "up");
    Ok(code)
}
