use std::collections::BTreeMap;

use anyhow::Result;

use super::Session;
use crate::cli::Cli;
use crate::config::Settings;
use crate::cost::{self, Change, Estimate, PriceTable, Shape};
use crate::engine::Planned;
use crate::resources::Kind;
use crate::EXIT_CHANGES;

/// Prints what `up` would do; exit 2 when anything would change.
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let session = Session::open(cli, settings, true).await?;
    let plan = session.engine.plan().await?;
    let changes = plan.iter().filter(|(_, p)| !matches!(p, Planned::NoChange)).count();
    let cost = monthly_cost(&session, settings, &plan);
    if cli.json {
        let items: Vec<_> = plan
            .iter()
            .map(|(id, p)| {
                let mut v = serde_json::to_value(p).unwrap();
                v["id"] = id.clone().into();
                v
            })
            .collect();
        let cost = match &cost {
            Ok((now, then, changes)) => serde_json::json!({
                "monthly_usd": then.monthly_usd,
                "now_monthly_usd": now.monthly_usd,
                "estimate": then,
                "changes": changes,
            }),
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "changes": changes, "resources": items, "cost": cost }))?);
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
        println!();
        match &cost {
            Ok((now, then, changes)) => {
                for line in cost::render(then, cli.verbose > 0) {
                    println!("{line}");
                }
                if now.rows.is_empty() {
                    println!("Cost: creating the stack adds ${:.2}/month.", then.monthly_usd);
                } else if changes.is_empty() {
                    println!("Cost: this plan changes nothing billed (${:.2}/month).", then.monthly_usd);
                } else {
                    for c in changes {
                        println!("Cost: {c}");
                    }
                    let delta = cost::cents(then.monthly_usd - now.monthly_usd);
                    println!("Cost: ${:.2}/month now, ${:.2}/month after `infra up` ({}/month).", now.monthly_usd, then.monthly_usd, cost::signed(delta));
                }
            }
            Err(e) => println!("Cost: not shown: {e:#}"),
        }
    }
    session.call_detail(cli);
    Ok(if changes > 0 { EXIT_CHANGES } else { 0 })
}

/// The stack's monthly cost as configured, as it is now (from what the plan found), and
/// what each changed setting adds or saves.
fn monthly_cost(session: &Session, settings: &Settings, plan: &[(String, Planned)]) -> Result<(Estimate, Estimate, Vec<Change>)> {
    let table = PriceTable::builtin()?;
    let region = &session.engine.ctx.aws.region;
    let stack = &session.engine.stack;
    let recorded: BTreeMap<String, Kind> =
        session.engine.store.snapshot().resources.into_iter().filter_map(|(id, r)| Some((id, Kind::parse(&r.kind)?))).collect();
    let (now, then) = (Shape::current(stack, settings, plan, &recorded), Shape::desired(stack, settings));
    let (now_cost, then_cost) = (cost::estimate(&table, region, &now)?, cost::estimate(&table, region, &then)?);
    let changes = cost::changes((&now, &now_cost), (&then, &then_cost));
    Ok((now_cost, then_cost, changes))
}
