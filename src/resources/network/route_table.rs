//! Route tables. Routes and subnet associations are resources of their own
//! (`route.rs`, `route_table_association.rs`) so they can wait on NAT gateways alone.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::{has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Resource, StackTags, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableSpec {
    pub tags: StackTags,
    pub vpc_id: String,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    /// Subnet association ids (not the main-table association).
    pub associations: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

fn observe(t: &aws_sdk_ec2::types::RouteTable) -> RouteTable {
    RouteTable {
        id: t.route_table_id().unwrap_or_default().to_string(),
        vpc_id: t.vpc_id().unwrap_or_default().to_string(),
        associations: t
            .associations()
            .iter()
            .filter(|a| !a.main().unwrap_or(false))
            .filter_map(|a| a.route_table_association_id().map(str::to_string))
            .collect(),
        tags: tag_map(t.tags()),
    }
}

pub async fn find_route_table_by_id(ctx: &Ctx, id: &str) -> Result<Option<RouteTable>, AwsError> {
    Ok(find_route_tables(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many raw route tables in one call (a filter, so an id that is gone is simply absent);
/// routes and associations are read from these too.
pub async fn describe_route_tables(ctx: &Ctx, ids: &[String]) -> Result<Vec<aws_sdk_ec2::types::RouteTable>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_route_tables()
        .filters(Filter::builder().name("route-table-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeRouteTables", ids.join(","), e))?;
    Ok(resp.route_tables().to_vec())
}

pub async fn find_route_tables(ctx: &Ctx, ids: &[String]) -> Result<Vec<RouteTable>, AwsError> {
    Ok(describe_route_tables(ctx, ids).await?.iter().map(observe).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<RouteTable>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_route_tables()
        .set_filters(Some(stack_filters(&ctx.stack, logical_id)))
        .send()
        .await
        .map_err(|e| aws_error("DescribeRouteTables", logical_id.unwrap_or("(stack inventory)"), e))?;
    Ok(resp.route_tables().iter().map(observe).filter(|o| has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live route table carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<RouteTable>, AwsError> {
    find_tagged(ctx, None).await
}

/// Disassociates every subnet first: DeleteRouteTable fails with DependencyViolation while
/// a subnet is associated. Routes go with the table.
pub async fn delete_route_table(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let Some(table) = find_route_table_by_id(ctx, id).await? else { return Ok(()) };
    for association in &table.associations {
        match super::route_table_association::disassociate_route_table(ctx, association).await {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    ctx.ec2()
        .await
        .delete_route_table()
        .route_table_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DeleteRouteTable", id, e))?;
    Ok(())
}

impl Resource for RouteTableSpec {
    type Observed = RouteTable;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<RouteTable>, AwsError> {
        find_route_table_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<RouteTable>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &RouteTable) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "vpc_id", &self.vpc_id, &o.vpc_id);
        Diff::from_changes(self.tags.diff(&o.tags), replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .create_route_table()
            .vpc_id(&self.vpc_id)
            .tag_specifications(tag_spec(ResourceType::RouteTable, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateRouteTable", logical_id, e))?;
        Ok(resp.route_table().and_then(|t| t.route_table_id()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &RouteTable) -> Result<Option<String>, AwsError> {
        put_tags(ctx, &o.id, &self.tags).await?;
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[
        (Kind::Route, "routes go with their table; deleting them first keeps DeleteRoute from failing with NotFound noise"),
        (Kind::RouteTableAssociation, "DeleteRouteTable: DependencyViolation while a subnet is associated"),
    ];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<RouteTable>, AwsError> {
        find_route_tables(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<RouteTable>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &RouteTable) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_route_table(ctx, id).await
    }

    fn physical_id(o: &RouteTable) -> String {
        o.id.clone()
    }
}
