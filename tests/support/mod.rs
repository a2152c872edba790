//! Test harness: a real moto server per test on a free loopback port, the real `infra`
//! binary run against it, and an SDK client to read back what exists.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod realistic;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

pub const STACK: &str = "books";
/// Resources of one converged stack with one NAT gateway and a prebuilt image: 26 of the
/// network tier, 9 of the data tier, 7 of the compute tier.
pub const FULL_STACK_RESOURCES: usize = 66;
pub const TEST_IMAGE: &str = "public.ecr.aws/docker/library/books-api:1.0";

/// `INFRA_TEST_STATE_BACKEND=s3` runs the engine tests with the state in S3: each
/// `Project::new` then keeps its state in a versioned bucket of the test's own moto.
pub fn s3_backend() -> bool {
    std::env::var("INFRA_TEST_STATE_BACKEND").as_deref() == Ok("s3")
}

pub const STATE_BUCKET: &str = "infra-test-state";
pub const STATE_URL: &str = "s3://infra-test-state/team/";

/// A moto server process, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `MOTO_SERVER`, else the project venv's, else `moto_server` on PATH.
fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    "moto_server".into()
}

impl Moto {
    pub fn start() -> Moto {
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new(moto_binary())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting moto_server (run scripts/test.sh, which installs it into .venv)");
            let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break; // port taken in the meantime: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server did not start");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project directory with an `infra.toml`, a state dir and a call log.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// One recorded AWS call, as `INFRA_CALL_LOG` writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub outcome: String,
    pub mutating: bool,
}

impl Project {
    /// `infra init` in a fresh directory, against `moto` (state in S3 with `s3_backend()`).
    pub fn new(moto: &Moto) -> Project {
        let project = Project::at(&moto.endpoint);
        if s3_backend() {
            create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
            project.use_state_url(STATE_URL);
        }
        project
    }

    /// Points the config's `state` key at `url`.
    pub fn use_state_url(&self, url: &str) {
        self.edit_config("# state = \"s3://my-bucket/infra/\"", &format!("state = \"{url}\""));
    }

    /// Whether the config keeps the state in S3.
    pub fn s3_state(&self) -> bool {
        std::fs::read_to_string(self.config_path()).unwrap().lines().any(|l| l.starts_with("state = \"s3://"))
    }

    /// Loses the state, as a deleted file or object would (versioning keeps the object's
    /// history, which infra does not read).
    pub fn lose_state(&self) {
        if self.s3_state() {
            let (endpoint, key) = (self.endpoint.clone(), format!("team/{STACK}.json"));
            block_on(async move { s3(&endpoint).await.delete_object().bucket(STATE_BUCKET).key(key).send().await.unwrap() });
        } else {
            std::fs::remove_file(self.state_path()).unwrap();
            let _ = std::fs::remove_file(self.state_path().with_extension("json.backup"));
        }
    }

    /// `infra init` in a fresh directory, with AWS at `endpoint`.
    pub fn at(endpoint: &str) -> Project {
        let project = Project { dir: tempfile::tempdir().unwrap(), endpoint: endpoint.to_string() };
        let run = project.infra(&["init", "--stack", STACK]);
        assert_eq!(run.code, 0, "{run:?}");
        // moto's ECR has no registry and this machine has no Docker engine: a prebuilt
        // image, and no rollout wait (moto's services never reach steady state).
        project.edit_config("source_code_path = \"api\"", &format!("image = \"{TEST_IMAGE}\""));
        project.edit_config("wait_for_rollout = true", "wait_for_rollout = false");
        // The tests of the public route (the ALB) say so; `a_private_integration_…` switch.
        project.edit_config("integration = \"private\"", "integration = \"public\"");
        project
    }

    /// Rewrites one line of the config (panics when `from` is not there).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        assert!(text.contains(from), "config lacks {from:?}");
        std::fs::write(self.config_path(), text.replace(from, to)).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("infra.toml")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state").join(format!("{STACK}.json"))
    }

