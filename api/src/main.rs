//! books-api binary: configuration from the environment, JSON logs, then
//! [`books_api::run`]. `books-api --healthcheck` probes a running instance.

use std::process::ExitCode;

use books_api::Config;

// mimalloc: glibc malloc/free were a fifth of a GET by id's instructions
// (callgrind, README); mimalloc's thread-local free lists cut that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("books-api: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    if std::env::args().nth(1).as_deref() == Some("--healthcheck") {
        let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(config_default_port());
        return if runtime.block_on(books_api::healthcheck(port)) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }

    let _log_guard = books_api::init_tracing();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(variable = e.var, "{e}");
            eprintln!("books-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = ?config, version = env!("CARGO_PKG_VERSION"), "starting books-api");

    match runtime.block_on(books_api::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "books-api failed");
            eprintln!("books-api: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_default_port() -> u16 {
    books_api::config::DEFAULT_PORT
}
