//! VPC with DNS support and DNS hostnames (both needed for Aurora endpoints and ECR).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, VpcAttributeName};

use super::{ec2_bool, has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Resource, StackTags, compare};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcSpec {
    pub tags: StackTags,
    pub cidr: String,
}

#[derive(Debug, Clone)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub tags: BTreeMap<String, String>,
}

async fn describe_vpcs(req: aws_sdk_ec2::operation::describe_vpcs::builders::DescribeVpcsFluentBuilder, what: &str) -> Result<Vec<(String, String, BTreeMap<String, String>)>, AwsError> {
    let resp = req.send().await.map_err(|e| aws_error("DescribeVpcs", what, e))?;
    Ok(resp
        .vpcs()
        .iter()
        .filter(|v| v.state().map(|s| s.as_str()) != Some("deleted"))
        .map(|v| {
            (
                v.vpc_id().unwrap_or_default().to_string(),
                v.cidr_block().unwrap_or_default().to_string(),
                tag_map(v.tags()),
            )
        })
        .collect())
}

async fn vpc_attribute(ctx: &Ctx, id: &str, attribute: VpcAttributeName) -> Result<bool, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_vpc_attribute()
        .vpc_id(id)
        .attribute(attribute.clone())
        .send()
        .await
        .map_err(|e| aws_error("DescribeVpcAttribute", id, e))?;
    let value = match attribute {
        VpcAttributeName::EnableDnsSupport => resp.enable_dns_support().and_then(|v| v.value()),
        _ => resp.enable_dns_hostnames().and_then(|v| v.value()),
    };
    Ok(value.unwrap_or(false))
}

async fn complete(ctx: &Ctx, (id, cidr, tags): (String, String, BTreeMap<String, String>)) -> Result<Vpc, AwsError> {
    let (dns_support, dns_hostnames) = tokio::try_join!(
        vpc_attribute(ctx, &id, VpcAttributeName::EnableDnsSupport),
        vpc_attribute(ctx, &id, VpcAttributeName::EnableDnsHostnames)
    )?;
    Ok(Vpc { id, cidr, dns_support, dns_hostnames, tags })
}

pub async fn find_vpc_by_id(ctx: &Ctx, id: &str) -> Result<Option<Vpc>, AwsError> {
    Ok(find_vpcs(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many VPCs with their DNS attributes (a filter, so an id that is gone is simply absent).
pub async fn find_vpcs(ctx: &Ctx, ids: &[String]) -> Result<Vec<Vpc>, AwsError> {
    let req = ctx.ec2().await.describe_vpcs().filters(Filter::builder().name("vpc-id").set_values(Some(ids.to_vec())).build());
    let mut out = Vec::new();
    for v in describe_vpcs(req, &ids.join(",")).await? {
        out.push(complete(ctx, v).await?);
    }
    Ok(out)
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<(String, String, BTreeMap<String, String>)>, AwsError> {
    let req = ctx.ec2().await.describe_vpcs().set_filters(Some(stack_filters(&ctx.stack, logical_id)));
    let found = describe_vpcs(req, logical_id.unwrap_or("(stack inventory)")).await?;
    Ok(found.into_iter().filter(|(_, _, tags)| has_stack_tags(tags, &ctx.stack, logical_id)).collect())
}

/// Every VPC carrying the stack's tag, with its DNS attributes.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<Vpc>, AwsError> {
    let mut out = Vec::new();
    for v in find_tagged(ctx, None).await? {
        out.push(complete(ctx, v).await?);
    }
    Ok(out)
}

/// Deleting a VPC with subnets, gateways or security groups left fails with
/// DependencyViolation; the destroy order removes those first.
pub async fn delete_vpc(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2().await.delete_vpc().vpc_id(id).send().await.map_err(|e| aws_error("DeleteVpc", id, e))?;
    Ok(())
}

impl Resource for VpcSpec {
    type Observed = Vpc;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Vpc>, AwsError> {
        find_vpc_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<Vpc>, AwsError> {
        let mut out = Vec::new();
        for v in find_tagged(ctx, Some(logical_id)).await? {
            out.push(complete(ctx, v).await?);
        }
        Ok(out)
    }

    fn diff(&self, o: &Vpc) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "cidr_block", &self.cidr, &o.cidr);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "enable_dns_support", &true, &o.dns_support);
        compare(&mut update, "enable_dns_hostnames", &true, &o.dns_hostnames);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .create_vpc()
            .cidr_block(&self.cidr)
            .tag_specifications(tag_spec(ResourceType::Vpc, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateVpc", logical_id, e))?;
        Ok(resp.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Vpc) -> Result<Option<String>, AwsError> {
        // ModifyVpcAttribute takes one attribute per call.
        if !o.dns_support {
            ctx.ec2()
                .await
                .modify_vpc_attribute()
                .vpc_id(&o.id)
                .enable_dns_support(ec2_bool(true))
                .send()
                .await
                .map_err(|e| aws_error("ModifyVpcAttribute", &o.id, e))?;
        }
        if !o.dns_hostnames {
            ctx.ec2()
                .await
                .modify_vpc_attribute()
                .vpc_id(&o.id)
                .enable_dns_hostnames(ec2_bool(true))
                .send()
                .await
                .map_err(|e| aws_error("ModifyVpcAttribute", &o.id, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.id, &self.tags).await?;
        }
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[
        (Kind::Subnet, "DeleteVpc: DependencyViolation while subnets remain"),
        (Kind::NatGateway, "DeleteVpc: DependencyViolation while a NAT gateway's interface remains"),
        (Kind::RouteTable, "DeleteVpc: DependencyViolation while non-main route tables remain"),
        (Kind::SecurityGroup, "DeleteVpc: DependencyViolation while non-default security groups remain"),
        (Kind::InternetGateway, "DeleteVpc: DependencyViolation while an internet gateway is attached"),
    ];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Vpc>, AwsError> {
        find_vpcs(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<Vpc>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &Vpc) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_vpc(ctx, id).await
    }

    fn physical_id(o: &Vpc) -> String {
        o.id.clone()
    }

    fn attributes(o: &Vpc) -> BTreeMap<String, String> {
        [("cidr_block".to_string(), o.cidr.clone())].into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Vpc {
        let spec = spec();
        Vpc {
            id: "vpc-1".into(),
            cidr: "10.0.0.0/16".into(),
            dns_support: true,
            dns_hostnames: true,
            tags: spec.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn spec() -> VpcSpec {
        VpcSpec { tags: StackTags::new("books", "vpc"), cidr: "10.0.0.0/16".into() }
    }

    #[test]
    fn converged_vpc_has_no_diff() {
        assert_eq!(spec().diff(&observed()), Diff::NoChange);
    }

    #[test]
    fn dns_hostnames_off_is_an_update() {
        let mut o = observed();
        o.dns_hostnames = false;
        o.tags.remove("Name");
        let Diff::Update(changes) = spec().diff(&o) else { panic!("expected update") };
        let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["tags.Name", "enable_dns_hostnames"]);
    }

    #[test]
    fn other_cidr_forces_replacement() {
        let mut o = observed();
        o.cidr = "10.1.0.0/16".into();
        assert!(matches!(spec().diff(&o), Diff::Replace(c) if c[0].field == "cidr_block"));
    }
}
