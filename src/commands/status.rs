use anyhow::Result;

use super::Session;
use crate::cli::Cli;
use crate::config::Settings;
use crate::engine::Health;
use crate::EXIT_CHANGES;

/// Reads every resource and reports ok / drifted / missing; exit 2 on any drift.
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let session = Session::open(cli, settings, true).await?;
    let report = session.engine.status().await?;
    let drift = report.iter().filter(|(_, _, h)| !matches!(h, Health::Ok)).count();
    if cli.json {
        let items: Vec<_> = report
            .iter()
            .map(|(id, pid, h)| {
                let mut v = serde_json::to_value(h).unwrap();
                v["id"] = id.clone().into();
                v["physical_id"] = pid.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "in_sync": drift == 0, "resources": items }))?);
    } else {
        for (id, pid, h) in &report {
            match h {
                Health::Ok => println!("ok          {id:<32} {pid}"),
                Health::Drifted { changes } => {
                    println!("drifted     {id:<32} {pid}");
                    for c in changes {
                        println!("              {c}");
                    }
                }
                Health::Missing => println!("missing     {id:<32} {pid} (deleted out of band)"),
                Health::NotCreated => println!("not-created {id:<32} (run `infra up`)"),
                Health::Orphaned => println!("orphaned    {id:<32} {pid} (no longer in the config; `infra up` deletes it)"),
                Health::Duplicate { duplicate_of } => {
                    println!("duplicate   {id:<32} {pid} (same tags as {duplicate_of}; `infra up` deletes it)")
                }
            }
        }
        let ok = report.len() - drift;
        println!("Status: {ok} ok, {drift} need `infra up`.");
    }
    session.call_detail(cli);
    Ok(if drift > 0 { EXIT_CHANGES } else { 0 })
}
