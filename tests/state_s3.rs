//! Team state in S3 against a real moto server: the lock across runs and machines, its
//! lease, conditional writes, push/pull, and the errors before any stack resource.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::*;

const LEASE: &str = "3";

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// A project whose state lives in `STATE_URL` on `moto` (the bucket must exist).
fn team_project(moto: &Moto) -> Project {
    let project = Project::at(&moto.endpoint);
    project.use_state_url(STATE_URL);
    project
}

/// Fails at once on a held lock, whatever INFRA_TEST_STATE_BACKEND set up.
const NO_WAIT: (&str, &str) = ("INFRA_LOCK_WAIT", "0s");
const SHORT_LEASE: (&str, &str) = ("INFRA_LOCK_LEASE_SECONDS", LEASE);

fn get_object(moto: &Moto, key: &str) -> Option<String> {
    let (endpoint, key) = (moto.endpoint.clone(), key.to_string());
    block_on(async move {
        match s3(&endpoint).await.get_object().bucket(STATE_BUCKET).key(key).send().await {
            Ok(o) => Some(String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(e) => panic!("{e:?}"),
        }
    })
}

fn state_object(moto: &Moto) -> Option<serde_json::Value> {
    get_object(moto, &format!("team/{STACK}.json")).map(|t| serde_json::from_str(&t).unwrap())
}

fn lock_object(moto: &Moto) -> Option<String> {
    get_object(moto, &format!("team/{STACK}.lock"))
}

/// Every version of every object in the bucket, as text.
fn all_versions(moto: &Moto) -> Vec<String> {
    let endpoint = moto.endpoint.clone();
    block_on(async move {
        let s3 = s3(&endpoint).await;
        let versions = s3.list_object_versions().bucket(STATE_BUCKET).send().await.unwrap();
        let mut texts = Vec::new();
        for v in versions.versions() {
            let o = s3.get_object().bucket(STATE_BUCKET).key(v.key().unwrap()).version_id(v.version_id().unwrap()).send().await.unwrap();
            texts.push(String::from_utf8(o.body.collect().await.unwrap().into_bytes().to_vec()).unwrap());
        }
        texts
    })
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

fn spawn(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = project.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_ups_at_once_from_two_directories_one_runs_the_other_fails_naming_the_holder() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let (alice, bob) = (team_project(&moto), team_project(&moto));
    let a = spawn(&alice, &["up"], &[NO_WAIT]);
    let b = spawn(&bob, &["up"], &[NO_WAIT]);
    let (pa, pb) = (a.id(), b.id());
    let (ra, rb) = (finish(a), finish(b));
    let (winner, loser, winner_pid) = match (ra.code, rb.code) {
        (0, 1) => (ra, rb, pa),
        (1, 0) => (rb, ra, pb),
        _ => panic!("exactly one run must win:\n{ra:?}\n{rb:?}"),
    };
    assert!(winner.stderr.contains("state: "), "{winner:?}");
    assert!(loser.stderr.contains(&format!("is locked by pid {winner_pid} on ")), "{loser:?}");
    assert!(loser.stderr.contains("running `up`"), "{loser:?}");
    assert!(loser.stderr.contains("--lock-wait"), "{loser:?}");
    assert!(!loser.stderr.contains("created"), "the loser touched the stack: {loser:?}");

    // They share one state: the loser's next run finds the stack converged.
    for project in [&alice, &bob] {
        assert_ok(&project.infra(&["up"]));
        assert_eq!(mutating(&project.calls()), Vec::<String>::new());
    }
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
    assert!(lock_object(&moto).is_none(), "lock left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_killed_holding_the_lock_is_taken_over_after_its_lease_naming_its_holder() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let slow = Project::at(&slow_proxy(&moto.endpoint, Duration::from_millis(40)));
    slow.use_state_url(STATE_URL);
    let mut victim = spawn(&slow, &["up"], &[SHORT_LEASE, NO_WAIT]);
    wait_for("the first state write", Duration::from_secs(30), || state_object(&moto).is_some());
    victim.kill().unwrap(); // SIGKILL: no chance to release anything
    let victim_pid = victim.id();
    let killed = finish(victim);
    assert_ne!(killed.code, 0);
    assert!(lock_object(&moto).is_some(), "the killed run's lock is still there");

    let next = team_project(&moto);
    let refused = next.infra_env(&["up"], &[NO_WAIT, SHORT_LEASE]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains(&format!("locked by pid {victim_pid} on ")), "{refused:?}");
    assert!(mutating(&next.calls()).is_empty(), "{refused:?}");

    let started = Instant::now();
    let resumed = next.infra_env(&["up", "--lock-wait", "30s"], &[SHORT_LEASE]);
    assert_ok(&resumed);
    assert!(resumed.stderr.contains(&format!("took over the state lock of stack \"{STACK}\" from pid {victim_pid} on ")), "{resumed:?}");
    assert!(resumed.stderr.contains("running `up`"), "{resumed:?}");
    assert!(resumed.stderr.contains("lease lapsed"), "{resumed:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "waited far longer than the lease");
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
    assert_ok(&next.infra(&["status"]));
    assert!(lock_object(&moto).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_holder_whose_lease_lapsed_cannot_overwrite_the_state_of_the_run_that_took_over() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let slow = Project::at(&slow_proxy(&moto.endpoint, Duration::from_millis(40)));
    slow.use_state_url(STATE_URL);
    let paused = spawn(&slow, &["up"], &[SHORT_LEASE, NO_WAIT]);
    wait_for("the first state write", Duration::from_secs(30), || state_object(&moto).is_some());
    signal(&paused, "-STOP"); // a laptop lid closed mid-run: its copy of the state goes stale

    let other = team_project(&moto);
    let took_over = other.infra_env(&["up", "--lock-wait", "30s"], &[SHORT_LEASE]);
    assert_ok(&took_over);
    assert!(took_over.stderr.contains("took over the state lock"), "{took_over:?}");
    let converged = state_object(&moto).unwrap();

    signal(&paused, "-CONT");
    let stale = finish(paused);
    assert_eq!(stale.code, 1, "{stale:?}");
    // Whichever noticed first, the lease renewal or the next write, the cause is named: the
    // run that took the lock over has finished and released it by the time this one wakes.
    assert!(stale.stderr.contains("this run no longer holds the state lock (it is gone: another run took it over and has released it"), "{stale:?}");
    assert!(stale.stderr.contains("; nothing was overwritten"), "{stale:?}");
    assert_eq!(state_object(&moto).unwrap(), converged, "the stale run overwrote the state");
    assert!(lock_object(&moto).is_none(), "the stale run must not leave or steal a lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_write_based_on_a_stale_etag_fails_and_overwrites_nothing() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let slow = Project::at(&slow_proxy(&moto.endpoint, Duration::from_millis(40)));
    slow.use_state_url(STATE_URL);
    let run = spawn(&slow, &["up"], &[NO_WAIT]);
    wait_for("the first state write", Duration::from_secs(30), || state_object(&moto).is_some());
    // Another writer (a tool ignoring the lock) replaces the object under the run's feet.
    let mut theirs = state_object(&moto).unwrap();
    theirs["serial"] = 1000.into();
    let body = serde_json::to_string_pretty(&theirs).unwrap();
    let (endpoint, key, sent) = (moto.endpoint.clone(), format!("team/{STACK}.json"), body.clone());
    block_on(async move {
        s3(&endpoint).await.put_object().bucket(STATE_BUCKET).key(key).body(sent.into_bytes().into()).send().await.unwrap();
    });

    let stale = finish(run);
    assert_eq!(stale.code, 1, "{stale:?}");
    assert!(stale.stderr.contains("was changed by another writer since this run read it"), "{stale:?}");
    assert!(stale.stderr.contains("PreconditionFailed"), "{stale:?}");
    assert!(stale.stderr.contains("nothing was overwritten"), "{stale:?}");
    assert_eq!(get_object(&moto, &format!("team/{STACK}.json")).unwrap(), body, "the run overwrote the other writer's state");
    assert!(lock_object(&moto).is_none(), "the failed run kept its lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_then_pull_round_trips_serial_and_lineage_and_uploads_nothing_secret() {
    const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let project = Project::at(&moto.endpoint);
    let secret = [("AWS_SECRET_ACCESS_KEY", SECRET)];
    assert_ok(&project.infra_env(&["up"], &secret));
    let local_text = std::fs::read_to_string(project.state_path()).unwrap();
    let local: serde_json::Value = serde_json::from_str(&local_text).unwrap();

    project.use_state_url(STATE_URL);
    let pushed = project.infra_env(&["state", "push"], &secret);
    assert_ok(&pushed);
    assert_eq!(get_object(&moto, &format!("team/{STACK}.json")).unwrap(), local_text, "pushed bytes differ");
    let again = project.infra(&["state", "push"]);
    assert_ok(&again);
    assert!(again.stderr.contains("nothing to push"), "{again:?}");

    // Pull into a fresh directory: same serial, lineage and resources.
    let pulled_dir = project.dir.path().join("pulled");
    assert_ok(&project.infra(&["--state-dir", pulled_dir.to_str().unwrap(), "state", "pull"]));
    let pulled: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(pulled_dir.join(format!("{STACK}.json"))).unwrap()).unwrap();
    assert_eq!(pulled, local);

    // The stack now runs from S3 and is converged; its writes keep the lineage.
    assert_ok(&project.infra_env(&["up"], &secret));
    assert_eq!(mutating(&project.calls()), Vec::<String>::new());
    project.edit_config("nat_gateways = 1", "nat_gateways = 2");
    assert_ok(&project.infra_env(&["up"], &secret));
    let after = state_object(&moto).unwrap();
    assert_eq!(after["lineage"], local["lineage"]);
    assert!(after["serial"].as_u64() > local["serial"].as_u64());

    // A local state of another lineage (another stack's) is refused; nothing changes.
    let stranger = Project::at(&moto.endpoint);
    std::fs::create_dir_all(stranger.state_path().parent().unwrap()).unwrap();
    let foreign = format!(r#"{{"version":1,"serial":99,"lineage":"another","stack":"{STACK}","resources":{{}}}}"#);
    std::fs::write(stranger.state_path(), &foreign).unwrap();
    stranger.use_state_url(STATE_URL);
    let refused = stranger.infra(&["state", "push"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("different lineages"), "{refused:?}");
    assert_eq!(state_object(&moto).unwrap(), after);
    // And an older copy of this lineage is refused too.
    let old = project.infra(&["state", "push"]);
    assert_eq!(old.code, 1, "{old:?}");
    assert!(old.stderr.contains("newer than or diverged"), "{old:?}");

    for text in all_versions(&moto) {
        assert!(!text.contains(SECRET) && !text.contains("testing"), "a credential reached S3: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn down_with_s3_state_leaves_an_empty_resource_list_its_history_and_no_lock() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let project = team_project(&moto);
    assert_ok(&project.infra(&["up"]));
    let up = state_object(&moto).unwrap();
    assert_eq!(up["resources"].as_object().unwrap().len(), FULL_STACK_RESOURCES);
    assert!(!project.state_path().exists(), "an S3 state wrote a local file");

    let down = project.infra(&["down", "--yes"]);
    assert_ok(&down);
    let after = state_object(&moto).unwrap();
    assert_eq!(after["resources"], serde_json::json!({}));
    assert_eq!(after["lineage"], up["lineage"]);
    assert!(lock_object(&moto).is_none(), "down left its lock");
    assert_eq!(inventory(&ec2(&moto).await).await, Inventory::default());
    let history = all_versions(&moto).into_iter().filter(|t| t.contains("\"lineage\"")).count();
    assert!(history > 2, "versioning keeps every earlier state: {history} versions");

    let outputs = project.infra(&["outputs"]);
    assert_ok(&outputs);
    assert_eq!(outputs.stdout, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn unlock_names_the_holder_asks_and_removes_a_dead_runs_lock() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    let project = team_project(&moto);
    let killed = project.infra_env(&["up"], &[("INFRA_FAULT_KILL_AFTER_OPERATION", "CreateSubnet")]);
    assert_ne!(killed.code, 0);
    assert!(lock_object(&moto).is_some());

    let refused = project.infra(&["unlock"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("running `up`"), "the holder is shown before asking: {refused:?}");
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    assert!(lock_object(&moto).is_some());

    let unlocked = project.infra(&["unlock", "--yes"]);
    assert_ok(&unlocked);
    assert!(unlocked.stderr.contains("running `up`"), "{unlocked:?}");
    assert!(lock_object(&moto).is_none());
    let nothing = project.infra(&["unlock", "--yes"]);
    assert_ok(&nothing);
    assert!(nothing.stderr.contains("not locked"), "{nothing:?}");

    // No lease to wait out any more.
    assert_ok(&project.infra_env(&["up"], &[NO_WAIT]));
    assert_eq!(inventory(&ec2(&moto).await).await, full_inventory());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_unversioned_and_malformed_state_locations_fail_before_any_stack_call() {
    let moto = Moto::start();
    let project = Project::at(&moto.endpoint);
    project.use_state_url("s3://no-such-bucket/infra/");
    for command in [&["up"][..], &["plan"], &["status"], &["down", "--yes"], &["unlock", "--yes"], &["outputs"]] {
        let run = project.infra(command);
        assert_eq!(run.code, 1, "{command:?}: {run:?}");
        assert!(run.stderr.contains("bucket \"no-such-bucket\""), "{command:?}: {run:?}");
        assert!(run.stderr.contains("does not exist"), "{command:?}: {run:?}");
        assert!(run.stderr.contains("`state`"), "{command:?}: {run:?}");
        assert!(project.calls().is_empty(), "{command:?} reached the stack: {:?}", project.calls());
    }

    let endpoint = moto.endpoint.clone();
    block_on(async move { s3(&endpoint).await.create_bucket().bucket("plain-bucket").send().await.unwrap() });
    let project = Project::at(&moto.endpoint);
    project.use_state_url("s3://plain-bucket/infra/");
    let run = project.infra(&["up"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is not versioned"), "{run:?}");
    assert!(run.stderr.contains("put-bucket-versioning --bucket plain-bucket"), "{run:?}");
    assert!(project.calls().is_empty());

    for (url, says) in [("s3:/half-a-url/", "not an S3 URL"), ("gs://bucket/x/", "not an S3 URL"), ("s3://Bad_Bucket/", "not an S3 bucket name")] {
        let project = Project::at(&moto.endpoint);
        project.use_state_url(url);
        let run = project.infra(&["up"]);
        assert_eq!(run.code, 1, "{url}: {run:?}");
        assert!(run.stderr.contains("invalid config key `state`"), "{url}: {run:?}");
        assert!(run.stderr.contains(says), "{url}: {run:?}");
        assert!(!project.call_log().exists());
    }
    assert_eq!(inventory(&ec2(&moto).await).await, Inventory::default());
}

/// POSTs `body` to `path` on moto and returns the answer's body. An AWS Query call
/// carries a (fake) SigV4 credential scope: moto routes it by the service named there and
/// checks no signature while its auth is off.
fn post(endpoint: &str, path: &str, service: Option<&str>, body: &str) -> String {
    let mut stream = TcpStream::connect(endpoint.trim_start_matches("http://")).unwrap();
    let auth = service
        .map(|s| format!("Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{s}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
        .unwrap_or_default();
    write!(stream, "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{answer}");
    answer
}

fn xml_field(xml: &str, tag: &str) -> String {
    let start = xml.find(&format!("<{tag}>")).unwrap_or_else(|| panic!("no {tag} in {xml}")) + tag.len() + 2;
    xml[start..start + xml[start..].find('<').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn access_denied_to_the_state_bucket_is_named_before_any_stack_call() {
    let moto = Moto::start();
    create_versioned_bucket(&moto.endpoint, STATE_BUCKET);
    // A user without any policy; then moto enforces IAM from the next request on.
    post(&moto.endpoint, "/", Some("iam"), "Action=CreateUser&UserName=ci-nobody&Version=2010-05-08");
    let key = post(&moto.endpoint, "/", Some("iam"), "Action=CreateAccessKey&UserName=ci-nobody&Version=2010-05-08");
    let (key_id, secret) = (xml_field(&key, "AccessKeyId"), xml_field(&key, "SecretAccessKey"));
    post(&moto.endpoint, "/moto-api/reset-auth", None, "0");

    let project = team_project(&moto);
    let run = project.infra_env(&["up"], &[("AWS_ACCESS_KEY_ID", &key_id), ("AWS_SECRET_ACCESS_KEY", &secret)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("access denied to S3 bucket \"{STATE_BUCKET}\"")), "{run:?}");
    assert!(run.stderr.contains("`state`"), "{run:?}");
    assert!(!run.stderr.contains(&secret), "a secret reached the output");
    assert!(project.calls().is_empty(), "reached the stack: {:?}", project.calls());
}
