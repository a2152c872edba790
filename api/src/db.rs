//! PostgreSQL access: a few shared tokio-postgres connections on which
//! concurrent queries pipeline, TLS per `DB_SSLMODE` (libpq's meanings),
//! start-up retry, embedded migrations and the queries.
//!
//! Why not a pool with one connection per in-flight request: a GET by id is
//! one tiny query, and tokio-postgres lets many requests share a connection
//! (their queries are written back to back and answered in order). A handful
//! of connections keeps PostgreSQL's backends busy without a checkout, a
//! recycle check or a context switch per request; see the README's profile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DbConfig, SslMode};
use crate::model::{Book, BookInput};

pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

/// `error: cause: cause...` — driver errors keep the useful part (e.g.
/// "Connection refused") in their sources. For logs only, never for clients.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// No connection to the database could be made (the cause, for logs).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database unavailable: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// How to open one connection: settings plus the TLS connectors the mode needs.
struct Connector {
    pg: tokio_postgres::Config,
    mode: SslMode,
    /// TLS without certificate checks (`allow`, `prefer`, `require`).
    tls_unverified: MakeRustlsConnect,
    /// TLS with the certificate checked (`verify-ca`, `verify-full`, or
    /// `require` with a root certificate, as libpq does).
    tls_verified: Option<MakeRustlsConnect>,
}

impl Connector {
    fn new(cfg: &DbConfig) -> Result<Self, StartupError> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.user)
            .password(&cfg.password)
            .dbname(&cfg.name)
            .application_name("books-api")
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let unverified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification(provider.clone())))
            .with_no_client_auth();
        let verified = match (cfg.sslmode, &cfg.sslrootcert) {
            (SslMode::VerifyCa | SslMode::VerifyFull, _) | (SslMode::Require, Some(_)) => {
                let roots = Arc::new(root_store(cfg)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
                let builder =
                    ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
                let config = if cfg.sslmode == SslMode::VerifyFull {
                    builder.dangerous().with_custom_certificate_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnlyVerification(webpki)))
                        .with_no_client_auth()
                };
                Some(MakeRustlsConnect::new(config))
            }
            _ => None,
        };
        Ok(Connector {
            pg,
            mode: cfg.sslmode,
            tls_unverified: MakeRustlsConnect::new(unverified),
            tls_verified: verified,
        })
    }

    async fn attempt(&self, ssl: PgSslMode, verified: bool) -> Result<Client, tokio_postgres::Error> {
        let mut pg = self.pg.clone();
        pg.ssl_mode(ssl);
        let tls = match (&self.tls_verified, verified) {
            (Some(v), true) => v.clone(),
            _ => self.tls_unverified.clone(),
        };
        let (client, connection) = pg.connect(tls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %error_chain(&e), "database connection closed");
            }
        });
        Ok(client)
    }

    /// One connection, negotiated as libpq does for the mode.
    async fn open(&self) -> Result<Client, tokio_postgres::Error> {
        match self.mode {
            SslMode::Disable => self.attempt(PgSslMode::Disable, false).await,
            // Plain first; TLS only if the plain attempt fails.
            SslMode::Allow => match self.attempt(PgSslMode::Disable, false).await {
                Ok(c) => Ok(c),
                Err(plain) => self.attempt(PgSslMode::Require, false).await.map_err(|_| plain),
            },
            // TLS if the server offers it (tokio-postgres falls back to plain
            // when the server answers "no TLS"); plain again if TLS failed.
            SslMode::Prefer => match self.attempt(PgSslMode::Prefer, false).await {
                Ok(c) => Ok(c),
                Err(tls) => self.attempt(PgSslMode::Disable, false).await.map_err(|_| tls),
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.attempt(PgSslMode::Require, self.tls_verified.is_some()).await
            }
        }
    }
}

