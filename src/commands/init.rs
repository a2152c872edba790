use anyhow::{bail, Context, Result};

use crate::cli::Cli;
use crate::config::{render_init_file, Config};

/// Writes a commented `infra.toml`; never overwrites one.
pub fn run(cli: &Cli, state: Option<&str>) -> Result<u8> {
    let path = &cli.config;
    let stack = cli.stack.as_deref().unwrap_or("books");
    let mut config = Config::with_defaults(stack);
    config.state = state.map(str::to_string);
    // Validate before writing, so a bad --stack never lands in a file.
    config.clone().validate().context("--stack / --state")?;
    let text = render_init_file(&config);
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} already exists; not overwriting it (delete it or pass --config to write elsewhere)", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    std::io::Write::write_all(&mut file, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} for stack {stack:?}; next: `infra up`", path.display());
    Ok(0)
}
