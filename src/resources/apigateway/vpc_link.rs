//! The VPC link (`integration = "private"`): API Gateway's way into the VPC, through the
//! internal Network Load Balancer it targets. Tagged at create, found by those tags (every
//! GetVpcLinks item carries them), so a repeated CreateVpcLink after a lost answer is
//! recognised. AWS takes minutes to make a link AVAILABLE and to delete it; an integration
//! may use it only once it is available, and the NLB may be deleted only once it is gone.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_apigateway::types::{Op, VpcLinkStatus};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{patch, put_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, found, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, wait_until, Ctx, Diff, Kind, Lifecycle, Poll, Replacement, Resource, StackTags};

pub const VPC_LINK_CREATE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const VPC_LINK_DELETE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcLinkSpec {
    pub tags: StackTags,
    pub name: String,
    pub description: String,
    /// The Network Load Balancer's ARN (API Gateway REST links take exactly one).
    pub target_arns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VpcLink {
    pub id: String,
    pub name: String,
    pub description: String,
    pub target_arns: Vec<String>,
    /// PENDING, AVAILABLE, DELETING or FAILED.
    pub status: String,
    pub status_message: String,
    pub tags: BTreeMap<String, String>,
}

/// GetVpcLink and GetVpcLinks answer with different types of the same shape.
macro_rules! observe {
    ($link:expr) => {{
        let link = $link;
        VpcLink {
            id: link.id().unwrap_or_default().to_string(),
            name: link.name().unwrap_or_default().to_string(),
            description: link.description().unwrap_or_default().to_string(),
            target_arns: link.target_arns().to_vec(),
            status: link.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            status_message: link.status_message().unwrap_or_default().to_string(),
            tags: link.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        }
    }};
}

/// Every VPC link of the account and region (500 a page), with its tags.
async fn list(ctx: &Ctx) -> Result<Vec<VpcLink>, AwsError> {
    let mut out = Vec::new();
    let mut position = None;
    loop {
        let resp = ctx
            .apigateway()
            .await
            .get_vpc_links()
            .limit(500)
            .set_position(position)
            .send()
            .await
            .map_err(|e| aws_error("GetVpcLinks", "(all)", e))?;
        out.extend(resp.items().iter().map(|l| observe!(l)));
        position = resp.position().map(str::to_string);
        if position.is_none() {
            return Ok(out);
        }
    }
}

pub async fn find_vpc_link(ctx: &Ctx, id: &str) -> Result<Option<VpcLink>, AwsError> {
    let got = ctx.apigateway().await.get_vpc_link().vpc_link_id(id).send().await;
    Ok(found(got.map_err(|e| aws_error("GetVpcLink", id, e)))?.map(|l| observe!(&l)))
}

fn link_arn(region: &str, id: &str) -> String {
    format!("arn:aws:apigateway:{region}::/vpclinks/{id}")
}

impl Resource for VpcLinkSpec {
    type Observed = VpcLink;

    /// A new target is a new link: the methods move to it (a new deployment), then the old
    /// link goes.
    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;

    const DELETE_BEFORE: &'static [(Kind, &'static str)] =
        &[(Kind::LoadBalancer, "DeleteLoadBalancer: ResourceInUse while a VPC link targets the load balancer")];

    /// `down` forgets the methods that use the link (they go with their API), so the API's
    /// delete must come first.
    const DELETE_AFTER: &'static [(Kind, &'static str)] =
        &[(Kind::RestApi, "DeleteVpcLink: BadRequest while an API's integrations reference the link")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<VpcLink>, AwsError> {
        find_vpc_link(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<VpcLink>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|l| has_stack_tags(&l.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &VpcLink) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "target_arns", &self.target_arns.join(","), &o.target_arns.join(","));
        // A link that FAILED (made while its NLB was not active) never recovers: a new one
        // takes its place, and the methods move to it.
        if o.status == VpcLinkStatus::Failed.as_str() {
            replace.push(crate::resources::FieldChange::new("status", VpcLinkStatus::Available.as_str(), format!("FAILED ({})", o.status_message)));
        }
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "name", &self.name, &o.name);
        compare(&mut update, "description", &self.description, &o.description);
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .apigateway()
            .await
            .create_vpc_link()
            .name(&self.name)
            .description(&self.description)
            .set_target_arns(Some(self.target_arns.clone()))
            .set_tags(Some(tag_map(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateVpcLink", logical_id, e))?;
        Ok(resp.id().unwrap_or_default().to_string())
    }

    /// PENDING for minutes on AWS; integrations through it fail until it is AVAILABLE.
    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        let what = format!("VPC link {id} to be available");
        wait_until(&what, "CreateVpcLink", VPC_LINK_CREATE_TIMEOUT, || async {
            match find_vpc_link(ctx, id).await? {
                Some(l) if l.status == VpcLinkStatus::Available.as_str() || l.status.is_empty() => Ok(Poll::Ready(())),
                Some(l) if l.status == VpcLinkStatus::Failed.as_str() => Err(AwsError {
                    class: ErrorClass::Fatal,
                    ..AwsError::timeout("CreateVpcLink", id, format!("the VPC link failed: {} (the next `up` replaces it)", l.status_message))
                }),
                Some(l) => Ok(Poll::Pending(l.status)),
                None => Ok(Poll::Pending("not yet visible".into())),
            }
        })
        .await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &VpcLink) -> Result<Option<String>, AwsError> {
        let mut ops = Vec::new();
        if o.name != self.name {
            ops.push(patch(Op::Replace, "/name", Some(&self.name)));
        }
        if o.description != self.description {
            ops.push(patch(Op::Replace, "/description", Some(&self.description)));
        }
        if !ops.is_empty() {
            ctx.apigateway()
                .await
                .update_vpc_link()
                .vpc_link_id(&o.id)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(|e| aws_error("UpdateVpcLink", &o.id, e))?;
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, link_arn(&ctx.aws.region, &o.id), &self.tags, &o.id).await?;
        }
        Ok(None)
    }

    fn physical_id(o: &VpcLink) -> String {
        o.id.clone()
    }

    fn attributes(o: &VpcLink) -> BTreeMap<String, String> {
        [("name".to_string(), o.name.clone())].into()
    }

    fn lifecycle(o: &VpcLink) -> Lifecycle {
        match o.status.as_str() {
            "PENDING" => Lifecycle::Settling(o.status.clone()),
            "DELETING" => Lifecycle::Deleting(o.status.clone()),
            _ => Lifecycle::Ready,
        }
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<VpcLink>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|l| ids.contains(&l.id)).collect())
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<VpcLink>, AwsError> {
        Ok(list(ctx).await?.into_iter().filter(|l| has_stack_tags(&l.tags, &ctx.stack, None)).collect())
    }

    fn tags(o: &VpcLink) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    /// Waits until the link is gone: until then the NLB it targets cannot be deleted.
    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let deleted = ctx.apigateway().await.delete_vpc_link().vpc_link_id(id).send().await;
        // "Cannot delete vpc link …, is referenced in [GET:abc123] …": a method still uses
        // it (one moving off it, or an API not yet gone); the engine waits and tries again.
        let in_use = |e: &aws_sdk_apigateway::operation::delete_vpc_link::DeleteVpcLinkError| {
            (e.code() == Some("BadRequestException") && e.message().is_some_and(|m| m.contains("referenced"))).then_some(ErrorClass::DependencyViolation)
        };
        match deleted.map_err(|e| aws_error_typed("DeleteVpcLink", id, e, in_use)) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        let what = format!("VPC link {id} to be deleted");
        wait_until(&what, "DeleteVpcLink", VPC_LINK_DELETE_TIMEOUT, || async {
            Ok(match find_vpc_link(ctx, id).await? {
                Some(l) => Poll::Pending(l.status),
                None => Poll::Ready(()),
            })
        })
        .await
    }
}
