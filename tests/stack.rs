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
    assert_sdk_debug_logged(&up.stderr);
}

/// The SDK's own DEBUG lines are in the log: a leak check over a log without them proves
/// nothing.
fn assert_sdk_debug_logged(stderr: &str) {
    let sdk_debug = stderr.lines().filter(|l| l.contains(" DEBUG ") && l.contains(" aws_smithy_runtime::")).count();
    assert!(sdk_debug > 0, "no DEBUG line of the SDK (aws_smithy_runtime) in the log:\n{stderr}");
}

/// `INFRA_LOG=trace` (and a directive asking for the SDK's wire traces by name) lets the
/// SDK log whole requests and responses: PutParameter's value, CreateDBCluster's password,
/// PutIntegration's URI, GetParameter's decrypted answer. None may reach any output.
#[tokio::test(flavor = "multi_thread")]
async fn no_log_filter_not_even_trace_prints_a_secret() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    let trace: &[(&str, &str)] = &[("INFRA_LOG", "trace")];
    let up = project.infra_env(&["up", "-vv"], trace);
    assert_ok(&up);
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
    let mut values = Vec::new();
    for name in ["/books/db-password", "/books/http-basic-auth-password"] {
        values.push((name, ssm.get_parameter().name(name).with_decryption(true).send().await.unwrap().parameter().unwrap().value().unwrap().to_string()));
    }
    // A change that puts every book integration again (its URI holds the password), with
    // the SDK's orchestrator asked for by name.
    project.edit_config("http_basic_auth_user = \"admin\"", "http_basic_auth_user = \"books\"");
    let by_name: &[(&str, &str)] = &[("INFRA_LOG", "trace,aws_smithy_runtime=trace,aws_smithy_runtime::client::orchestrator=trace,hyper=trace")];
    let plan = project.infra_env(&["plan", "-vv"], by_name);
    assert_eq!(plan.code, 2, "plan shows the changed integrations: {plan:?}");
    let status = project.infra_env(&["status", "-vv"], trace);
    assert_eq!(status.code, 2, "status shows them as drift: {status:?}");
    let change = project.infra_env(&["up", "-vv"], by_name);
    assert_ok(&change);
    assert!(mutating(&project.calls()).contains(&"PutIntegration".to_string()), "the change put the integrations");
    let state = std::fs::read_to_string(project.state_path()).unwrap();
    for (name, value) in &values {
        for run in [&up, &plan, &status, &change] {
            assert!(!run.stdout.contains(value.as_str()), "the value of {name} appears on stdout");
            assert!(!run.stderr.contains(value.as_str()), "the value of {name} appears on stderr");
        }
        assert!(!state.contains(value.as_str()), "the value of {name} appears in the state");
    }
    for run in [&up, &plan, &status, &change] {
        assert!(run.stderr.contains("TRACE is shown for infra only"), "the log says what it withholds:\n{}", run.stderr);
        assert_sdk_debug_logged(&run.stderr);
    }
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

/// A second project on the same moto as stack `shelf`, configured with the names of the
/// first stack's two parameters.
fn shelf_sharing_books_parameters(moto: &Moto) -> Project {
    let shelf = Project::new(moto);
    shelf.edit_config("stack = \"books\"", "stack = \"shelf\"");
    shelf
}

fn shelf_state(shelf: &Project) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(shelf.dir.path().join("state/shelf.json")).unwrap()).unwrap()
}

async fn parameter_tags(ssm: &aws_sdk_ssm::Client, name: &str) -> BTreeMap<String, String> {
    let tags = ssm.list_tags_for_resource().resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter).resource_id(name).send().await.unwrap();
    tags.tag_list().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect()
}

