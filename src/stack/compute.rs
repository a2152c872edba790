//! The compute tier: the image's ECR repository, the ECS cluster, the Fargate task
//! definition and service, and the load balancer with its target group and listener: the
//! public ALB, or with `integration = "private"` the internal NLB.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;

use super::Stack;
use crate::config::{Integration, Settings};
use crate::resources::compute::ecr_repository::EcrRepositorySpec;
use crate::resources::compute::ecs_cluster::EcsClusterSpec;
use crate::resources::compute::ecs_service::EcsServiceSpec;
use crate::resources::compute::image::{ImageSpec, Source};
use crate::resources::compute::task_definition::{ContainerSpec, TaskDefinitionSpec};
use crate::resources::load_balancer::listener::ListenerSpec;
use crate::resources::load_balancer::load_balancer::{LbKind, LoadBalancerSpec};
use crate::resources::load_balancer::target_group::TargetGroupSpec;
use crate::resources::StackTags;

pub const CONTAINER_NAME: &str = "books-api";
pub const HEALTH_CHECK_PATH: &str = "/api/v1/healthz";
/// Where `api/Dockerfile` puts the Amazon RDS CA bundle in the image it builds.
pub const RDS_CA_BUNDLE: &str = "/etc/ssl/certs/rds-global-bundle.pem";

/// How the service checks Aurora's certificate: the image built from source has the RDS CA
/// bundle, so its name and chain are verified; a prebuilt image gets the config's choice
/// (`require` by default: encrypted, but any certificate is accepted).
pub fn db_tls_env(cfg: &crate::config::Config) -> Vec<(&'static str, String)> {
    match &cfg.image {
        None => vec![("DB_SSLMODE", "verify-full".into()), ("DB_SSLROOTCERT", RDS_CA_BUNDLE.into())],
        Some(_) => {
            let mut env = vec![("DB_SSLMODE", cfg.db_sslmode.clone().unwrap_or_else(|| "require".into()))];
            env.extend(cfg.db_sslrootcert.clone().map(|path| ("DB_SSLROOTCERT", path)));
            env
        }
    }
}

/// Where the service is reached: the logical ids of the load balancer, its target group and
/// listener, and their protocol — the public ALB, or the internal NLB behind the VPC link.
pub fn front(integration: Integration) -> (&'static str, &'static str, &'static str, ProtocolEnum) {
    match integration {
        Integration::Public => ("alb", "target_group", "listener.http", ProtocolEnum::Http),
        Integration::Private => ("nlb", "target_group.nlb", "listener.nlb", ProtocolEnum::Tcp),
    }
}

