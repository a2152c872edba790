//! `source_code_path` for real: `up` builds the image with a real Buildah, logs in with
//! moto's ECR token and pushes to a real registry (`docker-registry` on loopback, reached
//! under moto's ECR host name through standard proxy settings), tagged by the content hash.
//!
//! The image built here is the tests' own: a `FROM scratch` Dockerfile copying one static
//! file, since this machine cannot pull base images. The books-api image (`api/Dockerfile`)
//! goes through the same code with `source_code_path = "api"`, where its base images can be
//! pulled.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use support::*;

const REPOSITORY: &str = "books/books-api";

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:?}");
}

/// The project, its registry, and a `buildah` on PATH that logs each command line it is
/// given (to count builds and pushes, and to see that no password is an argument) before
/// running the real one. Nothing else is on infra's PATH, so `auto` finds no docker or
/// podman whatever this machine has.
struct FromSource {
    project: Project,
    registry: Registry,
    bin: PathBuf,
}

impl FromSource {
    fn new(moto: &Moto) -> FromSource {
        let project = Project::new(moto);
        let registry = Registry::start();
        let app = project.dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n").unwrap();
        std::fs::write(app.join("hello.txt"), "hello\n").unwrap();
        std::fs::write(app.join("notes.log"), "ignored\n").unwrap();
        std::fs::write(app.join(".dockerignore"), "*.log\n").unwrap();
        project.edit_config(&format!("image = \"{TEST_IMAGE}\""), "source_code_path = \"app\"");
        let bin = project.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let real = ["/usr/bin/buildah", "/usr/local/bin/buildah"].into_iter().find(|p| Path::new(p).exists()).expect("buildah (scripts/test.sh installs it)");
        let shim = bin.join("buildah");
        std::fs::write(
            &shim,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin exec {real} \"$@\"\n", project.dir.path().join("buildah.log").display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        FromSource { project, registry, bin }
    }

    fn env_via(&self, proxy: &str) -> Vec<(String, String)> {
        let mut env = self.registry.env_via(proxy);
        env.push(("PATH".into(), self.bin.to_string_lossy().into_owned()));
        env
    }

    fn up_via(&self, proxy: &str) -> Run {
        let env = self.env_via(proxy);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.project.infra_env(&["up"], &env)
    }

    fn up(&self) -> Run {
        self.up_via(&self.registry.addr.clone())
    }

    /// The buildah subcommands run so far (`build`, `login`, `push`, `inspect`, `info`).
    fn buildah_runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.project.dir.path().join("buildah.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn count(&self, subcommand: &str) -> usize {
        self.buildah_runs().iter().filter(|l| l.split_whitespace().next() == Some(subcommand)).count()
    }

    fn app(&self, file: &str) -> PathBuf {
        self.project.dir.path().join("app").join(file)
    }

    fn tag(&self) -> String {
        self.project.physical_id("image").rsplit_once(':').unwrap().1.to_string()
    }
}

fn calls_named(project: &Project, operation: &str) -> usize {
    project.calls().iter().filter(|c| c.operation == operation).count()
}

async fn task_definition_image(aws: &TestAws, project: &Project) -> String {
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let td = ecs.describe_task_definition().task_definition(project.physical_id("task_definition")).send().await.unwrap();
    td.task_definition().unwrap().container_definitions()[0].image().unwrap().to_string()
}

async fn active_revisions(aws: &TestAws) -> usize {
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk);
    let list = ecs
        .list_task_definitions()
        .family_prefix(format!("{STACK}-books-api"))
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    list.task_definition_arns().len()
}

