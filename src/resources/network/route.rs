//! Default routes: public → internet gateway, ecs → NAT gateway. Not taggable; the
//! physical id is `<route table id>|<destination>`, which is also how it is adopted.

use std::collections::BTreeMap;

use super::route_table::describe_route_tables;
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Resource, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    InternetGateway(String),
    NatGateway(String),
}

impl std::fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteTarget::InternetGateway(id) | RouteTarget::NatGateway(id) => f.write_str(id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub route_table_id: String,
    pub destination: String,
    pub target: RouteTarget,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub route_table_id: String,
    pub destination: String,
    /// The gateway or NAT gateway id; empty for other targets.
    pub target: String,
    pub state: String,
}

fn physical_id(route_table_id: &str, destination: &str) -> String {
    format!("{route_table_id}|{destination}")
}

fn split_id(id: &str) -> (&str, &str) {
    id.split_once('|').unwrap_or((id, "0.0.0.0/0"))
}

pub async fn find_route_by_id(ctx: &Ctx, id: &str) -> Result<Option<Route>, AwsError> {
    Ok(find_routes(ctx, &[id.to_string()]).await?.into_iter().next())
}

fn observe(table_id: &str, r: &aws_sdk_ec2::types::Route) -> Route {
    Route {
        route_table_id: table_id.to_string(),
        destination: r.destination_cidr_block().unwrap_or_default().to_string(),
        target: r.nat_gateway_id().or(r.gateway_id()).unwrap_or_default().to_string(),
        state: r.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
    }
}

/// Many routes, one DescribeRouteTables for all their tables.
pub async fn find_routes(ctx: &Ctx, ids: &[String]) -> Result<Vec<Route>, AwsError> {
    let tables: Vec<String> = ids.iter().map(|id| split_id(id).0.to_string()).collect();
    let mut out = Vec::new();
    for table in describe_route_tables(ctx, &tables).await? {
        let table_id = table.route_table_id().unwrap_or_default();
        for r in table.routes() {
            let destination = r.destination_cidr_block().unwrap_or_default();
            if ids.contains(&physical_id(table_id, destination)) {
                out.push(observe(table_id, r));
            }
        }
    }
    Ok(out)
}

pub async fn delete_route(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let (table_id, destination) = split_id(id);
    match ctx
        .ec2()
        .await
        .delete_route()
        .route_table_id(table_id)
        .destination_cidr_block(destination)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_error("DeleteRoute", id, e);
            // InvalidRoute.NotFound is covered by the NotFound class; a missing table too.
            if e.code.as_deref() == Some("InvalidRoute.NotFound") {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

impl Resource for RouteSpec {
    type Observed = Route;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Route>, AwsError> {
        find_route_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Route>, AwsError> {
        Ok(find_route_by_id(ctx, &physical_id(&self.route_table_id, &self.destination)).await?.into_iter().collect())
    }

    fn diff(&self, o: &Route) -> Diff {
        let mut update = Vec::new();
        compare(&mut update, "target", &self.target.to_string(), &o.target);
        // A blackhole route points at a deleted gateway: re-pointing it repairs it.
        compare(&mut update, "state", &"active".to_string(), &o.state);
        Diff::from_changes(update, Vec::new())
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let mut req = ctx
            .ec2()
            .await
            .create_route()
            .route_table_id(&self.route_table_id)
            .destination_cidr_block(&self.destination);
        req = match &self.target {
            RouteTarget::InternetGateway(id) => req.gateway_id(id),
            RouteTarget::NatGateway(id) => req.nat_gateway_id(id),
        };
        req.customize().no_blind_retry().send().await.map_err(|e| aws_error("CreateRoute", logical_id, e))?;
        Ok(physical_id(&self.route_table_id, &self.destination))
    }

    async fn update(&self, ctx: &Ctx, logical_id: &str, _o: &Route) -> Result<Option<String>, AwsError> {
        let mut req = ctx
            .ec2()
            .await
            .replace_route()
            .route_table_id(&self.route_table_id)
            .destination_cidr_block(&self.destination);
        req = match &self.target {
            RouteTarget::InternetGateway(id) => req.gateway_id(id),
            RouteTarget::NatGateway(id) => req.nat_gateway_id(id),
        };
        req.send().await.map_err(|e| aws_error("ReplaceRoute", logical_id, e))?;
        Ok(None)
    }

    const TAGGABLE: bool = false;

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Route>, AwsError> {
        find_routes(ctx, ids).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_route(ctx, id).await
    }

    fn physical_id(o: &Route) -> String {
        physical_id(&o.route_table_id, &o.destination)
    }
}
