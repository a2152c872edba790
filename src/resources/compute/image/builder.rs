//! The programs that build and push the image — Docker, Podman, daemonless Buildah — behind
//! the same three steps: build, log in (the ECR password on stdin, never in an argument),
//! push. `image_builder = "auto"` takes the first that works here, in that order.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::config::ImageBuilder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Docker,
    Podman,
    Buildah,
}

/// How long a probe (`docker info`, …) may take: a daemon that hangs is not one that works.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a failed step's output shown in its error.
const LAST_LINES: usize = 15;

impl Tool {
    const AUTO_ORDER: [Tool; 3] = [Tool::Docker, Tool::Podman, Tool::Buildah];

    pub fn program(self) -> &'static str {
        match self {
            Tool::Docker => "docker",
            Tool::Podman => "podman",
            Tool::Buildah => "buildah",
        }
    }

    /// What shows that it works: Docker needs its daemon; Podman and Buildah need their
    /// image store.
    fn probe_args(self) -> &'static [&'static str] {
        match self {
            Tool::Docker => &["info", "--format", "{{.ServerVersion}}"],
            Tool::Podman => &["info", "--format", "{{.Store.GraphDriverName}}"],
            Tool::Buildah => &["info"],
        }
    }

    pub fn build_args(self, dockerfile: &str, image: &str, context: &str) -> Vec<String> {
        let mut args = vec!["build".to_string()];
        if self != Tool::Docker {
            // Docker's manifest type (as `docker build` makes), and Buildah caches layers
            // as Docker and Podman do.
            args.extend(["--format", "docker"].map(String::from));
        }
        if self == Tool::Buildah {
            args.push("--layers".into());
        }
        args.extend(["-f", dockerfile, "-t", image, context].map(String::from));
        args
    }

    /// `login` reading the password on stdin. Podman's and Buildah's `login` insist on TLS
    /// unless told otherwise, even for a registry registries.conf marks insecure (their
    /// `push` honours the mark itself).
    pub fn login_args(self, registry: &str, insecure: bool) -> Vec<String> {
        let mut args = ["login", "--username", "AWS", "--password-stdin"].map(String::from).to_vec();
        if insecure && self != Tool::Docker {
            args.push("--tls-verify=false".into());
        }
        args.push(registry.to_string());
        args
    }

    pub fn push_args(self, image: &str) -> Vec<String> {
        ["push", image].map(String::from).to_vec()
    }

    /// Succeeds when the local image store already holds `image` (a build whose push was
    /// cut off), so the next run pushes it without building it again.
    fn exists_args(self, image: &str) -> Vec<String> {
        match self {
            Tool::Docker => ["image", "inspect", image].map(String::from).to_vec(),
            Tool::Podman => ["image", "exists", image].map(String::from).to_vec(),
            Tool::Buildah => ["inspect", "--type", "image", image].map(String::from).to_vec(),
        }
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.program())
    }
}

