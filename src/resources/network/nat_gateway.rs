//! NAT gateways: public, in a public subnet, with an Elastic IP. Creation takes minutes on
//! AWS, so the id is recorded first and `await_ready` polls until `available`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, NatGatewayState, ResourceType};

use super::{has_stack_tags, put_tags, stack_filters, tag_map, tag_spec};
use crate::aws::{aws_error, AwsError, SendOnce};
use crate::resources::{Ctx, Diff, Kind, Lifecycle, Poll, Resource, StackTags, compare, wait_until};

pub const NAT_GATEWAY_CREATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const NAT_GATEWAY_DELETE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatGatewaySpec {
    pub tags: StackTags,
    pub subnet_id: String,
    pub allocation_id: String,
}

#[derive(Debug, Clone)]
pub struct NatGateway {
    pub id: String,
    pub state: String,
    pub subnet_id: String,
    pub allocation_id: String,
    pub tags: BTreeMap<String, String>,
}

fn observe(n: &aws_sdk_ec2::types::NatGateway) -> NatGateway {
    NatGateway {
        id: n.nat_gateway_id().unwrap_or_default().to_string(),
        state: n.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        subnet_id: n.subnet_id().unwrap_or_default().to_string(),
        allocation_id: n
            .nat_gateway_addresses()
            .first()
            .and_then(|a| a.allocation_id())
            .unwrap_or_default()
            .to_string(),
        tags: tag_map(n.tags()),
    }
}

/// A gateway in `deleted` or `failed` state is gone for our purposes: AWS keeps it visible
/// for a while but it carries no traffic and holds no address.
fn is_live(n: &NatGateway) -> bool {
    n.state != NatGatewayState::Deleted.as_str() && n.state != NatGatewayState::Failed.as_str()
}

/// The raw observation, including gateways that are being deleted.
async fn describe_nat_gateway(ctx: &Ctx, id: &str) -> Result<Option<NatGateway>, AwsError> {
    match ctx.ec2().await.describe_nat_gateways().nat_gateway_ids(id).send().await {
        Ok(resp) => Ok(resp.nat_gateways().first().map(observe)),
        Err(e) => match aws_error("DescribeNatGateways", id, e) {
            e if e.is_not_found() => Ok(None),
            e => Err(e),
        },
    }
}

pub async fn find_nat_gateway_by_id(ctx: &Ctx, id: &str) -> Result<Option<NatGateway>, AwsError> {
    Ok(find_nat_gateways(ctx, &[id.to_string()]).await?.into_iter().next())
}

