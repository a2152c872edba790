//! The Fargate service: in the `ecs` subnets without public IPs, behind the target group,
//! with the deployment circuit breaker rolling a failed deployment back. CreateService takes
//! a client token (the engine's intent token, kept in state), and the name is unique in its
//! cluster; the engine's lookup by name finds the service an earlier attempt made.
//!
//! `up` waits until a deployment has rolled out (all tasks running the new revision) when
//! `wait_for_rollout` is set; a rollout the circuit breaker failed is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState, LaunchType,
    LoadBalancer, NetworkConfiguration, ServiceField,
};

use super::ecs_cluster::stack_clusters;
use super::{ecs_tags, put_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, wait_until, Ctx, Diff, FieldChange, Kind, Lifecycle, Poll, Resource, StackTags};

pub const SERVICE_DELETE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsServiceSpec {
    pub tags: StackTags,
    pub name: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub desired_count: u32,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub target_group_arn: String,
    pub container_name: String,
    pub container_port: u16,
    pub wait_for_rollout: bool,
    pub rollout_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct EcsService {
    pub arn: String,
    pub name: String,
    pub cluster_arn: String,
    pub status: String,
    pub task_definition: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub launch_type: String,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
    pub assign_public_ip: String,
    /// `target group → container:port` of each load balancer registration.
    pub load_balancers: BTreeSet<String>,
    pub circuit_breaker: String,
    /// The primary deployment's rollout state and reason.
    pub rollout: Option<(String, String)>,
    pub tags: BTreeMap<String, String>,
}

fn observe(s: &aws_sdk_ecs::types::Service) -> EcsService {
    let vpc = s.network_configuration().and_then(|n| n.awsvpc_configuration());
    let breaker = s.deployment_configuration().and_then(|d| d.deployment_circuit_breaker());
    let primary = s.deployments().iter().find(|d| d.status() == Some("PRIMARY"));
    EcsService {
        arn: s.service_arn().unwrap_or_default().to_string(),
        name: s.service_name().unwrap_or_default().to_string(),
        cluster_arn: s.cluster_arn().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        task_definition: s.task_definition().unwrap_or_default().to_string(),
        desired_count: s.desired_count(),
        running_count: s.running_count(),
        launch_type: s.launch_type().map(|l| l.as_str().to_string()).unwrap_or_default(),
        subnets: vpc.map(|v| v.subnets().iter().cloned().collect()).unwrap_or_default(),
        security_groups: vpc.map(|v| v.security_groups().iter().cloned().collect()).unwrap_or_default(),
        assign_public_ip: vpc.and_then(|v| v.assign_public_ip()).map(|a| a.as_str().to_string()).unwrap_or_default(),
        load_balancers: s
            .load_balancers()
            .iter()
            .map(|l| registration(l.target_group_arn().unwrap_or_default(), l.container_name().unwrap_or_default(), l.container_port().unwrap_or_default()))
            .collect(),
        circuit_breaker: breaker.map(|b| circuit_breaker_text(b.enable(), b.rollback())).unwrap_or_else(|| circuit_breaker_text(false, false)),
        rollout: primary.map(|d| {
            (d.rollout_state().map(|r| r.as_str().to_string()).unwrap_or_default(), d.rollout_state_reason().unwrap_or_default().to_string())
        }),
        tags: tag_map(s.tags()),
    }
}

fn registration(target_group: &str, container: &str, port: i32) -> String {
    format!("{target_group} → {container}:{port}")
}

fn circuit_breaker_text(enable: bool, rollback: bool) -> String {
    format!("enable={enable}, rollback={rollback}")
}

/// The cluster of a service ARN: `arn:aws:ecs:<region>:<account>:service/<cluster>/<name>`.
fn cluster_of(arn: &str) -> String {
    arn.split(":service/").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_string()
}

/// Services by ARN (grouped by cluster, ten per call); INACTIVE ones are gone.
pub async fn find_services(ctx: &Ctx, arns: &[String]) -> Result<Vec<EcsService>, AwsError> {
    let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for arn in arns {
        by_cluster.entry(cluster_of(arn)).or_default().push(arn.clone());
    }
    let mut out = Vec::new();
    for (cluster, services) in by_cluster {
        out.extend(describe_in_cluster(ctx, &cluster, &services).await?);
    }
    Ok(out)
}

async fn describe_in_cluster(ctx: &Ctx, cluster: &str, services: &[String]) -> Result<Vec<EcsService>, AwsError> {
    let mut out = Vec::new();
    for chunk in services.chunks(10) {
        let resp = ctx
            .ecs()
            .await
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .include(ServiceField::Tags)
            .send()
            .await;
        match resp {
            // Services that do not exist come back as `failures`, not as an error.
            Ok(resp) => out.extend(resp.services().iter().filter(|s| s.status() != Some("INACTIVE")).map(observe)),
            Err(e) => match aws_error_typed("DescribeServices", chunk.join(","), e, |e| e.is_cluster_not_found_exception().then_some(ErrorClass::NotFound)) {
                e if e.is_not_found() => {}
                e => return Err(e),
            },
        }
    }
    Ok(out)
}

pub async fn find_service_by_arn(ctx: &Ctx, arn: &str) -> Result<Option<EcsService>, AwsError> {
    Ok(find_services(ctx, &[arn.to_string()]).await?.into_iter().next())
}

/// Waits until the primary deployment has rolled out: every task running the new revision.
pub async fn wait_service_rolled_out(ctx: &Ctx, arn: &str, timeout: Duration) -> Result<(), AwsError> {
    let what = format!("ECS service {arn} to roll out");
    wait_until(&what, "UpdateService", timeout, || async {
        let Some(s) = find_service_by_arn(ctx, arn).await? else { return Ok(Poll::Pending("not yet visible".into())) };
        let (state, reason) = s.rollout.clone().unwrap_or_default();
        if state == DeploymentRolloutState::Failed.as_str() {
            return Err(AwsError {
                operation: "UpdateService",
                resource: arn.to_string(),
                code: Some("DeploymentFailed".into()),
                message: format!("the deployment failed and the circuit breaker rolled it back: {reason}"),
                request_id: None,
                class: ErrorClass::Fatal,
            });
        }
        if state == DeploymentRolloutState::Completed.as_str() && s.running_count == s.desired_count {
            Ok(Poll::Ready(()))
        } else {
            Ok(Poll::Pending(format!("{}/{} tasks running, rollout {}", s.running_count, s.desired_count, if state.is_empty() { "pending" } else { &state })))
        }
    })
    .await
}

/// Scales to zero, deletes, and waits until the service is INACTIVE: only then are its
/// tasks' network interfaces gone from the subnets and security groups, and the target
/// group free.
pub async fn delete_service(ctx: &Ctx, arn: &str) -> Result<(), AwsError> {
    let cluster = cluster_of(arn);
    let typed = |e: &aws_sdk_ecs::operation::update_service::UpdateServiceError| {
        (e.is_service_not_found_exception() || e.is_service_not_active_exception() || e.is_cluster_not_found_exception()).then_some(ErrorClass::NotFound)
    };
    match ctx.ecs().await.update_service().cluster(&cluster).service(arn).desired_count(0).send().await {
        Ok(_) => {}
        Err(e) => match aws_error_typed("UpdateService", arn, e, typed) {
            e if e.is_not_found() => {}
            e => return Err(e),
        },
    }
    ctx.ecs().await.delete_service().cluster(&cluster).service(arn).force(true).send().await.map_err(|e| {
        aws_error_typed("DeleteService", arn, e, |e| (e.is_service_not_found_exception() || e.is_cluster_not_found_exception()).then_some(ErrorClass::NotFound))
    })?;
    let what = format!("ECS service {arn} to be deleted");
    wait_until(&what, "DeleteService", SERVICE_DELETE_TIMEOUT, || async {
        Ok(match find_service_by_arn(ctx, arn).await? {
            Some(s) => Poll::Pending(s.status),
            None => Poll::Ready(()),
        })
    })
    .await
}

impl EcsServiceSpec {
    fn network(&self) -> NetworkConfiguration {
        NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(self.subnets.iter().cloned().collect()))
                    .set_security_groups(Some(self.security_groups.iter().cloned().collect()))
                    .assign_public_ip(AssignPublicIp::Disabled)
                    .build()
                    .expect("subnets are set"),
            )
            .build()
    }

    fn deployment(&self) -> DeploymentConfiguration {
        DeploymentConfiguration::builder()
            .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(true).build())
            .maximum_percent(200)
            .minimum_healthy_percent(100)
            .build()
    }

    fn load_balancer(&self) -> LoadBalancer {
        LoadBalancer::builder()
            .target_group_arn(&self.target_group_arn)
            .container_name(&self.container_name)
            .container_port(self.container_port.into())
            .build()
    }
}

