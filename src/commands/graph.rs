//! `infra graph`: the stack's dependency graph as `up` runs it (`Stack::apply_dag`), in
//! Graphviz DOT, Mermaid, or SVG rendered by Graphviz's `dot`.
//!
//! Nodes are grouped by tier and filled by the status `infra status` reports; the
//! destroy-order edges that no reference expresses (`DELETE_AFTER` / `DELETE_BEFORE`) are
//! dashed and labelled with the error they prevent; after an `up` or `down`, the chain that
//! set its wall time is drawn in blue, each resource with its time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command as Process, Stdio};

use anyhow::{bail, Context, Result};

use super::{offline_region, offline_stack, Session};
use crate::cli::{Cli, GraphFormat};
use crate::config::Settings;
use crate::engine::Health;
use crate::resources::Kind;
use crate::stack::{hidden_delete_edges, Stack, Tier};
use crate::timings::RunTimings;

pub async fn run(cli: &Cli, settings: &Settings, format: GraphFormat, offline: bool) -> Result<u8> {
    let timings_path = crate::timings::path(&cli.state_dir, &settings.config.stack);
    let timings = crate::timings::load(&timings_path).unwrap_or_else(|e| {
        eprintln!("warning: not drawing the last run's times: {e:#}");
        None
    });
    let model = if offline {
        let region = offline_region(settings).await.unwrap_or_else(|| "(region)".into());
        let stack = offline_stack(settings, &region)?;
        let heading = format!("stack {} in {region}: desired graph (--offline: status not read)", settings.config.stack);
        Model::new(&stack, None, timings.as_ref(), heading)
    } else {
        let session = Session::open(cli, settings, true).await?;
        let report = session.engine.status().await?;
        let heading = format!("stack {} in {}: live status", settings.config.stack, session.engine.ctx.aws.region);
        Model::new(&session.engine.stack, Some(&report), timings.as_ref(), heading)
    };
    let text = match format {
        GraphFormat::Dot => model.dot(),
        GraphFormat::Mermaid => model.mermaid(),
        GraphFormat::Svg => svg(&model.dot())?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(0)
}

/// What a node's fill says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Ok,
    Drifted,
    Missing,
    NotCreated,
    /// `--offline`: the status was not read.
    Unread,
    /// In state or tagged for the stack, no longer desired (`up` deletes it).
    Orphaned,
    Duplicate,
}

impl Shown {
    pub const ALL: [Shown; 7] = [Shown::Ok, Shown::Drifted, Shown::Missing, Shown::NotCreated, Shown::Unread, Shown::Orphaned, Shown::Duplicate];

    pub fn word(self) -> &'static str {
        match self {
            Shown::Ok => "ok",
            Shown::Drifted => "drifted",
            Shown::Missing => "missing",
            Shown::NotCreated => "not yet created",
            Shown::Unread => "status not read",
            Shown::Orphaned => "orphaned",
            Shown::Duplicate => "duplicate",
        }
    }

    pub fn fill(self) -> &'static str {
        match self {
            Shown::Ok => "#b9e4c9",
            Shown::Drifted => "#ffd98e",
            Shown::Missing => "#f4a6a6",
            Shown::NotCreated => "#e6e6e6",
            Shown::Unread => "#ffffff",
            Shown::Orphaned | Shown::Duplicate => "#d9c2ec",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Shown::Ok => "ok",
            Shown::Drifted => "drifted",
            Shown::Missing => "missing",
            Shown::NotCreated => "notcreated",
            Shown::Unread => "unread",
            Shown::Orphaned => "orphaned",
            Shown::Duplicate => "duplicate",
        }
    }

    fn from_health(h: &Health) -> Shown {
        match h {
            Health::Ok => Shown::Ok,
            Health::Drifted { .. } => Shown::Drifted,
            Health::Missing => Shown::Missing,
            Health::NotCreated => Shown::NotCreated,
            Health::Orphaned => Shown::Orphaned,
            Health::Duplicate { .. } => Shown::Duplicate,
        }
    }
}

/// The blue of the slowest chain.
pub const CHAIN_COLOUR: &str = "#1f5fbf";
/// The red of the hidden delete-order edges.
pub const HIDDEN_COLOUR: &str = "#b03a2e";

#[derive(Debug, Clone)]
pub struct DrawnNode {
    pub id: String,
    pub kind: Option<Kind>,
    pub tier: Option<Tier>,
    pub shown: Shown,
    /// Drifted fields, a duplicate's original: shown as the tooltip.
    pub detail: Vec<String>,
    pub seconds: Option<f64>,
    pub on_chain: bool,
}