    pub fn call_log(&self) -> PathBuf {
        self.dir.path().join("calls.jsonl")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_infra"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("INFRA_CALL_LOG", self.call_log())
            // Re-reads of a missing resource wait 3 s on AWS; moto is consistent at once.
            .env("INFRA_MISSING_GRACE_MS", "200")
            .stdin(Stdio::null());
        if s3_backend() {
            // A killed run leaves its S3 lock behind until the lease lapses: keep it short
            // and let the next run wait it out, as the kill tests run again at once.
            cmd.env("INFRA_LOCK_LEASE_SECONDS", "3").env("INFRA_LOCK_WAIT", "1m");
        }
        cmd
    }

    pub fn infra(&self, args: &[&str]) -> Run {
        self.infra_env(args, &[])
    }

    pub fn infra_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.infra_at(&self.endpoint, args, env)
    }

    /// Runs `infra` against another endpoint (a fault proxy in front of the same moto).
    pub fn infra_at(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let _ = std::fs::remove_file(self.call_log());
        let mut cmd = self.command(args);
        cmd.env("AWS_ENDPOINT_URL", endpoint);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("running infra"))
    }

    /// The calls of the last `infra` run.
    pub fn calls(&self) -> Vec<Call> {
        std::fs::read_to_string(self.call_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The state as stored: the local file, or the S3 object (read with `infra state pull`).
    pub fn state(&self) -> serde_json::Value {
        let path = if self.s3_state() {
            let dir = self.dir.path().join("pulled");
            let out = self
                .command(&["--state-dir", dir.to_str().unwrap(), "state", "pull"])
                .env("INFRA_CALL_LOG", self.dir.path().join("pull-calls.jsonl"))
                .output()
                .unwrap();
            assert!(out.status.success(), "state pull: {}", String::from_utf8_lossy(&out.stderr));
            dir.join(format!("{STACK}.json"))
        } else {
            self.state_path()
        };
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    pub fn physical_id(&self, logical: &str) -> String {
        self.state()["resources"][logical]["physical_id"].as_str().unwrap_or_else(|| panic!("{logical} not in state")).to_string()
    }
}

pub fn mutating(calls: &[Call]) -> Vec<String> {
    calls.iter().filter(|c| c.mutating).map(|c| c.operation.clone()).collect()
}

/// The SDK configuration for the same moto, to read back and to change things out of band.
pub async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// An EC2 client on the same moto, to read back and to change things out of band; it
/// carries the SDK configuration for the other services' clients.
pub struct TestAws {
    pub client: aws_sdk_ec2::Client,
    pub sdk: aws_config::SdkConfig,
}

impl std::ops::Deref for TestAws {
    type Target = aws_sdk_ec2::Client;
    fn deref(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }
}

pub async fn ec2(moto: &Moto) -> TestAws {
    let sdk = sdk_config(moto).await;
    TestAws { client: aws_sdk_ec2::Client::new(&sdk), sdk }
}

/// An S3 client on the same endpoint.
pub async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_s3::Client::new(&config)
}

/// Runs `f` to completion on a runtime of its own (callable from sync and async tests).
pub fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)).join().unwrap()
    })
}

/// The team's bucket: created by the user, not by infra, with versioning on.
pub fn create_versioned_bucket(endpoint: &str, bucket: &str) {
    let (endpoint, bucket) = (endpoint.to_string(), bucket.to_string());
    block_on(async move {
        let s3 = s3(&endpoint).await;
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build(),
            )
            .send()
            .await
            .unwrap();
    });
}

fn stack_filter() -> Filter {
    Filter::builder().name("tag:infra:stack").values(STACK).build()
}

