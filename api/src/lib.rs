//! books-api: REST service for books, a Rust replacement of the Go
//! "Simple Books API". [`app`] builds the router (tests drive it with
//! `oneshot`); [`run`] is the whole service as the binary runs it.

pub mod access_log;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod model;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;

pub use config::Config;
pub use db::StartupError;

/// Largest accepted request body; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: db::Db,
    pub credentials: Arc<auth::Credentials>,
}

impl AppState {
    pub fn new(db: db::Db, basic_auth_user: &str, basic_auth_password: &str) -> Self {
        AppState { db, credentials: Arc::new(auth::Credentials::new(basic_auth_user, basic_auth_password)) }
    }
}

/// The service's router with all middleware.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/healthz", get(routes::healthz))
        .route("/api/v1/readyz", get(routes::readyz))
        .route("/api-docs", get(routes::api_docs))
        .route("/api/v1/book", get(routes::list_books).post(routes::create_book))
        .route(
            "/api/v1/book/{id}",
            get(routes::get_book).put(routes::update_book).delete(routes::delete_book),
        )
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        // Request id (kept from API Gateway/ALB or made) + one access line.
        .layer(access_log::AccessLogLayer)
        .with_state(state)
}

/// JSON logs on stdout; level from `RUST_LOG` (default `info`).
///
/// Lines are written by background threads, so a slow log pipe never stalls
/// the request workers: tracing-appender's for ordinary lines (whatever is
/// queued goes out in one `write`, through the `BufWriter` it flushes when
/// its queue is empty), and the access log's own, which writes the access
/// lines buffered in the last 50 ms at once. Keep the returned guard alive
/// until exit so buffered lines are flushed.
pub fn init_tracing() -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) =
        tracing_appender::non_blocking(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    LogGuard { _access: access_log::start_writer(), _worker: guard }
}

/// Keeps the log writers alive; on drop, buffered lines are written out.
pub struct LogGuard {
    _access: access_log::WriterGuard,
    _worker: tracing_appender::non_blocking::WorkerGuard,
}

/// Runs the service: pool, start-up retry + migrations, HTTP server until
/// SIGTERM/SIGINT, then waits for in-flight requests and closes the pool.
/// The signal handlers are installed first, so a SIGTERM while start-up is
/// still waiting for the database ends the process cleanly too (as PID 1 in
/// a container an unhandled SIGTERM would be ignored).
pub async fn run(config: Config) -> Result<(), StartupError> {
    let mut shutdown = shutdown_signal()?;

    let db = db::Db::new(&config.db)?;
    tokio::select! {
        ready = db::connect_with_retry(&db, config.db.connect_timeout) => ready?,
        _ = shutdown.changed() => {
            tracing::info!("shutdown requested during start-up");
            return Ok(());
        }
    }

    let addr = SocketAddr::new(config.bind_addr, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "listening");

    let state = AppState::new(db.clone(), &config.basic_auth_user, &config.basic_auth_password);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    db.close();
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Installs SIGTERM/SIGINT handlers now; the receiver changes on the first signal.
fn shutdown_signal() -> Result<tokio::sync::watch::Receiver<()>, StartupError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down, finishing in-flight requests");
        let _ = tx.send(());
    });
    Ok(rx)
}

/// `books-api --healthcheck`: GET /api/v1/healthz on 127.0.0.1:$PORT, for a
/// container HEALTHCHECK in an image without curl. True on HTTP 200.
pub async fn healthcheck(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(std::time::Duration::from_secs(3), attempt).await, Ok(Ok(true)))
}
