//! Subnet ↔ route table associations. Not taggable: found by their subnet instead.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Resource, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableAssociationSpec {
    pub route_table_id: String,
    pub subnet_id: String,
}

#[derive(Debug, Clone)]
pub struct RouteTableAssociation {
    pub id: String,
    pub route_table_id: String,
    pub subnet_id: String,
}

async fn find_by_filter(ctx: &Ctx, filter: Filter, what: &str) -> Result<Vec<RouteTableAssociation>, AwsError> {
    let (name, values) = (filter.name().unwrap_or_default().to_string(), filter.values().to_vec());
    let resp = ctx
        .ec2()
        .await
        .describe_route_tables()
        .filters(filter)
        .send()
        .await
        .map_err(|e| aws_error("DescribeRouteTables", what, e))?;
    let mut out = Vec::new();
    for table in resp.route_tables() {
        for a in table.associations() {
            let matches = match name.as_str() {
                "association.route-table-association-id" => a.route_table_association_id().is_some_and(|id| values.iter().any(|v| v == id)),
                _ => a.subnet_id().is_some_and(|id| values.iter().any(|v| v == id)),
            };
            if matches && !a.main().unwrap_or(false) {
                out.push(RouteTableAssociation {
                    id: a.route_table_association_id().unwrap_or_default().to_string(),
                    route_table_id: a.route_table_id().unwrap_or_default().to_string(),
                    subnet_id: a.subnet_id().unwrap_or_default().to_string(),
                });
            }
        }
    }
    Ok(out)
}

pub async fn find_route_table_association_by_id(ctx: &Ctx, id: &str) -> Result<Option<RouteTableAssociation>, AwsError> {
    Ok(find_route_table_associations(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many associations in one call.
pub async fn find_route_table_associations(ctx: &Ctx, ids: &[String]) -> Result<Vec<RouteTableAssociation>, AwsError> {
    let filter = Filter::builder().name("association.route-table-association-id").set_values(Some(ids.to_vec())).build();
    find_by_filter(ctx, filter, &ids.join(",")).await
}

pub async fn disassociate_route_table(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2()
        .await
        .disassociate_route_table()
        .association_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DisassociateRouteTable", id, e))?;
    Ok(())
}

impl Resource for RouteTableAssociationSpec {
    type Observed = RouteTableAssociation;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<RouteTableAssociation>, AwsError> {
        find_route_table_association_by_id(ctx, id).await
    }

    /// A subnet has at most one explicit association: whichever table it names, it is ours
    /// to converge.
    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<RouteTableAssociation>, AwsError> {
        let filter = Filter::builder().name("association.subnet-id").values(&self.subnet_id).build();
        find_by_filter(ctx, filter, logical_id).await
    }

    fn diff(&self, o: &RouteTableAssociation) -> Diff {
        let mut update = Vec::new();
        compare(&mut update, "route_table_id", &self.route_table_id, &o.route_table_id);
        let mut replace = Vec::new();
        compare(&mut replace, "subnet_id", &self.subnet_id, &o.subnet_id);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .associate_route_table()
            .route_table_id(&self.route_table_id)
            .subnet_id(&self.subnet_id)
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("AssociateRouteTable", logical_id, e))?;
        Ok(resp.association_id().unwrap_or_default().to_string())
    }

    /// Moves the subnet to the wanted table; AWS issues a new association id.
    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &RouteTableAssociation) -> Result<Option<String>, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .replace_route_table_association()
            .association_id(&o.id)
            .route_table_id(&self.route_table_id)
            .send()
            .await
            .map_err(|e| aws_error("ReplaceRouteTableAssociation", &o.id, e))?;
        Ok(resp.new_association_id().map(str::to_string))
    }

    const TAGGABLE: bool = false;

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<RouteTableAssociation>, AwsError> {
        find_route_table_associations(ctx, ids).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        disassociate_route_table(ctx, id).await
    }

    fn physical_id(o: &RouteTableAssociation) -> String {
        o.id.clone()
    }
}
