use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::state_location;
use crate::aws::Aws;
use crate::cli::Cli;
use crate::config::Settings;
use crate::state::{Location, State};

/// Prints the stack's outputs from the state (no lock: both backends replace the state
/// whole, so a concurrent run never shows a torn one; no AWS call for a local state).
pub async fn run(cli: &Cli, settings: &Settings) -> Result<u8> {
    let location = state_location(cli, settings);
    let aws = match location {
        Location::S3(_) => Some(Aws::connect(settings.config.region.as_deref()).await?),
        Location::Local(_) => None,
    };
    let stack = &settings.config.stack;
    let Some((state, _)) = crate::state::read(&location, stack, aws.as_ref()).await? else {
        let at = match &location {
            Location::S3(url) => url.state_url(stack),
            Location::Local(dir) => crate::state::local_state_path(dir, stack).display().to_string(),
        };
        bail!("no state for stack {stack:?} at {at}; run `infra up` first");
    };
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
    // With `integration = "private"`: the internal NLB and the VPC link to it.
    put("NlbDnsName", attr("nlb", "dns_name"));
    put("VpcLinkId", id("vpc_link"));
    put("EcrRepositoryUri", attr("ecr_repository", "uri"));
    put("DbEndpoint", attr("db_cluster", "endpoint"));
    put("EcsClusterArn", id("ecs_cluster"));
    put("EcsServiceArn", id("ecs_service"));
    put("TaskDefinitionArn", id("task_definition"));
    // The edge tier, named as the seed's CloudFormation outputs.
    put("ApiGwUrl", attr("api.stage", "url"));
    put("RestApiId", id("api"));
    put("UserPoolId", id("user_pool"));
    put("AppClientId", attr("user_pool_client", "client_id"));
    put("S3BucketName", id("bucket.payload"));
    out
}
