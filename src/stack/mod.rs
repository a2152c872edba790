//! The architecture: the desired resources, their specs and their edges, one file per tier.

mod compute;
mod data;
mod edge;
mod network;

pub use compute::front;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use crate::config::Settings;
use crate::graph::Dag;
use crate::resources::{DynResource, Kind, Registered};

/// What a spec shows for an id or attribute that does not exist yet (in `plan`).
pub const UNKNOWN: &str = "(known after up)";

/// What the state knows of converged resources, by logical id: physical id and attributes.
pub type Known = BTreeMap<String, (String, BTreeMap<String, String>)>;

/// What a spec builder may read of other resources: their physical ids and attributes.
/// Every read is remembered, and the reads are the node's dependencies, so the two never
/// drift apart.
pub struct Refs<'a> {
    known: &'a Known,
    read: RefCell<BTreeSet<String>>,
}

impl Refs<'_> {
    pub fn new(known: &Known) -> Refs<'_> {
        Refs { known, read: RefCell::default() }
    }

    pub fn id(&self, logical: &str) -> String {
        self.read.borrow_mut().insert(logical.to_string());
        self.known.get(logical).map(|(id, _)| id.clone()).unwrap_or_else(|| UNKNOWN.to_string())
    }

    /// An attribute recorded in state (ARN, DNS name, endpoint, ...).
    pub fn attr(&self, logical: &str, name: &str) -> String {
        self.read.borrow_mut().insert(logical.to_string());
        self.known.get(logical).and_then(|(_, attrs)| attrs.get(name).cloned()).unwrap_or_else(|| UNKNOWN.to_string())
    }
}

type Build = Box<dyn Fn(&Refs) -> Box<dyn DynResource> + Send + Sync>;

pub struct Node {
    pub id: String,
    pub kind: Kind,
    /// The tier (file of `src/stack/`) that declares the node.
    pub tier: Tier,
    /// The ids the builder reads, plus ordering edges no reference expresses.
    pub deps: Vec<String>,
    build: Build,
}

impl Node {
    pub fn spec(&self, refs: &Refs) -> Box<dyn DynResource> {
        (self.build)(refs)
    }
}

/// The area of the architecture a node belongs to: one file of `src/stack/` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Network,
    Data,
    Compute,
    Edge,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Network, Tier::Data, Tier::Compute, Tier::Edge];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Network => "network",
            Tier::Data => "data",
            Tier::Compute => "compute",
            Tier::Edge => "edge",
        }
    }
}

/// The desired stack for the validated settings and the two AZ names.
#[derive(Default)]
pub struct Stack {
    pub nodes: BTreeMap<String, Node>,
    /// The tier whose nodes are being added (see `desired`).
    adding: Tier,
}

impl Stack {
    /// Every tier's resources; an error if their dependencies form a cycle. `account` names
    /// the payload bucket and scopes ARNs.
    pub fn desired(settings: &Settings, azs: &[String], region: &str, account: &str) -> Result<Stack> {
        let mut stack = Stack::default();
        stack.adding = Tier::Network;
        network::add(&mut stack, settings, azs);
        stack.adding = Tier::Data;
        data::add(&mut stack, settings, region, account);
        stack.adding = Tier::Compute;
        compute::add(&mut stack, settings, region);
        stack.adding = Tier::Edge;
        edge::add(&mut stack, settings, region, account);
        stack.check()?;
        Ok(stack)
    }

    /// Every dependency is a node of the stack, and they form no cycle.
    fn check(&self) -> Result<()> {
        for node in self.nodes.values() {
            if let Some(missing) = node.deps.iter().find(|d| !self.nodes.contains_key(*d)) {
                bail!("stack definition: {} depends on {missing}, which is not in the stack", node.id);
            }
        }
        if let Err(cycle) = self.apply_dag().topological_order() {
            bail!("stack definition: {cycle}");
        }
        Ok(())
    }

