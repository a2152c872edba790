//! Test harness: a real moto server per test on a free loopback port, the real `infra`
//! binary run against it, and an SDK client to read back what exists.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

pub const STACK: &str = "books";

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
        let _ = std::fs::remove_file(self.call_log());
        let mut cmd = self.command(args);
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

/// An EC2 client on the same moto, to read back and to change things out of band.
pub async fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
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

/// Count of live resources of each network kind carrying the stack's tag.
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
}

pub async fn inventory(ec2: &aws_sdk_ec2::Client) -> Inventory {
    let vpcs = ec2.describe_vpcs().filters(stack_filter()).send().await.unwrap();
    let all_vpcs = ec2.describe_vpcs().send().await.unwrap();
    let igws = ec2.describe_internet_gateways().filters(stack_filter()).send().await.unwrap();
    let subnets = ec2.describe_subnets().filters(stack_filter()).send().await.unwrap();
    let eips = ec2.describe_addresses().filters(stack_filter()).send().await.unwrap();
    let nats = ec2.describe_nat_gateways().filter(stack_filter()).send().await.unwrap();
    let rts = ec2.describe_route_tables().filters(stack_filter()).send().await.unwrap();
    let sgs = ec2.describe_security_groups().filters(stack_filter()).send().await.unwrap();
    Inventory {
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
    }
}

/// What one converged network tier with a single NAT gateway holds.
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
    }
}
