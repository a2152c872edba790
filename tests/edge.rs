//! The edge tier end to end against a real moto: Cognito, the payload bucket, the Lambda and
//! its permission, the REST API with its authorizer, methods, deployment and cached stage —
//! wiring read back from the emulator, drift and repair, redeploys only on a changed
//! definition, the basic-auth password kept out of state and logs, `down`, crashes, lost
//! state.

mod support;

use std::collections::BTreeMap;

use support::*;

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

fn attr(project: &Project, logical: &str, name: &str) -> String {
    project.state()["resources"][logical]["attributes"][name].as_str().unwrap_or_else(|| panic!("{logical}.{name} not in state")).to_string()
}

/// The part of a physical id after `<parent>/`.
fn tail(pid: &str) -> String {
    pid.rsplit('/').next().unwrap().to_string()
}

struct Clients {
    apigw: aws_sdk_apigateway::Client,
    cognito: aws_sdk_cognitoidentityprovider::Client,
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
    ssm: aws_sdk_ssm::Client,
}

fn clients(aws: &TestAws) -> Clients {
    Clients {
        apigw: aws_sdk_apigateway::Client::new(&aws.sdk),
        cognito: aws_sdk_cognitoidentityprovider::Client::new(&aws.sdk),
        lambda: aws_sdk_lambda::Client::new(&aws.sdk),
        s3: aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&aws.sdk).force_path_style(true).build()),
        ssm: aws_sdk_ssm::Client::new(&aws.sdk),
    }
}

