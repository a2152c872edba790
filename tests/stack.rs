//! The data and compute tiers end to end against a real moto: wiring read back from the
//! emulator, drift and repair, secrets, deletion protection and final snapshots,
//! replacement, the hidden destroy order, crashes and lost state.

mod support;

use std::collections::BTreeMap;

use support::*;

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

fn attr(project: &Project, logical: &str, name: &str) -> String {
    project.state()["resources"][logical]["attributes"][name].as_str().unwrap_or_else(|| panic!("{logical}.{name} not in state")).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tier_is_wired_as_the_spec_says_and_a_second_up_changes_nothing() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    assert_eq!(inventory(&aws).await, full_inventory());

    // Task definition: env, secrets by parameter ARN, awslogs, Fargate size.
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let td = ecs.describe_task_definition().task_definition(project.physical_id("task_definition")).send().await.unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!((td.cpu(), td.memory()), (Some("256"), Some("512")));
    assert_eq!(td.network_mode().map(|m| m.as_str()), Some("awsvpc"));
    assert_eq!(td.execution_role_arn(), Some(attr(&project, "role.task_execution", "arn").as_str()));
    let c = &td.container_definitions()[0];
    assert_eq!(c.image(), Some(TEST_IMAGE));
    let env: BTreeMap<&str, &str> = c.environment().iter().map(|kv| (kv.name().unwrap(), kv.value().unwrap())).collect();
    assert_eq!(env["DB_HOST"], attr(&project, "db_cluster", "endpoint"));
    assert_eq!((env["DB_PORT"], env["DB_USER"], env["DB_NAME"], env["DB_SSLMODE"]), ("5432", "postgres", "books", "require"));
    assert_eq!((env["BASIC_AUTH_USER"], env["PORT"]), ("admin", "8080"));
    let secrets: BTreeMap<&str, &str> = c.secrets().iter().map(|s| (s.name(), s.value_from())).collect();
    assert_eq!(secrets["DB_PASSWORD"], attr(&project, "ssm.db_password", "arn"));
    assert_eq!(secrets["BASIC_AUTH_PASSWORD"], attr(&project, "ssm.basic_auth_password", "arn"));
    let log = c.log_configuration().unwrap();
    assert_eq!(log.options().unwrap()["awslogs-group"], "/infra/books/books-api");

    // Service: private subnets, no public IP, behind the target group, circuit breaker.
    let service = ecs
        .describe_services()
        .cluster(project.physical_id("ecs_cluster"))
        .services(project.physical_id("ecs_service"))
        .send()
        .await
        .unwrap();
    let service = &service.services()[0];
    assert_eq!(service.desired_count(), 2);
    let vpc = service.network_configuration().unwrap().awsvpc_configuration().unwrap();
    let mut subnets = vpc.subnets().to_vec();
    subnets.sort();
    let mut wanted = vec![project.physical_id("subnet.ecs.a"), project.physical_id("subnet.ecs.b")];
    wanted.sort();
    assert_eq!(subnets, wanted);
    assert_eq!(vpc.security_groups(), [project.physical_id("sg.ecs")]);
    assert_eq!(vpc.assign_public_ip().map(|a| a.as_str()), Some("DISABLED"));
    assert_eq!(service.load_balancers()[0].target_group_arn(), Some(project.physical_id("target_group").as_str()));
    assert_eq!(service.load_balancers()[0].container_port(), Some(8080));
    let breaker = service.deployment_configuration().unwrap().deployment_circuit_breaker().unwrap();
    assert!(breaker.enable() && breaker.rollback());

    // Load balancer, target group, listener.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk);
    let lb = elb.describe_load_balancers().load_balancer_arns(project.physical_id("alb")).send().await.unwrap();
    let lb = &lb.load_balancers()[0];
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    assert_eq!(lb.security_groups(), [project.physical_id("sg.alb")]);
    let tg = elb.describe_target_groups().target_group_arns(project.physical_id("target_group")).send().await.unwrap();
    let tg = &tg.target_groups()[0];
    assert_eq!((tg.port(), tg.health_check_path()), (Some(8080), Some("/api/v1/healthz")));
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    let listeners = elb.describe_listeners().load_balancer_arn(project.physical_id("alb")).send().await.unwrap();
    assert_eq!(listeners.listeners()[0].port(), Some(80));
    assert_eq!(listeners.listeners()[0].default_actions()[0].target_group_arn(), Some(project.physical_id("target_group").as_str()));

    // Aurora: engine, database, user, encryption, security group, subnet group.
    let rds = aws_sdk_rds::Client::new(&aws.sdk);
    let cluster = rds.describe_db_clusters().db_cluster_identifier(project.physical_id("db_cluster")).send().await.unwrap();
    let cluster = &cluster.db_clusters()[0];
    assert_eq!(cluster.engine(), Some("aurora-postgresql"));
    assert_eq!((cluster.database_name(), cluster.master_username()), (Some("books"), Some("postgres")));
    assert_eq!(cluster.storage_encrypted(), Some(true));
    assert_eq!(cluster.vpc_security_groups()[0].vpc_security_group_id(), Some(project.physical_id("sg.db").as_str()));
    assert_eq!(cluster.db_subnet_group(), Some(project.physical_id("db_subnet_group").as_str()));
    let instance = rds.describe_db_instances().db_instance_identifier(project.physical_id("db_instance.writer")).send().await.unwrap();
    assert_eq!(instance.db_instances()[0].publicly_accessible(), Some(false));

    // The task execution role may read exactly the two parameters.
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    let policy = iam.get_role_policy().role_name(project.physical_id("role.task_execution")).policy_name("infra").send().await.unwrap();
    let document = percent_encoding::percent_decode_str(policy.policy_document()).decode_utf8_lossy().to_string();
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    let resources = &document["Statement"][0]["Resource"];
    let mut arns: Vec<&str> = resources.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    arns.sort();
    let mut wanted = vec![attr(&project, "ssm.basic_auth_password", "arn"), attr(&project, "ssm.db_password", "arn")];
    wanted.sort();
    assert_eq!(arns, wanted);

    let outputs = project.infra(&["outputs", "--json"]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    assert_eq!(outputs["DbEndpoint"], attr(&project, "db_cluster", "endpoint").as_str());
    assert!(outputs["AlbDnsName"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(outputs["EcrRepositoryUri"].as_str().is_some_and(|u| u.ends_with("books/books-api")));

    let again = project.infra(&["up"]);
    assert_ok(&again);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{again:?}");
    let status = project.infra(&["status"]);
    assert_ok(&status);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_in_the_data_and_compute_tiers_is_reported_and_repaired() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));

    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    ecs.update_service().cluster(project.physical_id("ecs_cluster")).service(project.physical_id("ecs_service")).desired_count(5).send().await.unwrap();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk);
    elb.modify_target_group().target_group_arn(project.physical_id("target_group")).health_check_path("/").send().await.unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.sdk);
    logs.put_retention_policy().log_group_name(project.physical_id("log_group.service")).retention_in_days(7).send().await.unwrap();
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    iam.put_role_policy()
        .role_name(project.physical_id("role.task_execution"))
        .policy_name("infra")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:GetParameters","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();

    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    let by_id = status_by_id(&status);
    let change = |id: &str, field: &str| drift_change(&by_id, id, field);
    assert_eq!((change("ecs_service", "desired_count")["wanted"].as_str(), change("ecs_service", "desired_count")["found"].as_str()), (Some("2"), Some("5")));
    assert_eq!(change("target_group", "health_check_path")["found"], "/");
    assert_eq!((change("log_group.service", "retention_in_days")["wanted"].as_str(), change("log_group.service", "retention_in_days")["found"].as_str()), (Some("30"), Some("7")));
    assert!(change("role.task_execution", "inline_policy")["found"].as_str().unwrap().contains("\"*\""));

    let repair = project.infra(&["up"]);
    assert_ok(&repair);
    let ops = mutating(&project.calls());
    for op in ["UpdateService", "ModifyTargetGroup", "PutRetentionPolicy", "PutRolePolicy"] {
        assert!(ops.contains(&op.to_string()), "{op} missing from {ops:?}");
    }
    assert_ok(&project.infra(&["status"]));
    assert_eq!(inventory(&aws).await, full_inventory());
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_never_reach_state_logs_or_the_task_definition() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    let up = project.infra_env(&["up", "-vv"], &[("INFRA_LOG", "debug")]);
    assert_ok(&up);
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let td = ecs.describe_task_definition().task_definition(project.physical_id("task_definition")).send().await.unwrap();
    let td_text = format!("{td:?}");
    let state_text = std::fs::read_to_string(project.state_path()).unwrap();
    for name in ["/books/db-password", "/books/http-basic-auth-password"] {
        let value = ssm.get_parameter().name(name).with_decryption(true).send().await.unwrap().parameter().unwrap().value().unwrap().to_string();
        assert!(value.len() >= 32, "a generated password is strong: {} chars", value.len());
        for (what, text) in [("state", &state_text), ("stdout", &up.stdout), ("stderr", &up.stderr), ("task definition", &td_text)] {
            assert!(!text.contains(&value), "the value of {name} appears in the {what}");
        }
    }
    assert!(up.stderr.len() > 1000, "debug logging was on: {} bytes", up.stderr.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_parameter_is_used_as_is_and_down_deletes_only_what_infra_created() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
    ssm.put_parameter()
        .name("/books/db-password")
        .value("the-users-own-password-1234")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    assert_eq!(attr(&project, "ssm.db_password", "managed"), "false");
    assert_eq!(attr(&project, "ssm.basic_auth_password", "managed"), "true");
    assert_ok(&project.infra(&["down", "--yes"]));
    let kept = ssm.get_parameter().name("/books/db-password").with_decryption(true).send().await.unwrap();
    assert_eq!(kept.parameter().unwrap().value(), Some("the-users-own-password-1234"));
    assert!(ssm.get_parameter().name("/books/http-basic-auth-password").send().await.is_err(), "the generated parameter outlived down");
    assert_eq!(inventory(&aws).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_protection_and_final_snapshot_recorded_at_create_govern_down() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    project.edit_config("db_deletion_protection = false", "db_deletion_protection = true");
    project.edit_config("db_final_snapshot = false", "db_final_snapshot = true");
    assert_ok(&project.infra(&["up"]));

    let refused = project.infra(&["down", "--yes"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("deletion protection"), "{refused:?}");
    assert!(refused.stderr.contains("db_deletion_protection = false"), "the message says how to lift it: {refused:?}");
    assert_eq!(inventory(&aws).await.db_clusters, 1);

    // Lifting protection through the config; the snapshot choice recorded at create stays.
    project.edit_config("db_deletion_protection = true", "db_deletion_protection = false");
    assert_ok(&project.infra(&["up"]));
    assert_ok(&project.infra(&["down", "--yes"]));
    let rds = aws_sdk_rds::Client::new(&aws.sdk);
    let snapshots = rds.describe_db_cluster_snapshots().send().await.unwrap();
    assert!(
        snapshots.db_cluster_snapshots().iter().any(|s| s.db_cluster_snapshot_identifier().is_some_and(|i| i.starts_with("books-db-final-"))),
        "no final snapshot: {snapshots:?}"
    );
    assert_eq!(inventory(&aws).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_task_definition_revision_moves_the_service_and_the_old_one_is_deregistered() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let old = project.physical_id("task_definition");

    project.edit_config("task_memory = 512", "task_memory = 1024");
    let plan = project.infra(&["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("-/+ task_definition"), "{plan:?}");
    let up = project.infra(&["up"]);
    assert_ok(&up);
    let new = project.physical_id("task_definition");
    assert_ne!(old, new);
    let ops = mutating(&project.calls());
    let pos = |op: &str| ops.iter().position(|o| o == op).unwrap_or_else(|| panic!("no {op} in {ops:?}"));
    assert!(pos("RegisterTaskDefinition") < pos("UpdateService") && pos("UpdateService") < pos("DeregisterTaskDefinition"), "{ops:?}");
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let service = ecs.describe_services().cluster(project.physical_id("ecs_cluster")).services(project.physical_id("ecs_service")).send().await.unwrap();
    assert_eq!(service.services()[0].task_definition(), Some(new.as_str()));
    assert_eq!(inventory(&aws).await, full_inventory(), "exactly one active revision");
    let again = project.infra(&["up"]);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_container_port_replaces_the_target_group_and_moves_listener_and_service() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let old = project.physical_id("target_group");
    project.edit_config("container_port = 8080", "container_port = 9090");
    assert_ok(&project.infra(&["up"]));
    let new = project.physical_id("target_group");
    assert_ne!(old, new);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk);
    let listeners = elb.describe_listeners().load_balancer_arn(project.physical_id("alb")).send().await.unwrap();
    assert_eq!(listeners.listeners()[0].default_actions()[0].target_group_arn(), Some(new.as_str()));
    assert_eq!(inventory(&aws).await, full_inventory(), "the old target group is gone");
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_order_follows_the_hidden_dependencies_of_every_tier() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    assert_ok(&project.infra(&["down", "--yes"]));
    let calls = project.calls();
    let pos = |op: &str| -> Vec<usize> { calls.iter().enumerate().filter(|(_, c)| c.operation == op).map(|(i, _)| i).collect() };
    let last = |op: &str| *pos(op).last().unwrap_or_else(|| panic!("no {op}"));
    let first = |op: &str| *pos(op).first().unwrap_or_else(|| panic!("no {op}"));
    assert!(first("UpdateService") < first("DeleteService"), "service scaled to 0 first");
    assert!(last("DeleteService") < first("DeleteTargetGroup"));
    assert!(last("DeleteService") < first("DeleteSecurityGroup"));
    assert!(last("DeleteService") < first("DeleteCluster"));
    assert!(last("DeleteListener") < first("DeleteTargetGroup"));
    assert!(last("DeleteLoadBalancer") < first("DeleteSecurityGroup"));
    assert!(last("DeleteDBInstance") < first("DeleteDBCluster"));
    assert!(last("DeleteDBCluster") < first("DeleteDBSubnetGroup"));
    assert!(last("DeleteDBCluster") < first("DeleteSecurityGroup"));
    // Roles are deleted in parallel, so the log cannot pair a detach with its role; moto
    // refuses DeleteRole with DeleteConflict while policies remain, so roles being gone
    // proves each was emptied first.
    assert!(pos("DetachRolePolicy").len() >= 2 && pos("DeleteRolePolicy").len() >= 1);
    assert_eq!(inventory(&aws).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_each_create_then_up_converges_with_one_of_each_and_lost_state_is_adopted() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    for op in [
        "PutParameter",
        "CreateRole",
        "CreateLogGroup",
        "CreateDBSubnetGroup",
        "CreateDBCluster",
        "CreateDBInstance",
        "CreateRepository",
        "CreateCluster",
        "CreateLoadBalancer",
        "CreateTargetGroup",
        "CreateListener",
        "RegisterTaskDefinition",
        "CreateService",
    ] {
        let killed = project.infra_env(&["up"], &[("INFRA_FAULT_KILL_AFTER_OPERATION", op)]);
        assert_ne!(killed.code, 0, "{op} did not kill the run: {killed:?}");
        let resumed = project.infra(&["up"]);
        assert_ok(&resumed);
        assert_eq!(inventory(&aws).await, full_inventory(), "after a kill at {op}: {resumed:?}");
        assert_ok(&project.infra(&["status"]));
        assert_ok(&project.infra(&["down", "--yes"]));
        assert_eq!(inventory(&aws).await, Inventory::default(), "after a kill at {op}");
    }

    // Lost state: everything is adopted by its tags and names, nothing created.
    assert_ok(&project.infra(&["up"]));
    project.lose_state();
    let adopt = project.infra(&["up"]);
    assert_ok(&adopt);
    let creates: Vec<String> = mutating(&project.calls())
        .into_iter()
        .filter(|op| ["Create", "Register", "Put", "Allocate", "Associate", "Authorize", "Attach"].iter().any(|p| op.starts_with(p)))
        .collect();
    assert_eq!(creates, Vec::<String>::new(), "{adopt:?}");
    assert_eq!(inventory(&aws).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_rollout_wait_up_waits_names_what_it_awaited_on_timeout_and_the_next_up_resumes() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    // moto never completes a deployment: the wait runs into its (short) timeout.
    project.edit_config("wait_for_rollout = false", "wait_for_rollout = true");
    project.edit_config("rollout_timeout_seconds = 1200", "rollout_timeout_seconds = 3");
    let up = project.infra(&["up"]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(up.stderr.contains("to roll out: timed out after 3s"), "{up:?}");
    assert!(up.stderr.contains("tasks running, rollout IN_PROGRESS"), "the last state seen is named: {up:?}");
    // The service was recorded before the wait; without it the next up converges and
    // creates nothing more.
    let service = project.physical_id("ecs_service");
    project.edit_config("wait_for_rollout = true", "wait_for_rollout = false");
    assert_ok(&project.infra(&["up"]));
    assert_eq!(project.physical_id("ecs_service"), service);
    assert_eq!(inventory(&aws).await, full_inventory());
}
