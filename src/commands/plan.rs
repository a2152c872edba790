use anyhow::Result;

use super::Session;
use crate::cli::Cli;
use crate::config::Settings;
use crate::engine::Planned;
use crate::EXIT_CHANGES;

/// Prints what `up` would do; exit 2 when anything would change.
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let session = Session::open(cli, settings, true).await?;
    let plan = session.engine.plan().await?;
    let changes = plan.iter().filter(|(_, p)| !matches!(p, Planned::NoChange)).count();
    if cli.json {
        let items: Vec<_> = plan
            .iter()
            .map(|(id, p)| {
                let mut v = serde_json::to_value(p).unwrap();
                v["id"] = id.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "changes": changes, "resources": items }))?);
    } else {
        let mut counts = [0usize; 5];
        for (id, p) in &plan {
            match p {
                Planned::Create { reason } => {
                    counts[0] += 1;
                    println!("+ {id} (create: {reason})");
                }
                Planned::Adopt { physical_id } => {
                    counts[1] += 1;
                    println!("> {id} (adopt {physical_id}, found by its tags)");
                }
                Planned::Update { changes } => {
                    counts[2] += 1;
                    println!("~ {id}");
                    for c in changes {
                        println!("    {c}");
                    }
                }
                Planned::Replace { changes } => {
                    counts[3] += 1;
                    println!("-/+ {id} (must be replaced)");
                    for c in changes {
                        println!("    {c}");
                    }
                }
                Planned::Delete { physical_id, reason } => {
                    counts[4] += 1;
                    println!("- {id} (delete {physical_id}: {reason})");
                }
                Planned::NoChange if cli.verbose > 0 => println!("= {id}"),
                Planned::NoChange => {}
            }
        }
        println!(
            "Plan: {} to create, {} to adopt, {} to update, {} to replace, {} to delete, {} unchanged.",
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            counts[4],
            plan.len() - changes
        );
    }
    session.call_detail(cli);
    Ok(if changes > 0 { EXIT_CHANGES } else { 0 })
}
