//! `infra` through the realistic-AWS profile of the test proxy (tests/support/realistic.rs):
//! minutes-long states, eventual consistency, in-use errors, conflicts and quotas of
//! `../shared/docs/REALAWS.md`, with the durations scaled down.
//!
//! One test per behaviour (only it on): `up` converges the first time, `down` leaves
//! nothing in moto, and the behaviour really fired. Then the whole stack under all of them
//! at once, for both integrations; ECS rollouts that complete, fail with the circuit
//! breaker, and outlast the rollout timeout. Each test has its own moto, so they run in
//! parallel; the proxy's timers are the simulated AWS, never a synchronisation.

mod support;

use support::realistic::{Behaviour, Profile, RealisticProxy};
use support::*;

/// 1/80 of AWS's durations: the slowest single behaviour (the Aurora writer, 10 min) takes
/// 7.5 s. Eventual-consistency windows run at half speed and, with `Profile::only`, apply at
/// least to the first request they concern, so each behaviour test fires whatever the load.
const SCALE: f64 = 1.0 / 80.0;
/// The whole stack under every behaviour: its critical path is ~20 s up and ~17 s down.
const STACK_SCALE: f64 = 1.0 / 40.0;

#[derive(Clone, Copy, PartialEq)]
enum Integration {
    Public,
    Private,
}

struct Setup {
    _moto: Moto,
    aws: TestAws,
    proxy: RealisticProxy,
    project: Project,
    integration: Integration,
}

async fn setup(profile: Profile, integration: Integration) -> Setup {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let rollouts = profile.behaviours.contains(&Behaviour::EcsRollout);
    let proxy = RealisticProxy::start(&moto.endpoint, profile);
    let project = Project::new(&moto);
    if rollouts {
        // Under the profile rollouts complete: the rollout wait's success path.
        project.edit_config("wait_for_rollout = false", "wait_for_rollout = true");
    }
    if integration == Integration::Private {
        project.edit_config("integration = \"public\"", "integration = \"private\"");
    }
    Setup { _moto: moto, aws, proxy, project, integration }
}

impl Setup {
    fn infra(&self, args: &[&str]) -> Run {
        self.project.infra_at(&self.proxy.url, args, &[])
    }

    fn up_converges_first_time(&self) {
        let up = self.infra(&["up"]);
        assert_eq!(up.code, 0, "up did not converge the first time\nfired: {:?}\n{up:?}", self.proxy.details());
    }

    async fn converged_inventory(&self) {
        let want = if self.integration == Integration::Private { private_inventory() } else { full_inventory() };
        assert_eq!(inventory(&self.aws).await, want);
    }

    async fn down_leaves_nothing(&self) {
        let down = self.infra(&["down", "--yes"]);
        assert_eq!(down.code, 0, "down did not converge the first time\nfired: {:?}\n{down:?}", self.proxy.details());
        assert_eq!(inventory(&self.aws).await, Inventory::default(), "{down:?}");
    }

    fn fired(&self, behaviour: Behaviour) -> usize {
        self.proxy.fired_count(behaviour)
    }

    fn assert_fired(&self, behaviour: Behaviour) {
        assert!(self.fired(behaviour) > 0, "{behaviour:?} never fired, so this proves nothing: {:?}", self.proxy.details());
    }
}

/// Only `behaviour` on: `up` converges first time, the stack is whole, `down` leaves
/// nothing, and the behaviour fired.
async fn survives(behaviour: Behaviour, integration: Integration) -> Setup {
    let s = setup(Profile::only(behaviour, SCALE), integration).await;
    s.up_converges_first_time();
    s.converged_inventory().await;
    s.down_leaves_nothing().await;
    s.assert_fired(behaviour);
    s
}

macro_rules! survives {
    ($($name:ident: $behaviour:ident, $integration:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            survives(Behaviour::$behaviour, Integration::$integration).await;
        }
    )*};
}

