//! PostgreSQL access: connection pool (deadpool-postgres over tokio-postgres),
//! TLS per `DB_SSLMODE`, start-up retry, embedded migrations and the queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Row;

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

/// Builds the pool. Nothing connects yet: see [`connect_with_retry`].
pub fn build_pool(cfg: &DbConfig) -> Result<Pool, StartupError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .password(&cfg.password)
        .dbname(&cfg.name)
        .application_name("books-api")
        .connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .ssl_mode(match cfg.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(cfg)?);
    let mgr = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(mgr)
        .max_size(cfg.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?;
    Ok(pool)
}

fn tls_config(cfg: &DbConfig) -> Result<ClientConfig, StartupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = match cfg.sslmode {
        // libpq's `require`: encrypted, server certificate not checked.
        SslMode::Require | SslMode::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match &cfg.sslrootcert {
                Some(path) => {
                    for cert in CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("DB_SSLROOTCERT {}: {e}", path.display()))?
                    {
                        let cert = cert.map_err(|e| format!("DB_SSLROOTCERT {}: {e}", path.display()))?;
                        roots.add(cert)?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Certificate verifier for `sslmode=require`: accepts any certificate but
/// still checks the handshake signatures.
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

/// Connects and migrates, retrying with exponential backoff (100 ms doubling,
/// capped at 5 s) until `timeout` has passed in total.
pub async fn connect_with_retry(pool: &Pool, timeout: Duration) -> Result<(), StartupError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let result = async {
            let mut client = pool.get().await?;
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
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
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
const COLUMNS: &str =
    "id, created_at, updated_at, deleted_at, COALESCE(title, ''), COALESCE(author, ''), COALESCE(year, 0)";

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

pub async fn list_books(client: &deadpool_postgres::Client, limit: i64, offset: i64) -> Result<Vec<Book>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM books WHERE deleted_at IS NULL ORDER BY id LIMIT $1 OFFSET $2"
        ))
        .await?;
    let rows = client.query(&stmt, &[&limit, &offset]).await?;
    Ok(rows.iter().map(book_from_row).collect())
}

pub async fn get_book(client: &deadpool_postgres::Client, id: i64) -> Result<Option<Book>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM books WHERE id = $1 AND deleted_at IS NULL"))
        .await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(book_from_row))
}

pub async fn create_book(client: &deadpool_postgres::Client, input: &BookInput) -> Result<Book, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO books (created_at, updated_at, title, author, year) \
             VALUES (now(), now(), $1, $2, $3) RETURNING {COLUMNS}"
        ))
        .await?;
    let row = client.query_one(&stmt, &[&input.title, &input.author, &input.year]).await?;
    Ok(book_from_row(&row))
}

pub async fn update_book(
    client: &deadpool_postgres::Client,
    id: i64,
    input: &BookInput,
) -> Result<Option<Book>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE books SET title = $2, author = $3, year = $4, updated_at = now() \
             WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        ))
        .await?;
    let row = client.query_opt(&stmt, &[&id, &input.title, &input.author, &input.year]).await?;
    Ok(row.as_ref().map(book_from_row))
}

/// Soft delete, as gorm does: the row stays with `deleted_at` set.
pub async fn delete_book(client: &deadpool_postgres::Client, id: i64) -> Result<bool, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("UPDATE books SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL")
        .await?;
    Ok(client.execute(&stmt, &[&id]).await? == 1)
}

/// Cheap liveness query for the health check.
pub async fn ping(client: &deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client.simple_query("SELECT 1").await.map(|_| ())
}