fn root_store(cfg: &DbConfig) -> Result<RootCertStore, StartupError> {
    let mut roots = RootCertStore::empty();
    match &cfg.sslrootcert {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("DB_SSLROOTCERT {}: {e}", path.display()))? {
                let cert = cert.map_err(|e| format!("DB_SSLROOTCERT {}: {e}", path.display()))?;
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// Certificate verifier for `allow`/`prefer`/`require`: accepts any
/// certificate but still checks the handshake signatures.
#[derive(Debug)]
struct NoCertificateVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not
/// compared with the certificate (libpq's meaning).
#[derive(Debug)]
struct ChainOnlyVerification(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerification {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The shared connections. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

struct Slot {
    current: Mutex<Option<Arc<Conn>>>,
    /// Held while (re)connecting; remembers the last failure so requests that
    /// queued behind a failed attempt fail at once instead of each waiting
    /// for its own connect timeout.
    reconnect: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Slot {
    fn live(&self) -> Option<Arc<Conn>> {
        let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|c| !c.client.is_closed()).cloned()
    }
}

impl Db {
    /// Builds the connection set. Nothing connects yet: see [`connect_with_retry`].
    pub fn new(cfg: &DbConfig) -> Result<Db, StartupError> {
        let slots = (0..cfg.pool_size.max(1))
            .map(|_| Slot { current: Mutex::new(None), reconnect: tokio::sync::Mutex::new(None) })
            .collect();
        Ok(Db { inner: Arc::new(Inner { connector: Connector::new(cfg)?, slots, next: AtomicUsize::new(0) }) })
    }

    /// A dedicated connection outside the shared set (migrations, tests).
    pub async fn open_dedicated(&self) -> Result<Client, tokio_postgres::Error> {
        self.inner.connector.open().await
    }

    /// A shared connection (round robin), reconnecting a closed one.
    pub async fn conn(&self) -> Result<Arc<Conn>, Unavailable> {
        let slots = &self.inner.slots;
        let slot = &slots[self.inner.next.fetch_add(1, Ordering::Relaxed) % slots.len()];
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let asked = Instant::now();
        let mut last_failure = slot.reconnect.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        if let Some((at, e)) = last_failure.as_ref() {
            if *at >= asked {
                return Err(Unavailable(e.clone()));
            }
        }
        let opened = async {
            let client = self.inner.connector.open().await?;
            Conn::new(client).await
        };
        match opened.await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                *last_failure = None;
                Ok(conn)
            }
            Err(e) => {
                let msg = error_chain(&e);
                *last_failure = Some((Instant::now(), msg.clone()));
                Err(Unavailable(msg))
            }
        }
    }

    /// Drops every shared connection (shutdown).
    pub fn close(&self) {
        for slot in self.inner.slots.iter() {
            slot.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Readiness: a shared connection answers `SELECT 1`.
    pub async fn ping(&self) -> Result<(), StartupError> {
        let conn = self.conn().await?;
        conn.client.simple_query("SELECT 1").await?;
        Ok(())
    }
}

/// Connects and migrates on a dedicated connection, retrying with exponential
/// backoff (100 ms doubling, capped at 5 s) until `timeout` has passed in total.
pub async fn connect_with_retry(db: &Db, timeout: Duration) -> Result<(), StartupError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let result = async {
            let mut client = db.open_dedicated().await?;
            migrate(&mut client).await?;
            Ok::<_, StartupError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(attempt, elapsed_ms = start.elapsed().as_millis() as u64, "database ready");
                return Ok(());
            }
            Err(e) => {
                let e = error_chain(e.as_ref());
                let elapsed = start.elapsed();
                if elapsed + delay > timeout {
                    tracing::error!(attempt, error = %e, "database unreachable, giving up");
                    return Err(format!("database not reachable within {}s: {e}", timeout.as_secs()).into());
                }
                tracing::warn!(attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Embedded migrations, applied in order, each once. Their SQL is idempotent
/// as well, so a table created by the Go/gorm version is adopted as is.
pub const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "create_books", include_str!("../migrations/0001_create_books.sql"))];

/// Arbitrary constant key: serializes migrations across replicas starting together.
const MIGRATION_LOCK_KEY: i64 = 0x626f_6f6b_7361_7069; // "booksapi"

/// Applies pending [`MIGRATIONS`] in one transaction under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS books_api_migrations (
            version bigint PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    for (version, name, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM books_api_migrations WHERE version = $1", &[version])
            .await?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO books_api_migrations (version, name) VALUES ($1, $2)", &[version, name])
            .await?;
        tracing::info!(version, name, "migration applied");
    }
    tx.commit().await
}

// Columns as gorm created them; NULLs (rows written by other tools) read as
// the zero values the Go version would have shown.
macro_rules! columns {
    () => {
        "id, created_at, updated_at, deleted_at, COALESCE(title, ''), COALESCE(author, ''), COALESCE(year, 0)"
    };
}

const SQL_GET: &str = concat!("SELECT ", columns!(), " FROM books WHERE id = $1 AND deleted_at IS NULL");
const SQL_LIST_FIRST: &str =
    concat!("SELECT ", columns!(), " FROM books WHERE deleted_at IS NULL ORDER BY id LIMIT $1 OFFSET $2");
const SQL_LIST_AFTER: &str =
    concat!("SELECT ", columns!(), " FROM books WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2");
const SQL_CREATE: &str = concat!(
    "INSERT INTO books (created_at, updated_at, title, author, year) VALUES (now(), now(), $1, $2, $3) RETURNING ",
    columns!()
);
const SQL_UPDATE: &str = concat!(
    "UPDATE books SET title = $2, author = $3, year = $4, updated_at = now() \
     WHERE id = $1 AND deleted_at IS NULL RETURNING ",
    columns!()
);
/// Soft delete, as gorm does: the row stays with `deleted_at` set.
const SQL_DELETE: &str = "UPDATE books SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL";

fn book_from_row(row: &Row) -> Book {
    Book {
        id: row.get(0),
        created_at: row.get(1),
        updated_at: row.get(2),
        deleted_at: row.get(3),
        title: row.get(4),
        author: row.get(5),
        year: row.get(6),
    }
}

/// One shared connection with its statements prepared once.
pub struct Conn {
    pub client: Client,
    get: Statement,
    list_first: Statement,
    list_after: Statement,
    create: Statement,
    update: Statement,
    delete: Statement,
}

impl Conn {
    async fn new(client: Client) -> Result<Conn, tokio_postgres::Error> {
        // Prepared together: the six Parse messages pipeline in one round trip.
        let (get, list_first, list_after, create, update, delete) = tokio::try_join!(
            client.prepare(SQL_GET),
            client.prepare(SQL_LIST_FIRST),
            client.prepare(SQL_LIST_AFTER),
            client.prepare(SQL_CREATE),
            client.prepare(SQL_UPDATE),
            client.prepare(SQL_DELETE),
        )?;
        Ok(Conn { client, get, list_first, list_after, create, update, delete })
    }

    pub async fn get_book(&self, id: i64) -> Result<Option<Book>, tokio_postgres::Error> {
        Ok(self.client.query_opt(&self.get, &[&id]).await?.as_ref().map(book_from_row))
    }

    /// First page of the list: `limit` books after skipping `offset`.
    pub async fn list_first(&self, limit: i64, offset: i64) -> Result<Vec<Book>, tokio_postgres::Error> {
        let rows = self.client.query(&self.list_first, &[&limit, &offset]).await?;
        Ok(rows.iter().map(book_from_row).collect())
    }

    /// Next page of the list (keyset): `limit` books with an id above `after`.
    pub async fn list_after(&self, after: i64, limit: i64) -> Result<Vec<Book>, tokio_postgres::Error> {
        let rows = self.client.query(&self.list_after, &[&after, &limit]).await?;
        Ok(rows.iter().map(book_from_row).collect())
    }

    pub async fn create_book(&self, input: &BookInput) -> Result<Book, tokio_postgres::Error> {
        let row = self.client.query_one(&self.create, &[&input.title, &input.author, &input.year]).await?;
        Ok(book_from_row(&row))
    }

    pub async fn update_book(&self, id: i64, input: &BookInput) -> Result<Option<Book>, tokio_postgres::Error> {
        let row = self.client.query_opt(&self.update, &[&id, &input.title, &input.author, &input.year]).await?;
        Ok(row.as_ref().map(book_from_row))
    }

    pub async fn delete_book(&self, id: i64) -> Result<bool, tokio_postgres::Error> {
        Ok(self.client.execute(&self.delete, &[&id]).await? == 1)
    }
}
