//! The state as an object in the team's S3 bucket, `s3://<bucket>/<prefix><stack>.json`,
//! with its lock beside it, `<prefix><stack>.lock`.
//!
//! No DynamoDB: S3's conditional writes do both jobs. Every state write is a PutObject
//! with `If-Match: <the ETag we last read or wrote>` (`If-None-Match: *` for the first), so
//! a write based on a stale copy fails with 412 instead of overwriting: no lost update.
//! The lock is created with `If-None-Match: *` and names its holder. A killed run cannot
//! delete it, so it is a lease: the holder renews it (`If-Match` its own ETag) every third
//! of the lease; a lock not renewed for a whole lease may be taken over (`If-Match` the
//! stale ETag, so two runs never both take it).
//!
//! The bucket is the user's: infra never creates or deletes it, and requires versioning,
//! which keeps every earlier state as an object version.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use futures::future::BoxFuture;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{Backend, LockHolder, State};
use crate::aws::{Aws, RateLimits};

/// Lease of the S3 lock unless `INFRA_LOCK_LEASE_SECONDS` says otherwise. Long enough
/// that a renewal every 10 s survives a slow request or two; short enough that a run
/// killed by CI is taken over within a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How often a run waiting for a live lock looks at it again.
const LOCK_POLL: Duration = Duration::from_millis(500);

/// `s3://bucket/prefix/`, from the config key `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://bucket/optional/prefix/`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url:?} is not an S3 URL like \"s3://my-bucket/infra/\""))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
            && !bucket.contains("..");
        if !bucket_ok {
            return Err(format!(
                "{url:?}: {bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
            ));
        }
        if prefix.contains("//") || prefix.starts_with('/') {
            return Err(format!("{url:?}: the key prefix {prefix:?} has an empty path segment"));
        }
        if let Some(c) = prefix.chars().find(|c| c.is_control() || c.is_whitespace() || "?#\\{}^%`[]\"<>~|".contains(*c)) {
            return Err(format!("{url:?}: the key prefix holds {c:?}; use letters, digits and - _ . / only"));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Url { bucket: bucket.to_string(), prefix })
    }

    pub fn state_key(&self, stack: &str) -> String {
        format!("{}{stack}.json", self.prefix)
    }

    pub fn lock_key(&self, stack: &str) -> String {
        format!("{}{stack}.lock", self.prefix)
    }

    pub fn state_url(&self, stack: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.state_key(stack))
    }

    pub fn lock_url(&self, stack: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key(stack))
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The lease length this run declares in its lock (others judge it by the lock's own value).
fn lease_from_env() -> Result<Duration> {
    match std::env::var("INFRA_LOCK_LEASE_SECONDS") {
        Err(_) => Ok(DEFAULT_LEASE),
        Ok(v) => match v.parse::<u64>() {
            Ok(s) if s >= 2 => Ok(Duration::from_secs(s)),
            _ => bail!("INFRA_LOCK_LEASE_SECONDS={v:?} is not a whole number of seconds >= 2"),
        },
    }
}

/// The lock as read from S3.
#[derive(Debug, Clone)]
pub struct CurrentLock {
    /// `None` when the object is not a lock infra wrote.
    pub holder: Option<LockHolder>,
    pub etag: String,
    pub last_modified: SystemTime,
}

impl CurrentLock {
    pub fn describe(&self) -> String {
        self.holder.as_ref().map(LockHolder::describe).unwrap_or_else(|| "an unknown holder (the lock object is not infra's)".into())
    }

    pub fn lease(&self) -> Duration {
        self.holder.as_ref().and_then(|h| h.lease_seconds).map(Duration::from_secs).unwrap_or(DEFAULT_LEASE)
    }

    /// Time since the holder last renewed, by S3's clock for the renewal and ours for now.
    pub fn age(&self) -> Duration {
        SystemTime::now().duration_since(self.last_modified).unwrap_or_default()
    }
}

/// Bucket and keys, the client and what this run holds.
struct Shared {
    client: Client,
    limits: Arc<RateLimits>,
    url: S3Url,
    stack: String,
    state_key: String,
    lock_key: String,
    /// ETag of the state object as we last read or wrote it; `None`: there was none.
    state_etag: Mutex<Option<String>>,
    /// The lock while held: our holder record and the lock's ETag. Renewals hold it
    /// across their PUT, so a release never races a renewal.
    lock: tokio::sync::Mutex<Option<(LockHolder, String)>>,
    /// Set when another run took the lock from us: every later write fails.
    lost: Mutex<Option<String>>,
}

enum Put {
    /// The new ETag, and whether S3 kept a version of the object.
    Written(String, bool),
    /// 412 (or 409, a concurrent conditional write): the condition no longer holds.
    Conflict,
}

fn is_conflict<E>(err: &SdkError<E, HttpResponse>) -> bool {
    err.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 412 | 409))
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err.code(), Some("NoSuchKey") | Some("NotFound")) || err.raw_response().is_some_and(|r| r.status().as_u16() == 404 && err.code() != Some("NoSuchBucket"))
}

