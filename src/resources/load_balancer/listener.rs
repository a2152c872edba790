//! The port-80 listener forwarding to the target group (HTTP on the ALB, TCP on the NLB).
//! Found by its key (load balancer + port): a repeated create meets `DuplicateListener`, and
//! the engine's lookup by that key finds the listener the first attempt made.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ProtocolEnum};

use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::{compare, Ctx, Diff, Kind, Resource};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub load_balancer_arn: String,
    pub port: u16,
    pub protocol: ProtocolEnum,
    pub target_group_arn: String,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub arn: String,
    pub load_balancer_arn: String,
    pub port: i32,
    pub protocol: String,
    /// The target group of the default forward action; empty for other actions.
    pub forwards_to: String,
}

fn observe(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Listener {
    let forward = l.default_actions().iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward));
    Listener {
        arn: l.listener_arn().unwrap_or_default().to_string(),
        load_balancer_arn: l.load_balancer_arn().unwrap_or_default().to_string(),
        port: l.port().unwrap_or_default(),
        protocol: l.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
        forwards_to: forward
            .and_then(|a| a.target_group_arn().or_else(|| a.forward_config()?.target_groups().first()?.target_group_arn()))
            .unwrap_or_default()
            .to_string(),
    }
}

fn not_found(e: &aws_sdk_elasticloadbalancingv2::operation::describe_listeners::DescribeListenersError) -> Option<ErrorClass> {
    (e.is_listener_not_found_exception() || e.is_load_balancer_not_found_exception()).then_some(ErrorClass::NotFound)
}

/// Listeners by ARN; one that is gone fails the whole call, so a batch that meets one is
/// read one by one.
pub async fn find_listeners(ctx: &Ctx, arns: &[String]) -> Result<Vec<Listener>, AwsError> {
    match ctx.elb().await.describe_listeners().set_listener_arns(Some(arns.to_vec())).send().await {
        Ok(resp) => Ok(resp.listeners().iter().map(observe).collect()),
        Err(e) => match aws_error_typed("DescribeListeners", arns.join(","), e, not_found) {
            e if e.is_not_found() && arns.len() > 1 => {
                let mut found = Vec::new();
                for arn in arns {
                    found.extend(Box::pin(find_listeners(ctx, std::slice::from_ref(arn))).await?);
                }
                Ok(found)
            }
            e if e.is_not_found() => Ok(Vec::new()),
            e => Err(e),
        },
    }
}

async fn find_by_port(ctx: &Ctx, load_balancer_arn: &str, port: u16) -> Result<Vec<Listener>, AwsError> {
    match ctx.elb().await.describe_listeners().load_balancer_arn(load_balancer_arn).send().await {
        Ok(resp) => Ok(resp.listeners().iter().map(observe).filter(|l| l.port == i32::from(port)).collect()),
        Err(e) => match aws_error_typed("DescribeListeners", load_balancer_arn, e, not_found) {
            e if e.is_not_found() => Ok(Vec::new()),
            e => Err(e),
        },
    }
}

fn forward(target_group_arn: &str) -> Action {
    Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(target_group_arn).build()
}

impl Resource for ListenerSpec {
    type Observed = Listener;

    const TAGGABLE: bool = false;
    const DELETE_BEFORE: &'static [(Kind, &'static str)] =
        &[(Kind::TargetGroup, "DeleteTargetGroup: ResourceInUse while a listener forwards to the group")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<Listener>, AwsError> {
        Ok(find_listeners(ctx, &[id.to_string()]).await?.into_iter().next())
    }

    async fn adopt(&self, ctx: &Ctx, _logical_id: &str) -> Result<Vec<Listener>, AwsError> {
        find_by_port(ctx, &self.load_balancer_arn, self.port).await
    }

    fn diff(&self, o: &Listener) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "load_balancer_arn", &self.load_balancer_arn, &o.load_balancer_arn);
        compare(&mut replace, "port", &i32::from(self.port), &o.port);
        let mut update = Vec::new();
        compare(&mut update, "protocol", &self.protocol.as_str().to_string(), &o.protocol);
        compare(&mut update, "default_action", &format!("forward to {}", self.target_group_arn), &format!("forward to {}", o.forwards_to));
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .elb()
            .await
            .create_listener()
            .load_balancer_arn(&self.load_balancer_arn)
            .protocol(self.protocol.clone())
            .port(self.port.into())
            .default_actions(forward(&self.target_group_arn))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error_typed("CreateListener", logical_id, e, |e| e.is_duplicate_listener_exception().then_some(ErrorClass::AlreadyExists)))?;
        Ok(resp.listeners().first().and_then(|l| l.listener_arn()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &Listener) -> Result<Option<String>, AwsError> {
        ctx.elb()
            .await
            .modify_listener()
            .listener_arn(&o.arn)
            .protocol(self.protocol.clone())
            .port(self.port.into())
            .default_actions(forward(&self.target_group_arn))
            .send()
            .await
            .map_err(|e| aws_error("ModifyListener", &o.arn, e))?;
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<Listener>, AwsError> {
        find_listeners(ctx, ids).await
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.elb()
            .await
            .delete_listener()
            .listener_arn(id)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeleteListener", id, e, |e| e.is_listener_not_found_exception().then_some(ErrorClass::NotFound)))?;
        Ok(())
    }

    fn physical_id(o: &Listener) -> String {
        o.arn.clone()
    }
}