/// Count of live resources of each kind belonging to the stack (by tag, or by the stack's
/// names and paths where the service lists by those).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub vpcs: usize,
    pub internet_gateways: usize,
    pub subnets: usize,
    pub elastic_ips: usize,
    pub nat_gateways: usize,
    pub route_tables: usize,
    pub security_groups: usize,
    /// Non-default VPCs in the account, tagged or not: catches untagged duplicates.
    pub all_vpcs: usize,
    pub ssm_parameters: usize,
    pub iam_roles: usize,
    pub log_groups: usize,
    pub db_subnet_groups: usize,
    pub db_clusters: usize,
    pub db_instances: usize,
    pub ecr_repositories: usize,
    pub ecs_clusters: usize,
    pub task_definitions: usize,
    pub ecs_services: usize,
    pub load_balancers: usize,
    pub target_groups: usize,
    pub listeners: usize,
    pub user_pools: usize,
    pub user_pool_clients: usize,
    pub buckets: usize,
    pub bucket_objects: usize,
    pub lambda_functions: usize,
    pub lambda_permissions: usize,
    pub rest_apis: usize,
    /// Paths of the stack's APIs, the root excluded.
    pub api_resources: usize,
    pub api_methods: usize,
    pub api_authorizers: usize,
    pub api_deployments: usize,
    pub api_stages: usize,
    /// API Gateway VPC links named for the stack (`integration = "private"`).
    pub vpc_links: usize,
}

pub async fn inventory(ec2: &TestAws) -> Inventory {
    let sdk = &ec2.sdk;
    let vpcs = ec2.describe_vpcs().filters(stack_filter()).send().await.unwrap();
    let all_vpcs = ec2.describe_vpcs().send().await.unwrap();
    let igws = ec2.describe_internet_gateways().filters(stack_filter()).send().await.unwrap();
    let subnets = ec2.describe_subnets().filters(stack_filter()).send().await.unwrap();
    let eips = ec2.describe_addresses().filters(stack_filter()).send().await.unwrap();
    let nats = ec2.describe_nat_gateways().filter(stack_filter()).send().await.unwrap();
    let rts = ec2.describe_route_tables().filters(stack_filter()).send().await.unwrap();
    let sgs = ec2.describe_security_groups().filters(stack_filter()).send().await.unwrap();

    let ssm = aws_sdk_ssm::Client::new(sdk);
    let ssm_parameters = ssm
        .describe_parameters()
        .parameter_filters(aws_sdk_ssm::types::ParameterStringFilter::builder().key("tag:infra:stack").values(STACK).build().unwrap())
        .send()
        .await
        .unwrap()
        .parameters()
        .len();
    let iam = aws_sdk_iam::Client::new(sdk);
    let iam_roles = iam.list_roles().path_prefix(format!("/infra/{STACK}/")).send().await.unwrap().roles().len();
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let log_groups = logs.describe_log_groups().log_group_name_prefix(format!("/infra/{STACK}/")).send().await.unwrap().log_groups().len();
    let rds = aws_sdk_rds::Client::new(sdk);
    let ours = |tags: &[aws_sdk_rds::types::Tag]| tags.iter().any(|t| t.key() == Some("infra:stack") && t.value() == Some(STACK));
    let db_clusters = rds.describe_db_clusters().send().await.unwrap().db_clusters().iter().filter(|c| ours(c.tag_list())).count();
    let db_instances = rds.describe_db_instances().send().await.unwrap().db_instances().iter().filter(|i| ours(i.tag_list())).count();
    let db_subnet_groups = rds
        .describe_db_subnet_groups()
        .send()
        .await
        .unwrap()
        .db_subnet_groups()
        .iter()
        .filter(|g| g.db_subnet_group_name().is_some_and(|n| n.starts_with(&format!("{STACK}-"))))
        .count();
    let ecr = aws_sdk_ecr::Client::new(sdk);
    let ecr_repositories = ecr
        .describe_repositories()
        .send()
        .await
        .unwrap()
        .repositories()
        .iter()
        .filter(|r| r.repository_name().is_some_and(|n| n.starts_with(&format!("{STACK}/"))))
        .count();
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let clusters = ecs.list_clusters().send().await.unwrap().cluster_arns().to_vec();
    let described = if clusters.is_empty() {
        Vec::new()
    } else {
        ecs.describe_clusters().set_clusters(Some(clusters)).send().await.unwrap().clusters().to_vec()
    };
    let ecs_clusters = described.iter().filter(|c| c.status() == Some("ACTIVE") && c.cluster_name() == Some(STACK)).count();
    let mut ecs_services = 0;
    for c in described.iter().filter(|c| c.status() == Some("ACTIVE")) {
        let arns = ecs.list_services().cluster(c.cluster_arn().unwrap()).send().await.unwrap().service_arns().to_vec();
        if !arns.is_empty() {
            let services = ecs.describe_services().cluster(c.cluster_arn().unwrap()).set_services(Some(arns)).send().await.unwrap();
            ecs_services += services.services().iter().filter(|s| s.status() == Some("ACTIVE")).count();
        }
    }
    let task_definitions = ecs
        .list_task_definitions()
        .family_prefix(format!("{STACK}-books-api"))
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .len();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    let our_lbs: Vec<String> = lbs
        .load_balancers()
        .iter()
        .filter(|l| l.load_balancer_name().is_some_and(|n| n.starts_with(&format!("{STACK}-"))))
        .filter_map(|l| l.load_balancer_arn().map(str::to_string))
        .collect();
    let mut listeners = 0;
    for arn in &our_lbs {
        listeners += elb.describe_listeners().load_balancer_arn(arn).send().await.unwrap().listeners().len();
    }
    let target_groups = elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
        .iter()
        .filter(|t| t.target_group_name().is_some_and(|n| n.starts_with(&format!("{STACK}-"))))
        .count();
    let edge = edge_inventory(sdk).await;
    Inventory {
        user_pools: edge.user_pools,
        user_pool_clients: edge.user_pool_clients,
        buckets: edge.buckets,
        bucket_objects: edge.bucket_objects,
        lambda_functions: edge.lambda_functions,
        lambda_permissions: edge.lambda_permissions,
        rest_apis: edge.rest_apis,
        api_resources: edge.api_resources,
        api_methods: edge.api_methods,
        api_authorizers: edge.api_authorizers,
        api_deployments: edge.api_deployments,
        api_stages: edge.api_stages,
        vpc_links: edge.vpc_links,
        vpcs: vpcs.vpcs().len(),
        internet_gateways: igws.internet_gateways().len(),
        subnets: subnets.subnets().len(),
        elastic_ips: eips.addresses().len(),
        nat_gateways: nats
            .nat_gateways()
            .iter()
            .filter(|n| !matches!(n.state().map(|s| s.as_str()), Some("deleted") | Some("deleting")))
            .count(),
        route_tables: rts.route_tables().len(),
        security_groups: sgs.security_groups().len(),
        all_vpcs: all_vpcs.vpcs().iter().filter(|v| !v.is_default().unwrap_or(false)).count(),
        ssm_parameters,
        iam_roles,
        log_groups,
        db_subnet_groups,
        db_clusters,
        db_instances,
        ecr_repositories,
        ecs_clusters,
        task_definitions,
        ecs_services,
        load_balancers: our_lbs.len(),
        target_groups,
        listeners,
    }
}