survives! {
    nat_gateway_pending_then_available_is_waited_for: NatGatewayPending, Public;
    nat_gateway_deleting_is_waited_out: NatGatewayDeleting, Public;
    aurora_cluster_creating_and_deleting_are_waited_for: DbClusterStates, Public;
    aurora_writer_creating_and_deleting_are_waited_for: DbInstanceStates, Public;
    alb_provisioning_is_waited_for: LoadBalancerProvisioning, Public;
    vpc_link_pending_and_deleting_are_waited_for: VpcLinkStates, Private;
    stage_cache_create_in_progress_does_not_fail_the_run: StageCacheCreating, Public;
    ec2_not_found_right_after_create_is_retried: Ec2NotFoundAfterCreate, Public;
    dependency_violations_of_lingering_interfaces_are_retried: LingeringInterfaces, Public;
    eip_in_use_while_its_nat_gateway_deletes_is_retried: EipInUse, Public;
    cluster_delete_while_its_writer_deletes_is_retried: DbClusterInvalidState, Public;
    create_service_before_the_listener_settles_is_retried: TargetGroupWithoutLoadBalancer, Public;
    ecs_cluster_delete_while_its_service_drains_is_retried: ClusterContainsServices, Public;
    target_group_in_use_just_after_its_listener_delete_is_retried: TargetGroupInUse, Public;
    lambda_role_not_yet_assumable_is_retried: LambdaRoleNotAssumable, Public;
    log_group_delete_aborted_is_retried: LogGroupDeleteAborted, Public;
    public_access_block_before_the_bucket_is_visible_is_retried: PublicAccessBlockNoSuchBucket, Public;
}

/// ECS rollouts complete under the profile: `up` waits for the primary deployment to be
/// COMPLETED with every task running (moto alone never completes one).
#[tokio::test(flavor = "multi_thread")]
async fn an_ecs_rollout_that_completes_is_waited_for() {
    let s = survives(Behaviour::EcsRollout, Integration::Public).await;
    assert!(s.proxy.details().get("EcsRollout:DescribeServices").is_some_and(|n| *n > 1), "the wait polled the rollout: {:?}", s.proxy.details());
}

/// On delete the service is DRAINING before INACTIVE; `down` waits it out.
#[tokio::test(flavor = "multi_thread")]
async fn ecs_service_draining_is_waited_out() {
    survives(Behaviour::EcsServiceDraining, Integration::Public).await;
}

/// The API Gateway quotas of a busy account (another client just used each one): 429 is
/// backed off and retried.
#[tokio::test(flavor = "multi_thread")]
async fn api_gateway_quotas_of_a_busy_account_are_backed_off() {
    let s = setup(Profile::only(Behaviour::ApiGatewayQuota, SCALE).busy_account(), Integration::Public).await;
    s.up_converges_first_time();
    s.converged_inventory().await;
    s.down_leaves_nothing().await;
    let details = s.proxy.details();
    for op in ["CreateRestApi", "CreateDeployment", "DeleteRestApi"] {
        assert!(details.contains_key(&format!("ApiGatewayQuota:{op}")), "{op} was never throttled: {details:?}");
    }
}

/// Another client is changing the REST API when infra first does (a busy account), and
/// infra's own changes to one API may overlap: 409 ConflictException is retried, not read as
/// "already exists".
async fn api_gateway_conflicts_are_retried(integration: Integration) {
    let s = setup(Profile::only(Behaviour::ApiGatewayConflict, SCALE).busy_account(), integration).await;
    s.up_converges_first_time();
    s.converged_inventory().await;
    s.down_leaves_nothing().await;
    s.assert_fired(Behaviour::ApiGatewayConflict);
    eprintln!("changes to one REST API that overlapped: {}", s.proxy.api_overlaps());
}

