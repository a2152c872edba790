//! Security groups and their ingress rules. The ingress set is managed exactly: rules
//! added out of band are drift and `up` revokes them. Egress keeps AWS's default.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};

use super::{has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Resource, StackTags, compare};

/// Where an ingress rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Cidr(String),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressRule {
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    pub source: Source,
}

impl std::fmt::Display for IngressRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports = if self.from_port == self.to_port {
            self.from_port.to_string()
        } else {
            format!("{}-{}", self.from_port, self.to_port)
        };
        let source = match &self.source {
            Source::Cidr(c) | Source::Group(c) => c,
        };
        write!(f, "{} {} from {}", self.protocol, ports, source)
    }
}

impl IngressRule {
    pub fn tcp(port: u16, source: Source) -> IngressRule {
        IngressRule { protocol: "tcp".into(), from_port: port.into(), to_port: port.into(), source }
    }

    fn permission(&self) -> IpPermission {
        let p = IpPermission::builder().ip_protocol(&self.protocol).from_port(self.from_port).to_port(self.to_port);
        match &self.source {
            Source::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Source::Group(g) => p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
        }
        .build()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupSpec {
    pub tags: StackTags,
    pub vpc_id: String,
    pub description: String,
    pub ingress: BTreeSet<IngressRule>,
}

#[derive(Debug, Clone)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub description: String,
    pub ingress: BTreeSet<IngressRule>,
    pub tags: BTreeMap<String, String>,
}

fn flatten(permissions: &[IpPermission]) -> BTreeSet<IngressRule> {
    let mut rules = BTreeSet::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or_default().to_string();
        let (from_port, to_port) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        let rule = |source| IngressRule { protocol: protocol.clone(), from_port, to_port, source };
        for r in p.ip_ranges() {
            rules.insert(rule(Source::Cidr(r.cidr_ip().unwrap_or_default().to_string())));
        }
        for r in p.ipv6_ranges() {
            rules.insert(rule(Source::Cidr(r.cidr_ipv6().unwrap_or_default().to_string())));
        }
        for g in p.user_id_group_pairs() {
            rules.insert(rule(Source::Group(g.group_id().unwrap_or_default().to_string())));
        }
        for l in p.prefix_list_ids() {
            rules.insert(rule(Source::Cidr(l.prefix_list_id().unwrap_or_default().to_string())));
        }
    }
    rules
}

fn observe(g: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        id: g.group_id().unwrap_or_default().to_string(),
        name: g.group_name().unwrap_or_default().to_string(),
        vpc_id: g.vpc_id().unwrap_or_default().to_string(),
        description: g.description().unwrap_or_default().to_string(),
        ingress: flatten(g.ip_permissions()),
        tags: tag_map(g.tags()),
    }
}

pub async fn find_security_group_by_id(ctx: &Ctx, id: &str) -> Result<Option<SecurityGroup>, AwsError> {
    Ok(find_security_groups(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many groups in one call (a filter, so an id that is gone is simply absent).
pub async fn find_security_groups(ctx: &Ctx, ids: &[String]) -> Result<Vec<SecurityGroup>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_security_groups()
        .filters(Filter::builder().name("group-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroups", ids.join(","), e))?;
    Ok(resp.security_groups().iter().map(observe).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<SecurityGroup>, AwsError> {
    let filters: Vec<Filter> = stack_filters(&ctx.stack, logical_id);
    let what = logical_id.unwrap_or("(stack inventory)");
    let resp = ctx
        .ec2()
        .await
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroups", what, e))?;
    Ok(resp.security_groups().iter().map(observe).filter(|o| has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live security group carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<SecurityGroup>, AwsError> {
    find_tagged(ctx, None).await
}

/// Fails with DependencyViolation while a network interface (ALB, task, Aurora) or
/// another group's rule still uses the group; the destroy order removes those first.
pub async fn delete_security_group(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2()
        .await
        .delete_security_group()
        .group_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DeleteSecurityGroup", id, e))?;
    Ok(())
}

fn rules_text(rules: &BTreeSet<IngressRule>) -> String {
    if rules.is_empty() {
        return "(none)".into();
    }
    rules.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
}

impl Resource for SecurityGroupSpec {
    type Observed = SecurityGroup;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<SecurityGroup>, AwsError> {
        find_security_group_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<SecurityGroup>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &SecurityGroup) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "vpc_id", &self.vpc_id, &o.vpc_id);
        compare(&mut replace, "group_name", &self.tags.name(), &o.name);
        compare(&mut replace, "description", &self.description, &o.description);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "ingress", &rules_text(&self.ingress), &rules_text(&o.ingress));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ec2()
            .await
            .create_security_group()
            .group_name(self.tags.name())
            .description(&self.description)
            .vpc_id(&self.vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateSecurityGroup", logical_id, e))?;
        Ok(resp.group_id().unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &SecurityGroup) -> Result<Option<String>, AwsError> {
        let extra: Vec<IpPermission> = o.ingress.difference(&self.ingress).map(IngressRule::permission).collect();
        let missing: Vec<IpPermission> = self.ingress.difference(&o.ingress).map(IngressRule::permission).collect();
        if !extra.is_empty() {
            ctx.ec2()
                .await
                .revoke_security_group_ingress()
                .group_id(&o.id)
                .set_ip_permissions(Some(extra))
                .send()
                .await
                .map_err(|e| aws_error("RevokeSecurityGroupIngress", &o.id, e))?;
        }
        if !missing.is_empty() {
            ctx.ec2()
                .await
                .authorize_security_group_ingress()
                .group_id(&o.id)
                .set_ip_permissions(Some(missing))
                .send()
                .await
                .map_err(|e| aws_error("AuthorizeSecurityGroupIngress", &o.id, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.id, &self.tags).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<SecurityGroup>, AwsError> {
        find_security_groups(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<SecurityGroup>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &SecurityGroup) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_security_group(ctx, id).await
    }

    fn physical_id(o: &SecurityGroup) -> String {
        o.id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SecurityGroupSpec {
        SecurityGroupSpec {
            tags: StackTags::new("books", "sg.alb"),
            vpc_id: "vpc-1".into(),
            description: "alb".into(),
            ingress: [IngressRule::tcp(80, Source::Cidr("0.0.0.0/0".into()))].into(),
        }
    }

    fn observed(spec: &SecurityGroupSpec) -> SecurityGroup {
        SecurityGroup {
            id: "sg-1".into(),
            name: spec.tags.name(),
            vpc_id: spec.vpc_id.clone(),
            description: spec.description.clone(),
            ingress: spec.ingress.clone(),
            tags: spec.tags.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    #[test]
    fn extra_ingress_rule_is_drift_naming_both_sets() {
        let spec = spec();
        let mut o = observed(&spec);
        assert_eq!(spec.diff(&o), Diff::NoChange);
        o.ingress.insert(IngressRule::tcp(22, Source::Cidr("203.0.113.0/24".into())));
        let Diff::Update(changes) = spec.diff(&o) else { panic!("expected update") };
        assert_eq!(changes[0].field, "ingress");
        assert_eq!(changes[0].wanted, "tcp 80 from 0.0.0.0/0");
        assert_eq!(changes[0].found, "tcp 22 from 203.0.113.0/24, tcp 80 from 0.0.0.0/0");
    }
}