/// The edge tier's share of the inventory: by the stack's names (pools, functions, buckets,
/// APIs), everything inside an API counted whatever its name.
async fn edge_inventory(sdk: &aws_config::SdkConfig) -> Inventory {
    let prefix = format!("{STACK}-");
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(sdk);
    let pools = cognito.list_user_pools().max_results(60).send().await.unwrap();
    let pools: Vec<String> =
        pools.user_pools().iter().filter(|p| p.name().is_some_and(|n| n.starts_with(&prefix))).filter_map(|p| p.id().map(str::to_string)).collect();
    let mut user_pool_clients = 0;
    for pool in &pools {
        user_pool_clients += cognito.list_user_pool_clients().user_pool_id(pool).send().await.unwrap().user_pool_clients().len();
    }
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build());
    let buckets: Vec<String> = s3
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with(&format!("{STACK}-payload-")))
        .map(str::to_string)
        .collect();
    let mut bucket_objects = 0;
    for b in &buckets {
        let v = s3.list_object_versions().bucket(b).send().await.unwrap();
        bucket_objects += v.versions().len() + v.delete_markers().len();
    }
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let functions: Vec<String> =
        lambda.list_functions().send().await.unwrap().functions().iter().filter_map(|f| f.function_name()).filter(|n| n.starts_with(&prefix)).map(str::to_string).collect();
    let mut lambda_permissions = 0;
    for f in &functions {
        if let Ok(p) = lambda.get_policy().function_name(f).send().await {
            let doc: serde_json::Value = serde_json::from_str(p.policy().unwrap_or("{}")).unwrap();
            lambda_permissions += doc["Statement"].as_array().map_or(0, |s| s.len());
        }
    }
    let apigw = aws_sdk_apigateway::Client::new(sdk);
    let apis: Vec<String> =
        apigw.get_rest_apis().send().await.unwrap().items().iter().filter(|a| a.name().is_some_and(|n| n.starts_with(&prefix))).filter_map(|a| a.id().map(str::to_string)).collect();
    let (mut api_resources, mut api_methods, mut api_authorizers, mut api_deployments, mut api_stages) = (0, 0, 0, 0, 0);
    for api in &apis {
        let resources = apigw.get_resources().rest_api_id(api).embed("methods").send().await.unwrap();
        for r in resources.items() {
            if r.path() != Some("/") {
                api_resources += 1;
            }
            api_methods += r.resource_methods().map_or(0, |m| m.len());
        }
        api_authorizers += apigw.get_authorizers().rest_api_id(api).send().await.unwrap().items().len();
        api_deployments += apigw.get_deployments().rest_api_id(api).send().await.unwrap().items().len();
        api_stages += apigw.get_stages().rest_api_id(api).send().await.unwrap().item().len();
    }
    let vpc_links = apigw.get_vpc_links().send().await.unwrap().items().iter().filter(|l| l.name().is_some_and(|n| n.starts_with(&prefix))).count();
    Inventory {
        user_pools: pools.len(),
        user_pool_clients,
        buckets: buckets.len(),
        bucket_objects,
        lambda_functions: functions.len(),
        lambda_permissions,
        rest_apis: apis.len(),
        api_resources,
        api_methods,
        api_authorizers,
        api_deployments,
        api_stages,
        vpc_links,
        ..Inventory::default()
    }
}