/// Stack `books` creates both parameters; stack `shelf`, configured with the same names,
/// uses them as they are: it records them as not its own, never re-tags them, and its `down`
/// leaves them — whichever stack goes first.
#[tokio::test(flavor = "multi_thread")]
async fn a_parameter_another_stack_created_is_used_as_is_and_only_its_creator_deletes_it() {
    for shelf_goes_first in [true, false] {
        let moto = Moto::start();
        let aws = ec2(&moto).await;
        let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
        let books = Project::new(&moto);
        assert_ok(&books.infra(&["up"]));
        let names = ["/books/db-password", "/books/http-basic-auth-password"];
        let mut values = Vec::new();
        for name in names {
            values.push(ssm.get_parameter().name(name).with_decryption(true).send().await.unwrap().parameter().unwrap().value().unwrap().to_string());
        }
        let shelf = shelf_sharing_books_parameters(&moto);
        assert_ok(&shelf.infra(&["up"]));
        assert_eq!(mutating(&shelf.calls()).iter().filter(|o| o.as_str() == "PutParameter" || o.as_str() == "AddTagsToResource").count(), 0, "{:?}", mutating(&shelf.calls()));
        for (logical, name) in [("ssm.db_password", names[0]), ("ssm.basic_auth_password", names[1])] {
            assert_eq!(shelf_state(&shelf)["resources"][logical]["attributes"]["managed"], "false", "shelf records {name} as its own");
            assert_eq!(attr(&books, logical, "managed"), "true");
            assert_eq!(parameter_tags(&ssm, name).await.get("infra:stack").map(String::as_str), Some("books"), "{name} was re-tagged");
        }
        assert_ok(&shelf.infra(&["up"]));
        assert_eq!(mutating(&shelf.calls()), Vec::<String>::new(), "a second up of shelf changes nothing");
        assert_ok(&books.infra(&["status"]));

        let (first, second) = if shelf_goes_first { (&shelf, &books) } else { (&books, &shelf) };
        assert_ok(&first.infra(&["down", "--yes"]));
        if shelf_goes_first {
            assert!(!mutating(&shelf.calls()).contains(&"DeleteParameter".to_string()), "shelf's down deleted a parameter");
        }
        for (name, value) in names.iter().zip(&values) {
            let left = ssm.get_parameter().name(*name).with_decryption(true).send().await;
            if shelf_goes_first {
                assert_eq!(left.unwrap().parameter().unwrap().value(), Some(value.as_str()), "shelf's down deleted or changed {name}");
            } else {
                assert!(left.is_err(), "books' down left {name}, which books created");
            }
        }
        assert_ok(&second.infra(&["down", "--yes"]));
        if !shelf_goes_first {
            assert!(!mutating(&shelf.calls()).contains(&"DeleteParameter".to_string()), "shelf's down deleted a parameter");
        }
        for name in names {
            assert!(ssm.get_parameter().name(name).send().await.is_err(), "{name} outlived both downs");
        }
        assert_eq!(inventory(&aws).await, Inventory::default());
    }
}

/// The SSM version of the master password the cluster was last given (its tag): the
/// password itself is write-only in the RDS API, and moto's model dump fails on RDS.
async fn cluster_password_version(rds: &aws_sdk_rds::Client, identifier: &str) -> String {
    let clusters = rds.describe_db_clusters().db_cluster_identifier(identifier).send().await.unwrap();
    let tags = clusters.db_clusters()[0].tag_list();
    tags.iter().find(|t| t.key() == Some("infra:master-password-version")).and_then(|t| t.value()).unwrap_or("(absent)").to_string()
}