#[tokio::test(flavor = "multi_thread")]
async fn api_gateway_concurrent_modification_is_retried_public() {
    api_gateway_conflicts_are_retried(Integration::Public).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_gateway_concurrent_modification_is_retried_private() {
    api_gateway_conflicts_are_retried(Integration::Private).await;
}

/// A NAT gateway still `pending` when the wait's timeout (shortened with
/// INFRA_TIMEOUT_SCALE) runs out: `up` fails naming what it awaited and the last state;
/// the NAT gateway stays recorded and the next `up` converges with no second one.
#[tokio::test(flavor = "multi_thread")]
async fn a_nat_gateway_pending_past_the_timeout_names_what_was_awaited() {
    // NAT create timeout 10 min x 0.001 = 600 ms, against 120 s x 1/10 = 12 s pending.
    let s = setup(Profile::only(Behaviour::NatGatewayPending, 1.0 / 10.0), Integration::Public).await;
    let up = s.project.infra_at(&s.proxy.url, &["up"], &[("INFRA_TIMEOUT_SCALE", "0.001")]);
    assert_eq!(up.code, 1, "{up:?}");
    let nat = s.project.physical_id("nat_gateway.a");
    assert!(up.stderr.contains(&format!("waiting for NAT gateway {nat} to be available: timed out after 600ms (last state: pending)")), "{up:?}");
    s.up_converges_first_time();
    assert_eq!(s.project.physical_id("nat_gateway.a"), nat);
    s.converged_inventory().await;
    s.down_leaves_nothing().await;
}

/// A bucket of the same name deleted moments ago: CreateBucket is OperationAborted for a
/// while, and `up` right after `down` still converges.
#[tokio::test(flavor = "multi_thread")]
async fn bucket_recreated_right_after_down_is_retried() {
    let s = setup(Profile::only(Behaviour::BucketRecreateAborted, SCALE), Integration::Public).await;
    s.up_converges_first_time();
    s.down_leaves_nothing().await;
    s.up_converges_first_time();
    s.converged_inventory().await;
    s.assert_fired(Behaviour::BucketRecreateAborted);
    s.down_leaves_nothing().await;
}

/// The app client changed out of band; its repair meets a concurrent modification once.
#[tokio::test(flavor = "multi_thread")]
async fn user_pool_client_concurrent_modification_is_retried() {
    let s = setup(Profile::only(Behaviour::UserPoolClientConcurrentUpdate, SCALE), Integration::Public).await;
    s.up_converges_first_time();
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&s.aws.sdk);
    let client_id = s.project.state()["resources"]["user_pool_client"]["attributes"]["client_id"].as_str().unwrap().to_string();
    cognito
        .update_user_pool_client()
        .user_pool_id(s.project.physical_id("user_pool"))
        .client_id(&client_id)
        .access_token_validity(120)
        .send()
        .await
        .unwrap();
    let repair = s.infra(&["up"]);
    assert_eq!(repair.code, 0, "{repair:?}");
    assert!(mutating(&s.project.calls()).contains(&"UpdateUserPoolClient".to_string()), "{repair:?}");
    assert_eq!(s.infra(&["status"]).code, 0);
    s.assert_fired(Behaviour::UserPoolClientConcurrentUpdate);
    s.down_leaves_nothing().await;
}

/// A circuit breaker that fails the rollout: `up` fails naming the service and AWS's
/// reason, the service stays recorded, and the next `up` (the tasks now start) converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_failed_by_the_circuit_breaker_is_reported_kept_and_retried() {
    let s = setup(Profile::new([Behaviour::EcsRollout, Behaviour::EcsRolloutFails], SCALE), Integration::Public).await;
    let up = s.infra(&["up"]);
    assert_eq!(up.code, 1, "{up:?}");
    let service = s.project.physical_id("ecs_service");
    assert!(up.stderr.contains(&service) || up.stderr.contains("ecs_service"), "the error names the service: {up:?}");
    assert!(up.stderr.contains("ECS deployment circuit breaker: tasks failed to start."), "the error gives AWS's reason: {up:?}");
    s.assert_fired(Behaviour::EcsRolloutFails);

    s.proxy.set(Behaviour::EcsRolloutFails, false);
    s.up_converges_first_time();
    assert_eq!(s.project.physical_id("ecs_service"), service, "the service was kept, not replaced");
    assert!(mutating(&s.project.calls()).contains(&"UpdateService".to_string()), "a new deployment was started");
    s.converged_inventory().await;
    s.down_leaves_nothing().await;
}

/// A rollout slower than `rollout_timeout_seconds`: `up` stops waiting with what it awaited
/// and the last state seen; the service is recorded and the next `up` converges.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_longer_than_the_timeout_names_what_was_awaited() {
    // 180 s of rollout at 1/20: 9 s, against a 1 s timeout.
    let s = setup(Profile::only(Behaviour::EcsRollout, 1.0 / 20.0), Integration::Public).await;
    s.project.edit_config("rollout_timeout_seconds = 1200", "rollout_timeout_seconds = 1");
    let up = s.infra(&["up"]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(up.stderr.contains("to roll out: timed out after 1s"), "{up:?}");
    assert!(up.stderr.contains("rollout IN_PROGRESS"), "the last state seen is named: {up:?}");
    let service = s.project.physical_id("ecs_service");
    s.project.edit_config("rollout_timeout_seconds = 1", "rollout_timeout_seconds = 1200");
    s.up_converges_first_time();
    assert_eq!(s.project.physical_id("ecs_service"), service);
    s.down_leaves_nothing().await;
}