/// Why a tool does not work here, in a few words.
async fn probe(tool: Tool) -> Result<(), String> {
    let mut command = Command::new(tool.program());
    command.args(tool.probe_args()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let shown = format!("`{} {}`", tool.program(), tool.probe_args()[0]);
    match tokio::time::timeout(PROBE_TIMEOUT, command.output()).await {
        Err(_) => Err(format!("{shown} gave no answer in {}s", PROBE_TIMEOUT.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err("not found on PATH".into()),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output");
            Err(format!("{shown} failed: {first}"))
        }
    }
}

/// The tool `choice` names, once it is known to work; decided once per run.
pub async fn resolve(choice: ImageBuilder) -> Result<Tool, String> {
    static RESOLVED: OnceCell<Result<Tool, String>> = OnceCell::const_new();
    RESOLVED.get_or_init(|| pick(choice)).await.clone()
}

async fn pick(choice: ImageBuilder) -> Result<Tool, String> {
    let candidates: &[Tool] = match choice {
        ImageBuilder::Auto => &Tool::AUTO_ORDER,
        ImageBuilder::Docker => &[Tool::Docker],
        ImageBuilder::Podman => &[Tool::Podman],
        ImageBuilder::Buildah => &[Tool::Buildah],
    };
    let mut tried = Vec::new();
    for &tool in candidates {
        match probe(tool).await {
            Ok(()) => return Ok(tool),
            Err(why) => tried.push(format!("{tool}: {why}")),
        }
    }
    let what = match choice {
        ImageBuilder::Auto => "no image builder works here",
        _ => "the image builder does not work here",
    };
    Err(format!(
        "`image_builder = \"{}\"`: {what} ({}); install and start one of docker, podman or buildah, or set `image` in infra.toml to a prebuilt image URI",
        choice.as_str(),
        tried.join("; ")
    ))
}

/// A step that failed: what ran, how it ended, and its last lines of output.
#[derive(Debug)]
pub struct StepFailure {
    pub message: String,
}

/// Runs one step of `tool`, feeding `stdin` (the password) if any, and passes every line of
/// output (stdout and stderr, with `secret` masked) to `on_line`. On failure the error holds
/// the last lines.
pub async fn run(
    tool: Tool,
    args: &[String],
    stdin: Option<&str>,
    secret: Option<&str>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<Duration, StepFailure> {
    run_program(tool.program(), args, stdin, secret, on_line).await
}

async fn run_program(
    program: &str,
    args: &[String],
    stdin: Option<&str>,
    secret: Option<&str>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<Duration, StepFailure> {
    let started = Instant::now();
    let shown = format!("{program} {}", args.first().map(String::as_str).unwrap_or(""));
    let mask = |line: &str| match secret {
        Some(s) if !s.is_empty() => line.replace(s, "********"),
        _ => line.to_string(),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| StepFailure { message: format!("`{shown}` could not start: {e}") })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.map_err(|e| StepFailure { message: format!("`{shown}`: writing its stdin: {e}") })?;
        pipe.shutdown().await.ok();
    }
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let last = std::sync::Mutex::new(VecDeque::with_capacity(LAST_LINES));
    let collect = |reader| {
        let (last, mask) = (&last, &mask);
        async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = mask(&line);
                on_line(&line);
                let mut last = last.lock().unwrap();
                if last.len() == LAST_LINES {
                    last.pop_front();
                }
                last.push_back(line);
            }
        }
    };
    let (status, (), ()) = tokio::join!(child.wait(), collect(Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), collect(Box::new(stderr)));
    let status = status.map_err(|e| StepFailure { message: format!("`{shown}`: {e}") })?;
    if status.success() {
        return Ok(started.elapsed());
    }
    let last = last.into_inner().unwrap();
    let tail: Vec<String> = last.iter().map(|l| format!("    {l}")).collect();
    Err(StepFailure { message: format!("`{shown}` failed ({status}); its last lines:\n{}", tail.join("\n")) })
}

/// Whether the local image store holds `image`.
pub async fn has_local_image(tool: Tool, image: &str) -> bool {
    Command::new(tool.program())
        .args(tool.exists_args(image))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_an_argument() {
        for tool in Tool::AUTO_ORDER {
            for insecure in [false, true] {
                let args = tool.login_args("123456789012.dkr.ecr.us-east-1.amazonaws.com", insecure);
                assert!(args.contains(&"--password-stdin".to_string()), "{tool}: {args:?}");
                assert!(!args.iter().any(|a| a.starts_with("--password=") || a == "-p" || a == "--password"), "{tool}: {args:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_failed_step_shows_its_last_lines_with_the_secret_masked() {
        // The same runner as the builders', with `sh` standing in for a failing build.
        // One stream, so the order of the last lines is the program's (stdout and stderr are
        // read side by side, and which of the two a line arrives on first is up to the OS).
        let script = "for i in $(seq 1 40); do echo line $i; done; echo 'token s3cr3t'; exit 3";
        let seen = std::sync::Mutex::new(Vec::new());
        let err = run_program("sh", &["-c".into(), script.into()], None, Some("s3cr3t"), &|l: &str| seen.lock().unwrap().push(l.to_string())).await.unwrap_err();
        assert!(err.message.contains("exit status: 3"), "{}", err.message);
        assert!(err.message.contains("line 40") && !err.message.contains("line 20\n"), "{}", err.message);
        assert!(!err.message.contains("s3cr3t") && err.message.contains("token ********"), "{}", err.message);
        assert_eq!(seen.lock().unwrap().len(), 41);
        // What a builder says on stderr is shown, masked, too.
        let err = run_program("sh", &["-c".into(), "echo 'denied for s3cr3t' >&2; exit 1".into()], None, Some("s3cr3t"), &|_: &str| {}).await.unwrap_err();
        assert!(err.message.contains("denied for ********") && !err.message.contains("s3cr3t"), "{}", err.message);
    }
}
