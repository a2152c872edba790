use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::cli::Cli;
use crate::config::Settings;
use crate::state::State;

/// Prints the stack's outputs from the state file (no AWS call, no lock: state files are
/// replaced atomically, so a concurrent run never shows a torn one).
pub fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let path = cli.state_dir.join(format!("{}.json", settings.config.stack));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no state for stack {:?} at {}; run `infra up` first", settings.config.stack, path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state = State::parse(&text, &path)?;
    let outputs = outputs(&state);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&outputs)?);
    } else {
        for (k, v) in &outputs {
            println!("{k} = {v}");
        }
    }
    Ok(0)
}

pub fn outputs(state: &State) -> BTreeMap<&'static str, String> {
    let id = |logical: &str| state.physical_id(logical).map(str::to_string);
    let join = |ids: &[&str]| -> Option<String> {
        let v: Option<Vec<String>> = ids.iter().map(|i| id(i)).collect();
        v.map(|v| v.join(","))
    };
    let mut out = BTreeMap::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            out.insert(k, v);
        }
    };
    put("VpcId", id("vpc"));
    put("PublicSubnetIds", join(&["subnet.public.a", "subnet.public.b"]));
    put("EcsSubnetIds", join(&["subnet.ecs.a", "subnet.ecs.b"]));
    put("DbSubnetIds", join(&["subnet.db.a", "subnet.db.b"]));
    let nats: Vec<&str> = ["nat_gateway.a", "nat_gateway.b"].into_iter().filter(|n| id(n).is_some()).collect();
    if !nats.is_empty() {
        put("NatGatewayIds", join(&nats));
    }
    let ips: Vec<String> = ["elastic_ip.a", "elastic_ip.b"]
        .iter()
        .filter_map(|e| state.resources.get(*e)?.attributes.get("public_ip").cloned())
        .collect();
    if !ips.is_empty() {
        put("NatPublicIps", Some(ips.join(",")));
    }
    put("AlbSecurityGroupId", id("sg.alb"));
    put("EcsSecurityGroupId", id("sg.ecs"));
    put("DbSecurityGroupId", id("sg.db"));
    let attr = |logical: &str, name: &str| state.resources.get(logical)?.attributes.get(name).cloned();
    put("AlbDnsName", attr("alb", "dns_name"));
    put("EcrRepositoryUri", attr("ecr_repository", "uri"));
    put("DbEndpoint", attr("db_cluster", "endpoint"));
    put("EcsClusterArn", id("ecs_cluster"));
    put("EcsServiceArn", id("ecs_service"));
    put("TaskDefinitionArn", id("task_definition"));
    out
}
