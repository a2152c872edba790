//! `infra smoke --service` against the real books-api binary on a real PostgreSQL: every
//! step of the walkthrough passes against the service's real answers (POST 200, DELETE 200
//! `{}`), so smoke's expectations cannot drift from what the service does.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const DB_PASSWORD: &str = "smoke-db-secret-4b1e";
const API_PASSWORD: &str = "smoke-api-secret-93c7";

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// The directory with initdb and pg_ctl: `PG_BIN`, `PATH`, else the newest of
/// /usr/lib/postgresql/*/bin.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    if let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find(|d| d.join("pg_ctl").is_file() && d.join("initdb").is_file()) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).expect("PostgreSQL binaries not found: set PG_BIN or install postgresql")
}

/// A throwaway PostgreSQL cluster on a free loopback port, password auth over TCP.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = pg_bin().join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let out = cmd.args(args).env("LC_ALL", "C").stdin(Stdio::null()).output().expect(tool);
        assert!(out.status.success(), "{tool}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("smoke-pg-").tempdir().unwrap();
        let pwfile = dir.path().join("pwfile");
        std::fs::File::create(&pwfile).unwrap().write_all(DB_PASSWORD.as_bytes()).unwrap();
        if is_root() {
            assert!(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { dir, port };
        let data = pg.dir.path().join("data");
        let (data, pwfile) = (data.to_str().unwrap(), pwfile.to_str().unwrap());
        pg.run("initdb", &["-D", data, "-U", "books", "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--locale=C", "-E", "UTF8"]);
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -F", pg.dir.path().display());
        let log = pg.dir.path().join("postgres.log");
        // -w: pg_ctl returns once the server accepts connections.
        pg.run("pg_ctl", &["-D", data, "-l", log.to_str().unwrap(), "-o", &opts, "-w", "-t", "60", "start"]);
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])));
    }
}

/// The books-api binary of this workspace, built if this test run has not built it.
fn books_api_binary() -> PathBuf {
    let sibling = Path::new(env!("CARGO_BIN_EXE_infra")).with_file_name("books-api");
    if !sibling.is_file() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let status = Command::new(env!("CARGO")).args(["build", "-p", "books-api", "--bin", "books-api", "--manifest-path"]).arg(manifest).status().expect("cargo build -p books-api");
        assert!(status.success(), "cargo build -p books-api failed");
    }
    assert!(sibling.is_file(), "no books-api binary at {}", sibling.display());
    sibling
}

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until books-api answers its health check (the process serving is the condition).
fn wait_healthy(service: &mut Service, port: u16, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            panic!("books-api exited with {status}: {}", std::fs::read_to_string(logs).unwrap_or_default());
        }
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).ok().and_then(|mut s| {
            use std::io::Read as _;
            s.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text)
        });
        if answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(Instant::now() < deadline, "books-api not healthy within 60 s: {}", std::fs::read_to_string(logs).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn smoke_against_the_real_service_passes_every_step_with_its_real_answers() {
    let pg = Postgres::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let logs = pg.dir.path().join("books-api.log");
    let mut service = Service(
        Command::new(books_api_binary())
            .env_clear()
            .envs([
                ("BASIC_AUTH_USER", "admin"),
                ("BASIC_AUTH_PASSWORD", API_PASSWORD),
                ("DB_HOST", "127.0.0.1"),
                ("DB_USER", "books"),
                ("DB_PASSWORD", DB_PASSWORD),
                ("DB_NAME", "postgres"),
                ("DB_SSLMODE", "disable"),
                ("BIND_ADDR", "127.0.0.1"),
            ])
            .env("DB_PORT", pg.port.to_string())
            .env("PORT", port.to_string())
            .stdout(std::fs::File::create(&logs).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&mut service, port, &logs);

    // No AWS behind this endpoint: the password comes on stdin, nothing else is needed.
    let project = Project::at("http://127.0.0.1:9");
    let smoke = |password: &str| {
        let mut child = project
            .command(&["smoke", "--service", &format!("http://127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = smoke(API_PASSWORD);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let steps: Vec<String> = lines.iter().map(|l| l.split(':').next().unwrap().replace(|c: char| c.is_ascii_digit(), "N")).collect();
    assert_eq!(
        steps,
        [
            "ok    GET /book",
            "ok    POST /book",
            "ok    GET /book/N without Authorization",
            "ok    GET /book/N with the access token",
            "ok    PUT /book/N",
            "ok    DELETE /book/N",
            "ok    GET /book/N after DELETE",
        ],
        "{stdout}"
    );
    assert!(lines[1].ends_with("expected 200 and a book with an ID, got 200 and ID 1"), "{stdout}");
    assert!(lines[5].ends_with("expected 200 and {}, got 200 and {}"), "{stdout}");
    assert!(stderr.contains("smoke: 7 steps, 0 failed"), "{stderr}");
    assert!(!stdout.contains(API_PASSWORD) && !stderr.contains(API_PASSWORD), "the password was printed");

    // A wrong password is caught at the first step that needs it.
    let out = smoke("not-the-password");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().nth(1).unwrap().starts_with("FAIL  POST /book: expected 200 and a book with an ID, got 401"), "{stdout}");
}