/// A delete-order edge that no reference expresses: `first` is deleted before `second`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    pub first: String,
    pub second: String,
    pub reason: &'static str,
}

/// Everything drawn, independent of the output format.
pub struct Model {
    pub heading: String,
    /// Desired nodes, then extras (orphans, duplicates) with no tier.
    pub nodes: Vec<DrawnNode>,
    /// (dependency, dependant): the create order.
    pub edges: Vec<(String, String)>,
    pub hidden: Vec<Hidden>,
    pub chain: Vec<String>,
    pub chain_note: Option<String>,
}

impl Model {
    pub fn new(stack: &Stack, status: Option<&[(String, String, Health)]>, timings: Option<&RunTimings>, heading: String) -> Model {
        let health: BTreeMap<&str, &Health> = status.unwrap_or_default().iter().map(|(id, _, h)| (id.as_str(), h)).collect();
        let chain: Vec<String> = timings.map(|t| t.chain.iter().map(|l| l.id.clone()).collect()).unwrap_or_default();
        let on_chain: BTreeSet<&str> = chain.iter().map(String::as_str).collect();
        let seconds = |id: &str| timings.and_then(|t| t.resources.get(id).copied());

        let mut nodes: Vec<DrawnNode> = stack
            .nodes
            .values()
            .map(|n| {
                let h = health.get(n.id.as_str());
                let detail = match h {
                    Some(Health::Drifted { changes }) => changes.iter().map(|c| c.to_string()).collect(),
                    _ => Vec::new(),
                };
                DrawnNode {
                    id: n.id.clone(),
                    kind: Some(n.kind),
                    tier: Some(n.tier),
                    shown: match (status, h) {
                        (None, _) => Shown::Unread,
                        (Some(_), Some(h)) => Shown::from_health(h),
                        (Some(_), None) => Shown::NotCreated,
                    },
                    detail,
                    seconds: seconds(&n.id),
                    on_chain: on_chain.contains(n.id.as_str()),
                }
            })
            .collect();
        for (id, pid, h) in status.unwrap_or_default().iter().filter(|(id, _, _)| !stack.nodes.contains_key(id)) {
            let mut detail = vec![pid.clone()];
            if let Health::Duplicate { duplicate_of } = h {
                detail.push(format!("duplicate of {duplicate_of}"));
            }
            nodes.push(DrawnNode {
                id: id.clone(),
                kind: None,
                tier: None,
                shown: Shown::from_health(h),
                detail,
                seconds: seconds(id),
                on_chain: on_chain.contains(id.as_str()),
            });
        }

        let edges = stack.nodes.values().flat_map(|n| n.deps.iter().map(|d| (d.clone(), n.id.clone()))).collect();
        let present: BTreeMap<String, Kind> = stack.nodes.values().map(|n| (n.id.clone(), n.kind)).collect();
        let hidden = hidden_delete_edges(&present)
            .into_iter()
            .filter(|e| !depends_on(stack, e.first, e.second) && !uses_one_of_kind(stack, e.first, present[e.second]))
            .map(|e| Hidden { first: e.first.to_string(), second: e.second.to_string(), reason: e.reason })
            .collect();
        let chain_note = timings.filter(|t| !t.chain.is_empty()).map(|t| {
            let links: Vec<String> = t.chain.iter().map(|l| format!("{} {}", l.id, secs(l.seconds))).collect();
            format!("slowest chain of the last {} ({}, {}): {}", t.command, t.finished_at, secs(t.chain_seconds), links.join(" → "))
        });
        Model { heading, nodes, edges, hidden, chain, chain_note }
    }

    /// Whether `a` and `b` follow each other on the chain (in either order: a `down`'s chain
    /// runs against the create edges).
    fn chain_link(&self, a: &str, b: &str) -> bool {
        self.chain.windows(2).any(|w| (w[0] == a && w[1] == b) || (w[0] == b && w[1] == a))
    }

    fn label_lines(n: &DrawnNode) -> Vec<String> {
        let mut lines = vec![n.id.clone()];
        let mut second = vec![n.kind.map(|k| k.as_str().to_string()).unwrap_or_else(|| "not in the config".into())];
        second.push(n.shown.word().to_string());
        if let Some(s) = n.seconds {
            second.push(secs(s));
        }
        lines.push(second.join(" · "));
        lines
    }

