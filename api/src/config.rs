//! Configuration from environment variables.
//!
//! Every required variable is named in the error when it is missing or
//! invalid, and the `Debug` implementations redact secrets so the config can
//! be logged at start-up.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default for `DB_CONNECT_TIMEOUT_SECS`: how long start-up keeps retrying the database.
pub const DEFAULT_DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `DB_POOL_SIZE`: shared connections; queries pipeline on them.
pub const DEFAULT_DB_POOL_SIZE: usize = 4;
/// Defaults of the Go original for `DB_HOST`, `DB_PORT`, `DB_SSLMODE`.
pub const DEFAULT_DB_HOST: &str = "localhost";
pub const DEFAULT_DB_PORT: u16 = 5432;
pub const DEFAULT_DB_SSLMODE: SslMode = SslMode::Disable;
/// Default for `PORT`.
pub const DEFAULT_PORT: u16 = 8080;

/// TLS mode for the database connection, with libpq's meaning for each
/// `sslmode` (https://www.postgresql.org/docs/current/libpq-ssl.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain TCP first; TLS (certificate not checked) if that fails.
    Allow,
    /// TLS (certificate not checked) if the server offers it, else plain TCP.
    Prefer,
    /// TLS, certificate not checked — unless `DB_SSLROOTCERT` is set, then as
    /// `verify-ca` (libpq does the same when a root certificate file exists).
    Require,
    /// TLS, certificate chain checked against the roots, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

impl SslMode {
    pub const ALL: &'static str = "disable, allow, prefer, require, verify-ca, verify-full";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "disable" => Some(Self::Disable),
            "allow" => Some(Self::Allow),
            "prefer" => Some(Self::Prefer),
            "require" => Some(Self::Require),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-full" => Some(Self::VerifyFull),
            _ => None,
        }
    }
}

/// Database settings.
#[derive(Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub name: String,
    pub sslmode: SslMode,
    /// Optional PEM bundle for `verify-full` (e.g. the RDS CA bundle); Mozilla roots otherwise.
    pub sslrootcert: Option<PathBuf>,
    /// Total time start-up keeps retrying the first connection.
    pub connect_timeout: Duration,
    pub pool_size: usize,
}

/// Service settings.
#[derive(Clone)]
pub struct Config {
    pub basic_auth_user: String,
    pub basic_auth_password: String,
    pub db: DbConfig,
    pub bind_addr: IpAddr,
    pub port: u16,
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &REDACTED)
            .field("name", &self.name)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("basic_auth_user", &self.basic_auth_user)
            .field("basic_auth_password", &REDACTED)
            .field("db", &self.db)
            .field("bind_addr", &self.bind_addr)
            .field("port", &self.port)
            .finish()
    }
}

/// A missing or invalid environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: environment variable {} {}", self.var, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { var, reason: reason.into() }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `lookup` (the environment in production,
    /// a map in tests). Values are never echoed back in errors, so a secret
    /// put in the wrong variable is not leaked either.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |var: &'static str| -> Result<String, ConfigError> {
            match lookup(var) {
                None => Err(err(var, "is not set")),
                Some(v) if v.trim().is_empty() => Err(err(var, "is empty")),
                Some(v) => Ok(v),
            }
        };
        let optional = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());

        let basic_auth_user = required("BASIC_AUTH_USER")?;
        if basic_auth_user.contains(':') {
            return Err(err("BASIC_AUTH_USER", "must not contain ':'"));
        }
        let basic_auth_password = required("BASIC_AUTH_PASSWORD")?;
        // As the Go original: DB_HOST, DB_PORT and DB_SSLMODE have defaults.
        let host = optional("DB_HOST").unwrap_or_else(|| DEFAULT_DB_HOST.to_string());
        let port = match optional("DB_PORT") {
            None => DEFAULT_DB_PORT,
            Some(v) => parse_port("DB_PORT", &v)?,
        };
        let user = required("DB_USER")?;
        let password = required("DB_PASSWORD")?;
        let name = required("DB_NAME")?;
        let sslmode = match optional("DB_SSLMODE") {
            None => DEFAULT_DB_SSLMODE,
            Some(v) => SslMode::parse(v.trim())
                .ok_or_else(|| err("DB_SSLMODE", format!("must be one of {}", SslMode::ALL)))?,
        };
        let sslrootcert = optional("DB_SSLROOTCERT").map(PathBuf::from);
        let connect_timeout = match optional("DB_CONNECT_TIMEOUT_SECS") {
            None => DEFAULT_DB_CONNECT_TIMEOUT,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => Duration::from_secs(n),
                _ => return Err(err("DB_CONNECT_TIMEOUT_SECS", "must be an integer from 1 to 3600")),
            },
        };
        let pool_size = match optional("DB_POOL_SIZE") {
            None => DEFAULT_DB_POOL_SIZE,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => return Err(err("DB_POOL_SIZE", "must be an integer from 1 to 1000")),
            },
        };
        let port_http = match optional("PORT") {
            None => DEFAULT_PORT,
            Some(v) => parse_port("PORT", &v)?,
        };
        let bind_addr = match optional("BIND_ADDR") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.trim().parse().map_err(|_| err("BIND_ADDR", "must be an IP address"))?,
        };

        Ok(Config {
            basic_auth_user,
            basic_auth_password,
            db: DbConfig {
                host,
                port,
                user,
                password,
                name,
                sslmode,
                sslrootcert,
                connect_timeout,
                pool_size,
            },
            bind_addr,
            port: port_http,
        })
    }
}

