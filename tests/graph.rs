//! `infra graph` and the cost in `plan` / `infra cost`, end to end: the real binary against a
//! real moto, and the DOT it prints read back by Graphviz's own `dot` (from Debian;
//! `scripts/test.sh` installs it).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

// The fills `infra graph` gives each status (docs/graph-and-cost.md).
const OK: &str = "#b9e4c9";
const DRIFTED: &str = "#ffd98e";
const MISSING: &str = "#f4a6a6";
const UNREAD: &str = "#ffffff";

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// A node as Graphviz read it: fill colour and pen width.
#[derive(Debug)]
struct Node {
    fill: String,
    penwidth: String,
}

/// What Graphviz itself reads from `dot`: the nodes by name, and the edges as
/// (tail, head, style). Fails on a graph `dot` rejects or warns about.
fn read_with_graphviz(dot: &str) -> (BTreeMap<String, Node>, BTreeSet<(String, String, String)>) {
    let mut child = Command::new("dot")
        .arg("-Tjson")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz's `dot` (scripts/test.sh installs graphviz)");
    child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "dot: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    for o in json["objects"].as_array().unwrap().iter().filter(|o| o.get("nodes").is_none() && o.get("subgraphs").is_none()) {
        let name = o["name"].as_str().unwrap().to_string();
        names.insert(o["_gvid"].as_u64().unwrap(), name.clone());
        let attr = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        nodes.insert(name, Node { fill: attr("fillcolor"), penwidth: attr("penwidth") });
    }
    let edges = json["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let end = |k: &str| names[&e[k].as_u64().unwrap()].clone();
                    (end("tail"), end("head"), e.get("style").and_then(|s| s.as_str()).unwrap_or("solid").to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    (nodes, edges)
}

fn graph(project: &Project) -> (BTreeMap<String, Node>, BTreeSet<(String, String, String)>) {
    let run = project.infra(&["graph", "--format", "dot"]);
    assert_ok(&run);
    read_with_graphviz(&run.stdout)
}

fn state_ids(project: &Project) -> BTreeSet<String> {
    project.state()["resources"].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn graph_of_a_converged_stack_is_all_ok_and_shows_drifted_and_missing_resources() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));

    // The run's times are kept beside the state, outside the state file.
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.dir.path().join("state/books.timings.json")).unwrap()).unwrap();
    assert_eq!(sidecar["command"], "up");
    let chain: BTreeSet<String> = sidecar["chain"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    assert!(!chain.is_empty());
    assert!(project.state().get("timings").is_none(), "the state format is unchanged");

    let (nodes, edges) = graph(&project);
    let ids = state_ids(&project);
    assert_eq!(ids.len(), FULL_STACK_RESOURCES);
    assert_eq!(nodes.keys().cloned().collect::<BTreeSet<_>>(), ids, "one node per resource up created");
    for (id, n) in &nodes {
        assert_eq!(n.fill, OK, "{id}: {n:?}");
        assert_eq!(n.penwidth == "3", chain.contains(id), "{id} on the slowest chain: {n:?}");
    }
    assert!(edges.contains(&("vpc".into(), "subnet.public.a".into(), "solid".into())));
    assert!(edges.contains(&("elastic_ip.a".into(), "internet_gateway".into(), "dashed".into())), "hidden delete edge");

    // Out of band: a shorter log retention (drift) and a deleted security group (missing).
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.sdk);
    logs.put_retention_policy().log_group_name(project.physical_id("log_group.service")).retention_in_days(7).send().await.unwrap();
    aws.delete_security_group().group_id(project.physical_id("sg.db")).send().await.unwrap();

    let (nodes, _) = graph(&project);
    assert_eq!(nodes["log_group.service"].fill, DRIFTED);
    assert_eq!(nodes["sg.db"].fill, MISSING);
    let others: Vec<&String> = nodes.iter().filter(|(id, n)| !["log_group.service", "sg.db"].contains(&id.as_str()) && n.fill != OK).map(|(id, _)| id).collect();
    assert!(others.is_empty(), "only the two changed resources leave ok: {others:?}");

    // The same graph as a picture.
    let svg = project.infra(&["graph", "--format", "svg"]);
    assert_ok(&svg);
    assert!(svg.stdout.starts_with("<?xml") && svg.stdout.contains("<svg") && svg.stdout.contains(DRIFTED), "{}", &svg.stdout[..svg.stdout.len().min(300)]);
}