    pub fn dot(&self) -> String {
        let mut out = String::new();
        out.push_str("digraph infra {\n");
        out.push_str("  graph [rankdir=LR, newrank=true, nodesep=0.15, ranksep=0.6, fontname=\"Helvetica\", fontsize=11, labelloc=t, labeljust=l,\n");
        out.push_str(&format!("         label=<{}>];\n", self.legend()));
        out.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10, color=\"#666666\", penwidth=1];\n");
        out.push_str("  edge [color=\"#8a8a8a\", arrowsize=0.6];\n");
        let mut groups: Vec<(String, Vec<&DrawnNode>)> = Tier::ALL
            .iter()
            .map(|t| (t.as_str().to_string(), self.nodes.iter().filter(|n| n.tier == Some(*t)).collect()))
            .collect();
        groups.push(("not in the config (up deletes them)".into(), self.nodes.iter().filter(|n| n.tier.is_none()).collect()));
        for (i, (name, nodes)) in groups.iter().enumerate().filter(|(_, (_, n))| !n.is_empty()) {
            out.push_str(&format!("  subgraph cluster_{i} {{\n    label=\"{}\"; style=\"rounded\"; color=\"#b0b0b0\"; fontsize=12;\n", dot_escape(name)));
            for n in nodes {
                out.push_str(&format!("    {};\n", self.dot_node(n)));
            }
            out.push_str("  }\n");
        }
        for (dep, node) in &self.edges {
            let style = if self.chain_link(dep, node) { format!(" [color=\"{CHAIN_COLOUR}\", penwidth=2.5]") } else { String::new() };
            out.push_str(&format!("  \"{}\" -> \"{}\"{style};\n", dot_escape(dep), dot_escape(node)));
        }
        for h in &self.hidden {
            let colour = if self.chain_link(&h.first, &h.second) { CHAIN_COLOUR } else { HIDDEN_COLOUR };
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [style=dashed, constraint=false, color=\"{colour}\", fontcolor=\"{colour}\", fontsize=8, label=\"{}\", tooltip=\"delete {} before {}: {}\"];\n",
                dot_escape(&h.first),
                dot_escape(&h.second),
                dot_escape(short_reason(h.reason)),
                dot_escape(&h.first),
                dot_escape(&h.second),
                dot_escape(h.reason)
            ));
        }
        out.push_str("}\n");
        out
    }

    fn dot_node(&self, n: &DrawnNode) -> String {
        let label = Self::label_lines(n).iter().map(|l| dot_escape(l)).collect::<Vec<_>>().join("\\n");
        let mut attrs = vec![format!("label=\"{label}\""), format!("fillcolor=\"{}\"", n.shown.fill())];
        if n.shown == Shown::NotCreated {
            attrs.push("style=\"rounded,filled,dashed\"".into());
        }
        if n.on_chain {
            attrs.push(format!("color=\"{CHAIN_COLOUR}\""));
            attrs.push("penwidth=3".into());
        }
        let mut tooltip = vec![format!("{}: {}", n.id, n.shown.word())];
        tooltip.extend(n.detail.iter().cloned());
        attrs.push(format!("tooltip=\"{}\"", dot_escape(&tooltip.join("\n"))));
        format!("\"{}\" [{}]", dot_escape(&n.id), attrs.join(", "))
    }

    /// The heading and the key to the colours, as a Graphviz HTML-like label.
    fn legend(&self) -> String {
        let mut cells = String::new();
        let used: BTreeSet<&str> = self.nodes.iter().map(|n| n.shown.word()).collect();
        for s in Shown::ALL.iter().filter(|s| used.contains(s.word()) || matches!(s, Shown::Ok | Shown::Drifted | Shown::Missing | Shown::NotCreated)) {
            cells.push_str(&format!("<td bgcolor=\"{}\" border=\"1\">&nbsp;{}&nbsp;</td>", s.fill(), html_escape(s.word())));
        }
        cells.push_str(&format!(
            "<td><font color=\"{HIDDEN_COLOUR}\">- - &gt; delete order AWS enforces (the error it prevents)</font></td><td><font color=\"{CHAIN_COLOUR}\">━ slowest chain of the last run</font></td>"
        ));
        let mut rows = format!("<tr><td colspan=\"12\" align=\"left\"><b>{}</b></td></tr>", html_escape(&self.heading));
        rows.push_str(&format!("<tr>{cells}</tr>"));
        if let Some(note) = &self.chain_note {
            rows.push_str(&format!("<tr><td colspan=\"12\" align=\"left\"><font color=\"{CHAIN_COLOUR}\">{}</font></td></tr>", html_escape(note)));
        }
        format!("<table border=\"0\" cellspacing=\"4\" cellborder=\"0\">{rows}</table>")
    }

    pub fn mermaid(&self) -> String {
        let index: BTreeMap<&str, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
        let mut out = String::from("flowchart LR\n");
        out.push_str(&format!("  %% {}\n", self.heading));
        if let Some(note) = &self.chain_note {
            out.push_str(&format!("  %% {note}\n"));
        }
        for tier in Tier::ALL.iter().map(|t| Some(*t)).chain([None]) {
            let nodes: Vec<&DrawnNode> = self.nodes.iter().filter(|n| n.tier == tier).collect();
            if nodes.is_empty() {
                continue;
            }
            let name = tier.map(|t| t.as_str()).unwrap_or("not in the config");
            out.push_str(&format!("  subgraph {} [\"{}\"]\n", tier.map(|t| t.as_str()).unwrap_or("extras"), name));
            for n in nodes {
                let label = Self::label_lines(n).iter().map(|l| mermaid_escape(l)).collect::<Vec<_>>().join("<br/>");
                out.push_str(&format!("    n{}[\"{label}\"]\n", index[n.id.as_str()]));
            }
            out.push_str("  end\n");
        }
        let mut link = 0;
        let mut chain_links = Vec::new();
        for (dep, node) in &self.edges {
            out.push_str(&format!("  n{} --> n{}\n", index[dep.as_str()], index[node.as_str()]));
            if self.chain_link(dep, node) {
                chain_links.push(link);
            }
            link += 1;
        }
        let mut hidden_links = Vec::new();
        for h in &self.hidden {
            out.push_str(&format!("  n{} -.->|\"{}\"| n{}\n", index[h.first.as_str()], mermaid_escape(short_reason(h.reason)), index[h.second.as_str()]));
            if self.chain_link(&h.first, &h.second) { chain_links.push(link) } else { hidden_links.push(link) }
            link += 1;
        }
        for s in Shown::ALL {
            let dashed = if s == Shown::NotCreated { ",stroke-dasharray:4 3" } else { "" };
            out.push_str(&format!("  classDef {} fill:{},stroke:#666666{dashed}\n", s.class(), s.fill()));
        }
        for s in Shown::ALL {
            let ids: Vec<String> = self.nodes.iter().filter(|n| n.shown == s).map(|n| format!("n{}", index[n.id.as_str()])).collect();
            if !ids.is_empty() {
                out.push_str(&format!("  class {} {}\n", ids.join(","), s.class()));
            }
        }
        for n in self.nodes.iter().filter(|n| n.on_chain) {
            out.push_str(&format!("  style n{} stroke:{CHAIN_COLOUR},stroke-width:3px\n", index[n.id.as_str()]));
        }
        for l in hidden_links {
            out.push_str(&format!("  linkStyle {l} stroke:{HIDDEN_COLOUR},color:{HIDDEN_COLOUR}\n"));
        }
        for l in chain_links {
            out.push_str(&format!("  linkStyle {l} stroke:{CHAIN_COLOUR},stroke-width:3px\n"));
        }
        out
    }
}