/// An S3 error in words: a missing bucket and access denied say what to do about them.
fn s3_error<E>(operation: &'static str, bucket: &str, target: &str, err: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match (err.code(), status) {
        (Some("NoSuchBucket"), _) => anyhow!(
            "S3 bucket {bucket:?} (config key `state`) does not exist. infra never creates or deletes it: create it with versioning enabled (aws s3api create-bucket --bucket {bucket}; aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled)"
        ),
        (Some("AccessDenied") | Some("AllAccessDisabled") | Some("InvalidAccessKeyId") | Some("SignatureDoesNotMatch"), _) | (_, Some(403)) => {
            anyhow!(
                "access denied to S3 bucket {bucket:?} (config key `state`) during {operation} {target}: {}. The state needs s3:GetBucketVersioning, s3:GetObject, s3:PutObject and s3:DeleteObject there",
                crate::aws::aws_error(operation, target, err)
            )
        }
        _ => anyhow!(crate::aws::aws_error(operation, target, err)),
    }
}

impl Shared {
    fn new(url: &S3Url, aws: &Aws, stack: &str) -> Shared {
        Shared {
            client: aws.state_s3_client(),
            limits: aws.limits.clone(),
            url: url.clone(),
            stack: stack.to_string(),
            state_key: url.state_key(stack),
            lock_key: url.lock_key(stack),
            state_etag: Mutex::new(None),
            lock: tokio::sync::Mutex::new(None),
            lost: Mutex::new(None),
        }
    }

    fn bucket(&self) -> &str {
        &self.url.bucket
    }

    /// Versioning keeps every earlier state, so infra requires it. Checked on the answer
    /// to the lock's PUT (S3 names the new version only in a versioned bucket) rather than
    /// with GetBucketVersioning: one request fewer per run, and moto's answer to that call
    /// does not parse in the Rust SDK.
    fn not_versioned(&self) -> anyhow::Error {
        anyhow!(
            "S3 bucket {:?} (config key `state`) is not versioned; versioning keeps every earlier state, so infra requires it: aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled",
            self.bucket(),
            self.bucket()
        )
    }