/// Many gateways in one call (a filter, so an id that is gone is simply absent).
pub async fn find_nat_gateways(ctx: &Ctx, ids: &[String]) -> Result<Vec<NatGateway>, AwsError> {
    let resp = ctx
        .ec2()
        .await
        .describe_nat_gateways()
        .filter(Filter::builder().name("nat-gateway-id").set_values(Some(ids.to_vec())).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeNatGateways", ids.join(","), e))?;
    Ok(resp.nat_gateways().iter().map(observe).filter(is_live).collect())
}

async fn find_tagged(ctx: &Ctx, logical_id: Option<&str>) -> Result<Vec<NatGateway>, AwsError> {
    let mut filters = stack_filters(&ctx.stack, logical_id);
    filters.push(Filter::builder().name("state").values("pending").values("available").build());
    let resp = ctx
        .ec2()
        .await
        .describe_nat_gateways()
        .set_filter(Some(filters))
        .send()
        .await
        .map_err(|e| aws_error("DescribeNatGateways", logical_id.unwrap_or("(stack inventory)"), e))?;
    Ok(resp.nat_gateways().iter().map(observe).filter(|o| is_live(o) && has_stack_tags(&o.tags, &ctx.stack, logical_id)).collect())
}

/// Every live nat gateway carrying the stack's tag.
pub async fn inventory(ctx: &Ctx) -> Result<Vec<NatGateway>, AwsError> {
    find_tagged(ctx, None).await
}

/// Deletes and waits until `deleted`: only then are the Elastic IP and the subnet free.
pub async fn delete_nat_gateway(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    ctx.ec2()
        .await
        .delete_nat_gateway()
        .nat_gateway_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DeleteNatGateway", id, e))?;
    wait_nat_gateway_deleted(ctx, id).await
}

pub async fn wait_nat_gateway_deleted(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let what = format!("NAT gateway {id} to be deleted");
    wait_until(&what, "DeleteNatGateway", NAT_GATEWAY_DELETE_TIMEOUT, || async {
        Ok(match describe_nat_gateway(ctx, id).await? {
            Some(n) if n.state != NatGatewayState::Deleted.as_str() => Poll::Pending(n.state),
            _ => Poll::Ready(()),
        })
    })
    .await
}

pub async fn wait_nat_gateway_available(ctx: &Ctx, id: &str) -> Result<(), AwsError> {
    let what = format!("NAT gateway {id} to be available");
    wait_until(&what, "CreateNatGateway", NAT_GATEWAY_CREATE_TIMEOUT, || async {
        match describe_nat_gateway(ctx, id).await? {
            Some(n) if n.state == NatGatewayState::Available.as_str() => Ok(Poll::Ready(())),
            Some(n) if n.state == NatGatewayState::Failed.as_str() => Err(AwsError {
                operation: "CreateNatGateway",
                resource: id.to_string(),
                code: Some("NatGatewayFailed".into()),
                message: "the NAT gateway entered state failed".into(),
                request_id: None,
                class: crate::aws::ErrorClass::Fatal,
            }),
            Some(n) => Ok(Poll::Pending(n.state)),
            // Describe is eventually consistent right after a create.
            None => Ok(Poll::Pending("not yet visible".into())),
        }
    })
    .await
}

/// Frees the Elastic IP for a new gateway. After an interrupted `down` the address may still
/// be associated with the stack's old gateway, which is `deleting` (on AWS the association
/// goes when the deletion completes, about a minute) or already `deleted` (an emulator may
/// keep the association for good); CreateNatGateway would then fail with
/// Resource.AlreadyAssociated. An address held by a live gateway, or by anything that is not
/// one of the stack's gateways, is left alone: that conflict is reported by the create.
async fn free_address_of_deleted_gateways(ctx: &Ctx, allocation_id: &str) -> Result<(), AwsError> {
    let association = |resp: aws_sdk_ec2::operation::describe_addresses::DescribeAddressesOutput| {
        resp.addresses().first().and_then(|a| a.association_id()).map(str::to_string)
    };
    let describe_address = || async {
        ctx.ec2()
            .await
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
            .map_err(|e| aws_error("DescribeAddresses", allocation_id, e))
    };
    if association(describe_address().await?).is_none() {
        return Ok(());
    }
    let resp = ctx
        .ec2()
        .await
        .describe_nat_gateways()
        .set_filter(Some(stack_filters(&ctx.stack, None)))
        .send()
        .await
        .map_err(|e| aws_error("DescribeNatGateways", allocation_id, e))?;
    let held_by: Vec<NatGateway> = resp
        .nat_gateways()
        .iter()
        .map(observe)
        .filter(|n| n.allocation_id == allocation_id && has_stack_tags(&n.tags, &ctx.stack, None))
        .collect();
    if held_by.is_empty() || held_by.iter().any(is_live_and_serving) {
        return Ok(());
    }
    for gateway in held_by.iter().filter(|n| n.state == NatGatewayState::Deleting.as_str()) {
        wait_nat_gateway_deleted(ctx, &gateway.id).await?;
    }
    let Some(association) = association(describe_address().await?) else { return Ok(()) };
    match ctx.ec2().await.disassociate_address().association_id(&association).send().await {
        Ok(_) => Ok(()),
        Err(e) => match aws_error("DisassociateAddress", allocation_id, e) {
            e if e.is_not_found() => Ok(()),
            e => Err(e),
        },
    }
}

fn is_live_and_serving(n: &NatGateway) -> bool {
    n.state == NatGatewayState::Pending.as_str() || n.state == NatGatewayState::Available.as_str()
}

impl Resource for NatGatewaySpec {
    type Observed = NatGateway;

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<NatGateway>, AwsError> {
        find_nat_gateway_by_id(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<NatGateway>, AwsError> {
        find_tagged(ctx, Some(logical_id)).await
    }

    fn diff(&self, o: &NatGateway) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "subnet_id", &self.subnet_id, &o.subnet_id);
        compare(&mut replace, "allocation_id", &self.allocation_id, &o.allocation_id);
        Diff::from_changes(self.tags.diff(&o.tags), replace)
    }

    /// Repeats are recognised by the client token on AWS (the same gateway comes back) and,
    /// where the token is ignored, by the engine's tag lookup before any repeat.
    async fn create(&self, ctx: &Ctx, logical_id: &str, token: &str) -> Result<String, AwsError> {
        free_address_of_deleted_gateways(ctx, &self.allocation_id).await?;
        let resp = ctx
            .ec2()
            .await
            .create_nat_gateway()
            .subnet_id(&self.subnet_id)
            .allocation_id(&self.allocation_id)
            .client_token(token)
            .tag_specifications(tag_spec(ResourceType::Natgateway, &self.tags))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateNatGateway", logical_id, e))?;
        Ok(resp.nat_gateway().and_then(|n| n.nat_gateway_id()).unwrap_or_default().to_string())
    }

    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        wait_nat_gateway_available(ctx, id).await
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &NatGateway) -> Result<Option<String>, AwsError> {
        put_tags(ctx, &o.id, &self.tags).await?;
        Ok(None)
    }

    const DELETE_AFTER: &'static [(Kind, &'static str)] = &[(Kind::Route, "a route to a deleted NAT gateway turns into a blackhole")];

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<NatGateway>, AwsError> {
        find_nat_gateways(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<NatGateway>, AwsError> {
        inventory(ctx).await
    }

    fn tags(o: &NatGateway) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_nat_gateway(ctx, id).await
    }

    fn physical_id(o: &NatGateway) -> String {
        o.id.clone()
    }

    fn lifecycle(o: &NatGateway) -> Lifecycle {
        match o.state.as_str() {
            "pending" => Lifecycle::Settling(o.state.clone()),
            "deleting" => Lifecycle::Deleting(o.state.clone()),
            _ => Lifecycle::Ready,
        }
    }
}
