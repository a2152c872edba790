//! Subnets: CIDR and AZ are fixed at creation; public subnets map public IPs on launch.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType};

use super::{ec2_bool, has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Resource, StackTags, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    pub tags: StackTags,
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
}

#[derive(Debug, Clone)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub map_public_ip_on_launch: bool,
    pub tags: BTreeMap<String, String>,
}

fn observe(s: &aws_sdk_ec2::types::Subnet) -> Subnet {
    Subnet {
        id: s.subnet_id().unwrap_or_default().to_string(),
        vpc_id: s.vpc_id().unwrap_or_default().to_string(),
        cidr: s.cidr_block().unwrap_or_default().to_string(),
        availability_zone: s.availability_zone().unwrap_or_default().to_string(),
        map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
        tags: tag_map(s.tags()),
    }
}

pub async fn find_subnet_by_id(ctx: &Ctx, id: &str) -> Result<Option<Subnet>, AwsError> {
    Ok(find_subnets(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many subnets in one call (a filter, so an id that is gone is simply absent).
pub async fn find_subnets(ctx: &Ctx, ids: &[String]) -> Result<Vec<Subnet>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_subnets()
        .filters(Filter::builder().name("subnet-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeSubnets", ids.join(","), e))?;
    Ok(resp.subnets().iter().map(observe).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<Subnet>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_subnets()
        .set_filters(Some(stack_filters(&ctx.stack, logical_id)))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSubnets", logical_id.unwrap_or("(stack inventory)"), e))?;
    Ok(resp.subnets().iter().map(observe).filter(|o| has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live subnet carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<Subnet>, AwsError> {
    find_tagged(ctx, None).await
}

pub async fn delete_subnet(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2().await.delete_subnet().subnet_id(id).send().await.map_err(|e| aws_error("DeleteSubnet", id, e))?;
    Ok(())
}

impl Resource for SubnetSpec {
    type Observed = Subnet;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Subnet>, AwsError> {
        find_subnet_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<Subnet>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &Subnet) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "vpc_id", &self.vpc_id, &o.vpc_id);
        compare(&mut replace, "cidr_block", &self.cidr, &o.cidr);
        compare(&mut replace, "availability_zone", &self.availability_zone, &o.availability_zone);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "map_public_ip_on_launch", &self.map_public_ip_on_launch, &o.map_public_ip_on_launch);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .create_subnet()
            .vpc_id(&self.vpc_id)
            .cidr_block(&self.cidr)
            .availability_zone(&self.availability_zone)
            .tag_specifications(tag_spec(ResourceType::Subnet, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateSubnet", logical_id, e))?;
        Ok(resp.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Subnet) -> Result<Option<String>, AwsError> {
        if o.map_public_ip_on_launch != self.map_public_ip_on_launch {
            ctx.ec2()
                .await
                .modify_subnet_attribute()
                .subnet_id(&o.id)
                .map_public_ip_on_launch(ec2_bool(self.map_public_ip_on_launch))
                .send()
                .await
                .map_err(|e| aws_error("ModifySubnetAttribute", &o.id, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.id, &self.tags).await?;
        }
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[
        (Kind::NatGateway, "DeleteSubnet: DependencyViolation while the NAT gateway's interface is in the subnet"),
        (Kind::RouteTableAssociation, "DeleteSubnet leaves the association dangling"),
    ];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Subnet>, AwsError> {
        find_subnets(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<Subnet>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &Subnet) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_subnet(ctx, id).await
    }

    fn physical_id(o: &Subnet) -> String {
        o.id.clone()
    }

    fn attributes(o: &Subnet) -> BTreeMap<String, String> {
        [
            ("cidr_block".to_string(), o.cidr.clone()),
            ("availability_zone".to_string(), o.availability_zone.clone()),
        ]
        .into()
    }
}