    /// The object's text and ETag; `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String, SystemTime)>> {
        self.limits.acquire("s3").await;
        let target = format!("s3://{}/{key}", self.bucket());
        let out = match self.client.get_object().bucket(self.bucket()).key(key).send().await {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", self.bucket(), &target, e)),
        };
        let etag = out.e_tag().map(str::to_string).ok_or_else(|| anyhow!("GetObject {target}: no ETag in the answer"))?;
        let modified = out.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or_else(SystemTime::now);
        let body = out.body.collect().await.with_context(|| format!("reading {target}"))?.into_bytes().to_vec();
        Ok(Some((body, etag, modified)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, if_match: Option<&str>) -> Result<Put> {
        self.limits.acquire("s3").await;
        let req = self.client.put_object().bucket(self.bucket()).key(key).content_type("application/json").body(ByteStream::from(body));
        let req = match if_match {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => {
                let versioned = out.version_id().is_some_and(|v| v != "null");
                Ok(Put::Written(out.e_tag().unwrap_or_default().to_string(), versioned))
            }
            Err(e) if is_conflict(&e) => Ok(Put::Conflict),
            Err(e) => Err(s3_error("PutObject", self.bucket(), &format!("s3://{}/{key}", self.bucket()), e)),
        }
    }

    async fn current_lock(&self) -> Result<Option<CurrentLock>> {
        Ok(self.get(&self.lock_key).await?.map(|(body, etag, last_modified)| CurrentLock {
            holder: serde_json::from_slice(&body).ok(),
            etag,
            last_modified,
        }))
    }

    fn locked_message(&self, current: &CurrentLock, waited: Duration) -> String {
        let lease = current.lease();
        let age = current.age();
        let waiting = if waited.is_zero() {
            "wait for it to finish, pass --lock-wait 2m to wait for it".to_string()
        } else {
            format!("still held after waiting {}", humantime::format_duration(waited))
        };
        format!(
            "state for stack {:?} is locked by {}: lease renewed {}s ago, lapses in {}s if not renewed; {waiting}, or run `infra unlock` if that run is gone (lock {})",
            self.stack,
            current.describe(),
            age.as_secs(),
            lease.saturating_sub(age).as_secs(),
            self.url.lock_url(&self.stack)
        )
    }

    /// Takes the lock: creates it, or takes over one whose lease lapsed, waiting up to
    /// `wait` for a live one.
    async fn acquire(&self, mut mine: LockHolder, wait: Duration) -> Result<()> {
        let started = Instant::now();
        let mut announced = false;
        // A lock whose ETag we have watched stay the same for a whole lease was not
        // renewed, whatever the clocks of its holder and S3 say.
        let mut watched: Option<(String, Instant)> = None;
        loop {
            mine.renewed = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
            let body = serde_json::to_vec(&mine)?;
            if let Put::Written(etag, versioned) = self.put(&self.lock_key, body, None).await? {
                *self.lock.lock().await = Some((mine, etag));
                if !versioned {
                    let _ = self.release().await;
                    return Err(self.not_versioned());
                }
                return Ok(());
            }
            let Some(current) = self.current_lock().await? else {
                // Released between our PUT and GET: try again (briefly spaced, in case S3
                // and a stale read keep disagreeing).
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            if current.holder.as_ref().and_then(|h| h.id.as_ref()) == mine.id.as_ref() {
                // Our own create, retried by the SDK after its answer was lost.
                *self.lock.lock().await = Some((mine, current.etag));
                return Ok(());
            }
            let watched_for = match &watched {
                Some((etag, since)) if *etag == current.etag => since.elapsed(),
                _ => {
                    watched = Some((current.etag.clone(), Instant::now()));
                    Duration::ZERO
                }
            };
            let lease = current.lease();
            let age = current.age().max(watched_for);
            if age > lease {
                let body = serde_json::to_vec(&mine)?;
                match self.put(&self.lock_key, body, Some(&current.etag)).await? {
                    Put::Written(etag, versioned) => {
                        *self.lock.lock().await = Some((mine, etag));
                        if !versioned {
                            let _ = self.release().await;
                            return Err(self.not_versioned());
                        }
                        eprintln!(
                            "took over the state lock of stack {:?} from {}: its {}s lease lapsed {}s ago (last renewed {}s ago); that run is presumed dead",
                            self.stack,
                            current.describe(),
                            lease.as_secs(),
                            (age - lease).as_secs(),
                            age.as_secs()
                        );
                        return Ok(());
                    }
                    Put::Conflict => continue, // someone renewed or took it first: look again
                }
            }
            if started.elapsed() >= wait {
                bail!("{}", self.locked_message(&current, wait));
            }
            if !announced {
                eprintln!(
                    "state for stack {:?} is locked by {}; waiting up to {} for it",
                    self.stack,
                    current.describe(),
                    humantime::format_duration(wait)
                );
                announced = true;
            }
            let left = wait.saturating_sub(started.elapsed());
            tokio::time::sleep(LOCK_POLL.min(left).max(Duration::from_millis(50))).await;
        }
    }

    /// Renews the lease every third of it until released or lost.
    async fn renew(self: Arc<Self>, lease: Duration) {
        loop {
            tokio::time::sleep(lease / 3).await;
            let mut held = self.lock.lock().await;
            let Some((holder, etag)) = held.as_mut() else { return };
            holder.renewed = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
            let body = match serde_json::to_vec(holder) {
                Ok(b) => b,
                Err(_) => return,
            };
            match self.put(&self.lock_key, body, Some(etag)).await {
                Ok(Put::Written(new, _)) => *etag = new,
                Ok(Put::Conflict) => {
                    let current = self.current_lock().await.ok().flatten();
                    match current {
                        Some(c) if c.holder.as_ref().and_then(|h| h.id.as_ref()) == holder.id.as_ref() => *etag = c.etag,
                        other => {
                            let by = other.map(|c| format!("taken over by {}", c.describe())).unwrap_or_else(|| GONE.into());
                            eprintln!("error: this run no longer holds the state lock of stack {:?} ({by}); it writes no more state", self.stack);
                            *self.lost.lock().unwrap() = Some(by);
                            *held = None;
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("renewing the state lock of stack {:?}: {e:#}; retrying", self.stack),
            }
        }
    }

    async fn release(&self) -> Result<()> {
        let Some((_, etag)) = self.lock.lock().await.take() else { return Ok(()) };
        self.limits.acquire("s3").await;
        let target = self.url.lock_url(&self.stack);
        match self.client.delete_object().bucket(self.bucket()).key(&self.lock_key).if_match(etag).send().await {
            Ok(_) => Ok(()),
            // Taken over meanwhile, or already gone: not ours to delete.
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
            Err(e) => Err(s3_error("DeleteObject", self.bucket(), &target, e)).context("releasing the state lock (it lapses by itself)"),
        }
    }

    async fn load(&self) -> Result<Option<State>> {
        let Some((body, etag, _)) = self.get(&self.state_key).await? else { return Ok(None) };
        let location = self.url.state_url(&self.stack);
        let text = String::from_utf8(body).map_err(|_| anyhow!("state {location} is not UTF-8 text; it was left untouched"))?;
        let state = State::parse(&text, &location)?;
        if state.stack != self.stack {
            bail!("state {location} belongs to stack {:?}, not {:?}; it was left untouched", state.stack, self.stack);
        }
        *self.state_etag.lock().unwrap() = Some(etag);
        Ok(Some(state))
    }

    async fn write(&self, body: Vec<u8>) -> Result<()> {
        let location = self.url.state_url(&self.stack);
        if let Some(by) = self.lost.lock().unwrap().clone() {
            bail!("not writing {location}: this run no longer holds the state lock ({by}); nothing was overwritten");
        }
        let expected = self.state_etag.lock().unwrap().clone();
        match self.put(&self.state_key, body.clone(), expected.as_deref()).await? {
            Put::Written(etag, _) => {
                *self.state_etag.lock().unwrap() = Some(etag);
                Ok(())
            }
            Put::Conflict => {
                // Our own write, retried by the SDK after its answer was lost, reads back
                // as exactly what we sent.
                if let Some((current, etag, _)) = self.get(&self.state_key).await? {
                    if current == body {
                        *self.state_etag.lock().unwrap() = Some(etag);
                        return Ok(());
                    }
                }
                // A run paused past its lease finds the state moved on by the run that took
                // its lock: that is the cause to name, whichever of the lease renewal and
                // this write noticed first.
                let ours = self.lock.lock().await.as_ref().and_then(|(holder, _)| holder.id.clone());
                let current = self.current_lock().await.ok().flatten();
                let holder = current.as_ref().and_then(|c| c.holder.as_ref()).and_then(|h| h.id.clone());
                if ours.is_none() || holder != ours {
                    let by = current.map(|c| format!("taken over by {}", c.describe())).unwrap_or_else(|| GONE.into());
                    *self.lost.lock().unwrap() = Some(by.clone());
                    bail!("not writing {location}: this run no longer holds the state lock ({by}); nothing was overwritten");
                }
                let base = expected.map(|e| format!("ETag {e}")).unwrap_or_else(|| "no object".into());
                bail!(
                    "state {location} was changed by another writer since this run read it (it expected {base}; PreconditionFailed); nothing was overwritten. Another run may have taken over the lock: re-run to continue from the current state"
                )
            }
        }
    }
}

/// What a run that lost its lock says when the lock object is no longer there at all.
const GONE: &str = "it is gone: another run took it over and has released it, or `infra unlock` removed it";

/// The S3 backend. Its calls run on a runtime of its own (one worker thread), with a client
/// of its own: the lease is renewed there whatever the engine is doing, and the release on
/// drop can wait for its DeleteObject without needing the engine's runtime to make progress.
pub struct S3Backend {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    location: String,
}

impl S3Backend {
    fn start(url: &S3Url, aws: &Aws, stack: &str) -> Result<S3Backend> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("infra-state-s3")
            .enable_all()
            .build()
            .context("starting the S3 state runtime")?;
        Ok(S3Backend {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            shared: Arc::new(Shared::new(url, aws, stack)),
            location: url.state_url(stack),
        })
    }

    async fn run_async<T: Send + 'static>(&self, f: impl FnOnce(Arc<Shared>) -> T) -> T::Output
    where
        T: Future,
        T::Output: Send + 'static,
    {
        self.handle.spawn(f(self.shared.clone())).await.expect("S3 state task panicked")
    }

    fn run_blocking<T: Future + Send + 'static>(&self, fut: T) -> T::Output
    where
        T::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        super::blocking(|| rx.recv()).expect("S3 state task stopped")
    }

    /// Takes the lock (which also checks the bucket) (waiting up to `wait`), starts renewing it and
    /// reads the state. Any failure after the lock was taken releases it (on drop).
    pub async fn open(url: &S3Url, aws: &Aws, stack: &str, command: &str, wait: Duration) -> Result<(S3Backend, Option<State>)> {
        let lease = lease_from_env()?;
        let backend = S3Backend::start(url, aws, stack)?;
        let mut mine = LockHolder::this_process(command);
        mine.id = Some(uuid::Uuid::new_v4().to_string());
        mine.lease_seconds = Some(lease.as_secs());
        backend.run_async(|s| async move { s.acquire(mine, wait).await }).await?;
        backend.handle.spawn(backend.shared.clone().renew(lease));
        let state = backend.run_async(|s| async move { s.load().await }).await?;
        Ok((backend, state))
    }

    /// Reads the state without the lock.
    pub async fn read(url: &S3Url, aws: &Aws, stack: &str) -> Result<Option<State>> {
        Shared::new(url, aws, stack).load().await
    }

    /// The lock as it is now, for `infra unlock`.
    pub async fn current_lock(url: &S3Url, aws: &Aws, stack: &str) -> Result<Option<CurrentLock>> {
        Shared::new(url, aws, stack).current_lock().await
    }

    /// Deletes the lock if it is still the one with `etag`; `false` when it changed.
    pub async fn delete_lock(url: &S3Url, aws: &Aws, stack: &str, etag: &str) -> Result<bool> {
        let shared = Shared::new(url, aws, stack);
        shared.limits.acquire("s3").await;
        match shared.client.delete_object().bucket(&url.bucket).key(url.lock_key(stack)).if_match(etag).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(false),
            Err(e) => Err(s3_error("DeleteObject", &url.bucket, &url.lock_url(stack), e)),
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> &str {
        &self.location
    }

    fn write(&self, state: State) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let body = state.to_json()?;
            self.run_async(|s| async move { s.write(body).await }).await
        })
    }

    fn release(&self) -> Result<()> {
        let shared = self.shared.clone();
        self.run_blocking(async move { shared.release().await })
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!("warning: {e:#}");
        }
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Allowed inside the engine's runtime, unlike dropping it.
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_name_what_is_wrong() {
        let u = S3Url::parse("s3://team-state/infra/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("team-state", "infra/"));
        assert_eq!(u.state_key("books"), "infra/books.json");
        assert_eq!(u.lock_url("books"), "s3://team-state/infra/books.lock");
        assert_eq!(S3Url::parse("s3://team-state").unwrap().state_key("books"), "books.json");
        assert_eq!(S3Url::parse("s3://team-state/a/b").unwrap().prefix, "a/b/");
        for (bad, says) in [
            ("team-state/infra/", "not an S3 URL"),
            ("https://team-state/infra/", "not an S3 URL"),
            ("s3://", "not an S3 bucket name"),
            ("s3://Team_State/", "not an S3 bucket name"),
            ("s3://ab/", "not an S3 bucket name"),
            ("s3://team-state//x", "empty path segment"),
            ("s3://team-state/in fra/", "holds ' '"),
        ] {
            let err = S3Url::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
