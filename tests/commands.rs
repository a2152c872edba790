//! The user-facing commands against a real moto: `user create|delete`, `token`,
//! `cache flush` and `smoke`.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::*;

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// Runs `infra` with `input` on its stdin (a pipe, so not a terminal).
fn infra_stdin(project: &Project, args: &[&str], input: &str) -> Run {
    let _ = std::fs::remove_file(project.call_log());
    let mut child = project.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("running infra");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn operations(project: &Project) -> Vec<String> {
    project.calls().into_iter().map(|c| c.operation).collect()
}

/// Three dot-separated, non-empty base64url parts.
fn is_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

async fn cognito(moto: &Moto) -> aws_sdk_cognitoidentityprovider::Client {
    aws_sdk_cognitoidentityprovider::Client::new(&sdk_config(moto).await)
}

const EMAIL: &str = "a@example.com";
const PASSWORD: &str = "Correct-Horse-9-Battery";

#[tokio::test(flavor = "multi_thread")]
async fn a_created_user_gets_an_access_token_cognito_accepts_and_deleting_is_idempotent() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let pool = project.physical_id("user_pool");

    let created = infra_stdin(&project, &["user", "create", EMAIL], &format!("{PASSWORD}\n"));
    assert_ok(&created);
    assert!(!created.stdout.contains(PASSWORD) && !created.stderr.contains(PASSWORD), "a password given on stdin is never echoed: {created:?}");
    assert_eq!(operations(&project), ["AdminCreateUser", "AdminSetUserPassword"]);
    let user = cognito(&moto).await.admin_get_user().user_pool_id(&pool).username(EMAIL).send().await.unwrap();
    assert_eq!(user.user_status().map(|s| s.as_str()), Some("CONFIRMED"), "the password is permanent: no NEW_PASSWORD_REQUIRED");
    let attrs: Vec<(&str, &str)> = user.user_attributes().iter().map(|a| (a.name(), a.value().unwrap_or_default())).collect();
    assert!(attrs.contains(&("email", EMAIL)) && attrs.contains(&("email_verified", "true")), "{attrs:?}");

    let again = infra_stdin(&project, &["user", "create", EMAIL], &format!("{PASSWORD}\n"));
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains(&format!("user {EMAIL} already exists")), "{again:?}");

    // `$(infra token …)`: exactly one line on stdout, the access token, which moto's
    // Cognito accepts as one it issued.
    let token = infra_stdin(&project, &["token", EMAIL], &format!("{PASSWORD}\n"));
    assert_ok(&token);
    assert_eq!(token.stdout.lines().count(), 1, "{token:?}");
    let access_token = token.stdout.trim_end_matches('\n');
    assert!(is_jwt(access_token), "{token:?}");
    assert!(!token.stderr.contains(access_token) && !token.stderr.contains(PASSWORD), "{token:?}");
    assert_eq!(operations(&project), ["InitiateAuth"]);
    let me = cognito(&moto).await.get_user().access_token(access_token).send().await.expect("GetUser accepts the access token");
    assert!(me.user_attributes().iter().any(|a| a.name() == "email" && a.value() == Some(EMAIL)), "{me:?}");

    let wrong = infra_stdin(&project, &["token", EMAIL], "Wrong-Password-123\n");
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stderr.contains("wrong email or password"), "{wrong:?}");
    assert_eq!(wrong.stdout, "", "nothing on stdout for `$(…)` to capture");
    assert!(!wrong.stderr.contains("Wrong-Password-123"), "{wrong:?}");

    let deleted = project.infra(&["user", "delete", EMAIL]);
    assert_ok(&deleted);
    assert!(deleted.stdout.contains(&format!("deleted user {EMAIL}")), "{deleted:?}");
    let twice = project.infra(&["user", "delete", EMAIL]);
    assert_ok(&twice);
    assert!(twice.stdout.contains("does not exist"), "{twice:?}");
    let gone = infra_stdin(&project, &["token", EMAIL], &format!("{PASSWORD}\n"));
    assert_eq!(gone.code, 1, "{gone:?}");
    assert!(gone.stderr.contains("wrong email or password"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_password_on_stdin_one_is_generated_printed_once_and_works() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    // Project::command gives stdin /dev/null: not a terminal, and no line.
    let created = project.infra(&["user", "create", EMAIL]);
    assert_ok(&created);
    let lines: Vec<&str> = created.stdout.lines().filter(|l| l.starts_with("password: ")).collect();
    assert_eq!(lines.len(), 1, "{created:?}");
    let password = lines[0].trim_start_matches("password: ");
    assert!(password.len() >= 12, "{created:?}");
    assert!(created.stdout.contains("not store"), "{created:?}");
    assert!(!created.stderr.contains(password), "{created:?}");
    let token = infra_stdin(&project, &["token", EMAIL], &format!("{password}\n"));
    assert_ok(&token);
    assert!(is_jwt(token.stdout.trim()), "{token:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_email_or_weak_password_fails_before_any_aws_call_naming_the_rule() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    for (args, input, message) in [
        (vec!["user", "create", "not-an-email"], "Correct-Horse-9-Battery\n", "is not an email address: no @"),
        (vec!["user", "create", EMAIL], "Short-1a!\n", "at least 12 characters are required"),
        (vec!["user", "create", EMAIL], "correct-horse-9-battery\n", "an uppercase letter (A-Z) is required"),
        (vec!["user", "create", EMAIL], "Correct-Horse-Battery\n", "a digit (0-9) is required"),
        (vec!["user", "create", EMAIL], "CorrectHorse9Battery\n", "a symbol"),
        (vec!["user", "create", EMAIL], "\n", "the password on stdin is empty"),
        (vec!["token", EMAIL], "", "no password on stdin"),
    ] {
        let run = infra_stdin(&project, &args, input);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(message), "{args:?}: {run:?}");
        assert_eq!(project.calls().len(), 0, "{args:?}: no AWS call");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn before_up_every_command_says_to_run_up_first() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    for args in [vec!["user", "delete", EMAIL], vec!["cache", "flush"]] {
        let run = project.infra(&args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&format!("no state for stack \"{STACK}\"")) && run.stderr.contains("run `infra up` first"), "{args:?}: {run:?}");
    }
    let run = infra_stdin(&project, &["token", EMAIL], &format!("{PASSWORD}\n"));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("run `infra up` first"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_flush_calls_flush_stage_cache_and_says_moto_does_not_support_it() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    assert_ok(&project.infra(&["up"]));
    let run = project.infra(&["cache", "flush"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("the endpoint {} does not support FlushStageCache", moto.endpoint)), "{run:?}");
    assert!(!run.stderr.contains("<html") && !run.stderr.contains("<!DOCTYPE"), "no HTML dumped: {run:?}");
    assert!(operations(&project).contains(&"FlushStageCache".to_string()), "{:?}", project.calls());
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_on_an_emulator_says_the_api_cannot_be_invoked_there() {
    let moto = Moto::start();
    let project = Project::new(&moto);
    let run = project.infra(&["smoke", "--quick"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "the stack runs on an emulator (AWS_ENDPOINT_URL={}), where a deployed API Gateway cannot be invoked; run smoke against AWS, or pass --url",
            moto.endpoint
        )),
        "{run:?}"
    );
    assert_eq!(run.stdout, "", "no step pretends to have run: {run:?}");
    assert_eq!(project.calls().len(), 0);
}