    /// Adds a node. Its kind comes from the spec's type, its dependencies from what the
    /// builder reads (found by building it once against nothing known) plus `after`:
    /// orderings that no reference expresses, each to be explained where it is declared.
    pub fn add<S: Registered + DynResource + 'static>(
        &mut self,
        id: &str,
        after: &[&str],
        build: impl Fn(&Refs) -> S + Send + Sync + 'static,
    ) {
        let nothing = Known::new();
        let probe = Refs::new(&nothing);
        drop(build(&probe));
        let mut deps: BTreeSet<String> = probe.read.into_inner();
        deps.extend(after.iter().map(|a| a.to_string()));
        deps.remove(id);
        let node = Node { id: id.to_string(), kind: S::KIND, tier: self.adding, deps: deps.into_iter().collect(), build: Box::new(move |r| Box::new(build(r))) };
        self.nodes.insert(id.to_string(), node);
    }

    /// The create/update order: each node after its dependencies.
    pub fn apply_dag(&self) -> Dag {
        let mut dag = Dag::new();
        for node in self.nodes.values() {
            dag.add_node(&node.id);
            for dep in &node.deps {
                dag.add_edge(&node.id, dep);
            }
        }
        dag
    }
}

/// The delete order for the resources in `present` (logical id → kind): the reverse of
/// the desired edges, plus the hidden edges by kind (which also order orphans and
/// duplicates that are not in the desired stack).
pub fn destroy_dag(stack: &Stack, present: &BTreeMap<String, Kind>) -> Dag {
    let mut dag = Dag::new();
    for id in present.keys() {
        dag.add_node(id);
    }
    for node in stack.nodes.values().filter(|n| present.contains_key(&n.id)) {
        for dep in node.deps.iter().filter(|d| present.contains_key(*d)) {
            // The dependency is deleted only after its dependant is gone.
            dag.add_edge(dep, &node.id);
        }
    }
    for edge in hidden_delete_edges(present) {
        dag.add_edge(edge.second, edge.first);
    }
    dag
}

/// An ordering of `down` that no reference expresses: `first` must be gone before
/// `second` is deleted, or AWS answers with the error `reason` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenEdge<'a> {
    pub first: &'a str,
    pub second: &'a str,
    pub reason: &'static str,
}