/// The DB password rotated in SSM (a new version): `status` shows the rotation pending on
/// the cluster and the task definition, without the value or anything derived from it; one
/// `up` sets it on Aurora and rolls the service once onto tasks that read it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_db_password_reaches_aurora_and_the_tasks_in_one_up_and_is_pending_until_then() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&aws.sdk);
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let rds = aws_sdk_rds::Client::new(&aws.sdk);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let first = ssm.get_parameter().name("/books/db-password").with_decryption(true).send().await.unwrap().parameter().unwrap().value().unwrap().to_string();
    assert_eq!(cluster_password_version(&rds, "books-db").await, "1", "created with version 1 of the password");
    assert_eq!(attr(&project, "ssm.db_password", "version"), "1");
    let old_td = project.physical_id("task_definition");

    let rotated = "rotated-by-the-user-7f3a9c2e51d84b06";
    ssm.put_parameter().name("/books/db-password").value(rotated).r#type(aws_sdk_ssm::types::ParameterType::SecureString).overwrite(true).send().await.unwrap();
    let status = project.infra(&["status"]);
    assert_eq!(status.code, 2, "{status:?}");
    assert!(status.stdout.contains("master_user_password (SSM version): wanted 2, found 1"), "{status:?}");
    assert!(status.stdout.contains("DB_PASSWORD_VERSION"), "the tasks still read version 1: {status:?}");
    // plan --json says the same, machine-readably: the cluster's pending rotation is one
    // field change, wanted 2, found 1.
    let plan = project.infra(&["plan", "--json"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let cluster = plan["resources"].as_array().unwrap().iter().find(|r| r["id"] == "db_cluster").unwrap();
    let changes: Vec<(String, String, String)> = cluster["changes"].as_array().unwrap().iter().map(|c| (c["field"].as_str().unwrap().into(), c["wanted"].as_str().unwrap().into(), c["found"].as_str().unwrap().into())).collect();
    assert_eq!(changes, [("master_user_password (SSM version)".to_string(), "2".to_string(), "1".to_string())], "{cluster}");
    assert_eq!(plan["changes"], plan["resources"].as_array().unwrap().iter().filter(|r| r["action"] != "no_change").count(), "{plan}");

    let up = project.infra(&["up"]);
    assert_ok(&up);
    let ops = mutating(&project.calls());
    let count = |op: &str| ops.iter().filter(|o| o.as_str() == op).count();
    assert_eq!((count("ModifyDBCluster"), count("RegisterTaskDefinition"), count("UpdateService")), (1, 1, 1), "{ops:?}");
    assert_eq!(count("CreateDBCluster"), 0);
    assert_eq!(cluster_password_version(&rds, "books-db").await, "2", "ModifyDBCluster set version 2");
    let at = |op: &str| project.calls().iter().position(|c| c.operation == op && c.mutating).unwrap();
    assert!(at("ModifyDBCluster") < at("RegisterTaskDefinition"), "Aurora has the new password before any task reads it");
    let new_td = project.physical_id("task_definition");
    assert_ne!(new_td, old_td);
    let service = ecs.describe_services().cluster(project.physical_id("ecs_cluster")).services(project.physical_id("ecs_service")).send().await.unwrap();
    assert_eq!(service.services()[0].task_definition(), Some(new_td.as_str()), "the service moved to the revision that reads version 2");
    let td = ecs.describe_task_definition().task_definition(&new_td).send().await.unwrap();
    let env: BTreeMap<String, String> = td.task_definition().unwrap().container_definitions()[0].environment().iter().map(|kv| (kv.name().unwrap().to_string(), kv.value().unwrap().to_string())).collect();
    assert_eq!(env["DB_PASSWORD_VERSION"], "2");

    assert_ok(&project.infra(&["status"]));
    assert_ok(&project.infra(&["up"]));
    assert_eq!(mutating(&project.calls()), Vec::<String>::new());
    let state = std::fs::read_to_string(project.state_path()).unwrap();
    for value in [first.as_str(), rotated] {
        assert!(!state.contains(value) && !status.stdout.contains(value) && !up.stderr.contains(value), "a DB password value reached state or output");
    }
    assert!(!state.contains("fingerprint"), "the state keeps nothing derived from a secret");
}

/// The service roles trust their service only on behalf of this account (and the task
/// role, of ECS in this region): a confused deputy in another account cannot have the
/// service assume them. Compared semantically: a second `up` changes nothing, and a guard
/// removed out of band is drift that `up` puts back.
#[tokio::test(flavor = "multi_thread")]
async fn service_roles_trust_their_service_only_for_this_account_and_the_guard_is_kept() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let account = "123456789012";
    let trust = |doc: &str| -> serde_json::Value { serde_json::from_str(&percent_encoding::percent_decode_str(doc).decode_utf8_lossy()).unwrap() };
    let wanted = [
        ("role.task", "ecs-tasks.amazonaws.com", serde_json::json!({"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": format!("arn:aws:ecs:us-east-1:{account}:*")}})),
        ("role.lambda", "lambda.amazonaws.com", serde_json::json!({"StringEquals": {"aws:SourceAccount": account}})),
        ("role.apigateway", "apigateway.amazonaws.com", serde_json::json!({"StringEquals": {"aws:SourceAccount": account}})),
    ];
    for (logical, service, condition) in &wanted {
        let role = iam.get_role().role_name(project.physical_id(logical)).send().await.unwrap();
        let doc = trust(role.role().unwrap().assume_role_policy_document().unwrap());
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "{logical}: {doc}");
        assert_eq!(statements[0]["Principal"]["Service"], *service, "{logical}: {doc}");
        assert_eq!(statements[0]["Condition"], *condition, "{logical}: {doc}");
    }
    assert_ok(&project.infra(&["up"]));
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "the guarded policies compare equal to what IAM returns");

    let open = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    iam.update_assume_role_policy().role_name(project.physical_id("role.lambda")).policy_document(open.to_string()).send().await.unwrap();
    let status = project.infra(&["status"]);
    assert_eq!(status.code, 2, "{status:?}");
    assert!(status.stdout.contains("role.lambda") && status.stdout.contains("assume_role_policy"), "{status:?}");
    assert_ok(&project.infra(&["up"]));
    assert_eq!(mutating(&project.calls()), ["UpdateAssumeRolePolicy"]);
    let role = iam.get_role().role_name(project.physical_id("role.lambda")).send().await.unwrap();
    assert_eq!(trust(role.role().unwrap().assume_role_policy_document().unwrap())["Statement"][0]["Condition"], wanted[1].2);
    assert_ok(&project.infra(&["status"]));
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
