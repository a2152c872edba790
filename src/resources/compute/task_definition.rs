//! The Fargate task definition. A revision is immutable: any change of content is a new
//! revision (replacement: register, move the service to it, deregister the old one), so an
//! unchanged spec never registers anything. Secrets are referenced by parameter ARN
//! (`valueFrom`); their values never appear here.
//!
//! RegisterTaskDefinition takes no idempotency token and a repeat makes a second revision;
//! a repeat is recognised by the engine's lookup of the family's active revisions carrying
//! this id's tags, keeping the one whose content matches (the others are duplicates).

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode, PortMapping, Secret,
    TaskDefinitionField, TaskDefinitionStatus, TransportProtocol,
};

use super::{ecs_tags, put_tags, tag_map};
use crate::aws::{aws_error, aws_error_typed, AwsError, ErrorClass, SendOnce};
use crate::resources::network::has_stack_tags;
use crate::resources::{compare, Ctx, Diff, Kind, Replacement, Resource, StackTags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub port: u16,
    pub environment: BTreeMap<String, String>,
    /// Variable name → SSM parameter ARN.
    pub secrets: BTreeMap<String, String>,
    pub log_group: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionSpec {
    pub tags: StackTags,
    pub family: String,
    pub cpu: u32,
    pub memory: u32,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    pub container: ContainerSpec,
}

#[derive(Debug, Clone)]
pub struct TaskDefinition {
    pub arn: String,
    pub family: String,
    pub revision: i32,
    pub cpu: String,
    pub memory: String,
    pub network_mode: String,
    pub fargate: bool,
    pub execution_role_arn: String,
    pub task_role_arn: String,
    pub container: Option<ContainerSpec>,
    pub tags: BTreeMap<String, String>,
}

fn observe(t: &aws_sdk_ecs::types::TaskDefinition, tags: &[aws_sdk_ecs::types::Tag]) -> TaskDefinition {
    let container = t.container_definitions().first().map(|c| ContainerSpec {
        name: c.name().unwrap_or_default().to_string(),
        image: c.image().unwrap_or_default().to_string(),
        port: c.port_mappings().first().and_then(|p| p.container_port()).unwrap_or_default() as u16,
        environment: c.environment().iter().filter_map(|kv| Some((kv.name()?.to_string(), kv.value().unwrap_or_default().to_string()))).collect(),
        secrets: c.secrets().iter().map(|s| (s.name().to_string(), s.value_from().to_string())).collect(),
        log_group: c.log_configuration().and_then(|l| l.options()).and_then(|o| o.get("awslogs-group")).cloned().unwrap_or_default(),
        region: c.log_configuration().and_then(|l| l.options()).and_then(|o| o.get("awslogs-region")).cloned().unwrap_or_default(),
    });
    TaskDefinition {
        arn: t.task_definition_arn().unwrap_or_default().to_string(),
        family: t.family().unwrap_or_default().to_string(),
        revision: t.revision(),
        cpu: t.cpu().unwrap_or_default().to_string(),
        memory: t.memory().unwrap_or_default().to_string(),
        network_mode: t.network_mode().map(|m| m.as_str().to_string()).unwrap_or_default(),
        fargate: t.requires_compatibilities().contains(&Compatibility::Fargate),
        execution_role_arn: t.execution_role_arn().unwrap_or_default().to_string(),
        task_role_arn: t.task_role_arn().unwrap_or_default().to_string(),
        container,
        tags: tag_map(tags),
    }
}

/// One revision by ARN; deregistered (INACTIVE) revisions are gone.
pub async fn find_task_definition_by_arn(ctx: &Ctx, arn: &str) -> Result<Option<TaskDefinition>, AwsError> {
    let resp = ctx.ecs().await.describe_task_definition().task_definition(arn).include(TaskDefinitionField::Tags).send().await;
    let resp = match resp {
        Ok(resp) => resp,
        // ECS answers a ClientException for a revision it does not know.
        Err(e) => match aws_error_typed("DescribeTaskDefinition", arn, e, |e| e.is_client_exception().then_some(ErrorClass::NotFound)) {
            e if e.is_not_found() => return Ok(None),
            e => return Err(e),
        },
    };
    Ok(resp
        .task_definition()
        .filter(|t| t.status() == Some(&TaskDefinitionStatus::Active))
        .map(|t| observe(t, resp.tags())))
}

/// The active revisions of a family.
async fn active_revisions(ctx: &Ctx, prefix: &str) -> Result<Vec<TaskDefinition>, AwsError> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let resp = ctx
            .ecs()
            .await
            .list_task_definitions()
            .family_prefix(prefix)
            .status(TaskDefinitionStatus::Active)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("ListTaskDefinitions", prefix, e))?;
        arns.extend(resp.task_definition_arns().iter().cloned());
        token = resp.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for arn in arns {
        out.extend(find_task_definition_by_arn(ctx, &arn).await?);
    }
    Ok(out)
}

fn container_definition(c: &ContainerSpec) -> ContainerDefinition {
    let log = LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", &c.log_group)
        .options("awslogs-region", &c.region)
        .options("awslogs-stream-prefix", &c.name)
        .build()
        .expect("log driver is set");
    ContainerDefinition::builder()
        .name(&c.name)
        .image(&c.image)
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(c.port.into()).protocol(TransportProtocol::Tcp).build())
        .set_environment(Some(c.environment.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect()))
        .set_secrets(Some(
            c.secrets.iter().map(|(k, v)| Secret::builder().name(k).value_from(v).build().expect("name and valueFrom are set")).collect(),
        ))
        .log_configuration(log)
        .build()
}

