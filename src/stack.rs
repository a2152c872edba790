//! The architecture: the desired resources, their specs and their edges.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::graph::Dag;
use crate::resources::network::elastic_ip::ElasticIpSpec;
use crate::resources::network::internet_gateway::InternetGatewaySpec;
use crate::resources::network::nat_gateway::NatGatewaySpec;
use crate::resources::network::route::{RouteSpec, RouteTarget};
use crate::resources::network::route_table::RouteTableSpec;
use crate::resources::network::route_table_association::RouteTableAssociationSpec;
use crate::resources::network::security_group::{IngressRule, SecurityGroupSpec, Source};
use crate::resources::network::subnet::SubnetSpec;
use crate::resources::network::vpc::VpcSpec;
use crate::resources::{DynResource, Kind, StackTags};

/// What a spec shows for an id that does not exist yet (in `plan`).
pub const UNKNOWN: &str = "(known after up)";

/// Physical ids of already-converged resources, by logical id.
pub struct Refs<'a> {
    ids: &'a BTreeMap<String, String>,
}

impl Refs<'_> {
    pub fn new(ids: &BTreeMap<String, String>) -> Refs<'_> {
        Refs { ids }
    }

    pub fn id(&self, logical: &str) -> String {
        self.ids.get(logical).cloned().unwrap_or_else(|| UNKNOWN.to_string())
    }
}

type Build = Box<dyn Fn(&Refs) -> Box<dyn DynResource> + Send + Sync>;

/// Boxes a spec builder (closures returning a concrete spec don't coerce on their own).
fn build<S: DynResource + 'static>(f: impl Fn(&Refs) -> S + Send + Sync + 'static) -> Build {
    Box::new(move |r| Box::new(f(r)))
}

pub struct Node {
    pub id: String,
    pub kind: Kind,
    pub deps: Vec<String>,
    build: Build,
}

impl Node {
    pub fn spec(&self, refs: &Refs) -> Box<dyn DynResource> {
        (self.build)(refs)
    }
}

/// The desired stack for the validated settings and the two AZ names.
pub struct Stack {
    pub nodes: BTreeMap<String, Node>,
}

const AZ_LETTERS: [&str; 2] = ["a", "b"];
const SUBNET_GROUPS: [&str; 3] = ["public", "ecs", "db"];

