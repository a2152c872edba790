//! A load balancer: the internet-facing Application Load Balancer in the public subnets,
//! behind the `alb` security group, or (with `integration = "private"`) the internal Network
//! Load Balancer in the service subnets that API Gateway's VPC link targets. Its name is
//! unique in the account and region: a repeated create with the same settings returns the
//! same load balancer, and the engine's tag lookup finds it first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerSchemeEnum, LoadBalancerTypeEnum};

use super::{describe_tags, elb_tags, put_tags};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, wait_until, Ctx, Diff, Kind, Lifecycle, Poll, Resource, StackTags};

pub const LOAD_BALANCER_CREATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const LOAD_BALANCER_DELETE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Type and scheme together: the two combinations the stack uses. Both are fixed at
/// creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// Internet-facing Application Load Balancer (HTTP, with security groups).
    PublicApplication,
    /// Internal Network Load Balancer (TCP), reached by API Gateway through a VPC link.
    InternalNetwork,
}

impl LbKind {
    fn scheme(self) -> LoadBalancerSchemeEnum {
        match self {
            LbKind::PublicApplication => LoadBalancerSchemeEnum::InternetFacing,
            LbKind::InternalNetwork => LoadBalancerSchemeEnum::Internal,
        }
    }

    fn lb_type(self) -> LoadBalancerTypeEnum {
        match self {
            LbKind::PublicApplication => LoadBalancerTypeEnum::Application,
            LbKind::InternalNetwork => LoadBalancerTypeEnum::Network,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerSpec {
    pub tags: StackTags,
    pub name: String,
    pub kind: LbKind,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub dns_name: String,
    pub scheme: String,
    pub kind: String,
    pub state: String,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

fn observe(lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer) -> LoadBalancer {
    LoadBalancer {
        arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
        name: lb.load_balancer_name().unwrap_or_default().to_string(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
        scheme: lb.scheme().map(|s| s.as_str().to_string()).unwrap_or_default(),
        kind: lb.r#type().map(|s| s.as_str().to_string()).unwrap_or_default(),
        state: lb.state().and_then(|s| s.code()).map(|c| c.as_str().to_string()).unwrap_or_default(),
        subnets: lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect(),
        security_groups: lb.security_groups().iter().cloned().collect(),
        tags: BTreeMap::new(),
    }
}

fn not_found(e: &aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersError) -> Option<ErrorClass> {
    e.is_load_balancer_not_found_exception().then_some(ErrorClass::NotFound)
}

/// Load balancers by ARN or all of them (`None`), with their tags. A missing ARN fails the
/// whole DescribeLoadBalancers call, so a batch that meets one is read one by one.
async fn describe(ctx: &Ctx, arns: Option<&[String]>) -> Result<Vec<LoadBalancer>, AwsError> {
    let what = arns.map(|a| a.join(",")).unwrap_or_else(|| "(stack inventory)".into());
    let mut found = Vec::new();
    let mut marker = None;
    loop {
        let resp = ctx.elb().await.describe_load_balancers().set_load_balancer_arns(arns.map(<[String]>::to_vec)).set_marker(marker).send().await;
        match resp {
            Ok(resp) => {
                found.extend(resp.load_balancers().iter().map(observe));
                marker = resp.next_marker().map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
            Err(e) => match aws_error_typed("DescribeLoadBalancers", &what, e, not_found) {
                e if e.is_not_found() => match arns {
                    Some(arns) if arns.len() > 1 => {
                        for arn in arns {
                            found.extend(Box::pin(describe(ctx, Some(std::slice::from_ref(arn)))).await?);
                        }
                        break;
                    }
                    _ => return Ok(Vec::new()),
                },
                e => return Err(e),
            },
        }
    }
    let tags = describe_tags(ctx, &found.iter().map(|l| l.arn.clone()).collect::<Vec<_>>()).await?;
    for lb in &mut found {
        lb.tags = tags.get(&lb.arn).cloned().unwrap_or_default();
    }
    Ok(found)
}

pub async fn find_load_balancer_by_arn(ctx: &Ctx, arn: &str) -> Result<Option<LoadBalancer>, AwsError> {
    Ok(describe(ctx, Some(&[arn.to_string()])).await?.into_iter().next())
}

/// Deleting a load balancer also deletes its listeners. Its network interfaces linger for
/// a while after; the security group's delete waits them out (DependencyViolation).
pub async fn delete_load_balancer(ctx: &Ctx, arn: &str) -> Result<(), AwsError> {
    ctx.elb()
        .await
        .delete_load_balancer()
        .load_balancer_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("DeleteLoadBalancer", arn, e))?;
    let what = format!("load balancer {arn} to be deleted");
    wait_until(&what, "DeleteLoadBalancer", LOAD_BALANCER_DELETE_TIMEOUT, || async {
        Ok(match find_load_balancer_by_arn(ctx, arn).await? {
            Some(lb) => Poll::Pending(lb.state),
            None => Poll::Ready(()),
        })
    })
    .await
}

impl Resource for LoadBalancerSpec {
    type Observed = LoadBalancer;

    const DELETE_BEFORE: &'static [(Kind, &'static str)] = &[
        (Kind::SecurityGroup, "DeleteSecurityGroup: DependencyViolation while the load balancer's interfaces use the group"),
        (Kind::Subnet, "DeleteSubnet: DependencyViolation while the load balancer has interfaces in the subnet"),
        (Kind::InternetGateway, "DetachInternetGateway: DependencyViolation while an internet-facing load balancer maps public addresses"),
    ];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<LoadBalancer>, AwsError> {
        find_load_balancer_by_arn(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<LoadBalancer>, AwsError> {
        Ok(describe(ctx, None).await?.into_iter().filter(|lb| has_stack_tags(&lb.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &LoadBalancer) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        compare(&mut replace, "scheme", &self.kind.scheme().as_str().to_string(), &o.scheme);
        compare(&mut replace, "type", &self.kind.lb_type().as_str().to_string(), &o.kind);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "subnets", &join(&self.subnets), &join(&o.subnets));
        compare(&mut update, "security_groups", &join(&self.security_groups), &join(&o.security_groups));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .elb()
            .await
            .create_load_balancer()
            .name(&self.name)
            .set_subnets(Some(self.subnets.iter().cloned().collect()))
            // A Network Load Balancer without security groups: its targets' group admits the
            // VPC's range (the NLB's own addresses) instead.
            .set_security_groups((!self.security_groups.is_empty()).then(|| self.security_groups.iter().cloned().collect()))
            .scheme(self.kind.scheme())
            .r#type(self.kind.lb_type())
            .set_tags(Some(elb_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateLoadBalancer", logical_id, e))?;
        Ok(resp.load_balancers().first().and_then(|l| l.load_balancer_arn()).unwrap_or_default().to_string())
    }

    /// Provisioning takes a few minutes on AWS; the listener and DNS name are usable after.
    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        let what = format!("load balancer {id} to be active");
        wait_until(&what, "CreateLoadBalancer", LOAD_BALANCER_CREATE_TIMEOUT, || async {
            Ok(match find_load_balancer_by_arn(ctx, id).await? {
                Some(lb) if lb.state == "active" || lb.state.is_empty() => Poll::Ready(()),
                Some(lb) => Poll::Pending(lb.state),
                None => Poll::Pending("not yet visible".into()),
            })
        })
        .await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &LoadBalancer) -> Result<Option<String>, AwsError> {
        if self.subnets != o.subnets {
            ctx.elb()
                .await
                .set_subnets()
                .load_balancer_arn(&o.arn)
                .set_subnets(Some(self.subnets.iter().cloned().collect()))
                .send()
                .await
                .map_err(|e| aws_error("SetSubnets", &o.arn, e))?;
        }
        if self.security_groups != o.security_groups {
            ctx.elb()
                .await
                .set_security_groups()
                .load_balancer_arn(&o.arn)
                .set_security_groups(Some(self.security_groups.iter().cloned().collect()))
                .send()
                .await
                .map_err(|e| aws_error("SetSecurityGroups", &o.arn, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.arn, &self.tags).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<LoadBalancer>, AwsError> {
        describe(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<LoadBalancer>, AwsError> {
        Ok(describe(ctx, None).await?.into_iter().filter(|lb| has_stack_tags(&lb.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &LoadBalancer) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_load_balancer(ctx, id).await
    }

    fn physical_id(o: &LoadBalancer) -> String {
        o.arn.clone()
    }

    fn attributes(o: &LoadBalancer) -> BTreeMap<String, String> {
        [("dns_name".to_string(), o.dns_name.clone()), ("name".to_string(), o.name.clone())].into()
    }

    fn lifecycle(o: &LoadBalancer) -> Lifecycle {
        match o.state.as_str() {
            "provisioning" => Lifecycle::Settling(o.state.clone()),
            _ => Lifecycle::Ready,
        }
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}