/// AWS's hidden dependencies among `present`, declared by the kinds (`DELETE_AFTER`,
/// `DELETE_BEFORE`), with the reason each declaration gives.
pub fn hidden_delete_edges(present: &BTreeMap<String, Kind>) -> Vec<HiddenEdge<'_>> {
    let mut edges = Vec::new();
    for (first, first_kind) in present {
        for (second, second_kind) in present {
            let by_second = second_kind.delete_after().iter().find(|(k, _)| k == first_kind);
            let by_first = first_kind.delete_before().iter().find(|(k, _)| k == second_kind);
            if let Some((_, reason)) = by_second.or(by_first) {
                if first != second {
                    edges.push(HiddenEdge { first, second, reason });
                }
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn stack(nat: u8) -> Stack {
        let mut cfg = Config::with_defaults("books");
        cfg.nat_gateways = nat;
        // The public route's layout (the `alb` group); the private one has no ALB.
        cfg.integration = "public".into();
        Stack::desired(&cfg.validate().unwrap(), &["us-east-1a".into(), "us-east-1b".into()], "us-east-1", "123456789012").unwrap()
    }

    #[test]
    fn network_tier_has_every_resource() {
        let s = stack(1);
        let count = |k: Kind| s.nodes.values().filter(|n| n.kind == k).count();
        assert_eq!(count(Kind::Subnet), 6);
        assert_eq!(count(Kind::NatGateway), 1);
        assert_eq!(count(Kind::RouteTableAssociation), 6);
        assert_eq!(count(Kind::SecurityGroup), 3);
        assert_eq!(stack(2).nodes.values().filter(|n| n.kind == Kind::NatGateway).count(), 2);
        s.apply_dag().topological_order().unwrap();
    }

    #[test]
    fn dependencies_are_what_the_builders_read() {
        let s = stack(1);
        assert_eq!(s.nodes["nat_gateway.a"].deps, ["elastic_ip.a", "internet_gateway", "subnet.public.a"]);
        assert_eq!(s.nodes["sg.db"].deps, ["sg.ecs", "vpc"]);
        assert_eq!(s.nodes["route.ecs.b.default"].deps, ["nat_gateway.a", "route_table.ecs.b"]);
        assert!(s.nodes["vpc"].deps.is_empty());
        assert_eq!(s.nodes["vpc"].kind, Kind::Vpc, "the kind comes from the spec's type");
    }

    #[test]
    fn refs_hand_out_ids_and_attributes_and_remember_reads() {
        let mut known = Known::new();
        known.insert("alb".into(), ("arn:alb".into(), [("dns_name".to_string(), "alb.example".to_string())].into()));
        let refs = Refs::new(&known);
        assert_eq!(refs.id("alb"), "arn:alb");
        assert_eq!(refs.attr("alb", "dns_name"), "alb.example");
        assert_eq!(refs.attr("db", "endpoint"), UNKNOWN);
        assert_eq!(refs.read.into_inner(), ["alb".to_string(), "db".to_string()].into());
    }

    #[test]
    fn a_dependency_cycle_is_an_error_when_the_stack_is_built() {
        use crate::resources::network::vpc::VpcSpec;
        use crate::resources::StackTags;
        let mut s = Stack::default();
        s.add("a", &[], |r| VpcSpec { tags: StackTags::new("t", "a"), cidr: r.id("b") });
        s.add("b", &[], |r| VpcSpec { tags: StackTags::new("t", "b"), cidr: r.id("a") });
        assert!(s.check().unwrap_err().to_string().contains("cycle"));
        let mut s = Stack::default();
        s.add("a", &["nowhere"], |_| VpcSpec { tags: StackTags::new("t", "a"), cidr: String::new() });
        assert!(s.check().unwrap_err().to_string().contains("nowhere"));
    }

    #[test]
    fn destroy_order_respects_hidden_edges() {
        let s = stack(1);
        let present: BTreeMap<String, Kind> = s.nodes.values().map(|n| (n.id.clone(), n.kind)).collect();
        let order = destroy_dag(&s, &present).topological_order().unwrap();
        let pos = |id: &str| order.iter().position(|o| o == id).unwrap();
        assert!(pos("nat_gateway.a") < pos("elastic_ip.a"));
        assert!(pos("elastic_ip.a") < pos("internet_gateway"));
        assert!(pos("route.ecs.a.default") < pos("nat_gateway.a"));
        assert!(pos("sg.db") < pos("sg.ecs") && pos("sg.ecs") < pos("sg.alb"));
        assert!(pos("association.db.b") < pos("route_table.db"));
        assert_eq!(order.last().unwrap(), "vpc");
    }

    #[test]
    fn every_node_names_the_tier_that_declares_it() {
        let s = stack(1);
        let tier = |id: &str| s.nodes[id].tier;
        assert_eq!(tier("vpc"), Tier::Network);
        assert_eq!(tier("sg.db"), Tier::Network);
        assert_eq!(tier("db_cluster"), Tier::Data);
        assert_eq!(tier("ecs_service"), Tier::Compute);
        assert_eq!(tier("api.stage"), Tier::Edge);
        for t in Tier::ALL {
            assert!(s.nodes.values().any(|n| n.tier == t), "no node in tier {}", t.as_str());
        }
    }

    #[test]
    fn hidden_edges_carry_the_reason_their_kind_declares() {
        let s = stack(1);
        let present: BTreeMap<String, Kind> = s.nodes.values().map(|n| (n.id.clone(), n.kind)).collect();
        let edges = hidden_delete_edges(&present);
        let nat = edges.iter().find(|e| e.first == "nat_gateway.a" && e.second == "elastic_ip.a").expect("NAT before its EIP");
        assert!(nat.reason.contains("InUse"), "{nat:?}");
        assert!(edges.iter().all(|e| e.first != e.second));
    }

    #[test]
    fn orphans_are_ordered_by_kind() {
        let s = stack(1);
        let mut present = BTreeMap::new();
        present.insert("nat_gateway.z".to_string(), Kind::NatGateway);
        present.insert("elastic_ip.z".to_string(), Kind::ElasticIp);
        present.insert("vpc".to_string(), Kind::Vpc);
        let order = destroy_dag(&s, &present).topological_order().unwrap();
        assert_eq!(order[0], "nat_gateway.z", "{order:?}");
    }
}