impl Stack {
    pub fn desired(settings: &Settings, azs: &[String]) -> Stack {
        let cfg = &settings.config;
        let stack = cfg.stack.clone();
        let tags = move |id: &str| StackTags::new(&stack, id);
        let mut nodes = BTreeMap::new();
        let mut add = |id: &str, kind: Kind, deps: &[&str], build: Build| {
            nodes.insert(
                id.to_string(),
                Node { id: id.to_string(), kind, deps: deps.iter().map(|d| d.to_string()).collect(), build },
            );
        };

        let (t, cidr) = (tags("vpc"), settings.vpc_cidr.to_string());
        add("vpc", Kind::Vpc, &[], build(move |_| VpcSpec { tags: t.clone(), cidr: cidr.clone() }));

        let t = tags("internet_gateway");
        add(
            "internet_gateway",
            Kind::InternetGateway,
            &["vpc"],
            build(move |r| InternetGatewaySpec { tags: t.clone(), vpc_id: r.id("vpc") }),
        );

        for (g, group) in SUBNET_GROUPS.iter().enumerate() {
            for (z, letter) in AZ_LETTERS.iter().enumerate() {
                let id = format!("subnet.{group}.{letter}");
                let t = tags(&id);
                let cidr = settings.subnet_cidrs[g * 2 + z].to_string();
                let az = azs[z].clone();
                let public = *group == "public";
                add(
                    &id,
                    Kind::Subnet,
                    &["vpc"],
                    build(move |r| {
                        SubnetSpec {
                            tags: t.clone(),
                            vpc_id: r.id("vpc"),
                            cidr: cidr.clone(),
                            availability_zone: az.clone(),
                            map_public_ip_on_launch: public,
                        }
                    }),
                );
            }
        }

        let nat_letters = &AZ_LETTERS[..cfg.nat_gateways as usize];
        for letter in nat_letters {
            let eip = format!("elastic_ip.{letter}");
            let t = tags(&eip);
            add(&eip, Kind::ElasticIp, &[], build(move |_| ElasticIpSpec { tags: t.clone() }));

            let nat = format!("nat_gateway.{letter}");
            let subnet = format!("subnet.public.{letter}");
            let t = tags(&nat);
            let (s, e) = (subnet.clone(), eip.clone());
            // A public NAT gateway in a VPC without an attached internet gateway fails
            // to create (Gateway.NotAttached).
            add(
                &nat,
                Kind::NatGateway,
                &[&subnet, &eip, "internet_gateway"],
                build(move |r| NatGatewaySpec { tags: t.clone(), subnet_id: r.id(&s), allocation_id: r.id(&e) }),
            );
        }

        let route_table = |id: &str| {
            let t = tags(id);
            (id.to_string(), build(move |r| RouteTableSpec { tags: t.clone(), vpc_id: r.id("vpc") }))
        };
        let mut tables = vec![route_table("route_table.public")];
        for letter in AZ_LETTERS {
            tables.push(route_table(&format!("route_table.ecs.{letter}")));
        }
        tables.push(route_table("route_table.db"));
        for (id, build) in tables {
            add(&id, Kind::RouteTable, &["vpc"], build);
        }

        add(
            "route.public.default",
            Kind::Route,
            &["route_table.public", "internet_gateway"],
            build(|r| {
                RouteSpec {
                    route_table_id: r.id("route_table.public"),
                    destination: "0.0.0.0/0".into(),
                    target: RouteTarget::InternetGateway(r.id("internet_gateway")),
                }
            }),
        );
        for letter in AZ_LETTERS {
            let table = format!("route_table.ecs.{letter}");
            // With one NAT gateway both AZs share it; with one per AZ each uses its own.
            let nat = format!("nat_gateway.{}", if cfg.nat_gateways == 1 { "a" } else { letter });
            let (tb, n) = (table.clone(), nat.clone());
            add(
                &format!("route.ecs.{letter}.default"),
                Kind::Route,
                &[&table, &nat],
                build(move |r| {
                    RouteSpec {
                        route_table_id: r.id(&tb),
                        destination: "0.0.0.0/0".into(),
                        target: RouteTarget::NatGateway(r.id(&n)),
                    }
                }),
            );
        }

        for group in SUBNET_GROUPS {
            for letter in AZ_LETTERS {
                let subnet = format!("subnet.{group}.{letter}");
                let table = match group {
                    "ecs" => format!("route_table.ecs.{letter}"),
                    _ => format!("route_table.{group}"),
                };
                let (s, tb) = (subnet.clone(), table.clone());
                add(
                    &format!("association.{group}.{letter}"),
                    Kind::RouteTableAssociation,
                    &[&table, &subnet],
                    build(move |r| RouteTableAssociationSpec { route_table_id: r.id(&tb), subnet_id: r.id(&s) }),
                );
            }
        }

        let port = cfg.container_port;
        let sg = |id: &'static str, description: &'static str, rule: Box<dyn Fn(&Refs) -> IngressRule + Send + Sync>| {
            let t = tags(id);
            build(move |r| {
                SecurityGroupSpec {
                    tags: t.clone(),
                    vpc_id: r.id("vpc"),
                    description: description.to_string(),
                    ingress: [rule(r)].into(),
                }
            })
        };
        add(
            "sg.alb",
            Kind::SecurityGroup,
            &["vpc"],
            sg("sg.alb", "Load balancer: HTTP from anywhere", Box::new(|_| IngressRule::tcp(80, Source::Cidr("0.0.0.0/0".into())))),
        );
        add(
            "sg.ecs",
            Kind::SecurityGroup,
            &["vpc", "sg.alb"],
            sg("sg.ecs", "Service tasks: container port from the load balancer", Box::new(move |r| IngressRule::tcp(port, Source::Group(r.id("sg.alb"))))),
        );
        add(
            "sg.db",
            Kind::SecurityGroup,
            &["vpc", "sg.ecs"],
            sg("sg.db", "Aurora: PostgreSQL from the service tasks", Box::new(|r| IngressRule::tcp(5432, Source::Group(r.id("sg.ecs"))))),
        );

        Stack { nodes }
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

/// AWS's hidden dependencies, by kind: the first must be gone before the second is
/// deleted, whatever the logical ids. Each names the error it prevents.
pub const DESTROY_BEFORE: &[(Kind, Kind, &str)] = &[
    (Kind::NatGateway, Kind::ElasticIp, "ReleaseAddress: InvalidIPAddress.InUse while a NAT gateway holds the address"),
    (Kind::NatGateway, Kind::InternetGateway, "DetachInternetGateway: DependencyViolation, the VPC still has mapped public addresses"),
    (Kind::ElasticIp, Kind::InternetGateway, "DetachInternetGateway: DependencyViolation, the VPC still has mapped public addresses"),
    (Kind::NatGateway, Kind::Subnet, "DeleteSubnet: DependencyViolation while the NAT gateway's interface is in the subnet"),
    (Kind::Route, Kind::RouteTable, "routes go with their table; deleting them first keeps DeleteRoute from failing with NotFound noise"),
    (Kind::Route, Kind::NatGateway, "a route to a deleted NAT gateway turns into a blackhole"),
    (Kind::RouteTableAssociation, Kind::RouteTable, "DeleteRouteTable: DependencyViolation while a subnet is associated"),
    (Kind::RouteTableAssociation, Kind::Subnet, "DeleteSubnet leaves the association dangling"),
    (Kind::Subnet, Kind::Vpc, "DeleteVpc: DependencyViolation while subnets remain"),
    (Kind::NatGateway, Kind::Vpc, "DeleteVpc: DependencyViolation while a NAT gateway's interface remains"),
    (Kind::RouteTable, Kind::Vpc, "DeleteVpc: DependencyViolation while non-main route tables remain"),
    (Kind::SecurityGroup, Kind::Vpc, "DeleteVpc: DependencyViolation while non-default security groups remain"),
    (Kind::InternetGateway, Kind::Vpc, "DeleteVpc: DependencyViolation while an internet gateway is attached"),
];

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
    for (first, first_kind) in present {
        for (second, second_kind) in present {
            if DESTROY_BEFORE.iter().any(|(a, b, _)| a == first_kind && b == second_kind) {
                dag.add_edge(second, first);
            }
        }
    }
    dag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn stack(nat: u8) -> Stack {
        let mut cfg = Config::with_defaults("books");
        cfg.nat_gateways = nat;
        Stack::desired(&cfg.validate().unwrap(), &["us-east-1a".into(), "us-east-1b".into()])
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
