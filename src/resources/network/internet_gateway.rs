//! Internet gateway and its attachment to the VPC (one resource: the gateway is useless
//! unattached, and detaching is the first step of deleting it).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::{has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Resource, StackTags, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetGatewaySpec {
    pub tags: StackTags,
    pub vpc_id: String,
}

#[derive(Debug, Clone)]
pub struct InternetGateway {
    pub id: String,
    /// VPCs it is attached to (AWS allows at most one).
    pub attached_vpcs: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

fn observe(g: &aws_sdk_ec2::types::InternetGateway) -> InternetGateway {
    InternetGateway {
        id: g.internet_gateway_id().unwrap_or_default().to_string(),
        attached_vpcs: g
            .attachments()
            .iter()
            .filter(|a| !matches!(a.state().map(|s| s.as_str()), Some("detached") | Some("detaching")))
            .filter_map(|a| a.vpc_id().map(str::to_string))
            .collect(),
        tags: tag_map(g.tags()),
    }
}

pub async fn find_internet_gateway_by_id(ctx: &Ctx, id: &str) -> Result<Option<InternetGateway>, AwsError> {
    Ok(find_internet_gateways(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many gateways in one call (a filter, so an id that is gone is simply absent).
pub async fn find_internet_gateways(ctx: &Ctx, ids: &[String]) -> Result<Vec<InternetGateway>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_internet_gateways()
        .filters(Filter::builder().name("internet-gateway-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeInternetGateways", ids.join(","), e))?;
    Ok(resp.internet_gateways().iter().map(observe).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<InternetGateway>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_internet_gateways()
        .set_filters(Some(stack_filters(&ctx.stack, logical_id)))
        .send()
        .await
        .map_err(|e| aws_error("DescribeInternetGateways", logical_id.unwrap_or("(stack inventory)"), e))?;
    Ok(resp.internet_gateways().iter().map(observe).filter(|o| has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live internet gateway carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<InternetGateway>, AwsError> {
    find_tagged(ctx, None).await
}

/// Detaches from every VPC, then deletes. Detaching while the VPC still has public
/// addresses mapped fails with DependencyViolation, hence the destroy edges from NAT
/// gateways and Elastic IPs.
pub async fn delete_internet_gateway(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let Some(gw) = find_internet_gateway_by_id(ctx, id).await? else { return Ok(()) };
    for vpc in &gw.attached_vpcs {
        match ctx.ec2().await.detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send().await {
            Ok(_) => {}
            Err(e) => {
                let e = aws_error("DetachInternetGateway", id, e);
                // Already detached counts as done.
                if e.code.as_deref() != Some("Gateway.NotAttached") && !e.is_not_found() {
                    return Err(e);
                }
            }
        }
    }
    ctx.ec2()
        .await
        .delete_internet_gateway()
        .internet_gateway_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DeleteInternetGateway", id, e))?;
    Ok(())
}

impl Resource for InternetGatewaySpec {
    type Observed = InternetGateway;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<InternetGateway>, AwsError> {
        find_internet_gateway_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<InternetGateway>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &InternetGateway) -> Diff {
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "attached_vpc", &self.vpc_id, &o.attached_vpcs.join(",").to_string());
        Diff::from_changes(update, Vec::new())
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateInternetGateway", logical_id, e))?;
        Ok(resp.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &InternetGateway) -> Result<Option<String>, AwsError> {
        if o.attached_vpcs != [self.vpc_id.clone()] {
            for other in o.attached_vpcs.iter().filter(|v| **v != self.vpc_id) {
                ctx.ec2()
                    .await
                    .detach_internet_gateway()
                    .internet_gateway_id(&o.id)
                    .vpc_id(other)
                    .send()
                    .await
                    .map_err(|e| aws_error("DetachInternetGateway", &o.id, e))?;
            }
            if !o.attached_vpcs.contains(&self.vpc_id) {
                ctx.ec2()
                    .await
                    .attach_internet_gateway()
                    .internet_gateway_id(&o.id)
                    .vpc_id(&self.vpc_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("AttachInternetGateway", &o.id, e))?;
            }
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.id, &self.tags).await?;
        }
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[
        (Kind::NatGateway, "DetachInternetGateway: DependencyViolation, the VPC still has mapped public addresses"),
        (Kind::ElasticIp, "DetachInternetGateway: DependencyViolation, the VPC still has mapped public addresses"),
    ];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<InternetGateway>, AwsError> {
        find_internet_gateways(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<InternetGateway>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &InternetGateway) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_internet_gateway(ctx, id).await
    }

    fn physical_id(o: &InternetGateway) -> String {
        o.id.clone()
    }
}