pub fn add(stack: &mut Stack, settings: &Settings, region: &str) {
    let cfg = settings.config.clone();
    let name = cfg.stack.clone();
    let tags = move |id: &str| StackTags::new(&name, id);

    let t = tags("ecr_repository");
    let repository = format!("{}/{CONTAINER_NAME}", cfg.stack);
    stack.add("ecr_repository", &[], move |_| EcrRepositorySpec { tags: t.clone(), name: repository.clone() });

    if let (None, Some(path)) = (&cfg.image, &cfg.source_code_path) {
        // Unreadable source yields a tag that never matches; `up` stops before any AWS call
        // saying why (see `Source::read`), `plan` and `status` show the image as changed.
        let source = Source::read(settings).ok().flatten().unwrap_or_else(|| {
            let dir = settings.base_dir.join(path);
            Source { context: dir.clone(), dockerfile: dir.join("Dockerfile"), tag: "unreadable".into() }
        });
        let builder = settings.image_builder;
        stack.add("image", &[], move |r| ImageSpec {
            repository_uri: r.attr("ecr_repository", "uri"),
            repository_name: r.id("ecr_repository"),
            context: source.context.clone(),
            dockerfile: source.dockerfile.clone(),
            tag: source.tag.clone(),
            builder,
        });
    }

    let (t, cluster) = (tags("ecs_cluster"), cfg.stack.clone());
    stack.add("ecs_cluster", &[], move |_| EcsClusterSpec { tags: t.clone(), name: cluster.clone() });

    let (lb, target_group, listener, protocol) = front(settings.integration);
    let (t, lb_name, integration) = (tags(lb), format!("{}-{lb}", cfg.stack), settings.integration);
    stack.add(lb, &[], move |r| {
        let (kind, subnets, security_groups) = match integration {
            Integration::Public => (LbKind::PublicApplication, [r.id("subnet.public.a"), r.id("subnet.public.b")], [r.id("sg.alb")].into()),
            Integration::Private => (LbKind::InternalNetwork, [r.id("subnet.ecs.a"), r.id("subnet.ecs.b")], Default::default()),
        };
        LoadBalancerSpec { tags: t.clone(), name: lb_name.clone(), kind, subnets: subnets.into(), security_groups }
    });

    let (t, prefix, port, p) = (tags(target_group), cfg.stack.clone(), cfg.container_port, protocol.clone());
    stack.add(target_group, &[], move |r| TargetGroupSpec {
        tags: t.clone(),
        stack: prefix.clone(),
        vpc_id: r.id("vpc"),
        port,
        protocol: p.clone(),
        health_check_path: HEALTH_CHECK_PATH.into(),
    });

    stack.add(listener, &[], move |r| ListenerSpec {
        load_balancer_arn: r.id(lb),
        port: 80,
        protocol: protocol.clone(),
        target_group_arn: r.id(target_group),
    });

    let (t, c, region) = (tags("task_definition"), cfg.clone(), region.to_string());
    stack.add("task_definition", &[], move |r| {
        // The image: the prebuilt URI from the config, else the one `up` built and pushed.
        let image = match &c.image {
            Some(image) => image.clone(),
            None => r.attr("image", "uri"),
        };
        let environment: BTreeMap<String, String> = [
            ("DB_HOST", r.attr("db_cluster", "endpoint")),
            ("DB_PORT", "5432".to_string()),
            ("DB_USER", c.db_user.clone()),
            ("DB_NAME", c.db_name.clone()),
            ("BASIC_AUTH_USER", c.http_basic_auth_user.clone()),
            ("PORT", c.container_port.to_string()),
            // ECS reads the secrets at task start: a rotated one (a new SSM version) makes a
            // new revision, so the service rolls once onto tasks that read the new values.
            // After the cluster has it: this node reads the cluster's endpoint.
            ("DB_PASSWORD_VERSION", r.attr("ssm.db_password", "version")),
            ("BASIC_AUTH_PASSWORD_VERSION", r.attr("ssm.basic_auth_password", "version")),
        ]
        .into_iter()
        .chain(db_tls_env(&c))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // By parameter ARN: ECS reads the values at task start; they never enter the task
        // definition, the state or a log.
        let secrets: BTreeMap<String, String> = [
            ("DB_PASSWORD".to_string(), r.attr("ssm.db_password", "arn")),
            ("BASIC_AUTH_PASSWORD".to_string(), r.attr("ssm.basic_auth_password", "arn")),
        ]
        .into();
        TaskDefinitionSpec {
            tags: t.clone(),
            family: format!("{}-{CONTAINER_NAME}", c.stack),
            cpu: c.task_cpu,
            memory: c.task_memory,
            execution_role_arn: r.attr("role.task_execution", "arn"),
            task_role_arn: r.attr("role.task", "arn"),
            container: ContainerSpec {
                name: CONTAINER_NAME.into(),
                image,
                port: c.container_port,
                environment,
                secrets,
                log_group: r.id("log_group.service"),
                region: region.clone(),
            },
        }
    });

    let (t, c) = (tags("ecs_service"), cfg.clone());
    // The target group must be attached to the load balancer (through the listener) before
    // a service can register into it: CreateService fails with InvalidParameterException.
    stack.add("ecs_service", &[listener], move |r| EcsServiceSpec {
        tags: t.clone(),
        name: CONTAINER_NAME.into(),
        cluster_arn: r.id("ecs_cluster"),
        task_definition_arn: r.id("task_definition"),
        desired_count: c.desired_count,
        subnets: [r.id("subnet.ecs.a"), r.id("subnet.ecs.b")].into(),
        security_groups: [r.id("sg.ecs")].into(),
        target_group_arn: r.id(target_group),
        container_name: CONTAINER_NAME.into(),
        container_port: c.container_port,
        wait_for_rollout: c.wait_for_rollout,
        rollout_timeout: std::time::Duration::from_secs(c.rollout_timeout_seconds.into()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(edit: impl Fn(&mut Config)) -> Vec<(&'static str, String)> {
        let mut cfg = Config::with_defaults("books");
        edit(&mut cfg);
        cfg.clone().validate().unwrap();
        db_tls_env(&cfg)
    }

    #[test]
    fn the_image_built_from_source_verifies_aurora_with_the_rds_bundle() {
        assert_eq!(env(|_| {}), [("DB_SSLMODE", "verify-full".to_string()), ("DB_SSLROOTCERT", RDS_CA_BUNDLE.to_string())]);
    }

    #[test]
    fn a_prebuilt_image_gets_require_unless_the_config_says_otherwise() {
        let prebuilt = |c: &mut Config| {
            c.source_code_path = None;
            c.image = Some("registry.example/books-api:1".into());
        };
        assert_eq!(env(prebuilt), [("DB_SSLMODE", "require".to_string())]);
        let verified = env(|c| {
            prebuilt(c);
            c.db_sslmode = Some("verify-full".into());
            c.db_sslrootcert = Some("/certs/rds.pem".into());
        });
        assert_eq!(verified, [("DB_SSLMODE", "verify-full".to_string()), ("DB_SSLROOTCERT", "/certs/rds.pem".to_string())]);
    }
}