impl Resource for EcsServiceSpec {
    type Observed = EcsService;

    const DELETE_BEFORE: &'static [(Kind, &'static str)] = &[
        (Kind::TargetGroup, "DeleteTargetGroup: ResourceInUse while the service registers its tasks in the group"),
        (Kind::SecurityGroup, "DeleteSecurityGroup: DependencyViolation while the tasks' interfaces use the group"),
        (Kind::Subnet, "DeleteSubnet: DependencyViolation while tasks have interfaces in the subnet"),
        (Kind::EcsCluster, "DeleteCluster: ClusterContainsServicesException while the service remains"),
        (Kind::NatGateway, "tasks pull their image and reach AWS APIs through the NAT gateway until they stop"),
    ];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<EcsService>, AwsError> {
        find_service_by_arn(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<EcsService>, AwsError> {
        let found = describe_in_cluster(ctx, &self.cluster_arn, &[self.name.clone()]).await?;
        Ok(found.into_iter().filter(|s| has_stack_tags(&s.tags, &ctx.stack, Some(logical_id))).collect())
    }

    fn diff(&self, o: &EcsService) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "name", &self.name, &o.name);
        compare(&mut replace, "cluster_arn", &self.cluster_arn, &o.cluster_arn);
        compare(&mut replace, "launch_type", &"FARGATE".to_string(), &o.launch_type);
        let mut update = self.tags.diff(&o.tags);
        compare(&mut update, "task_definition", &self.task_definition_arn, &o.task_definition);
        compare(&mut update, "desired_count", &(self.desired_count as i32), &o.desired_count);
        compare(&mut update, "subnets", &join(&self.subnets), &join(&o.subnets));
        compare(&mut update, "security_groups", &join(&self.security_groups), &join(&o.security_groups));
        compare(&mut update, "assign_public_ip", &"DISABLED".to_string(), &o.assign_public_ip);
        let wanted_lb = registration(&self.target_group_arn, &self.container_name, self.container_port.into());
        compare(&mut update, "load_balancers", &wanted_lb, &join(&o.load_balancers));
        compare(&mut update, "deployment_circuit_breaker", &circuit_breaker_text(true, true), &o.circuit_breaker);
        // A rollout the circuit breaker failed (with nothing to roll back to) stays failed:
        // the next `up` deploys again instead of calling the service converged.
        if let Some((state, reason)) = o.rollout.as_ref().filter(|(state, _)| state == DeploymentRolloutState::Failed.as_str()) {
            update.push(FieldChange::new("rollout", DeploymentRolloutState::Completed.as_str(), format!("{state} ({reason})")));
        }
        Diff::from_changes(update, replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ecs()
            .await
            .create_service()
            .cluster(&self.cluster_arn)
            .service_name(&self.name)
            .task_definition(&self.task_definition_arn)
            .desired_count(self.desired_count as i32)
            .launch_type(LaunchType::Fargate)
            .network_configuration(self.network())
            .load_balancers(self.load_balancer())
            .deployment_configuration(self.deployment())
            .client_token(token)
            .set_tags(Some(ecs_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("CreateService", logical_id, e))?;
        Ok(resp.service().and_then(|s| s.service_arn()).unwrap_or_default().to_string())
    }

    async fn await_ready(&self, ctx: &Ctx, id: &str) -> Result<(), AwsError> {
        if self.wait_for_rollout {
            wait_service_rolled_out(ctx, id, self.rollout_timeout).await?;
        }
        Ok(())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &EcsService) -> Result<Option<String>, AwsError> {
        let settings_differ = self.task_definition_arn != o.task_definition
            || self.desired_count as i32 != o.desired_count
            || self.subnets != o.subnets
            || self.security_groups != o.security_groups
            || o.assign_public_ip != "DISABLED"
            || o.load_balancers != [registration(&self.target_group_arn, &self.container_name, self.container_port.into())].into()
            || o.circuit_breaker != circuit_breaker_text(true, true);
        let rollout_failed = o.rollout.as_ref().is_some_and(|(state, _)| state == DeploymentRolloutState::Failed.as_str());
        if settings_differ || rollout_failed {
            ctx.ecs()
                .await
                .update_service()
                .cluster(&o.cluster_arn)
                .service(&o.arn)
                .task_definition(&self.task_definition_arn)
                .desired_count(self.desired_count as i32)
                .network_configuration(self.network())
                .load_balancers(self.load_balancer())
                .deployment_configuration(self.deployment())
                .force_new_deployment(rollout_failed)
                .send()
                .await
                .map_err(|e| aws_error("UpdateService", &o.arn, e))?;
            if self.wait_for_rollout {
                wait_service_rolled_out(ctx, &o.arn, self.rollout_timeout).await?;
            }
        }
        if !self.tags.diff(&o.tags).is_empty() {
            put_tags(ctx, &o.arn, &self.tags).await?;
        }
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<EcsService>, AwsError> {
        find_services(ctx, ids).await
    }

    async fn inventory(ctx: &Ctx) -> Result<Vec<EcsService>, AwsError> {
        let mut out = Vec::new();
        for cluster in stack_clusters(ctx).await? {
            let mut arns = Vec::new();
            let mut token = None;
            loop {
                let resp = ctx
                    .ecs()
                    .await
                    .list_services()
                    .cluster(&cluster.arn)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| aws_error("ListServices", &cluster.arn, e))?;
                arns.extend(resp.service_arns().iter().cloned());
                token = resp.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            out.extend(describe_in_cluster(ctx, &cluster.arn, &arns).await?.into_iter().filter(|s| has_stack_tags(&s.tags, &ctx.stack, None)));
        }
        Ok(out)
    }

    fn tags(o: &EcsService) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        delete_service(ctx, id).await
    }

    fn physical_id(o: &EcsService) -> String {
        o.arn.clone()
    }

    fn attributes(o: &EcsService) -> BTreeMap<String, String> {
        [("name".to_string(), o.name.clone())].into()
    }

    fn lifecycle(o: &EcsService) -> Lifecycle {
        match o.status.as_str() {
            "DRAINING" => Lifecycle::Deleting(o.status.clone()),
            _ => Lifecycle::Ready,
        }
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}
