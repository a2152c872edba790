//! The network tier end to end against a real moto server.

mod support;

use aws_sdk_ec2::types::{IpPermission, IpRange};
use support::*;

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_twice_second_run_makes_no_mutating_call_and_status_is_clean() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    let first = project.infra(&["up"]);
    assert_ok(&first);
    assert!(!mutating(&project.calls()).is_empty());
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());

    let second = project.infra(&["up"]);
    assert_ok(&second);
    let calls = project.calls();
    assert_eq!(mutating(&calls), Vec::<String>::new(), "no-op up mutated: {second:?}");
    assert!(!calls.is_empty(), "a no-op up still reads every resource");

    let status = project.infra(&["status", "--json"]);
    assert_ok(&status);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(report["in_sync"], true);
    let resources = report["resources"].as_array().unwrap();
    assert_eq!(resources.len(), FULL_STACK_RESOURCES);
    assert!(resources.iter().all(|r| r["status"] == "ok"), "{status:?}");
    assert!(mutating(&project.calls()).is_empty(), "status must only read");

    let plan = project.infra(&["plan"]);
    assert_ok(&plan);
    assert!(plan.stdout.contains("0 to create, 0 to adopt, 0 to update"), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_band_changes_are_reported_as_drift_and_repaired_by_up() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let ec2 = ec2(&moto).await;

    // An extra ingress rule on the ALB's group, a deleted default route, a removed tag.
    let alb_sg = project.physical_id("sg.alb");
    ec2.authorize_security_group_ingress()
        .group_id(&alb_sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("203.0.113.0/24").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let public_rt = project.physical_id("route_table.public");
    ec2.delete_route().route_table_id(&public_rt).destination_cidr_block("0.0.0.0/0").send().await.unwrap();
    let subnet = project.physical_id("subnet.db.a");
    ec2.delete_tags()
        .resources(&subnet)
        .tags(aws_sdk_ec2::types::Tag::builder().key("Name").build())
        .send()
        .await
        .unwrap();
    let vpc = project.physical_id("vpc");
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .unwrap();

    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 2, "{status:?}");
    let by_id = status_by_id(&status);
    let alb = &by_id["sg.alb"];
    assert_eq!(alb["status"], "drifted");
    assert_eq!(alb["changes"][0]["field"], "ingress");
    assert_eq!(alb["changes"][0]["wanted"], "tcp 80 from 0.0.0.0/0");
    assert!(alb["changes"][0]["found"].as_str().unwrap().contains("tcp 22 from 203.0.113.0/24"));
    assert_eq!(by_id["route.public.default"]["status"], "missing");
    assert_eq!(by_id["subnet.db.a"]["status"], "drifted");
    assert_eq!(by_id["subnet.db.a"]["changes"][0]["field"], "tags.Name");
    assert_eq!(by_id["subnet.db.a"]["changes"][0]["found"], "(absent)");
    assert_eq!(by_id["vpc"]["changes"][0]["field"], "enable_dns_hostnames");
    let healthy = by_id.values().filter(|r| r["status"] == "ok").count();
    assert_eq!(healthy, FULL_STACK_RESOURCES - 4);

    // The human-readable form names field, wanted and found too.
    let text = project.infra(&["status"]);
    assert_eq!(text.code, 2);
    assert!(text.stdout.contains("ingress: wanted tcp 80 from 0.0.0.0/0, found"), "{text:?}");

    let plan = project.infra(&["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(mutating(&project.calls()).is_empty(), "plan must only read");

    let repair = project.infra(&["up"]);
    assert_ok(&repair);
    let ops = mutating(&project.calls());
    for op in ["RevokeSecurityGroupIngress", "CreateRoute", "CreateTags", "ModifyVpcAttribute"] {
        assert!(ops.contains(&op.to_string()), "{op} missing from {ops:?}");
    }
    assert_ok(&project.infra(&["status"]));
    assert_eq!(inventory(&ec2).await, full_inventory());
}

#[tokio::test(flavor = "multi_thread")]
async fn down_leaves_nothing_tagged_and_down_again_succeeds() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let down = project.infra(&["down", "--yes"]);
    assert_ok(&down);
    assert_eq!(inventory(&ec2(&moto).await).await, Inventory::default());
    assert_eq!(project.state()["resources"], serde_json::json!({}));

    let again = project.infra(&["down", "--yes"]);
    assert_ok(&again);
    assert!(mutating(&project.calls()).is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_order_follows_aws_hidden_dependencies() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    project.edit_config("nat_gateways = 1", "nat_gateways = 2");
    assert_ok(&project.infra(&["up"]));
    assert_ok(&project.infra(&["down", "--yes"]));
    // The log holds calls in completion order; a delete that waits (NAT) completes its
    // wait before anything ordered after it starts.
    let calls = project.calls();
    let pos = |op: &str| -> Vec<usize> {
        calls.iter().enumerate().filter(|(_, c)| c.operation == op).map(|(i, _)| i).collect()
    };
    let last = |op: &str| *pos(op).last().unwrap_or_else(|| panic!("no {op}"));
    let first = |op: &str| *pos(op).first().unwrap_or_else(|| panic!("no {op}"));
    assert_eq!(pos("DeleteNatGateway").len(), 2);
    assert!(last("DeleteNatGateway") < first("ReleaseAddress"), "EIP released while a NAT gateway held it");
    assert!(last("ReleaseAddress") < first("DetachInternetGateway"), "IGW detached with public addresses mapped");
    assert!(last("DetachInternetGateway") < first("DeleteInternetGateway"));
    assert!(last("DeleteRoute") < first("DeleteNatGateway"));
    assert!(last("DisassociateRouteTable") < first("DeleteRouteTable"));
    assert!(last("DeleteNatGateway") < first("DeleteSubnet"));
    for op in ["DeleteSubnet", "DeleteRouteTable", "DeleteSecurityGroup", "DeleteInternetGateway"] {
        assert!(last(op) < first("DeleteVpc"), "{op} after DeleteVpc");
    }
    assert_eq!(inventory(&ec2(&moto).await).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn state_file_lost_after_up_then_up_adopts_everything_and_creates_nothing() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let before = project.state();
    project.lose_state();

    let plan = project.infra(&["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("> vpc (adopt"), "{plan:?}");

    let adopt = project.infra(&["up"]);
    assert_ok(&adopt);
    let creates: Vec<String> = mutating(&project.calls())
        .into_iter()
        .filter(|op| ["Create", "Allocate", "Associate", "Authorize", "Attach"].iter().any(|p| op.starts_with(p)))
        .collect();
    assert_eq!(creates, Vec::<String>::new(), "{adopt:?}");
    let after = project.state();
    for (id, r) in before["resources"].as_object().unwrap() {
        assert_eq!(after["resources"][id]["physical_id"], r["physical_id"], "{id} adopted as another resource");
    }
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_up_then_up_converges_without_duplicates_and_down_leaves_nothing() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    // Right after a create returned (id not yet saved), and at arbitrary call counts.
    let kills: Vec<(&str, &str)> = vec![
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateVpc"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateSubnet"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "AllocateAddress"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateNatGateway"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateRoute"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "AssociateRouteTable"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateSecurityGroup"),
        ("INFRA_FAULT_KILL_AFTER_OPERATION", "AuthorizeSecurityGroupIngress"),
        ("INFRA_FAULT_KILL_AFTER_CALLS", "7"),
        ("INFRA_FAULT_KILL_AFTER_CALLS", "25"),
        ("INFRA_FAULT_KILL_AFTER_CALLS", "50"),
    ];
    for (var, value) in kills {
        let killed = project.infra_env(&["up"], &[(var, value)]);
        assert_ne!(killed.code, 0, "{var}={value} did not kill the run: {killed:?}");
        let last = project.calls().last().cloned().expect("calls before the kill");
        if var == "INFRA_FAULT_KILL_AFTER_OPERATION" {
            assert_eq!(last.operation, value);
        }

        let resumed = project.infra(&["up"]);
        assert_ok(&resumed);
        assert_eq!(inventory(&ec2).await, full_inventory(), "after kill at {var}={value}: {resumed:?}");
        assert_ok(&project.infra(&["status"]));

        // A crash mid-down must not orphan anything either.
        let killed = project.infra_env(&["down", "--yes"], &[("INFRA_FAULT_KILL_AFTER_CALLS", "12")]);
        assert_ne!(killed.code, 0);
        assert_ok(&project.infra(&["down", "--yes"]));
        assert_eq!(inventory(&ec2).await, Inventory::default(), "after kill at {var}={value}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn down_from_a_crashed_first_up_with_lost_state_removes_everything_tagged() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    let killed = project.infra_env(&["up"], &[("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateNatGateway")]);
    assert_ne!(killed.code, 0);
    project.lose_state();
    assert_ok(&project.infra(&["down", "--yes"]));
    assert_eq!(inventory(&ec2(&moto).await).await, Inventory::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn nat_per_az_then_back_to_one_prunes_the_second_gateway() {
    let moto = Moto::start();
    let ec2 = ec2(&moto).await;
    let project = Project::new(&moto);
    project.edit_config("nat_gateways = 1", "nat_gateways = 2");
    assert_ok(&project.infra(&["up"]));
    let inv = inventory(&ec2).await;
    assert_eq!((inv.nat_gateways, inv.elastic_ips), (2, 2));
    assert_ne!(project.physical_id("nat_gateway.a"), project.physical_id("nat_gateway.b"));

    project.edit_config("nat_gateways = 2", "nat_gateways = 1");
    let plan = project.infra(&["plan"]);
    assert_eq!(plan.code, 2);
    assert!(plan.stdout.contains("- nat_gateway.b"), "{plan:?}");
    assert!(plan.stdout.contains("~ route.ecs.b.default"), "{plan:?}");
    assert_ok(&project.infra(&["up"]));
    assert_eq!(inventory(&ec2).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_skips_only_its_dependants_keeps_the_rest_and_the_next_up_completes() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    project.edit_config(
        "# availability_zones = [\"eu-west-1a\", \"eu-west-1b\"]",
        "availability_zones = [\"us-east-1a\", \"us-east-1x\"]",
    );
    let failed = project.infra(&["up"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("subnet.public.b"), "{failed:?}");
    assert!(failed.stderr.contains("skipped"), "{failed:?}");
    let state = project.state();
    let recorded = |id: &str| state["resources"][id]["physical_id"].is_string();
    // Everything independent of the bad AZ was created and recorded...
    for id in ["vpc", "internet_gateway", "subnet.public.a", "subnet.db.a", "nat_gateway.a", "sg.db", "association.ecs.a"] {
        assert!(recorded(id), "{id} missing from state after a partial failure: {failed:?}");
    }
    // ...and nothing that needs a subnet in it.
    for id in ["subnet.public.b", "association.public.b", "association.db.b"] {
        assert!(!recorded(id), "{id} recorded despite its failed dependency");
    }

    project.edit_config("availability_zones = [\"us-east-1a\", \"us-east-1x\"]", "availability_zones = [\"us-east-1a\", \"us-east-1b\"]");
    assert_ok(&project.infra(&["up"]));
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
    assert_ok(&project.infra(&["status"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_up_stops_starting_work_saves_state_and_the_next_up_completes() {
    let moto = Moto::start();
    let slow = Project::at(&slow_proxy(&moto.endpoint, std::time::Duration::from_millis(40)));
    let child = slow.command(&["up"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Interrupt once the run is under way (the call log grows as calls return).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // (five creates in: the run starts with a read of every kind)
    while std::fs::read_to_string(slow.call_log()).unwrap_or_default().lines().filter(|l| l.contains("\"mutating\":true")).count() < 5 {
        assert!(std::time::Instant::now() < deadline, "up never got going");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("not started"), "{stderr}");

    // The state is whole, partial, and unlocked: the next run takes it over and converges
    // with exactly one of everything.
    let state = slow.state();
    let recorded = state["resources"].as_object().unwrap().len();
    assert!(recorded > 0 && recorded < FULL_STACK_RESOURCES, "interrupt came too late or too early: {recorded} recorded");
    assert_ok(&slow.infra(&["up"]));
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
    assert_ok(&slow.infra(&["status"]));
}
