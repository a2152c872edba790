//! Elastic IPs for the NAT gateways.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{DomainType, Filter, ResourceType};

use super::{has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticIpSpec {
    pub tags: StackTags,
}

#[derive(Debug, Clone)]
pub struct ElasticIp {
    pub allocation_id: String,
    pub public_ip: String,
    pub tags: BTreeMap<String, String>,
}

fn observe(a: &aws_sdk_ec2::types::Address) -> ElasticIp {
    ElasticIp {
        allocation_id: a.allocation_id().unwrap_or_default().to_string(),
        public_ip: a.public_ip().unwrap_or_default().to_string(),
        tags: tag_map(a.tags()),
    }
}

pub async fn find_elastic_ip_by_id(ctx: &Ctx, id: &str) -> Result<Option<ElasticIp>, AwsError> {
    Ok(find_elastic_ips(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many addresses in one call (a filter, so an id that is gone is simply absent).
pub async fn find_elastic_ips(ctx: &Ctx, ids: &[String]) -> Result<Vec<ElasticIp>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_addresses()
        .filters(Filter::builder().name("allocation-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeAddresses", ids.join(","), e))?;
    Ok(resp.addresses().iter().map(observe).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<ElasticIp>, AwsError> {
    let filters: Vec<Filter> = stack_filters(&ctx.stack, logical_id);
    let resp = ctx
        .ec2()
        .await
        .describe_addresses()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| aws_error("DescribeAddresses", logical_id.unwrap_or("(stack inventory)"), e))?;
    Ok(resp.addresses().iter().map(observe).filter(|o| has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live elastic ip carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<ElasticIp>, AwsError> {
    find_tagged(ctx, None).await
}

/// Releasing an address still associated with a NAT gateway fails (AuthFailure /
/// InvalidIPAddress.InUse); the destroy order deletes the NAT gateway first.
pub async fn release_elastic_ip(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2().await.release_address().allocation_id(id).send().await.map_err(|e| aws_error("ReleaseAddress", id, e))?;
    Ok(())
}

impl Resource for ElasticIpSpec {
    type Observed = ElasticIp;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<ElasticIp>, AwsError> {
        find_elastic_ip_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<ElasticIp>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &ElasticIp) -> Diff {
        Diff::from_changes(self.tags.diff(&o.tags), Vec::new())
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("AllocateAddress", logical_id, e))?;
        Ok(resp.allocation_id().unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &ElasticIp) -> Result<Option<String>, AwsError> {
        put_tags(ctx, &o.allocation_id, &self.tags).await?;
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[(Kind::NatGateway, "ReleaseAddress: InvalidIPAddress.InUse while a NAT gateway holds the address")];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<ElasticIp>, AwsError> {
        find_elastic_ips(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<ElasticIp>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &ElasticIp) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        release_elastic_ip(ctx, id).await
    }

    fn physical_id(o: &ElasticIp) -> String {
        o.allocation_id.clone()
    }

    fn attributes(o: &ElasticIp) -> BTreeMap<String, String> {
        [("public_ip".to_string(), o.public_ip.clone())].into()
    }
}