/// What one converged stack with a single NAT gateway holds.
pub fn full_inventory() -> Inventory {
    Inventory {
        vpcs: 1,
        internet_gateways: 1,
        subnets: 6,
        elastic_ips: 1,
        nat_gateways: 1,
        route_tables: 4,
        security_groups: 3,
        all_vpcs: 1,
        ssm_parameters: 2,
        iam_roles: 4,
        log_groups: 1,
        db_subnet_groups: 1,
        db_clusters: 1,
        db_instances: 1,
        ecr_repositories: 1,
        ecs_clusters: 1,
        task_definitions: 1,
        ecs_services: 1,
        load_balancers: 1,
        target_groups: 1,
        listeners: 1,
        user_pools: 1,
        user_pool_clients: 1,
        buckets: 1,
        bucket_objects: 0,
        lambda_functions: 1,
        lambda_permissions: 1,
        rest_apis: 1,
        api_resources: 7,
        api_methods: 7,
        api_authorizers: 1,
        api_deployments: 1,
        api_stages: 1,
        vpc_links: 0,
    }
}

/// The resources of a `status --json` report, by logical id.
pub fn status_by_id(status: &Run) -> std::collections::BTreeMap<String, serde_json::Value> {
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap_or_else(|e| panic!("status --json: {e}: {status:?}"));
    report["resources"].as_array().unwrap().iter().map(|r| (r["id"].as_str().unwrap().to_string(), r.clone())).collect()
}

/// The change to `field` that a report says drifted resource `id` has.
pub fn drift_change(by_id: &std::collections::BTreeMap<String, serde_json::Value>, id: &str, field: &str) -> serde_json::Value {
    let r = &by_id[id];
    assert_eq!(r["status"], "drifted", "{id}: {r}");
    r["changes"].as_array().unwrap().iter().find(|c| c["field"] == field).cloned().unwrap_or_else(|| panic!("{id} lacks {field}: {r}"))
}