impl Resource for TaskDefinitionSpec {
    type Observed = TaskDefinition;

    const REPLACEMENT: Replacement = Replacement::CreateThenDelete;
    const DELETE_AFTER: &'static [(Kind, &'static str)] =
        &[(Kind::EcsService, "a deregistered revision cannot start tasks: the service moves off it first")];

    async fn find(&self, ctx: &Ctx, id: &str) -> Result<Option<TaskDefinition>, AwsError> {
        find_task_definition_by_arn(ctx, id).await
    }

    async fn adopt(&self, ctx: &Ctx, logical_id: &str) -> Result<Vec<TaskDefinition>, AwsError> {
        Ok(active_revisions(ctx, &self.family)
            .await?
            .into_iter()
            .filter(|t| t.family == self.family && has_stack_tags(&t.tags, &ctx.stack, Some(logical_id)))
            .collect())
    }

    fn diff(&self, o: &TaskDefinition) -> Diff {
        let mut replace = Vec::new();
        compare(&mut replace, "family", &self.family, &o.family);
        compare(&mut replace, "cpu", &self.cpu.to_string(), &o.cpu);
        compare(&mut replace, "memory", &self.memory.to_string(), &o.memory);
        compare(&mut replace, "network_mode", &"awsvpc".to_string(), &o.network_mode);
        compare(&mut replace, "requires_compatibilities", &"FARGATE".to_string(), &if o.fargate { "FARGATE" } else { "(none)" }.to_string());
        compare(&mut replace, "execution_role_arn", &self.execution_role_arn, &o.execution_role_arn);
        compare(&mut replace, "task_role_arn", &self.task_role_arn, &o.task_role_arn);
        match &o.container {
            None => replace.push(crate::resources::FieldChange::new("container", &self.container.name, "(none)")),
            Some(c) => {
                let w = &self.container;
                compare(&mut replace, "container.name", &w.name, &c.name);
                compare(&mut replace, "container.image", &w.image, &c.image);
                compare(&mut replace, "container.port", &w.port, &c.port);
                compare(&mut replace, "container.environment", &pairs(&w.environment), &pairs(&c.environment));
                compare(&mut replace, "container.secrets", &pairs(&w.secrets), &pairs(&c.secrets));
                compare(&mut replace, "container.log_group", &w.log_group, &c.log_group);
            }
        }
        Diff::from_changes(self.tags.diff(&o.tags), replace)
    }

    async fn create(&self, ctx: &Ctx, logical_id: &str, _token: &str) -> Result<String, AwsError> {
        let resp = ctx
            .ecs()
            .await
            .register_task_definition()
            .family(&self.family)
            .cpu(self.cpu.to_string())
            .memory(self.memory.to_string())
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .execution_role_arn(&self.execution_role_arn)
            .task_role_arn(&self.task_role_arn)
            .container_definitions(container_definition(&self.container))
            .set_tags(Some(ecs_tags(&self.tags)))
            .customize()
            .no_blind_retry()
            .send()
            .await
            .map_err(|e| aws_error("RegisterTaskDefinition", logical_id, e))?;
        Ok(resp.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string())
    }

    async fn update(&self, ctx: &Ctx, _logical_id: &str, o: &TaskDefinition) -> Result<Option<String>, AwsError> {
        put_tags(ctx, &o.arn, &self.tags).await?;
        Ok(None)
    }

    async fn find_many(ctx: &Ctx, ids: &[String]) -> Result<Vec<TaskDefinition>, AwsError> {
        // DescribeTaskDefinition reads one revision per call.
        let mut out = Vec::new();
        for id in ids {
            out.extend(find_task_definition_by_arn(ctx, id).await?);
        }
        Ok(out)
    }

    /// The families whose names start with the stack's (ListTaskDefinitions matches a
    /// family exactly), then their active revisions.
    async fn inventory(ctx: &Ctx) -> Result<Vec<TaskDefinition>, AwsError> {
        let resp = ctx
            .ecs()
            .await
            .list_task_definition_families()
            .family_prefix(&ctx.stack)
            .status(aws_sdk_ecs::types::TaskDefinitionFamilyStatus::Active)
            .send()
            .await
            .map_err(|e| aws_error("ListTaskDefinitionFamilies", &ctx.stack, e))?;
        let mut out = Vec::new();
        for family in resp.families() {
            out.extend(active_revisions(ctx, family).await?.into_iter().filter(|t| has_stack_tags(&t.tags, &ctx.stack, None)));
        }
        Ok(out)
    }

    fn tags(o: &TaskDefinition) -> Option<&BTreeMap<String, String>> {
        Some(&o.tags)
    }

    async fn delete(ctx: &Ctx, id: &str, _recorded: &BTreeMap<String, String>) -> Result<(), AwsError> {
        ctx.ecs()
            .await
            .deregister_task_definition()
            .task_definition(id)
            .send()
            .await
            .map_err(|e| aws_error_typed("DeregisterTaskDefinition", id, e, |e| e.is_client_exception().then_some(ErrorClass::NotFound)))?;
        Ok(())
    }

    fn physical_id(o: &TaskDefinition) -> String {
        o.arn.clone()
    }

    fn attributes(o: &TaskDefinition) -> BTreeMap<String, String> {
        [("family".to_string(), o.family.clone()), ("revision".to_string(), o.revision.to_string())].into()
    }
}

fn pairs(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}
