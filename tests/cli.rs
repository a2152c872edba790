//! Command-line behaviour that needs no emulator: config validation before any AWS
//! request, the state lock, confirmation rules, `init`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::*;

/// A TCP listener standing in for AWS that only counts connections.
struct CountingEndpoint {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl CountingEndpoint {
    fn start() -> CountingEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        CountingEndpoint { url, connections }
    }
}

#[test]
fn every_config_error_names_the_key_and_no_aws_request_is_made() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let original = std::fs::read_to_string(project.config_path()).unwrap();
    let cases = [
        ("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"10.0.0.0/33\"", "vpc_cidr", "10.0.0.0/33"),
        ("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"banana\"", "vpc_cidr", "banana"),
        ("vpc_cidr = \"10.0.0.0/16\"", "vpc_cidr = \"10.0.0.0/26\"", "vpc_cidr", "cannot hold 6 subnets"),
        ("az_count = 2", "az_count = 3", "az_count", "3"),
        ("nat_gateways = 1", "nat_gateways = 0", "nat_gateways", "0"),
        ("stack = \"books\"", "stack = \"\"", "stack", "is empty"),
        ("stack = \"books\"", "stack = \"My Stack!\"", "stack", "My Stack!"),
        ("container_port = 8080", "container_port = 8080\nfavourite_colour = \"blue\"", "favourite_colour", "unknown field"),
        ("db_password_ssm_param = \"/books/db-password\"\n", "", "db_password_ssm_param", "missing"),
        ("log_retention_days = 30", "log_retention_days = 42", "log_retention_days", "42"),
        ("task_cpu = 256", "task_cpu = 300", "task_cpu", "300"),
        ("task_memory = 512", "task_memory = 4096", "task_memory", "4096"),
        ("db_engine_version = \"16.4\"", "db_engine_version = \"latest\"", "db_engine_version", "latest"),
        ("wait_for_rollout = false", "wait_for_rollout = \"yes\"", "wait_for_rollout", "invalid type"),
        // Type errors whose message quotes the value: the key is still what is named.
        ("rollout_timeout_seconds = 1200", "rollout_timeout_seconds = -5", "rollout_timeout_seconds", "-5"),
        ("container_port = 8080", "container_port = 70000", "container_port", "70000"),
    ];
    for (from, to, key, detail) in cases {
        assert!(original.contains(from), "fixture lacks {from:?}");
        std::fs::write(project.config_path(), original.replace(from, to)).unwrap();
        for command in [&["plan"][..], &["up"], &["status"], &["down", "--yes"]] {
            let run = project.infra(command);
            assert_eq!(run.code, 1, "{command:?} with {to:?}: {run:?}");
            assert!(run.stderr.contains(&format!("`{key}`")), "{command:?} with {to:?} does not name {key}: {run:?}");
            assert!(run.stderr.contains(detail), "{command:?} with {to:?} lacks {detail:?}: {run:?}");
        }
    }
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0, "a bad config reached AWS");
    assert!(!project.state_path().exists(), "a bad config wrote state");
}

#[test]
fn a_source_code_path_that_does_not_exist_is_named_before_the_image_builder_is_looked_for() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    project.edit_config(&format!("image = \"{TEST_IMAGE}\""), "source_code_path = \"no-such-dir\"");
    // No builder on PATH at all: had it been looked for first, that would be the error.
    let run = project.infra_env(&["up"], &[("PATH", "/nonexistent")]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = "infra.toml: invalid config key `source_code_path`: \"no-such-dir\" does not exist (looked for the directory ./no-such-dir)";
    assert!(run.stderr.contains(expected), "{run:?}");
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0, "a missing source reached AWS");
}

#[test]
fn lock_held_by_another_process_is_named_and_state_is_untouched() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let state_dir = project.dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let state = r#"{"version":1,"serial":3,"lineage":"l","stack":"books","resources":{}}"#;
    std::fs::write(project.state_path(), state).unwrap();
    let mut lock = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(false).open(state_dir.join("books.lock")).unwrap();
    lock.lock().unwrap();
    lock.write_all(br#"{"pid":4242,"host":"ci-box","command":"up","since":"2026-11-25T21:00:00Z"}"#).unwrap();

    for command in [&["up"][..], &["down", "--yes"], &["status"], &["plan"]] {
        let run = project.infra(command);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("locked by pid 4242 on ci-box running `up` since 2026-11-25T21:00:00Z"), "{run:?}");
    }
    let mut text = String::new();
    std::fs::File::open(project.state_path()).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, state);
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0);
}

/// Holds the local state lock as another `infra` run would, with its holder record.
fn hold_local_lock(project: &Project) -> std::fs::File {
    let state_dir = project.dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let mut lock = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(false).open(state_dir.join("books.lock")).unwrap();
    lock.lock().unwrap();
    lock.write_all(br#"{"pid":4242,"host":"ci-box","command":"up","since":"2026-11-25T21:00:00Z"}"#).unwrap();
    lock
}

#[test]
fn with_lock_wait_a_run_waits_for_a_local_lock_and_goes_on_once_it_is_released() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let lock = hold_local_lock(&project);
    let stderr_path = project.dir.path().join("waiting.err");
    let mut waiting = project
        .command(&["status", "--lock-wait", "60s"])
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The condition: it says it waits (and has touched nothing).
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&stderr_path).unwrap().contains("state for stack \"books\" is locked by pid 4242 on ci-box running `up` since 2026-11-25T21:00:00Z; waiting up to 1m") {
        assert!(waiting.try_wait().unwrap().is_none(), "exited instead of waiting: {}", std::fs::read_to_string(&stderr_path).unwrap());
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "never said it waits");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0, "went past a held lock");
    drop(lock); // the holder exits: the kernel releases its lock
    let status = waiting.wait().unwrap();
    // Past the lock it reads AWS, which this endpoint does not answer: an AWS error, not a lock one.
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(aws.connections.load(Ordering::SeqCst) > 0, "never got past the lock: {stderr}");
    assert!(!stderr.contains("error: state for stack"), "{stderr}");
}