/// What one converged stack holds with `integration = "private"`: no ALB security group,
/// an NLB (with its target group and listener) in the ALB's place, and the VPC link.
pub fn private_inventory() -> Inventory {
    Inventory { security_groups: 2, vpc_links: 1, ..full_inventory() }
}

/// A TCP proxy to `upstream` that holds every chunk the client sends for `delay`, so each
/// AWS request takes a realistic round trip and a run lasts long enough to interrupt, kill
/// or pause in the middle.
pub fn slow_proxy(upstream: &str, delay: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let pipe = |mut from: TcpStream, mut to: TcpStream, pause: bool| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if pause {
                            std::thread::sleep(delay);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), true);
            pipe(server, client, false);
        }
    });
    url
}

/// A real OCI registry (Debian's `docker-registry`, the CNCF distribution registry) on a
/// free loopback port, standing in for ECR's registry, killed on drop. `env()` holds the
/// standard settings that send a push to moto's ECR host name into it: registries.conf
/// marking that host insecure (plain HTTP), the registry as the HTTP(S) proxy (its server
/// takes a proxy's absolute-URI requests), moto kept direct; plus an image store and a
/// login file of the test's own, so parallel tests share nothing.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The registry host moto's ECR names in repository URIs (account 123456789012).
pub const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The password in moto's ECR authorization token, which must never show.
pub const ECR_PASSWORD: &str = "123456789012-auth-token";

impl Registry {
    pub fn start() -> Registry {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        for _attempt in 0..3 {
            let port = free_port();
            let config = dir.path().join("registry.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new("docker-registry")
                .args(["serve", config.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting docker-registry (run scripts/test.sh, which installs it)");
            // Read as it comes: "listening on" (stderr) says it serves; the access lines
            // (stdout, one per request) are what the tests count.
            let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
            let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
            for stream in [stdout, stderr] {
                let (sink, ready_tx) = (log.clone(), ready_tx.clone());
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                        if line.contains("listening on") {
                            let _ = ready_tx.send(true);
                        }
                        let mut log = sink.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let _ = ready_tx.send(false);
                });
            }
            if ready_rx.recv_timeout(Duration::from_secs(30)) == Ok(true) {
                let storage = dir.path().join("storage");
                std::fs::write(
                    dir.path().join("storage.conf"),
                    format!(
                        "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
                        storage.display()
                    ),
                )
                .unwrap();
                std::fs::write(dir.path().join("registries.conf"), format!("[[registry]]\nlocation = \"{ECR_HOST}\"\ninsecure = true\n")).unwrap();
                std::fs::write(dir.path().join("auth.json"), "{}").unwrap();
                return Registry { child, addr: format!("127.0.0.1:{port}"), dir, log };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    /// The environment of an `infra` run that pushes here, through `proxy` (this registry,
    /// or something in front of it).
    pub fn env_via(&self, proxy: &str) -> Vec<(String, String)> {
        let path = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        vec![
            ("HTTP_PROXY".into(), format!("http://{proxy}")),
            ("HTTPS_PROXY".into(), format!("http://{proxy}")),
            ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
            ("CONTAINERS_REGISTRIES_CONF".into(), path("registries.conf")),
            ("CONTAINERS_STORAGE_CONF".into(), path("storage.conf")),
            ("REGISTRY_AUTH_FILE".into(), path("auth.json")),
            // Buildah as root without a container runtime's namespaces.
            ("BUILDAH_ISOLATION".into(), "chroot".into()),
        ]
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.env_via(&self.addr)
    }

    /// The tags of `repository`, read with the registry's HTTP API (`/v2/<repo>/tags/list`).
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let body = http_get(&self.addr, &format!("/v2/{repository}/tags/list"));
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("tags/list: {e}: {body}"));
        let mut tags: Vec<String> = doc["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect();
        tags.sort();
        tags
    }

    /// The access log so far: one line per request, `"METHOD URI HTTP/1.1" STATUS`.
    pub fn access_log(&self) -> Vec<String> {
        self.log.lock().unwrap().lines().filter(|l| l.contains("\" ") && l.contains(" HTTP/1.1\"")).map(str::to_string).collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET to a loopback server; the body.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}