#[test]
fn offline_graph_and_cost_make_no_aws_call() {
    // Nothing listens on the discard port: any AWS call would fail the run.
    let project = Project::at("http://127.0.0.1:9");
    let run = project.infra(&["graph", "--offline", "--format", "dot"]);
    assert_ok(&run);
    assert!(project.calls().is_empty(), "{:?}", project.calls());
    let (nodes, edges) = read_with_graphviz(&run.stdout);
    assert_eq!(nodes.len(), FULL_STACK_RESOURCES);
    assert!(nodes.values().all(|n| n.fill == UNREAD));
    assert!(edges.iter().filter(|e| e.2 == "solid").count() > FULL_STACK_RESOURCES);

    let mermaid = project.infra(&["graph", "--offline", "--format", "mermaid"]);
    assert_ok(&mermaid);
    assert!(mermaid.stdout.starts_with("flowchart LR"));
    for id in nodes.keys() {
        assert!(mermaid.stdout.contains(&format!("[\"{id}<br/>")), "mermaid lacks {id}");
    }

    // The harness switches the test config to the public route (the ALB).
    let cost = project.infra(&["cost"]);
    assert_ok(&cost);
    assert!(cost.stdout.contains("$146.14/month"), "{cost:?}");
    assert!(cost.stdout.contains("per unit") && cost.stdout.contains("https://aws.amazon.com/vpc/pricing/"), "{cost:?}");
    let json: serde_json::Value = serde_json::from_str(&project.infra(&["cost", "--json"]).stdout).unwrap();
    assert_eq!(json["monthly_usd"], 146.14);
    assert_eq!(json["region"], "us-east-1");
    assert!(project.calls().is_empty());

    let elsewhere = project.infra_env(&["cost"], &[("AWS_REGION", "ap-south-1")]);
    assert_eq!(elsewhere.code, 1, "{elsewhere:?}");
    assert!(elsewhere.stderr.contains("no prices for region ap-south-1") && elsewhere.stderr.contains("eu-west-1, us-east-1"), "{elsewhere:?}");
}

#[test]
fn plan_prints_the_monthly_total_and_what_switching_to_private_saves() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    let fresh = project.infra(&["plan"]);
    assert_eq!(fresh.code, 2, "{fresh:?}");
    assert!(fresh.stdout.contains("Cost: creating the stack adds $146.14/month."), "{fresh:?}");
    assert_ok(&project.infra(&["up"]));

    let same = project.infra(&["plan"]);
    assert_ok(&same);
    assert!(same.stdout.contains("Cost: this plan changes nothing billed ($146.14/month)."), "{same:?}");

    project.edit_config("integration = \"public\"", "integration = \"private\"");
    let switch = project.infra(&["plan"]);
    assert_eq!(switch.code, 2, "{switch:?}");
    assert!(switch.stdout.contains("Cost: integration public → private: -$7.30/month"), "{switch:?}");
    assert!(switch.stdout.contains("$146.14/month now, $138.84/month after `infra up`"), "{switch:?}");
    let json: serde_json::Value = serde_json::from_str(&project.infra(&["plan", "--json"]).stdout).unwrap();
    assert_eq!(json["cost"]["now_monthly_usd"], 146.14);
    assert_eq!(json["cost"]["monthly_usd"], 138.84);
    assert_eq!(json["cost"]["changes"][0]["setting"], "integration");
}