#[test]
fn unlock_of_a_local_lock_names_its_holder_and_leaves_it_to_its_process() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let lock = hold_local_lock(&project);
    let run = project.infra(&["unlock", "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("locked by pid 4242 on ci-box running `up` since 2026-11-25T21:00:00Z"), "{run:?}");
    assert!(run.stderr.contains("A local lock is released when its process exits: stop that process instead"), "{run:?}");
    drop(lock);
    let run = project.infra(&["unlock", "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("state for stack \"books\" in state is not locked"), "{run:?}");
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0, "a local unlock needs no AWS");
}

#[test]
fn down_without_yes_on_a_non_terminal_refuses() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let run = project.infra(&["down"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{run:?}");
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn init_refuses_to_overwrite_and_records_the_stack_name() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let before = std::fs::read_to_string(project.config_path()).unwrap();
    assert!(before.contains("stack = \"books\""));
    let again = project.infra(&["init", "--stack", "other"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{again:?}");
    assert_eq!(std::fs::read_to_string(project.config_path()).unwrap(), before);
    let bad = Project { dir: tempfile::tempdir().unwrap(), endpoint: aws.url.clone() }.infra(&["init", "--stack", "Bad_Name"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("`stack`"), "{bad:?}");
}

#[test]
fn corrupt_state_is_reported_and_never_overwritten() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    std::fs::create_dir_all(project.state_path().parent().unwrap()).unwrap();
    std::fs::write(project.state_path(), "{\"version\": 1, \"serial\": ").unwrap();
    let run = project.infra(&["up"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("does not parse"), "{run:?}");
    assert_eq!(std::fs::read_to_string(project.state_path()).unwrap(), "{\"version\": 1, \"serial\": ");
}

/// An endpoint that answers every request as AWS does when the caller lacks permission.
fn denying_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the headers, then the body its Content-Length announces.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            // In each protocol's own error format, so whichever denied call the run meets
            // first (the sweeps of every kind run at once) reads as a denial.
            let text = String::from_utf8_lossy(&request).to_string();
            let head = text.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
            let (content_type, extra_header, body) = if text.contains("Action=") && text.contains("Version=2016-11-15") {
                ("text/xml;charset=UTF-8", "", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>denied-1</RequestID></Response>".to_string())
            } else if text.contains("Action=") {
                // The other query services (STS, RDS, IAM, ELB).
                ("text/xml;charset=UTF-8", "", "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform this action</Message></Error><RequestId>denied-1</RequestId></ErrorResponse>".to_string())
            } else if head.contains("x-amz-target:") {
                ("application/x-amz-json-1.1", "", r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform this action"}"#.to_string())
            } else if head.contains("/s3/aws4_request") {
                ("application/xml", "", "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>denied-1</RequestId></Error>".to_string())
            } else {
                // REST-JSON (API Gateway, Lambda).
                ("application/json", "x-amzn-ErrorType: AccessDeniedException\r\n", r#"{"message":"User is not authorized to perform this action"}"#.to_string())
            };
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\nx-amzn-RequestId: denied-1\r\n{extra_header}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn access_denied_is_an_error_never_missing_and_state_is_kept() {
    let project = Project::at(&denying_endpoint());
    project.edit_config("# availability_zones = [\"eu-west-1a\", \"eu-west-1b\"]", "availability_zones = [\"us-east-1a\", \"us-east-1b\"]");
    std::fs::create_dir_all(project.state_path().parent().unwrap()).unwrap();
    let state = r#"{"version":1,"serial":5,"lineage":"l","stack":"books","resources":{"vpc":{"kind":"vpc","phase":"created","physical_id":"vpc-123"}}}"#;
    std::fs::write(project.state_path(), state).unwrap();

    let status = project.infra(&["status", "--json"]);
    assert_eq!(status.code, 1, "{status:?}");
    let denied = |stderr: &str| stderr.contains("UnauthorizedOperation") || stderr.contains("AccessDenied");
    assert!(denied(&status.stderr), "{status:?}");
    assert!(status.stderr.contains("denied-1"), "the request id is reported: {status:?}");
    assert!(!status.stdout.contains("missing"), "{status:?}");

    for command in [&["up"][..], &["plan"], &["down", "--yes"]] {
        let run = project.infra(command);
        assert_eq!(run.code, 1, "{command:?}: {run:?}");
        assert!(denied(&run.stderr), "{command:?}: {run:?}");
    }
    assert_eq!(std::fs::read_to_string(project.state_path()).unwrap(), state, "a denied run changed the state");
}

#[test]
fn missing_credentials_is_one_readable_line_and_no_request() {
    let aws = CountingEndpoint::start();
    let project = Project::at(&aws.url);
    let home = tempfile::tempdir().unwrap();
    let output = project
        .command(&["status"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        // A fresh machine: no ~/.aws at all.
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "error: no AWS credentials found (tried environment, profile \"default\", SSO, web identity, container and instance metadata); set AWS_PROFILE or run aws configure"
    );
    assert_eq!(aws.connections.load(Ordering::SeqCst), 0, "a request went out without credentials");
}