/// Whether `a` depends on `b` through references, directly or not: then `down` already
/// deletes `a` first, and a hidden edge between them would say nothing new.
fn depends_on(stack: &Stack, a: &str, b: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut frontier = vec![a];
    while let Some(id) = frontier.pop() {
        for dep in stack.nodes.get(id).map(|n| n.deps.as_slice()).unwrap_or_default() {
            if dep == b {
                return true;
            }
            if seen.insert(dep.as_str()) {
                frontier.push(dep);
            }
        }
    }
    false
}

/// Whether `a` references a resource of `kind` itself: then a kind-level rule about `kind`
/// (an association before route tables, a NAT gateway before subnets) is about that one,
/// which the reference already orders; the rule also orders `a` before the others of the
/// kind, but drawing every such pair would bury the picture (and the edges that matter).
fn uses_one_of_kind(stack: &Stack, a: &str, kind: Kind) -> bool {
    stack.nodes.get(a).is_some_and(|n| n.deps.iter().any(|d| stack.nodes.get(d).is_some_and(|dn| dn.kind == kind)))
}

/// The error a hidden edge prevents, without the explanation after it
/// (`DeleteSubnet: DependencyViolation while tasks …` → `DeleteSubnet: DependencyViolation`).
pub fn short_reason(reason: &str) -> &str {
    match reason.split_once(':') {
        Some((call, rest)) if !call.contains(' ') => {
            let end = [" while ", ", "].iter().filter_map(|s| rest.find(s)).min().unwrap_or(rest.len());
            &reason[..call.len() + 1 + end]
        }
        _ => reason,
    }
}

