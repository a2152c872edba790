//! The network tier: VPC, internet gateway, subnets (public / ecs / db × 2 AZs), Elastic
//! IPs and NAT gateways, route tables with their default routes and associations, and the
//! `alb` / `ecs` / `db` security groups (no `alb` group with a private integration: the
//! internal NLB has none, and the tasks admit the VPC's range, where its addresses are).

use super::Stack;
use crate::config::{Integration, Settings};
use crate::resources::network::elastic_ip::ElasticIpSpec;
use crate::resources::network::internet_gateway::InternetGatewaySpec;
use crate::resources::network::nat_gateway::NatGatewaySpec;
use crate::resources::network::route::{RouteSpec, RouteTarget};
use crate::resources::network::route_table::RouteTableSpec;
use crate::resources::network::route_table_association::RouteTableAssociationSpec;
use crate::resources::network::security_group::{IngressRule, SecurityGroupSpec, Source};
use crate::resources::network::subnet::SubnetSpec;
use crate::resources::network::vpc::VpcSpec;
use crate::resources::StackTags;

pub const AZ_LETTERS: [&str; 2] = ["a", "b"];
pub const SUBNET_GROUPS: [&str; 3] = ["public", "ecs", "db"];

pub fn add(stack: &mut Stack, settings: &Settings, azs: &[String]) {
    let cfg = &settings.config;
    let name = cfg.stack.clone();
    let tags = move |id: &str| StackTags::new(&name, id);

    let (t, cidr) = (tags("vpc"), settings.vpc_cidr.to_string());
    stack.add("vpc", &[], move |_| VpcSpec { tags: t.clone(), cidr: cidr.clone() });

    let t = tags("internet_gateway");
    stack.add("internet_gateway", &[], move |r| InternetGatewaySpec { tags: t.clone(), vpc_id: r.id("vpc") });

    for (g, group) in SUBNET_GROUPS.iter().enumerate() {
        for (z, letter) in AZ_LETTERS.iter().enumerate() {
            let id = format!("subnet.{group}.{letter}");
            let t = tags(&id);
            let cidr = settings.subnet_cidrs[g * 2 + z].to_string();
            let az = azs[z].clone();
            let public = *group == "public";
            stack.add(&id, &[], move |r| SubnetSpec {
                tags: t.clone(),
                vpc_id: r.id("vpc"),
                cidr: cidr.clone(),
                availability_zone: az.clone(),
                map_public_ip_on_launch: public,
            });
        }
    }

    for letter in &AZ_LETTERS[..cfg.nat_gateways as usize] {
        let eip = format!("elastic_ip.{letter}");
        let t = tags(&eip);
        stack.add(&eip, &[], move |_| ElasticIpSpec { tags: t.clone() });

        let nat = format!("nat_gateway.{letter}");
        let subnet = format!("subnet.public.{letter}");
        let t = tags(&nat);
        // A public NAT gateway in a VPC without an attached internet gateway fails to
        // create (Gateway.NotAttached).
        stack.add(&nat, &["internet_gateway"], move |r| NatGatewaySpec {
            tags: t.clone(),
            subnet_id: r.id(&subnet),
            allocation_id: r.id(&eip),
        });
    }

    let mut tables = vec!["route_table.public".to_string(), "route_table.db".to_string()];
    tables.extend(AZ_LETTERS.iter().map(|l| format!("route_table.ecs.{l}")));
    for id in tables {
        let t = tags(&id);
        stack.add(&id, &[], move |r| RouteTableSpec { tags: t.clone(), vpc_id: r.id("vpc") });
    }

    stack.add("route.public.default", &[], |r| RouteSpec {
        route_table_id: r.id("route_table.public"),
        destination: "0.0.0.0/0".into(),
        target: RouteTarget::InternetGateway(r.id("internet_gateway")),
    });
    for letter in AZ_LETTERS {
        let table = format!("route_table.ecs.{letter}");
        // With one NAT gateway both AZs share it; with one per AZ each uses its own.
        let nat = format!("nat_gateway.{}", if cfg.nat_gateways == 1 { "a" } else { letter });
        stack.add(&format!("route.ecs.{letter}.default"), &[], move |r| RouteSpec {
            route_table_id: r.id(&table),
            destination: "0.0.0.0/0".into(),
            target: RouteTarget::NatGateway(r.id(&nat)),
        });
    }

    for group in SUBNET_GROUPS {
        for letter in AZ_LETTERS {
            let subnet = format!("subnet.{group}.{letter}");
            let table = match group {
                "ecs" => format!("route_table.ecs.{letter}"),
                _ => format!("route_table.{group}"),
            };
            stack.add(&format!("association.{group}.{letter}"), &[], move |r| RouteTableAssociationSpec {
                route_table_id: r.id(&table),
                subnet_id: r.id(&subnet),
            });
        }
    }

    let port = cfg.container_port;
    let sg = |id: &str, description: &'static str| (tags(id), description.to_string());
    let private = settings.integration == Integration::Private;
    if !private {
        let (t, d) = sg("sg.alb", "Load balancer: HTTP from anywhere");
        stack.add("sg.alb", &[], move |r| SecurityGroupSpec {
            tags: t.clone(),
            vpc_id: r.id("vpc"),
            description: d.clone(),
            ingress: [IngressRule::tcp(80, Source::Cidr("0.0.0.0/0".into()))].into(),
        });
    }
    let (t, d) = sg("sg.ecs", "Service tasks: container port from the load balancer");
    // The NLB (internal, in the ecs subnets) forwards from its own private addresses there,
    // and health-checks from them: those two subnets, not the VPC's public or db subnets.
    let nlb_subnets = [settings.subnet_cidrs[2].to_string(), settings.subnet_cidrs[3].to_string()];
    stack.add("sg.ecs", &[], move |r| SecurityGroupSpec {
        tags: t.clone(),
        vpc_id: r.id("vpc"),
        description: d.clone(),
        ingress: if private {
            nlb_subnets.iter().map(|cidr| IngressRule::tcp(port, Source::Cidr(cidr.clone()))).collect()
        } else {
            [IngressRule::tcp(port, Source::Group(r.id("sg.alb")))].into()
        },
    });
    let (t, d) = sg("sg.db", "Aurora: PostgreSQL from the service tasks");
    stack.add("sg.db", &[], move |r| SecurityGroupSpec {
        tags: t.clone(),
        vpc_id: r.id("vpc"),
        description: d.clone(),
        ingress: [IngressRule::tcp(5432, Source::Group(r.id("sg.ecs")))].into(),
    });
}
