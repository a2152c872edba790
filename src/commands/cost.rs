//! `infra cost`: the stack's monthly cost as configured, from the built-in price table,
//! without any AWS call.

use anyhow::{Context, Result};

use super::{offline_region, offline_stack};
use crate::cli::Cli;
use crate::config::Settings;
use crate::cost::{estimate, render, PriceTable, Shape};

pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let region = offline_region(settings)
        .await
        .context("no region to price the stack in: set `region` in infra.toml, or AWS_REGION")?;
    let stack = offline_stack(settings, &region)?;
    let e = estimate(&PriceTable::builtin()?, &region, &Shape::desired(&stack, settings))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        for line in render(&e, true) {
            println!("{line}");
        }
        let mut sources: Vec<&String> = e.rows.iter().flat_map(|r| &r.sources).collect();
        sources.sort();
        sources.dedup();
        println!("Prices from: {}", sources.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(0)
}
