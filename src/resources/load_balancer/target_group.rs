//! The service's IP target group: Fargate tasks register by IP on the container port, with
//! an HTTP health check on `/api/v1/healthz`; protocol HTTP behind the ALB, TCP behind the
//! internal NLB. Port, protocol, VPC and target type are fixed at creation, so a change to
//! one of them is a replacement: the new group is created (its name carries a hash of those
//! fields, since names are unique per account and region), the listener and the service
//! move to it, then the old one is deleted.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use aws_sdk_elasticloadbalancingv2::types::{Matcher, ProtocolEnum, TargetTypeEnum};

use super::{describe_tags, elb_tags, put_tags};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Replacement, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupSpec {
    pub tags: StackTags,
    /// Name prefix; the full name adds a hash of the fields fixed at creation.
    pub stack: String,
    pub vpc_id: String,
    pub port: u16,
    /// HTTP (an ALB's) or TCP (an NLB's).
    pub protocol: ProtocolEnum,
    pub health_check_path: String,
}

#[derive(Debug, Clone)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub vpc_id: String,
    pub port: i32,
    pub protocol: String,
    pub target_type: String,
    pub health_check_protocol: String,
    pub health_check_path: String,
    pub matcher: String,
    pub tags: BTreeMap<String, String>,
}

impl TargetGroupSpec {
    /// `<stack>-<hash of port, protocol, VPC>`: at most 32 characters, and a new name for a
    /// group that must be replaced.
    pub fn name(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.port, self.protocol.as_str(), "ip", &self.vpc_id).hash(&mut h);
        format!("{}-tg-{:08x}", self.stack, h.finish() as u32)
    }
}

fn observe(t: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> TargetGroup {
    TargetGroup {
        arn: t.target_group_arn().unwrap_or_default().to_string(),
        name: t.target_group_name().unwrap_or_default().to_string(),
        vpc_id: t.vpc_id().unwrap_or_default().to_string(),
        port: t.port().unwrap_or_default(),
        protocol: t.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        target_type: t.target_type().map(|p| p.as_str().to_string()).unwrap_or_default(),
        health_check_protocol: t.health_check_protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        health_check_path: t.health_check_path().unwrap_or_default().to_string(),
        matcher: t.matcher().and_then(|m| m.http_code()).unwrap_or_default().to_string(),
        tags: BTreeMap::new(),
    }
}

fn not_found(e: &aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsError) -> Option<ErrorClass> {
    e.is_target_group_not_found_exception().then_some(ErrorClass::NotFound)
}

/// Target groups by ARN or all of them, with tags; a missing ARN fails the whole call, so a
/// batch that meets one is read one by one.
async fn describe(ctx: &Ctx, arns: Option<&[String]>) -> Result<Vec<TargetGroup>, AwsError> {
    let what = arns.map(|a| a.join(",")).unwrap_or_else(|| "(stack inventory)".into());
    let mut found = Vec::new();
    let mut marker = None;
    loop {
        match ctx.elb().await.describe_target_groups().set_target_group_arns(arns.map(<[String]>::to_vec)).set_marker(marker).send().await {
            Ok(resp) => {
                found.extend(resp.target_groups().iter().map(observe));
                marker = resp.next_marker().map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
            Err(e) => match aws_error_typed("DescribeTargetGroups", &what, e, not_found) {
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
    let tags = describe_tags(ctx, &found.iter().map(|t| t.arn.clone()).collect::<Vec<_>>()).await?;
    for t in &mut found {
        t.tags = tags.get(&t.arn).cloned().unwrap_or_default();
    }
    Ok(found)
}

pub async fn find_target_group_by_arn(ctx: &Ctx, arn: &str) -> Result<Option<TargetGroup>, AwsError> {
    Ok(describe(ctx, Some(&[arn.to_string()])).await?.into_iter().next())
}

/// Fails with ResourceInUse while a listener forwards to the group or a service registers
/// into it; the destroy order deletes those first (the engine waits out the rest).
pub async fn delete_target_group(ctx: &Ctx, arn: &str) -> Result<(), AwsError> {
    ctx.elb()
        .await
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error_typed("DeleteTargetGroup", arn, e, |e| e.is_resource_in_use_exception().then_some(ErrorClass::DependencyViolation)))?;
    Ok(())
}

impl Resource for TargetGroupSpec {
    type Observed = TargetGroup;

    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<TargetGroup>, AwsError> {
        find_target_group_by_arn(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<TargetGroup>, AwsError> {
        Ok(describe(ctx, None).await?.into_iter().filter(|t| has_stack_tags(&t.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &TargetGroup) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "port", &i32::from(self.port), &o.port);
        compare(&mut replace, "protocol", &self.protocol.as_str().to_string(), &o.protocol);
        compare(&mut replace, "target_type", &"ip".to_string(), &o.target_type);
        compare(&mut replace, "vpc_id", &self.vpc_id, &o.vpc_id);
        let mut update = self.tags.diff(&o.tags);
        // An answer without a health check protocol is not compared (moto omits it for
        // groups created without one); AWS always returns it.
        if !o.health_check_protocol.is_empty() {
            compare(&mut update, "health_check_protocol", &"HTTP".to_string(), &o.health_check_protocol);
        }
        compare(&mut update, "health_check_path", &self.health_check_path, &o.health_check_path);
        compare(&mut update, "matcher", &"200".to_string(), &o.matcher);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .elb()
            .await
            .create_target_group()
            .name(self.name())
            .protocol(self.protocol.clone())
            .port(self.port.into())
            .vpc_id(&self.vpc_id)
            .target_type(TargetTypeEnum::Ip)
            // HTTP on `/healthz` for either protocol: a TCP check would pass a task whose
            // server accepts connections but cannot answer.
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_path(&self.health_check_path)
            .matcher(Matcher::builder().http_code("200").build())
            .set_tags(Some(elb_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateTargetGroup", logical_id, e))?;
        Ok(resp.target_groups().first().and_then(|t| t.target_group_arn()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &TargetGroup) -> Result<Option<String>, AwsError> {
        let protocol_drift = !o.health_check_protocol.is_empty() && o.health_check_protocol != "HTTP";
        if self.health_check_path != o.health_check_path || o.matcher != "200" || protocol_drift {
            ctx.elb()
                .await
                .modify_target_group()
                .target_group_arn(&o.arn)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_path(&self.health_check_path)
                .matcher(Matcher::builder().http_code("200").build())
                .send()
                .await
                .map_err(|e| aws_error("ModifyTargetGroup", &o.arn, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.arn, &self.tags).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<TargetGroup>, AwsError> {
        describe(ctx, Some(ids)).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<TargetGroup>, AwsError> {
        Ok(describe(ctx, None).await?.into_iter().filter(|t| has_stack_tags(&t.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &TargetGroup) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_target_group(ctx, id).await
    }

    fn physical_id(o: &TargetGroup) -> String {
        o.arn.clone()
    }

    fn attributes(o: &TargetGroup) -> BTreeMap<String, String> {
        [("name".to_string(), o.name.clone())].into()
    }
}