fn assert_no_password(project: &Project, runs: &[&Run], buildah_runs: &[String]) {
    for run in runs {
        assert!(!run.stdout.contains(ECR_PASSWORD) && !run.stderr.contains(ECR_PASSWORD), "password in output: {run:?}");
    }
    let state = project.state().to_string();
    assert!(!state.contains(ECR_PASSWORD), "password in state");
    assert!(!buildah_runs.iter().any(|l| l.contains(ECR_PASSWORD)), "password in an argument: {buildah_runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_from_source_pushes_the_content_tag_once_and_rebuilds_only_when_a_sent_file_changes() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let s = FromSource::new(&moto);

    // First up: one build, one login (password on stdin), one push, by the builder `auto`
    // found (docker and podman are not on PATH).
    let first = s.up();
    assert_ok(&first);
    assert!(first.stderr.contains("building with buildah"), "{first:?}");
    assert!(first.stderr.contains("built in ") && first.stderr.contains("pushed in "), "one line per step: {first:?}");
    assert_eq!((s.count("build"), s.count("login"), s.count("push")), (1, 1, 1), "{:?}", s.buildah_runs());
    let login = s.buildah_runs().into_iter().find(|l| l.starts_with("login")).unwrap();
    assert!(login.contains("--password-stdin") && login.ends_with(ECR_HOST), "{login}");
    let tag = s.tag();
    assert_eq!(tag.len(), 16);
    assert_eq!(s.registry.tags(REPOSITORY), [tag.clone()], "the registry holds the content tag");
    let image = format!("{ECR_HOST}/{REPOSITORY}:{tag}");
    assert_eq!(task_definition_image(&aws, &s.project).await, image, "the task definition names it");
    assert_eq!(s.project.state()["resources"]["image"]["attributes"]["digest"].as_str().unwrap_or("").len(), 71, "sha256:<64 hex>");

    // Unchanged context: no build, no push, no mutating call (so no new revision and no
    // deployment); the registry is only asked whether the tag is there.
    let runs_after_first = s.buildah_runs().len();
    let second = s.up();
    assert_ok(&second);
    assert_eq!(mutating(&s.project.calls()), Vec::<String>::new(), "{second:?}");
    assert_eq!(s.buildah_runs().len(), runs_after_first, "buildah not even probed: {:?}", s.buildah_runs());

    // An ignored file (.dockerignore: *.log) changes nothing either.
    std::fs::write(s.app("notes.log"), "edited\n").unwrap();
    let ignored = s.up();
    assert_ok(&ignored);
    assert_eq!(mutating(&s.project.calls()), Vec::<String>::new(), "{ignored:?}");
    assert_eq!(s.count("build"), 1);

    // One changed file: exactly one build, one push, one new revision, one deployment.
    std::fs::write(s.app("hello.txt"), "hello again\n").unwrap();
    let changed = s.up();
    assert_ok(&changed);
    assert_eq!((s.count("build"), s.count("push")), (2, 2), "{:?}", s.buildah_runs());
    assert_eq!(calls_named(&s.project, "RegisterTaskDefinition"), 1, "{changed:?}");
    assert_eq!(calls_named(&s.project, "UpdateService"), 1, "{changed:?}");
    let new_tag = s.tag();
    assert_ne!(new_tag, tag);
    assert!(s.registry.tags(REPOSITORY).contains(&new_tag));
    assert_eq!(task_definition_image(&aws, &s.project).await, format!("{ECR_HOST}/{REPOSITORY}:{new_tag}"));
    assert_eq!(active_revisions(&aws).await, 1, "the old revision is deregistered");

    // A failed build shows the builder's last lines and stops before the task definition:
    // nothing registered, nothing deployed, the service keeps the last good image.
    std::fs::write(s.app("Dockerfile"), "FROM scratch\nCOPY missing.txt /missing.txt\n").unwrap();
    let failed = s.up();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("buildah build` failed") && failed.stderr.contains("missing.txt"), "{failed:?}");
    assert!(failed.stderr.contains("skipped (they depend on a failed resource)") && failed.stderr.contains("task_definition"), "{failed:?}");
    assert_eq!(calls_named(&s.project, "RegisterTaskDefinition") + calls_named(&s.project, "UpdateService"), 0, "{failed:?}");
    assert_eq!(task_definition_image(&aws, &s.project).await, format!("{ECR_HOST}/{REPOSITORY}:{new_tag}"));

    assert_no_password(&s.project, &[&first, &second, &ignored, &changed, &failed], &s.buildah_runs());
}