async fn basic_auth_password(c: &Clients) -> String {
    let p = c.ssm.get_parameter().name("/books/http-basic-auth-password").with_decryption(true).send().await.unwrap();
    p.parameter().unwrap().value().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_tier_is_wired_as_the_spec_says_and_a_second_up_changes_nothing() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    assert_eq!(inventory(&aws).await, full_inventory());

    // Cognito: email as user name, the password policy, a client without secret.
    let pool_id = project.physical_id("user_pool");
    let pool = c.cognito.describe_user_pool().user_pool_id(&pool_id).send().await.unwrap();
    let pool = pool.user_pool().unwrap();
    assert_eq!(pool.username_attributes().iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["email"]);
    let policy = pool.policies().unwrap().password_policy().unwrap();
    assert_eq!(policy.minimum_length(), Some(12));
    assert!(policy.require_symbols() && policy.require_numbers() && policy.require_uppercase() && policy.require_lowercase());
    assert_eq!(pool.user_pool_tags().unwrap()["infra:stack"], STACK);
    let client = c.cognito.describe_user_pool_client().user_pool_id(&pool_id).client_id(attr(&project, "user_pool_client", "client_id")).send().await.unwrap();
    let client = client.user_pool_client().unwrap();
    assert!(client.client_secret().is_none());
    let mut flows: Vec<&str> = client.explicit_auth_flows().iter().map(|f| f.as_str()).collect();
    flows.sort();
    assert_eq!(flows, ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"]);
    assert_eq!(client.access_token_validity(), Some(30));
    assert_eq!(client.token_validity_units().unwrap().access_token().map(|u| u.as_str()), Some("minutes"));

    // The payload bucket: public access blocked, encrypted, tagged.
    let bucket = project.physical_id("bucket.payload");
    assert_eq!(bucket, format!("{STACK}-payload-123456789012-us-east-1"));
    let pab = c.s3.get_public_access_block().bucket(&bucket).send().await.unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (pab.block_public_acls(), pab.ignore_public_acls(), pab.block_public_policy(), pab.restrict_public_buckets()),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = c.s3.get_bucket_encryption().bucket(&bucket).send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm().as_str(), "AES256");
    let tags = c.s3.get_bucket_tagging().bucket(&bucket).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "infra:stack" && t.value() == STACK));

    // The Lambda: python3.12, a timeout above API Gateway's 29 s, the stack's Lambda role;
    // its permission scoped to this API's one method.
    let function = c.lambda.get_function().function_name(project.physical_id("lambda.limits")).send().await.unwrap();
    let config = function.configuration().unwrap();
    assert_eq!(config.runtime().map(|r| r.as_str()), Some("python3.12"));
    assert!(config.timeout().unwrap() > 30);
    assert_eq!(config.role(), Some(attr(&project, "role.lambda", "arn").as_str()));
    let api = project.physical_id("api");
    let policy = c.lambda.get_policy().function_name(project.physical_id("lambda.limits")).send().await.unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "apigateway.amazonaws.com");
    assert_eq!(statement["Condition"]["ArnLike"]["AWS:SourceArn"], format!("arn:aws:execute-api:us-east-1:123456789012:{api}/*/GET/limits/time/exceed"));

    // The API: regional, tagged; the Cognito authorizer on the Authorization header.
    let rest = c.apigw.get_rest_api().rest_api_id(&api).send().await.unwrap();
    assert_eq!(rest.endpoint_configuration().unwrap().types()[0].as_str(), "REGIONAL");
    assert_eq!(rest.tags().unwrap()["infra:stack"], STACK);
    let authorizers = c.apigw.get_authorizers().rest_api_id(&api).send().await.unwrap();
    let authorizer = &authorizers.items()[0];
    assert_eq!(authorizer.r#type().map(|t| t.as_str()), Some("COGNITO_USER_POOLS"));
    assert_eq!(authorizer.provider_arns(), [attr(&project, "user_pool", "arn")]);
    assert_eq!(authorizer.identity_source(), Some("method.request.header.Authorization"));

    // Methods and integrations, by path and verb.
    let resources = c.apigw.get_resources().rest_api_id(&api).embed("methods").send().await.unwrap();
    let mut methods = BTreeMap::new();
    for r in resources.items() {
        for (verb, m) in r.resource_methods().into_iter().flatten() {
            methods.insert(format!("{verb} {}", r.path().unwrap()), m.clone());
        }
    }
    let mut paths: Vec<&str> = resources.items().iter().filter_map(|r| r.path()).collect();
    paths.sort();
    assert_eq!(paths, ["/", "/book", "/book/{bookId}", "/limits", "/limits/payload", "/limits/payload/{bucket}", "/limits/time", "/limits/time/exceed"]);
    let password = basic_auth_password(&c).await;
    let alb = attr(&project, "alb", "dns_name");
    for (key, protected, backend) in [
        ("GET /book", false, "/api/v1/book"),
        ("POST /book", false, "/api/v1/book"),
        ("GET /book/{bookId}", true, "/api/v1/book/{bookId}"),
        ("PUT /book/{bookId}", true, "/api/v1/book/{bookId}"),
        ("DELETE /book/{bookId}", true, "/api/v1/book/{bookId}"),
    ] {
        let m = &methods[key];
        if protected {
            assert_eq!(m.authorization_type(), Some("COGNITO_USER_POOLS"), "{key}");
            assert_eq!(m.authorizer_id(), Some(tail(&project.physical_id("api.authorizer")).as_str()), "{key}");
            assert_eq!(m.authorization_scopes(), ["aws.cognito.signin.user.admin"], "{key}: access tokens accepted");
            assert_eq!(m.request_parameters().unwrap()["method.request.path.bookId"], true);
        } else {
            assert_eq!(m.authorization_type(), Some("NONE"), "{key}");
        }
        let i = m.method_integration().unwrap();
        assert_eq!(i.r#type().map(|t| t.as_str()), Some("HTTP_PROXY"), "{key}");
        assert_eq!(i.http_method(), Some(key.split(' ').next().unwrap()));
        // The seed's way: basic-auth credentials in the URI, to the ALB.
        assert_eq!(i.uri().unwrap(), format!("http://admin:{password}@{alb}{backend}"), "{key}");
        if protected {
            assert_eq!(i.request_parameters().unwrap()["integration.request.path.bookId"], "method.request.path.bookId");
        }
    }
    let lambda_method = &methods["GET /limits/time/exceed"];
    let i = lambda_method.method_integration().unwrap();
    assert_eq!(i.r#type().map(|t| t.as_str()), Some("AWS_PROXY"));
    assert_eq!(
        i.uri().unwrap(),
        format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{}/invocations", attr(&project, "lambda.limits", "arn"))
    );
    let payload = &methods["POST /limits/payload/{bucket}"];
    let i = payload.method_integration().unwrap();
    assert_eq!(i.r#type().map(|t| t.as_str()), Some("AWS"));
    assert_eq!(i.uri(), Some("arn:aws:apigateway:us-east-1:s3:path/{bucket}/{key}"));
    assert_eq!(i.credentials(), Some(attr(&project, "role.apigateway", "arn").as_str()));
    assert_eq!(i.request_parameters().unwrap()["integration.request.path.key"], "context.requestId");
    assert!(i.integration_responses().unwrap().contains_key("200"));

    // The API Gateway role may only put objects into the payload bucket.
    let iam = aws_sdk_iam::Client::new(&aws.sdk);
    let role_policy = iam.get_role_policy().role_name(project.physical_id("role.apigateway")).policy_name("infra").send().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&percent_decode(role_policy.policy_document())).unwrap();
    assert_eq!(doc["Statement"][0]["Action"], "s3:PutObject");
    assert_eq!(doc["Statement"][0]["Resource"], format!("arn:aws:s3:::{bucket}/*"));

    // The stage: on the one deployment, cache cluster on, the book GETs cached, cache
    // control by unauthorized callers refused.
    let stage = c.apigw.get_stage().rest_api_id(&api).stage_name("prod").send().await.unwrap();
    assert_eq!(stage.deployment_id(), Some(tail(&project.physical_id("api.deployment")).as_str()));
    assert!(stage.cache_cluster_enabled());
    assert_eq!(stage.cache_cluster_size().map(|s| s.as_str()), Some("0.5"));
    let settings = stage.method_settings().unwrap();
    for key in ["~1book/GET", "~1book~1{bookId}/GET"] {
        assert!(settings[key].caching_enabled(), "{key}");
        assert_eq!(settings[key].cache_ttl_in_seconds(), 60, "{key}");
    }
    assert_eq!(settings["*/*"].unauthorized_cache_control_header_strategy().map(|s| s.as_str()), Some("FAIL_WITH_403"));
    assert!(settings["*/*"].require_authorization_for_cache_control());

    // Outputs, named as the seed's.
    let outputs: serde_json::Value = serde_json::from_str(&project.infra(&["outputs", "--json"]).stdout).unwrap();
    assert_eq!(outputs["ApiGwUrl"], format!("https://{api}.execute-api.us-east-1.amazonaws.com/prod"));
    assert_eq!(outputs["UserPoolId"], pool_id);
    assert_eq!(outputs["AppClientId"], attr(&project, "user_pool_client", "client_id"));
    assert_eq!(outputs["S3BucketName"], bucket);

    // A second up reads and changes nothing.
    let again = project.infra(&["up"]);
    assert_ok(&again);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{again:?}");
    assert_ok(&project.infra(&["status"]));
}

/// IAM documents come back URL-encoded from some endpoints.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_in_the_edge_tier_is_reported_and_repaired_without_a_new_deployment() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let api = project.physical_id("api");

    // Out of band: the stage cache off, one method's authorization removed, the Lambda's
    // timeout cut, the bucket's public access block removed.
    use aws_sdk_apigateway::types::{Op, PatchOperation};
    c.apigw
        .update_stage()
        .rest_api_id(&api)
        .stage_name("prod")
        .patch_operations(PatchOperation::builder().op(Op::Replace).path("/cacheClusterEnabled").value("false").build())
        .send()
        .await
        .unwrap();
    let method = project.physical_id("api.method.book_id.get");
    let resource = method.split('/').nth(1).unwrap();
    c.apigw.delete_method().rest_api_id(&api).resource_id(resource).http_method("GET").send().await.unwrap();
    c.apigw.put_method().rest_api_id(&api).resource_id(resource).http_method("GET").authorization_type("NONE").send().await.unwrap();
    c.lambda.update_function_configuration().function_name(project.physical_id("lambda.limits")).timeout(3).send().await.unwrap();
    c.s3.delete_public_access_block().bucket(project.physical_id("bucket.payload")).send().await.unwrap();

    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    let by_id = status_by_id(&status);
    let change = |id: &str, field: &str| drift_change(&by_id, id, field);
    assert_eq!(change("api.stage", "cache_cluster_enabled")["found"], "false");
    assert_eq!(change("api.method.book_id.get", "authorization_type")["found"], "NONE");
    assert_eq!(change("lambda.limits", "timeout")["found"], "3");
    assert_eq!(change("bucket.payload", "public_access_block")["found"], "None");
    let drifted: Vec<&String> = by_id.iter().filter(|(_, r)| r["status"] != "ok").map(|(id, _)| id).collect();
    assert_eq!(drifted, ["api.method.book_id.get", "api.stage", "bucket.payload", "lambda.limits"]);

    let repair = project.infra(&["up"]);
    assert_ok(&repair);
    let ops = mutating(&project.calls());
    for op in ["UpdateStage", "PutMethod", "PutIntegration", "UpdateFunctionConfiguration", "PutPublicAccessBlock"] {
        assert!(ops.contains(&op.to_string()), "{op} missing from {ops:?}");
    }
    // The deployed snapshot never had the drift: no redeploy.
    assert!(!ops.contains(&"CreateDeployment".to_string()), "{ops:?}");
    assert_ok(&project.infra(&["status"]));
    assert_eq!(inventory(&aws).await, full_inventory());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_password_or_changed_definition_makes_one_new_deployment_and_the_stage_moves_to_it() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let api = project.physical_id("api");
    let first = tail(&project.physical_id("api.deployment"));

    // The basic-auth password is rotated in SSM: the integrations embed a stale copy.
    c.ssm
        .put_parameter()
        .name("/books/http-basic-auth-password")
        .value("Rotated-Password-0123456789abcdef")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    assert!(status.stdout.contains("integration.uri password (SSM version, as cacheNamespace)"), "{}", status.stdout);
    assert!(status.stdout.contains("-password-v1") && status.stdout.contains("-password-v2"), "wanted version 2, found 1: {}", status.stdout);
    assert!(!status.stdout.contains("Rotated-Password"), "the new value leaked into status");

    let up = project.infra(&["up"]);
    assert_ok(&up);
    let ops = mutating(&project.calls());
    assert_eq!(ops.iter().filter(|o| *o == "PutIntegration").count(), 5, "the five book methods: {ops:?}");
    assert_eq!(ops.iter().filter(|o| *o == "CreateDeployment").count(), 1, "{ops:?}");
    assert_eq!(ops.iter().filter(|o| *o == "DeleteDeployment").count(), 1, "the old deployment goes: {ops:?}");
    // The tasks check the password API Gateway now sends: they roll once onto a revision
    // that reads the new version.
    assert_eq!(ops.iter().filter(|o| *o == "RegisterTaskDefinition" || *o == "UpdateService").count(), 2, "{ops:?}");
    let second = tail(&project.physical_id("api.deployment"));
    assert_ne!(first, second);
    let stage = c.apigw.get_stage().rest_api_id(&api).stage_name("prod").send().await.unwrap();
    assert_eq!(stage.deployment_id(), Some(second.as_str()));
    let resources = c.apigw.get_resources().rest_api_id(&api).embed("methods").send().await.unwrap();
    let uri = resources.items().iter().find(|r| r.path() == Some("/book")).unwrap().resource_methods().unwrap()["GET"].method_integration().unwrap().uri().unwrap().to_string();
    assert!(uri.contains(":Rotated-Password-0123456789abcdef@"), "the integration carries the new password");
    assert_eq!(inventory(&aws).await, full_inventory());

    // No change: no deployment. A changed definition (another basic-auth user): one more.
    assert_ok(&project.infra(&["up"]));
    assert_eq!(mutating(&project.calls()), Vec::<String>::new());
    project.edit_config("http_basic_auth_user = \"admin\"", "http_basic_auth_user = \"books\"");
    assert_ok(&project.infra(&["up"]));
    let ops = mutating(&project.calls());
    assert_eq!(ops.iter().filter(|o| *o == "CreateDeployment").count(), 1, "{ops:?}");
    assert_eq!(inventory(&aws).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_basic_auth_password_appears_nowhere_in_state_logs_plan_or_status() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let project = Project::new(&moto);
    let up = project.infra_env(&["up", "-vv"], &[("INFRA_LOG", "debug")]);
    assert_ok(&up);
    let password = basic_auth_password(&c).await;
    // It is really in API Gateway (so a leak would be caught) ...
    let api = project.physical_id("api");
    let resources = c.apigw.get_resources().rest_api_id(&api).embed("methods").send().await.unwrap();
    assert!(format!("{resources:?}").contains(&password));
    // ... and nowhere of ours, also after a change that puts the integrations again.
    project.edit_config("http_basic_auth_user = \"admin\"", "http_basic_auth_user = \"books\"");
    let plan = project.infra(&["plan", "-v"]);
    assert_eq!(plan.code, 2, "plan shows the changed integrations: {plan:?}");
    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "status shows them as drift: {status:?}");
    assert!(status.stdout.contains("integration.uri"), "status names the drifted URI: {}", status.stdout);
    let change = project.infra_env(&["up", "-vv"], &[("INFRA_LOG", "debug")]);
    assert_ok(&change);
    assert!(mutating(&project.calls()).contains(&"PutIntegration".to_string()), "the change put the integrations");
    let state = std::fs::read_to_string(project.state_path()).unwrap();
    for (what, text) in [
        ("state", &state),
        ("up stderr", &up.stderr),
        ("up stdout", &up.stdout),
        ("plan", &plan.stdout),
        ("status", &status.stdout),
        ("second up", &change.stderr),
    ] {
        assert!(!text.contains(&password), "the basic-auth password appears in the {what}");
    }
    assert!(plan.stdout.contains("    integration.uri: wanted http://books:****@"), "plan shows the new URI redacted: {}", plan.stdout);
    assert!(plan.stdout.contains(", found http://admin:****@"), "plan shows the old URI redacted: {}", plan.stdout);
    for run in [&up, &change] {
        let sdk_debug = run.stderr.lines().filter(|l| l.contains(" DEBUG ") && l.contains(" aws_smithy_runtime::")).count();
        assert!(sdk_debug > 0, "no DEBUG line of the SDK in the log, so the check above proves nothing:\n{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn down_leaves_nothing_of_the_edge_tier_the_buckets_objects_included() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let bucket = project.physical_id("bucket.payload");
    // Uploads through the API land here; versioning on gives versions and a delete marker.
    c.s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    for i in 0..3 {
        c.s3.put_object().bucket(&bucket).key(format!("req-{i}")).body(vec![7u8; 1024].into()).send().await.unwrap();
    }
    c.s3.put_object().bucket(&bucket).key("req-0").body(vec![8u8; 10].into()).send().await.unwrap();
    c.s3.delete_object().bucket(&bucket).key("req-1").send().await.unwrap();
    assert_eq!(inventory(&aws).await.bucket_objects, 5, "four versions and a delete marker");

    let down = project.infra(&["down", "--yes"]);
    assert_ok(&down);
    assert_eq!(inventory(&aws).await, Inventory::default(), "{down:?}");
    let ops = mutating(&project.calls());
    // What goes with its parent is not deleted one call at a time.
    for op in ["DeleteMethod", "DeleteResource", "DeleteStage", "DeleteDeployment", "DeleteAuthorizer", "DeleteUserPoolClient", "RemovePermission"] {
        assert!(!ops.contains(&op.to_string()), "{op} in {ops:?}");
    }
    for op in ["DeleteRestApi", "DeleteUserPool", "DeleteFunction", "DeleteObjects", "DeleteBucket"] {
        assert!(ops.contains(&op.to_string()), "{op} missing from {ops:?}");
    }
    // And again, on nothing.
    assert_ok(&project.infra(&["down", "--yes"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_right_after_each_edge_create_then_up_converges_with_one_of_each_and_lost_state_is_adopted() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    for op in [
        "CreateUserPool",
        "CreateUserPoolClient",
        "CreateBucket",
        "CreateFunction",
        "AddPermission",
        "CreateRestApi",
        "CreateResource",
        "CreateAuthorizer",
        "PutMethod",
        "PutIntegration",
        "CreateDeployment",
        "CreateStage",
        "UpdateStage",
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

    // Lost state: the API and everything in it, the pool and its client, the bucket, the
    // function and its permission are adopted by tags, names and keys; nothing is created.
    assert_ok(&project.infra(&["up"]));
    project.lose_state();
    let adopt = project.infra(&["up"]);
    assert_ok(&adopt);
    let ops = mutating(&project.calls());
    assert_eq!(ops, Vec::<String>::new(), "{adopt:?}");
    assert_eq!(inventory(&aws).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

/// The five book methods' integrations, by `VERB path`.
async fn book_integrations(c: &Clients, api: &str) -> BTreeMap<String, aws_sdk_apigateway::types::Integration> {
    let resources = c.apigw.get_resources().rest_api_id(api).embed("methods").send().await.unwrap();
    let mut out = BTreeMap::new();
    for r in resources.items().iter().filter(|r| r.path().is_some_and(|p| p.starts_with("/book"))) {
        for (verb, m) in r.resource_methods().into_iter().flatten() {
            out.insert(format!("{verb} {}", r.path().unwrap()), m.method_integration().unwrap().clone());
        }
    }
    assert_eq!(out.len(), 5, "{out:?}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_integration_reaches_an_internal_nlb_through_a_vpc_link_and_switching_back_and_forth_converges() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let c = clients(&aws);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk);
    let project = Project::new(&moto);
    project.edit_config("integration = \"public\"", "integration = \"private\"");
    let up = project.infra(&["up"]);
    assert_ok(&up);
    assert_eq!(inventory(&aws).await, private_inventory(), "{up:?}");
    assert!(project.state()["resources"].get("alb").is_none() && project.state()["resources"].get("sg.alb").is_none());

    // The NLB: internal, network, in the service subnets, no security groups.
    let nlb_arn = project.physical_id("nlb");
    let nlbs = elb.describe_load_balancers().load_balancer_arns(&nlb_arn).send().await.unwrap();
    let nlb = &nlbs.load_balancers()[0];
    assert_eq!(nlb.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(nlb.scheme().map(|s| s.as_str()), Some("internal"));
    let mut subnets: Vec<String> = nlb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect();
    subnets.sort();
    let mut ecs_subnets = vec![project.physical_id("subnet.ecs.a"), project.physical_id("subnet.ecs.b")];
    ecs_subnets.sort();
    assert_eq!(subnets, ecs_subnets);
    // Its TCP target group (HTTP health check on /healthz) and TCP:80 listener; the service
    // registers there.
    let tg_arn = project.physical_id("target_group.nlb");
    let tgs = elb.describe_target_groups().target_group_arns(&tg_arn).send().await.unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.protocol().map(|p| p.as_str()), Some("TCP"));
    assert_eq!(tg.target_type().map(|p| p.as_str()), Some("ip"));
    assert_eq!(tg.health_check_path(), Some("/api/v1/healthz"));
    let listeners = elb.describe_listeners().load_balancer_arn(&nlb_arn).send().await.unwrap();
    let listener = &listeners.listeners()[0];
    assert_eq!((listener.protocol().map(|p| p.as_str()), listener.port()), (Some("TCP"), Some(80)));
    assert_eq!(listener.default_actions()[0].target_group_arn(), Some(tg_arn.as_str()));
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let services = ecs.describe_services().cluster(project.physical_id("ecs_cluster")).services(project.physical_id("ecs_service")).send().await.unwrap();
    assert_eq!(services.services()[0].load_balancers()[0].target_group_arn(), Some(tg_arn.as_str()));
    // The tasks admit, on the container port, exactly the NLB's subnets (where its addresses
    // are), not the rest of the VPC.
    let sgs = aws.describe_security_groups().group_ids(project.physical_id("sg.ecs")).send().await.unwrap();
    let rules = sgs.security_groups()[0].ip_permissions();
    let mut admitted: Vec<String> = rules.iter().flat_map(|r| r.ip_ranges().iter().filter_map(|i| i.cidr_ip().map(str::to_string))).collect();
    admitted.sort();
    assert!(rules.iter().all(|r| (r.from_port(), r.to_port(), r.ip_protocol()) == (Some(8080), Some(8080), Some("tcp")) && r.user_id_group_pairs().is_empty()), "{rules:?}");
    let nlb_subnets: Vec<String> = nlb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect();
    let subnets = aws.describe_subnets().set_subnet_ids(Some(nlb_subnets)).send().await.unwrap();
    let mut nlb_cidrs: Vec<String> = subnets.subnets().iter().filter_map(|s| s.cidr_block().map(str::to_string)).collect();
    nlb_cidrs.sort();
    assert_eq!(admitted, nlb_cidrs, "the NLB's subnets and nothing else");
    assert_eq!(admitted, ["10.0.64.0/19", "10.0.96.0/19"]);
    let reaches = |ip: &str| {
        let ip: ipnet::Ipv4Net = format!("{ip}/32").parse().unwrap();
        admitted.iter().any(|c| c.parse::<ipnet::Ipv4Net>().unwrap().contains(&ip))
    };
    for (ip, who, can) in [
        ("10.0.64.37", "an NLB address in ecs.a", true),
        ("10.0.96.200", "an NLB address in ecs.b", true),
        ("10.0.0.12", "a host in a public subnet", false),
        ("10.0.140.9", "a host in a db subnet", false),
        ("10.0.200.1", "the VPC's unused range", false),
        ("203.0.113.5", "the internet", false),
    ] {
        assert_eq!(reaches(ip), can, "{who} ({ip})");
    }

    // The VPC link targets the NLB, available, tagged; every book method goes through it.
    let link_id = project.physical_id("vpc_link");
    let link = c.apigw.get_vpc_link().vpc_link_id(&link_id).send().await.unwrap();
    assert_eq!(link.target_arns(), [nlb_arn.clone()]);
    assert_eq!(link.status().map(|s| s.as_str()), Some("AVAILABLE"));
    assert_eq!(link.tags().unwrap()["infra:stack"], STACK);
    let api = project.physical_id("api");
    let password = basic_auth_password(&c).await;
    let nlb_dns = attr(&project, "nlb", "dns_name");
    for (key, i) in book_integrations(&c, &api).await {
        assert_eq!(i.r#type().map(|t| t.as_str()), Some("HTTP_PROXY"), "{key}");
        assert_eq!(i.connection_type().map(|t| t.as_str()), Some("VPC_LINK"), "{key}");
        let backend = if key.contains("{bookId}") { "/api/v1/book/{bookId}" } else { "/api/v1/book" };
        assert_eq!(i.uri().unwrap(), format!("http://admin:{password}@{nlb_dns}{backend}"), "{key}");
    }
    let outputs: serde_json::Value = serde_json::from_str(&project.infra(&["outputs", "--json"]).stdout).unwrap();
    assert_eq!(outputs["NlbDnsName"], nlb_dns);
    assert_eq!(outputs["VpcLinkId"], link_id);
    assert!(outputs.get("AlbDnsName").is_none(), "{outputs}");

    let again = project.infra(&["up"]);
    assert_ok(&again);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{again:?}");

    // Drift: one method sent over the internet instead of the link; reported, repaired.
    let method = project.physical_id("api.method.book.get");
    let resource = method.split('/').nth(1).unwrap();
    c.apigw
        .put_integration()
        .rest_api_id(&api)
        .resource_id(resource)
        .http_method("GET")
        .r#type(aws_sdk_apigateway::types::IntegrationType::HttpProxy)
        .integration_http_method("GET")
        .uri(format!("http://admin:{password}@{nlb_dns}/api/v1/book"))
        .connection_type(aws_sdk_apigateway::types::ConnectionType::Internet)
        .timeout_in_millis(29_000)
        .send()
        .await
        .unwrap();
    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    assert!(status.stdout.contains("integration.connection_type"), "{}", status.stdout);
    assert_ok(&project.infra(&["up"]));
    assert!(mutating(&project.calls()).contains(&"PutIntegration".to_string()));
    assert_eq!(book_integrations(&c, &api).await["GET /book"].connection_type().map(|t| t.as_str()), Some("VPC_LINK"));
    assert_ok(&project.infra(&["status"]));

    // Back to public: the ALB comes, the methods move to it (one new deployment), the NLB
    // and the link go. Then private again.
    project.edit_config("integration = \"private\"", "integration = \"public\"");
    let public = project.infra(&["up"]);
    assert_ok(&public);
    assert_eq!(inventory(&aws).await, full_inventory(), "{public:?}");
    let ops = mutating(&project.calls());
    assert_eq!(ops.iter().filter(|o| *o == "CreateDeployment").count(), 1, "{ops:?}");
    for op in ["DeleteVpcLink", "DeleteLoadBalancer", "DeleteTargetGroup"] {
        assert!(ops.contains(&op.to_string()), "{op} missing from {ops:?}");
    }
    let alb = attr(&project, "alb", "dns_name");
    for (key, i) in book_integrations(&c, &api).await {
        assert_ne!(i.connection_type().map(|t| t.as_str()), Some("VPC_LINK"), "{key}");
        assert!(i.uri().unwrap().contains(&format!("@{alb}/")), "{key}: {:?}", i.uri());
    }
    assert_ok(&project.infra(&["status"]));
    project.edit_config("integration = \"public\"", "integration = \"private\"");
    assert_ok(&project.infra(&["up"]));
    assert_eq!(inventory(&aws).await, private_inventory());
    assert_ok(&project.infra(&["status"]));

    let down = project.infra(&["down", "--yes"]);
    assert_ok(&down);
    assert_eq!(inventory(&aws).await, Inventory::default(), "{down:?}");
    // AWS refuses to delete a link that integrations reference, or an NLB that a link
    // targets: the API goes first, then the link, then the NLB.
    let calls = project.calls();
    let at = |op: &str| calls.iter().position(|c| c.operation == op && c.outcome == "ok").unwrap_or_else(|| panic!("no {op}"));
    assert!(at("DeleteRestApi") < at("DeleteVpcLink"), "{calls:?}");
    assert!(at("DeleteVpcLink") < at("DeleteLoadBalancer"), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_integration_survives_lost_answers_and_kills_at_its_creates_and_lost_state() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let project = Project::new(&moto);
    project.edit_config("integration = \"public\"", "integration = \"private\"");
    for (i, operation) in ["CreateVpcLink", "CreateLoadBalancer", "CreateTargetGroup", "CreateListener", "PutIntegration"].iter().enumerate() {
        // The first three calls answered with a 500 after moto acted.
        let proxy = support::fault_proxy::FaultProxy::start(
            &moto.endpoint,
            vec![support::fault_proxy::Rule::only(support::fault_proxy::Fault::LostAnswer, 1.0, operation).at_most(3)],
            i as u64,
        );
        let up = project.infra_at(&proxy.url, &["up"], &[]);
        assert_ok(&up);
        assert!(proxy.total_injected() > 0, "{operation} was never called");
        assert_eq!(inventory(&aws).await, private_inventory(), "lost answer on {operation}: {up:?}");
        assert_ok(&project.infra(&["up"]));
        assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "lost answer on {operation}: second up mutated");
        assert_ok(&project.infra(&["down", "--yes"]));
        assert_eq!(inventory(&aws).await, Inventory::default(), "lost answer on {operation}");
    }
    for op in ["CreateVpcLink", "CreateLoadBalancer"] {
        let killed = project.infra_env(&["up"], &[("INFRA_FAULT_KILL_AFTER_OPERATION", op)]);
        assert_ne!(killed.code, 0, "{op} did not kill the run: {killed:?}");
        assert_ok(&project.infra(&["up"]));
        assert_eq!(inventory(&aws).await, private_inventory(), "after a kill at {op}");
        assert_ok(&project.infra(&["status"]));
        assert_ok(&project.infra(&["down", "--yes"]));
        assert_eq!(inventory(&aws).await, Inventory::default(), "after a kill at {op}");
    }
    // Lost state: the link is adopted by its tags, the NLB and the rest as before.
    assert_ok(&project.infra(&["up"]));
    project.lose_state();
    let adopt = project.infra(&["up"]);
    assert_ok(&adopt);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{adopt:?}");
    assert_eq!(inventory(&aws).await, private_inventory());
    // A kill in the middle of `down`, right after the link's delete, then `down` again.
    let killed = project.infra_env(&["down", "--yes"], &[("INFRA_FAULT_KILL_AFTER_OPERATION", "DeleteVpcLink")]);
    assert_ne!(killed.code, 0, "{killed:?}");
    assert_ok(&project.infra(&["down", "--yes"]));
    assert_eq!(inventory(&aws).await, Inventory::default());
}
