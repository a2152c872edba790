//! Exactly once under ambiguous failures: AWS does the work and the answer is lost (a 500
//! after moto acted, a dropped connection), AWS throttles, a run is killed mid-`down`, a
//! duplicate is planted by hand. Every test runs the real binary against a real moto,
//! through the fault proxy where faults are injected.

mod support;

use support::fault_proxy::{Fault, FaultProxy, Rule};
use support::*;

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// `up` through the proxy; a second run if the first failed (the issue allows one).
fn up_within_two_runs(project: &Project, proxy: &FaultProxy, what: &str) -> usize {
    let first = project.infra_at(&proxy.url, &["up"], &[]);
    if first.code == 0 {
        return 1;
    }
    let second = project.infra_at(&proxy.url, &["up"], &[]);
    assert_ok(&second);
    eprintln!("{what}: first up failed, second converged: {}", first.stderr.lines().last().unwrap_or(""));
    2
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_answers_at_20_percent_converge_with_exactly_one_of_each_for_ten_seeds() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    let mut runs_needed = Vec::new();
    for seed in 1..=10u64 {
        let proxy = FaultProxy::start(&moto.endpoint, vec![Rule::all(Fault::LostAnswer, 0.2)], seed);
        runs_needed.push(up_within_two_runs(&project, &proxy, &format!("seed {seed}")));
        assert_eq!(inventory(&ec2).await, full_inventory(), "seed {seed}: {:?}", proxy.injected());
        // The truth, read without faults: in sync, nothing duplicated.
        let status = project.infra(&["status"]);
        assert_ok(&status);
        assert!(proxy.total_injected() > 0, "seed {seed} injected nothing");

        // One down, through the same faults, is enough: lost answers on deletes are NotFound
        // or a repeat, never a reason to run it again.
        let down = project.infra_at(&proxy.url, &["down", "--yes"], &[]);
        assert_ok(&down);
        assert_eq!(inventory(&ec2).await, Inventory::default(), "seed {seed}: {:?}", proxy.injected());
    }
    // Recognising the earlier attempt makes one run enough.
    assert_eq!(runs_needed, vec![1; 10], "runs needed per seed");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_answer_on_each_create_operation_leaves_no_duplicate() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    let operations = [
        "CreateVpc",
        "ModifyVpcAttribute",
        "CreateInternetGateway",
        "AttachInternetGateway",
        "CreateSubnet",
        "ModifySubnetAttribute",
        "AllocateAddress",
        "CreateNatGateway",
        "CreateRouteTable",
        "CreateRoute",
        "AssociateRouteTable",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "PutParameter",
        "CreateRole",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreateLogGroup",
        "PutRetentionPolicy",
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
        "CreateUserPool",
        "CreateUserPoolClient",
        "CreateBucket",
        "PutPublicAccessBlock",
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
    ];
    for (i, operation) in operations.iter().enumerate() {
        // A dropped connection is tried on the network tier's operations; the lost answer
        // on every one.
        let faults: &[Fault] = if i < 13 { &[Fault::LostAnswer, Fault::Reset] } else { &[Fault::LostAnswer] };
        for &fault in faults {
            // The first three calls of the operation: each repeat meets the work of the one
            // before (creates are repeated by the engine after a lookup, updates by the SDK).
            let proxy = FaultProxy::start(&moto.endpoint, vec![Rule::only(fault, 1.0, operation).at_most(3)], i as u64);
            let up = project.infra_at(&proxy.url, &["up"], &[]);
            assert_ok(&up);
            assert!(proxy.total_injected() > 0, "{operation} was never called");
            assert_eq!(inventory(&ec2).await, full_inventory(), "{fault:?} on {operation}: {up:?}");

            let again = project.infra(&["up"]);
            assert_ok(&again);
            assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{fault:?} on {operation}: second up mutated");
            assert_ok(&project.infra(&["down", "--yes"]));
            assert_eq!(inventory(&ec2).await, Inventory::default(), "{fault:?} on {operation}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_at_30_percent_is_waited_out_and_converges() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    for seed in [7u64, 8, 9] {
        let proxy = FaultProxy::start(&moto.endpoint, vec![Rule::all(Fault::Throttle, 0.3)], seed);
        assert_ok(&project.infra_at(&proxy.url, &["up"], &[]));
        assert_eq!(inventory(&ec2).await, full_inventory(), "seed {seed}");
        assert_ok(&project.infra_at(&proxy.url, &["status"], &[]));
        assert_ok(&project.infra_at(&proxy.url, &["down", "--yes"], &[]));
        assert_eq!(inventory(&ec2).await, Inventory::default(), "seed {seed}");
        assert!(proxy.total_injected() > 10, "seed {seed}: {:?}", proxy.injected());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_vpc_planted_by_hand_is_reported_by_status_and_removed_by_up() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let kept = project.physical_id("vpc");
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let planted = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
                .tags(tag("infra:stack", STACK))
                .tags(tag("infra:id", "vpc"))
                .tags(tag("Name", "books-vpc"))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();

    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let duplicate = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "duplicate")
        .unwrap_or_else(|| panic!("no duplicate reported: {status:?}"));
    assert_eq!(duplicate["physical_id"], planted.as_str());
    assert_eq!(duplicate["duplicate_of"], kept.as_str());
    let text = project.infra(&["status"]);
    assert!(text.stdout.contains(&format!("duplicate   vpc#{planted}")), "{text:?}");

    let plan = project.infra(&["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains(&format!("- vpc#{planted} (delete {planted}: a duplicate of vpc ({kept})")), "{plan:?}");

    let up = project.infra(&["up"]);
    assert_ok(&up);
    assert!(up.stderr.contains(&planted), "up does not say what it deletes: {up:?}");
    assert_eq!(mutating(&project.calls()), vec!["DeleteVpc".to_string()]);
    assert_eq!(project.physical_id("vpc"), kept, "the recorded VPC is the one kept");
    assert_eq!(inventory(&ec2).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_found_with_lost_state_keep_one_and_delete_the_rest() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    // A second security group with sg.db's tags, in the same VPC, and the state lost.
    let vpc = project.physical_id("vpc");
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    ec2.create_security_group()
        .group_name("stray-db")
        .description("planted")
        .vpc_id(&vpc)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(tag("infra:stack", STACK))
                .tags(tag("infra:id", "sg.db"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    project.lose_state();

    let up = project.infra(&["up"]);
    assert_ok(&up);
    assert!(mutating(&project.calls()).contains(&"DeleteSecurityGroup".to_string()), "{up:?}");
    assert_eq!(inventory(&ec2).await, full_inventory());
    let again = project.infra(&["up"]);
    assert_ok(&again);
    assert_eq!(mutating(&project.calls()), Vec::<String>::new(), "{again:?}");
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn down_killed_at_every_request_then_up_converges_in_one_run() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let mut k = 1;
    loop {
        let killed = project.infra_env(&["down", "--yes"], &[("INFRA_FAULT_KILL_AFTER_CALLS", &k.to_string())]);
        if killed.code == 0 {
            // The whole down took fewer than k calls: every kill point is covered.
            assert_eq!(inventory(&ec2).await, Inventory::default());
            break;
        }
        assert_eq!(project.calls().len(), k, "down killed at the {k}th call");
        let up = project.infra(&["up"]);
        assert_ok(&up);
        assert_eq!(inventory(&ec2).await, full_inventory(), "up after down killed at call {k}: {up:?}");
        assert_ok(&project.infra(&["status"]));
        k += 1;
    }
    assert!(k > 30, "a full down makes more than 30 calls; only {k} were tried");
    assert_ok(&project.infra(&["down", "--yes"]));
    assert_eq!(inventory(&ec2).await, Inventory::default());
}