fn secs(s: f64) -> String {
    crate::progress::short_duration(std::time::Duration::from_secs_f64(s.max(0.0)))
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// SVG from Graphviz's `dot`, the reference renderer of the DOT it reads.
pub fn svg(dot: &str) -> Result<String> {
    let mut child = match Process::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--format svg renders with Graphviz's `dot`, which is not on PATH: install graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), or use --format dot or --format mermaid"
        ),
        Err(e) => return Err(e).context("starting Graphviz's `dot`"),
    };
    let mut stdin = child.stdin.take().expect("piped");
    let input = dot.to_string();
    // Written from another thread, so a large graph cannot fill both pipes and stall.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().context("running Graphviz's `dot -Tsvg`")?;
    writer.join().expect("writer thread").context("writing the graph to `dot`")?;
    if !out.status.success() {
        bail!("Graphviz's `dot -Tsvg` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).context("`dot -Tsvg` wrote something that is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::timings::Link;

    fn stack(integration: &str) -> Stack {
        let mut cfg = Config::with_defaults("books");
        cfg.integration = integration.into();
        Stack::desired(&cfg.validate().unwrap(), &["(AZ 1)".into(), "(AZ 2)".into()], "us-east-1", "(account)").unwrap()
    }

    /// What Graphviz itself read from the DOT: node names with their fill and pen width,
    /// and edges as (tail, head, style).
    fn graphviz_reads(dot: &str) -> (BTreeMap<String, (String, String)>, BTreeSet<(String, String, String)>) {
        let mut child = Process::new("dot")
            .arg("-Tjson")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("Graphviz's `dot` (scripts/test.sh installs graphviz)");
        child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "dot rejected the graph: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "dot warned: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let objects = json["objects"].as_array().unwrap();
        let mut nodes = BTreeMap::new();
        let mut names = BTreeMap::new();
        for o in objects.iter().filter(|o| o.get("nodes").is_none() && o.get("subgraphs").is_none()) {
            let name = o["name"].as_str().unwrap().to_string();
            names.insert(o["_gvid"].as_u64().unwrap(), name.clone());
            let attr = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            nodes.insert(name, (attr("fillcolor"), attr("penwidth")));
        }
        let edges = json["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let end = |k: &str| names[&e[k].as_u64().unwrap()].clone();
                (end("tail"), end("head"), e.get("style").and_then(|s| s.as_str()).unwrap_or("solid").to_string())
            })
            .collect();
        (nodes, edges)
    }

    #[test]
    fn graph_dot_has_every_logical_id_and_every_edge_of_the_dag_as_graphviz_reads_it() {
        for integration in ["public", "private"] {
            let s = stack(integration);
            let model = Model::new(&s, None, None, "test".into());
            let (nodes, edges) = graphviz_reads(&model.dot());
            let ids: BTreeSet<&String> = s.nodes.keys().collect();
            assert_eq!(nodes.keys().collect::<BTreeSet<_>>(), ids, "{integration}");
            assert!(nodes.values().all(|(fill, _)| fill == Shown::Unread.fill()));
            // Every edge of the DAG `up` runs, drawn solid from the dependency to the dependant.
            let solid: BTreeSet<(String, String)> = edges.iter().filter(|e| e.2 == "solid").map(|e| (e.0.clone(), e.1.clone())).collect();
            let dag: BTreeSet<(String, String)> = s.nodes.values().flat_map(|n| n.deps.iter().map(|d| (d.clone(), n.id.clone()))).collect();
            assert_eq!(solid, dag, "{integration}");
            s.apply_dag().topological_order().unwrap();
            // Every hidden delete edge is drawn dashed, unless references already order it.
            let present: BTreeMap<String, Kind> = s.nodes.values().map(|n| (n.id.clone(), n.kind)).collect();
            let dashed: BTreeSet<(String, String)> = edges.iter().filter(|e| e.2 == "dashed").map(|e| (e.0.clone(), e.1.clone())).collect();
            assert!(!dashed.is_empty());
            for e in hidden_delete_edges(&present) {
                let pair = (e.first.to_string(), e.second.to_string());
                let covered = depends_on(&s, e.first, e.second) || uses_one_of_kind(&s, e.first, present[e.second]);
                assert_eq!(dashed.contains(&pair), !covered, "{pair:?}");
            }
            let public_ip = if integration == "public" { "alb" } else { "elastic_ip.a" };
            assert!(dashed.contains(&(public_ip.to_string(), "internet_gateway".to_string())), "public addresses before the IGW detaches: {dashed:?}");
            assert!(dashed.len() < 20, "{dashed:?}");
        }
    }

    #[test]
    fn graph_colours_follow_status_and_the_chain_is_highlighted() {
        let s = stack("public");
        let mut status: Vec<(String, String, Health)> = s.nodes.keys().map(|id| (id.clone(), format!("pid-{id}"), Health::Ok)).collect();
        status.retain(|(id, _, _)| id != "api.stage");
        for (id, _, h) in status.iter_mut() {
            match id.as_str() {
                "log_group.service" => *h = Health::Drifted { changes: vec![crate::resources::FieldChange::new("retention_in_days", 30, 7)] },
                "sg.db" => *h = Health::Missing,
                _ => {}
            }
        }
        status.push(("nlb".into(), "arn:nlb".into(), Health::Orphaned));
        let timings = RunTimings {
            version: crate::timings::FORMAT_VERSION,
            command: "up".into(),
            finished_at: "2025-01-01T00:00:00Z".into(),
            chain_seconds: 9.0,
            chain: vec![Link { id: "vpc".into(), seconds: 1.0 }, Link { id: "subnet.db.a".into(), seconds: 2.0 }, Link { id: "db_subnet_group".into(), seconds: 6.0 }],
            resources: [("vpc".to_string(), 1.0), ("subnet.db.a".to_string(), 2.0), ("db_subnet_group".to_string(), 6.0), ("sg.alb".to_string(), 0.5)].into(),
        };
        let model = Model::new(&s, Some(&status), Some(&timings), "test".into());
        let dot = model.dot();
        let (nodes, edges) = graphviz_reads(&dot);
        assert_eq!(nodes["vpc"].0, Shown::Ok.fill());
        assert_eq!(nodes["log_group.service"].0, Shown::Drifted.fill());
        assert_eq!(nodes["sg.db"].0, Shown::Missing.fill());
        assert_eq!(nodes["api.stage"].0, Shown::NotCreated.fill());
        assert_eq!(nodes["nlb"].0, Shown::Orphaned.fill());
        let thick: BTreeSet<&str> = nodes.iter().filter(|(_, (_, pen))| pen == "3").map(|(id, _)| id.as_str()).collect();
        assert_eq!(thick, ["db_subnet_group", "subnet.db.a", "vpc"].into());
        assert!(edges.contains(&("vpc".into(), "subnet.db.a".into(), "solid".into())));
        assert!(dot.contains(&format!("\"vpc\" -> \"subnet.db.a\" [color=\"{CHAIN_COLOUR}\", penwidth=2.5]")));
        assert!(dot.contains("db_subnet_group\\ndb_subnet_group · ok · 6.0s"), "{dot}");
        assert!(dot.contains("retention_in_days: wanted 30, found 7"));
        let mermaid = model.mermaid();
        for id in s.nodes.keys() {
            assert!(mermaid.contains(&format!("[\"{id}<br/>")), "mermaid lacks {id}");
        }
        assert!(mermaid.contains("classDef drifted fill:#ffd98e"));
        assert_eq!(mermaid.matches(" --> ").count(), model.edges.len());
        assert_eq!(mermaid.matches(" -.->|").count(), model.hidden.len());
    }

    #[test]
    fn graph_svg_renders_with_graphviz() {
        let model = Model::new(&stack("private"), None, None, "a \"quoted\" <heading> & more".into());
        let svg = svg(&model.dot()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("vpc_link") && svg.contains("&lt;heading&gt;"), "{}", &svg[..svg.len().min(400)]);
    }

    #[test]
    fn graph_hidden_edges_are_labelled_with_the_error_only() {
        assert_eq!(short_reason("DeleteSubnet: DependencyViolation while tasks have interfaces in the subnet"), "DeleteSubnet: DependencyViolation");
        assert_eq!(short_reason("DetachInternetGateway: DependencyViolation, the VPC still has mapped public addresses"), "DetachInternetGateway: DependencyViolation");
        assert_eq!(short_reason("a route to a deleted NAT gateway turns into a blackhole"), "a route to a deleted NAT gateway turns into a blackhole");
    }
}
