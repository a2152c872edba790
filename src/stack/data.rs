//! The data tier: the two SSM parameters, the IAM roles, the service's log group, the DB
//! subnet group and the Aurora PostgreSQL cluster with its writer instance.

use super::Stack;
use crate::config::Settings;
use crate::resources::database::db_cluster::DbClusterSpec;
use crate::resources::database::db_instance::DbInstanceSpec;
use crate::resources::database::db_subnet_group::DbSubnetGroupSpec;
use crate::resources::iam::role::{stack_path, RoleSpec};
use crate::resources::logs::log_group::{stack_prefix, LogGroupSpec};
use crate::resources::secrets::ssm_parameter::SsmParameterSpec;
use crate::resources::StackTags;

/// What the ECS agent needs to start the tasks: pull the image, write logs (the AWS managed
/// policy); the two secrets come from the inline policy, on exactly their ARNs.
pub const TASK_EXECUTION_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy";
pub const LAMBDA_BASIC_EXECUTION_POLICY: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";

/// The confused-deputy guard on a service role's trust: the service may assume it only
/// for requests made on behalf of this account's resources (`aws:SourceAccount`), and
/// where `source_arn` is given, of resources matching it (`aws:SourceArn`).
pub fn trust_condition(account: &str, source_arn: Option<String>) -> serde_json::Value {
    let mut condition = serde_json::json!({"StringEquals": {"aws:SourceAccount": account}});
    if let Some(arn) = source_arn {
        condition["ArnLike"] = serde_json::json!({"aws:SourceArn": arn});
    }
    condition
}

pub fn add(stack: &mut Stack, settings: &Settings, region: &str, account: &str) {
    let cfg = settings.config.clone();
    let name = cfg.stack.clone();
    let tags = move |id: &str| StackTags::new(&name, id);

    for (id, param) in [("ssm.db_password", &cfg.db_password_ssm_param), ("ssm.basic_auth_password", &cfg.http_basic_auth_password_ssm_param)] {
        let (t, param) = (tags(id), param.clone());
        stack.add(id, &[], move |_| SsmParameterSpec { tags: t.clone(), name: param.clone() });
    }

    let path = stack_path(&cfg.stack);
    let role = |id: &str, suffix: &str, service: &str| (tags(id), format!("{}-{suffix}", cfg.stack), path.clone(), service.to_string());

    let (t, role_name, p, service) = role("role.task_execution", "task-execution", "ecs-tasks.amazonaws.com");
    let ssm_endpoint = format!("ssm.{region}.amazonaws.com");
    // No condition here: ECS's guide documents the guard for the task role; the execution
    // role is assumed by the ECS agent to pull the image and read the secrets.
    stack.add("role.task_execution", &[], move |r| RoleSpec {
        tags: t.clone(),
        name: role_name.clone(),
        path: p.clone(),
        service: service.clone(),
        trust_condition: serde_json::Value::Null,
        managed_policies: [TASK_EXECUTION_POLICY.to_string()].into(),
        inline: Some(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "ssm:GetParameters",
                    "Resource": [r.attr("ssm.db_password", "arn"), r.attr("ssm.basic_auth_password", "arn")]
                },
                {
                    // SecureStrings are encrypted with a KMS key; decrypting is allowed only
                    // through SSM.
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:ViaService": ssm_endpoint.clone()}}
                }
            ]
        })),
    });

    let (t, role_name, p, service) = role("role.task", "task", "ecs-tasks.amazonaws.com");
    // As ECS's task-role guide shows: this account, and ECS resources of this region.
    let condition = trust_condition(account, Some(format!("arn:aws:ecs:{region}:{account}:*")));
    stack.add("role.task", &[], move |_| RoleSpec {
        tags: t.clone(),
        name: role_name.clone(),
        path: p.clone(),
        service: service.clone(),
        trust_condition: condition.clone(),
        managed_policies: Default::default(),
        inline: None,
    });

    let (t, role_name, p, service) = role("role.lambda", "lambda", "lambda.amazonaws.com");
    let condition = trust_condition(account, None);
    stack.add("role.lambda", &[], move |_| RoleSpec {
        tags: t.clone(),
        name: role_name.clone(),
        path: p.clone(),
        service: service.clone(),
        trust_condition: condition.clone(),
        managed_policies: [LAMBDA_BASIC_EXECUTION_POLICY.to_string()].into(),
        inline: None,
    });

    let (t, log_name, retention) = (tags("log_group.service"), format!("{}books-api", stack_prefix(&cfg.stack)), cfg.log_retention_days);
    stack.add("log_group.service", &[], move |_| LogGroupSpec { tags: t.clone(), name: log_name.clone(), retention_days: retention });

    let (t, group) = (tags("db_subnet_group"), format!("{}-db", cfg.stack));
    stack.add("db_subnet_group", &[], move |r| DbSubnetGroupSpec {
        tags: t.clone(),
        name: group.clone(),
        subnets: [r.id("subnet.db.a"), r.id("subnet.db.b")].into(),
    });

    let (t, c) = (tags("db_cluster"), cfg.clone());
    stack.add("db_cluster", &[], move |r| DbClusterSpec {
        tags: t.clone(),
        identifier: format!("{}-db", c.stack),
        engine_version: c.db_engine_version.clone(),
        database_name: c.db_name.clone(),
        master_username: c.db_user.clone(),
        password_parameter: r.id("ssm.db_password"),
        password_version: r.attr("ssm.db_password", "version"),
        subnet_group: r.id("db_subnet_group"),
        security_groups: [r.id("sg.db")].into(),
        deletion_protection: c.db_deletion_protection,
        final_snapshot: c.db_final_snapshot,
    });

    let (t, c) = (tags("db_instance.writer"), cfg.clone());
    stack.add("db_instance.writer", &[], move |r| DbInstanceSpec {
        tags: t.clone(),
        identifier: format!("{}-db-writer", c.stack),
        cluster_identifier: r.id("db_cluster"),
        instance_class: c.db_instance_class.clone(),
    });
}