fn parse_port(var: &'static str, v: &str) -> Result<u16, ConfigError> {
    match v.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(err(var, "must be a port number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn full() -> HashMap<&'static str, String> {
        [
            ("BASIC_AUTH_USER", "admin"),
            ("BASIC_AUTH_PASSWORD", "s3cret-basic"),
            ("DB_HOST", "db.example"),
            ("DB_PORT", "5432"),
            ("DB_USER", "books"),
            ("DB_PASSWORD", "s3cret-db"),
            ("DB_NAME", "books"),
            ("DB_SSLMODE", "require"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    }

    fn parse(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn complete_environment_parses_with_defaults() {
        let c = parse(&full()).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.db.port, 5432);
        assert_eq!(c.db.sslmode, SslMode::Require);
        assert_eq!(c.db.connect_timeout, Duration::from_secs(60));
        assert_eq!(c.db.pool_size, DEFAULT_DB_POOL_SIZE);
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0");
    }

    #[test]
    fn each_missing_required_variable_is_named_in_the_error() {
        for var in ["BASIC_AUTH_USER", "BASIC_AUTH_PASSWORD", "DB_USER", "DB_PASSWORD", "DB_NAME"] {
            let mut env = full();
            env.remove(var);
            let e = parse(&env).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.to_string().contains(var), "{e}");
            env.insert(var, "  ".into());
            assert_eq!(parse(&env).unwrap_err().var, var, "empty {var}");
        }
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        for (var, bad) in [
            ("DB_PORT", "abc"),
            ("DB_PORT", "0"),
            ("DB_PORT", "70000"),
            ("PORT", "http"),
            ("DB_SSLMODE", "sometimes"),
            ("DB_SSLMODE", "REQUIRE-ish"),
            ("DB_CONNECT_TIMEOUT_SECS", "-1"),
            ("DB_POOL_SIZE", "0"),
            ("BIND_ADDR", "localhost"),
            ("BASIC_AUTH_USER", "a:b"),
        ] {
            let mut env = full();
            env.insert(var, bad.into());
            let e = parse(&env).unwrap_err();
            assert_eq!(e.var, var, "{var}={bad}");
            assert!(!e.to_string().contains(bad) || bad.len() < 3, "value echoed: {e}");
        }
    }

    #[test]
    fn sslmodes_are_honoured() {
        for (s, m) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let mut env = full();
            env.insert("DB_SSLMODE", s.into());
            assert_eq!(parse(&env).unwrap().db.sslmode, m);
        }
    }

    #[test]
    fn db_host_port_and_sslmode_default_as_in_the_go_original() {
        let mut env = full();
        for var in ["DB_HOST", "DB_PORT", "DB_SSLMODE"] {
            env.remove(var);
        }
        let c = parse(&env).unwrap();
        assert_eq!((c.db.host.as_str(), c.db.port, c.db.sslmode), ("localhost", 5432, SslMode::Disable));
        // Empty counts as unset, as `os.Getenv(..) == ""` does in Go.
        for var in ["DB_HOST", "DB_PORT", "DB_SSLMODE"] {
            env.insert(var, String::new());
        }
        let c = parse(&env).unwrap();
        assert_eq!((c.db.host.as_str(), c.db.port, c.db.sslmode), ("localhost", 5432, SslMode::Disable));
    }

    #[test]
    fn optional_variables_are_read() {
        let mut env = full();
        env.insert("PORT", "9090".into());
        env.insert("DB_CONNECT_TIMEOUT_SECS", "5".into());
        env.insert("DB_POOL_SIZE", "4".into());
        env.insert("BIND_ADDR", "127.0.0.1".into());
        let c = parse(&env).unwrap();
        assert_eq!(c.port, 9090);
        assert_eq!(c.db.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.db.pool_size, 4);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1");
    }

    #[test]
    fn debug_output_redacts_passwords() {
        let c = parse(&full()).unwrap();
        let dbg = format!("{c:?} {:?} {c:#?}", c.db);
        assert!(!dbg.contains("s3cret-basic"), "{dbg}");
        assert!(!dbg.contains("s3cret-db"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains("db.example"));
    }
}