/// Every behaviour at once, the whole stack: `up` → `status` (all ok) → no-op `up` (no
/// mutating call) → `down` (nothing left), each the first time.
async fn whole_stack_under_every_behaviour(integration: Integration) {
    let s = setup(Profile::all(STACK_SCALE), integration).await;
    s.up_converges_first_time();
    s.converged_inventory().await;

    let status = s.infra(&["status", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let not_ok: Vec<String> = status_by_id(&status).into_iter().filter(|(_, r)| r["status"] != "ok").map(|(id, r)| format!("{id}: {r}")).collect();
    assert!(not_ok.is_empty(), "{not_ok:?}");

    let again = s.infra(&["up"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(mutating(&s.project.calls()), Vec::<String>::new(), "{again:?}");

    s.down_leaves_nothing().await;

    let mut waited = vec![
        Behaviour::NatGatewayPending,
        Behaviour::NatGatewayDeleting,
        Behaviour::DbClusterStates,
        Behaviour::DbInstanceStates,
        Behaviour::LoadBalancerProvisioning,
        Behaviour::StageCacheCreating,
        Behaviour::EcsRollout,
        Behaviour::EcsServiceDraining,
    ];
    if integration == Integration::Private {
        waited.push(Behaviour::VpcLinkStates);
    }
    for b in waited {
        s.assert_fired(b);
    }
    assert_eq!(s.proxy.failed_vpc_links(), 0, "a VPC link was created while its NLB was still provisioning");
    eprintln!("fired under every behaviour ({}): {:?}", if integration == Integration::Private { "private" } else { "public" }, s.proxy.details());
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_public_stack_converges_under_every_behaviour_at_once() {
    whole_stack_under_every_behaviour(Integration::Public).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_private_stack_converges_under_every_behaviour_at_once() {
    whole_stack_under_every_behaviour(Integration::Private).await;
}

/// The profile itself, on plain SDK calls: a new NAT gateway reads `pending`; a request naming a new VPC is NotFound in EC2's own error format.
#[tokio::test(flavor = "multi_thread")]
async fn the_profile_rewrites_states_and_answers_errors_in_the_protocols_format() {
    let moto = Moto::start();
    let profile = Profile::new([Behaviour::NatGatewayPending, Behaviour::Ec2NotFoundAfterCreate], SCALE);
    let proxy = RealisticProxy::start(&moto.endpoint, profile);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&proxy.url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let vpc = ec2.create_vpc().cidr_block("10.1.0.0/16").send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();
    let err = ec2.describe_vpc_attribute().vpc_id(&vpc).attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport).send().await.unwrap_err();
    let err = err.into_service_error();
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    assert_eq!(err.code(), Some("InvalidVpcID.NotFound"));
    assert_eq!(err.message(), Some(format!("The vpc ID '{vpc}' does not exist").as_str()));

    let subnet = loop {
        // The NotFound window is the profile's own clock: retried as a client would.
        match ec2.create_subnet().vpc_id(&vpc).cidr_block("10.1.0.0/24").send().await {
            Ok(r) => break r.subnet().unwrap().subnet_id().unwrap().to_string(),
            Err(e) => assert_eq!(e.into_service_error().code(), Some("InvalidVpcID.NotFound")),
        }
    };
    let eip = ec2.allocate_address().send().await.unwrap().allocation_id().unwrap().to_string();
    let nat = loop {
        match ec2.create_nat_gateway().subnet_id(&subnet).allocation_id(&eip).send().await {
            Ok(r) => break r.nat_gateway().unwrap().nat_gateway_id().unwrap().to_string(),
            Err(e) => assert!(e.into_service_error().code().is_some_and(|c| c.ends_with(".NotFound"))),
        }
    };
    let state = |r: aws_sdk_ec2::operation::describe_nat_gateways::DescribeNatGatewaysOutput| r.nat_gateways()[0].state().unwrap().as_str().to_string();
    assert_eq!(state(ec2.describe_nat_gateways().nat_gateway_ids(&nat).send().await.unwrap()), "pending");
    assert!(proxy.fired_count(Behaviour::NatGatewayPending) > 0);
    assert!(proxy.fired_count(Behaviour::Ec2NotFoundAfterCreate) > 0);
    drop(moto);
}