/// A relay to the registry that passes everything through until a request to put a
/// manifest starts, then holds it (never forwarded, never answered) and says so: a push cut
/// off once its layers are in the registry, before its tag exists.
fn manifest_holding_relay(upstream: &str) -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (held_tx, held_rx) = mpsc::channel();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let held_tx = held_tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut holding = false;
                while let Ok(n) = from_client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    if !holding && chunk.starts_with(b"PUT ") && chunk.windows(11).any(|w| w == b"/manifests/") {
                        holding = true;
                        let _ = held_tx.send(());
                    }
                    if !holding && to_server.write_all(chunk).is_err() {
                        break;
                    }
                }
            });
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
            });
        }
    });
    (addr, held_rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_killed_midway_resumes_on_the_next_up_without_building_or_uploading_again() {
    let moto = Moto::start();
    let aws = ec2(&moto).await;
    let s = FromSource::new(&moto);
    let (relay, held) = manifest_holding_relay(&s.registry.addr);

    // `up` in a process group of its own, killed with its builder once the push has sent
    // every layer and is putting the manifest.
    let mut up = s.project.command(&["up"]);
    for (k, v) in s.env_via(&relay) {
        up.env(k, v);
    }
    let mut child = up.process_group(0).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    held.recv_timeout(Duration::from_secs(300)).expect("the push reached its manifest");
    let killed = std::process::Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status().unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    assert_eq!(s.registry.tags(REPOSITORY), Vec::<String>::new(), "no tag yet");
    let uploads_before = s.registry.access_log().iter().filter(|l| l.contains("\"POST ") && l.contains("/blobs/uploads/")).count();
    assert!(uploads_before >= 2, "the layer and the config were uploaded: {:?}", s.registry.access_log());
    let log_before = s.registry.access_log().len();

    let resumed = s.up();
    assert_ok(&resumed);
    assert!(resumed.stderr.contains("not building it again"), "{resumed:?}");
    assert_eq!((s.count("build"), s.count("push")), (1, 2), "{:?}", s.buildah_runs());
    let during: Vec<String> = s.registry.access_log().split_off(log_before);
    assert!(!during.iter().any(|l| l.contains("\"POST ") && l.contains("/blobs/uploads/")), "no layer uploaded again: {during:#?}");
    let manifest_puts: Vec<&String> = during.iter().filter(|l| l.contains("\"PUT ") && l.contains("/manifests/")).collect();
    assert_eq!(manifest_puts.len(), 1, "the tag is pushed once: {during:#?}");
    let tag = s.tag();
    assert!(manifest_puts[0].contains(&format!("/manifests/{tag} ")) && manifest_puts[0].contains("\" 201 "), "{manifest_puts:?}");
    assert_eq!(s.registry.tags(REPOSITORY), [tag.clone()]);
    assert_eq!(task_definition_image(&aws, &s.project).await, format!("{ECR_HOST}/{REPOSITORY}:{tag}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_builder_that_works_up_names_each_one_tried_and_changes_nothing() {
    let moto = Moto::start();
    let s = FromSource::new(&moto);
    let empty = s.project.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let env = s.env_via(&s.registry.addr);
    let mut env: Vec<(&str, &str)> = env.iter().filter(|(k, _)| k != "PATH").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("PATH", empty.to_str().unwrap()));
    let run = s.project.infra_env(&["up"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    let line = run.stderr.lines().find(|l| l.contains("image_builder")).unwrap_or_else(|| panic!("{run:?}"));
    for tried in ["docker: not found on PATH", "podman: not found on PATH", "buildah: not found on PATH", "`image_builder = \"auto\"`"] {
        assert!(line.contains(tried), "{line}");
    }
    assert_eq!(mutating(&s.project.calls()), Vec::<String>::new(), "nothing in the stack touched");

    s.project.edit_config("image_builder = \"auto\"", "image_builder = \"podman\"");
    let run = s.project.infra_env(&["up"], &env);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("`image_builder = \"podman\"`: the image builder does not work here (podman: not found on PATH)"), "{run:?}");
}

#[test]
fn a_source_path_without_a_dockerfile_is_an_error_naming_the_key_before_any_aws_call() {
    // Nothing listens at this endpoint: any AWS call would fail differently.
    let project = Project::at("http://127.0.0.1:9");
    project.edit_config(&format!("image = \"{TEST_IMAGE}\""), "source_code_path = \"app\"");
    std::fs::create_dir_all(project.dir.path().join("app")).unwrap();
    let run = project.infra(&["up"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid config key `source_code_path`") && run.stderr.contains("has no Dockerfile"), "{run:?}");
    assert!(project.calls().is_empty());

    std::fs::write(project.dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(project.dir.path().join("app/.dockerignore"), "[\n").unwrap();
    let run = project.infra(&["up"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid config key `source_code_path`") && run.stderr.contains(".dockerignore line 1"), "{run:?}");
}
