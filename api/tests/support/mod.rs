//! Test harness: a throwaway PostgreSQL cluster per test (initdb in a temp
//! dir, loopback TCP on a free port, unix socket in the temp dir), removed on
//! drop. As root, initdb/pg_ctl run as the `postgres` user via `runuser`.
//! Binaries come from `PG_BIN`, else `PATH`, else `/usr/lib/postgresql/*/bin`.

#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use books_api::config::{DbConfig, SslMode};
use books_api::{app, db, AppState};

pub const DB_USER: &str = "books";
pub const DB_PASSWORD: &str = "pg-test-secret";
pub const DB_NAME: &str = "books";
pub const API_USER: &str = "admin";
pub const API_PASSWORD: &str = "api-test-secret";

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Directory holding initdb, pg_ctl and postgres.
pub fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("pg_ctl");
            if candidate.is_file() && dir.join("initdb").is_file() {
                // Follow /usr/local/bin symlinks to the real bin dir, where postgres lives.
                let real = fs::canonicalize(&candidate).unwrap_or(candidate);
                let real_dir = real.parent().unwrap().to_path_buf();
                if real_dir.join("postgres").is_file() {
                    return real_dir;
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL binaries not found: set PG_BIN, put pg_ctl on PATH or install postgresql")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway PostgreSQL cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    running: bool,
}

impl PgCluster {
    /// initdb only; call [`start`](Self::start) to run it.
    pub fn init() -> Self {
        let dir = tempfile::Builder::new().prefix("books-pg-").tempdir().expect("temp dir");
        if is_root() {
            let st = Command::new("chown").arg("postgres").arg(dir.path()).status().expect("chown");
            assert!(st.success(), "chown postgres {}", dir.path().display());
        }
        let pwfile = dir.path().join("pwfile");
        fs::File::create(&pwfile).unwrap().write_all(DB_PASSWORD.as_bytes()).unwrap();
        if is_root() {
            Command::new("chown").arg("postgres").arg(&pwfile).status().unwrap();
        }
        let cluster = PgCluster { bin: pg_bin(), port: free_port(), running: false, dir };
        cluster.run_pg(
            "initdb",
            &[
                "-D".as_ref(),
                cluster.data().as_os_str(),
                "-U".as_ref(),
                DB_USER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "--no-sync".as_ref(),
                "--locale=C".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        cluster
    }

    /// initdb, start and create the `books` database.
    pub async fn new_running() -> Self {
        let mut c = Self::init();
        c.start();
        c.create_database(DB_NAME).await;
        c
    }

    /// Makes a test CA and a server certificate for `localhost` (openssl CLI),
    /// owned by the cluster's user; returns postgres options enabling TLS and
    /// the CA certificate path.
    pub fn make_tls_files(&self) -> (String, PathBuf) {
        let d = self.dir.path();
        let ext = d.join("server.ext");
        fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let steps: Vec<Vec<&str>> = vec![
            [&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=books-api test CA"]].concat(),
            [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
            vec!["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"],
        ];
        for args in steps {
            let out = Command::new("openssl").args(&args).current_dir(d).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let key = d.join("server.key");
        fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        if is_root() {
            Command::new("chown").arg("postgres").arg(&key).arg(d.join("server.crt")).status().unwrap();
        }
        let opts = format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            d.join("server.crt").display(),
            key.display()
        );
        (opts, d.join("ca.crt"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_pg(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).env("LC_ALL", "C").stdin(Stdio::null()).output().expect(tool);
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&mut self) {
        self.start_with("");
    }

    /// Starts with extra `postgres` options (e.g. `-c ssl=on`).
    pub fn start_with(&mut self, extra: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -F -c max_connections=100 -c shared_buffers=16MB {extra}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.run_pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        self.running = true;
    }

    pub fn stop(&mut self) {
        if self.running {
            self.run_pg(
                "pg_ctl",
                &["-D".as_ref(), self.data().as_os_str(), "-m".as_ref(), "fast".as_ref(), "-w".as_ref(), "stop".as_ref()],
            );
            self.running = false;
        }
    }

    pub async fn create_database(&self, name: &str) {
        let admin = self.connect("postgres").await;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    }

    /// A direct SQL connection (for setup and for checking what the service wrote).
    pub async fn connect(&self, dbname: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(DB_USER)
            .password(DB_PASSWORD)
            .dbname(dbname)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to test postgres");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    pub async fn sql(&self) -> tokio_postgres::Client {
        self.connect(DB_NAME).await
    }

    /// Sets `hba` as the cluster's pg_hba.conf (owned by the cluster's user)
    /// and reloads; the socket stays trusted for setup.
    pub fn set_hba(&self, hba: &str) {
        let path = self.data().join("pg_hba.conf");
        let loaded_before = self.conf_load_time();
        fs::write(&path, format!("local all all trust\n{hba}\n")).unwrap();
        if is_root() {
            Command::new("chown").arg("postgres").arg(&path).status().unwrap();
        }
        self.run_pg("pg_ctl", &["-D".as_ref(), self.data().as_os_str(), "reload".as_ref()]);
        // `pg_ctl reload` only signals the postmaster: wait until it has reloaded, which a
        // new session sees as a later pg_conf_load_time().
        let start = Instant::now();
        while self.conf_load_time() == loaded_before {
            assert!(start.elapsed() < Duration::from_secs(10), "postgres did not reload pg_hba.conf");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// When the postmaster last loaded its configuration, as a new local session sees it.
    fn conf_load_time(&self) -> String {
        let psql = self.bin.join("psql");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&psql);
            c
        } else {
            Command::new(&psql)
        };
        let out = cmd
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", DB_USER, "-d", "postgres", "-Atc", "SELECT pg_conf_load_time()"])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            user: DB_USER.into(),
            password: DB_PASSWORD.into(),
            name: DB_NAME.into(),
            sslmode: SslMode::Disable,
            sslrootcert: None,
            connect_timeout: Duration::from_secs(10),
            pool_size: 4,
        }
    }

    /// Environment for the real binary.
    pub fn service_env(&self, http_port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("BASIC_AUTH_USER", API_USER.into()),
            ("BASIC_AUTH_PASSWORD", API_PASSWORD.into()),
            ("DB_HOST", "127.0.0.1".into()),
            ("DB_PORT", self.port.to_string()),
            ("DB_USER", DB_USER.into()),
            ("DB_PASSWORD", DB_PASSWORD.into()),
            ("DB_NAME", DB_NAME.into()),
            ("DB_SSLMODE", "disable".into()),
            ("PORT", http_port.to_string()),
            ("BIND_ADDR", "127.0.0.1".into()),
        ]
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run_pg(
                    "pg_ctl",
                    &["-D".as_ref(), self.data().as_os_str(), "-m".as_ref(), "immediate".as_ref(), "stop".as_ref()],
                )
            }));
        }
        // TempDir removes the directory.
    }
}

/// A migrated database and the router over it.
pub struct TestApp {
    pub pg: PgCluster,
    pub state: AppState,
    pub router: axum::Router,
}

pub async fn test_app() -> TestApp {
    let pg = PgCluster::new_running().await;
    let db = db::Db::new(&pg.db_config()).unwrap();
    db::connect_with_retry(&db, Duration::from_secs(10)).await.unwrap();
    let state = AppState::new(db, API_USER, API_PASSWORD);
    let router = app(state.clone());
    TestApp { pg, state, router }
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

pub fn good_auth() -> String {
    basic(API_USER, API_PASSWORD)
}

/// The real binary, with its output in files (a full pipe would block it).
pub struct Service {
    pub child: Child,
    pub port: u16,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Service {
    pub fn spawn(env: &[(&str, String)], log_dir: &Path) -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(8080);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout = log_dir.join(format!("service-{n}.out"));
        let stderr = log_dir.join(format!("service-{n}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_books-api"))
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn books-api");
        Service { child, port, stdout, stderr }
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Polls the health check until 200 or `timeout`.
    pub async fn wait_healthy(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("books-api exited early with {status}\n{}", self.logs());
            }
            if let Ok((200, _)) = http(self.port, "GET", "/api/v1/healthz", None, None).await {
                return;
            }
            assert!(start.elapsed() < timeout, "books-api not healthy in {timeout:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < timeout, "books-api still running after {timeout:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Minimal HTTP/1.1 client over loopback TCP: (status, body).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let (status, _, body) = http_full(port, method, path, auth, json).await?;
    Ok((status, body))
}

/// As [`http`], also returning the raw head (status line and headers).
pub async fn http_full(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    json: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    let body = json.unwrap_or("");
    if json.is_some() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body)? } else { body };
    Ok((status, head, body))
}

/// Decodes a complete chunked body; a truncated one is an error.
fn dechunk(mut rest: &str) -> std::io::Result<String> {
    let bad = || std::io::Error::other("truncated or malformed chunked body");
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or_else(bad)?);
        rest = after.get(size + 2..).ok_or_else(bad)?;
    }
}

/// openapi-spec-validator (PyPI), the reference OpenAPI 3 validator:
/// `OPENAPI_SPEC_VALIDATOR`, else the project venv's (`scripts/fuzz_api.sh
/// --venv` installs it, `scripts/test.sh` does that first), else PATH.
pub fn openapi_spec_validator() -> PathBuf {
    if let Some(p) = std::env::var_os("OPENAPI_SPEC_VALIDATOR").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/openapi-spec-validator");
    if venv.exists() {
        return venv;
    }
    "openapi-spec-validator".into()
}

/// Runs openapi-spec-validator on `doc`: Ok, or Err with what it said.
pub fn validate_openapi(doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new(openapi_spec_validator()).arg(&path).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e} (install it with scripts/fuzz_api.sh --venv)", openapi_spec_validator().display())
    });
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}
