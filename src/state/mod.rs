//! The stack's state: what `infra` created, by logical id, and the lock held for a run.
//!
//! Two backends behind one trait, so the engine never knows which: a local file
//! (`state/<stack>.json`, [`local`]) or an object in the team's S3 bucket
//! (`<prefix><stack>.json`, [`s3`]). Both persist every change before it is acknowledged,
//! and both hold an exclusive lock for the whole run that names its holder.

mod local;
mod s3;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use local::LocalBackend;
pub use s3::{S3Backend, S3Url};

use crate::aws::Aws;

/// Bumped when the format changes incompatibly; a newer file is refused, never rewritten.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Incremented on every change, so two copies of a state can be ordered.
    pub serial: u64,
    /// Fixed when the state is first created; a state from another lineage is another stack.
    pub lineage: String,
    pub stack: String,
    pub resources: BTreeMap<String, ResourceState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A create call is about to be made (or was made and its answer lost).
    Creating,
    /// The create call returned this physical id.
    Created,
    /// A delete was started; the resource may still exist.
    Deleting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub kind: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_id: Option<String>,
    /// Idempotency token sent with the create, where the API takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Non-secret attributes read back from AWS (CIDR, public IP, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl State {
    pub fn new(stack: &str) -> State {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            stack: stack.to_string(),
            resources: BTreeMap::new(),
        }
    }

    /// `location` names the file or object in messages.
    pub fn parse(text: &str, location: &str) -> Result<State> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_str(text).with_context(|| {
            format!("state {location} does not parse; it was left untouched (a previous version may be in {location}.backup, or among the object's versions in S3)")
        })?;
        if v.version > STATE_VERSION {
            bail!(
                "state {location} has format version {}, newer than this infra understands ({STATE_VERSION}); upgrade infra. It was left untouched.",
                v.version
            );
        }
        serde_json::from_str(text).with_context(|| format!("state {location} does not parse; it was left untouched"))
    }

    /// The text both backends store: pretty JSON and a final newline.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        Ok(json)
    }

    pub fn physical_id(&self, logical: &str) -> Option<&str> {
        self.resources.get(logical).and_then(|r| r.physical_id.as_deref())
    }
}

/// Who holds the lock; written into the lock so a second run can name it. The lease
/// fields are only used by the S3 lock (a local lock dies with its process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Unique per run: tells our own lock from another run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// When the holder last renewed its lease, by its own clock (for people; infra judges
    /// a lease by the object's Last-Modified time, which S3 sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<String>,
}

impl LockHolder {
    pub fn this_process(command: &str) -> LockHolder {
        let user = ["USER", "USERNAME", "LOGNAME"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        LockHolder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            command: command.to_string(),
            since: now_rfc3339(),
            user,
            id: None,
            lease_seconds: None,
            renewed: None,
        }
    }

    /// "pid 4242 on ci-box running `up` since 2026-11-25T21:00:00Z (user alice)".
    pub fn describe(&self) -> String {
        let mut s = format!("pid {} on {} running `{}` since {}", self.pid, self.host, self.command, self.since);
        if let Some(user) = &self.user {
            s.push_str(&format!(" (user {user})"));
        }
        s
    }
}

/// Where the state lives and how to lock it.
#[derive(Debug, Clone)]
pub enum Location {
    Local(std::path::PathBuf),
    S3(S3Url),
}

/// Everything needed to open a state.
pub struct OpenOptions<'a> {
    pub location: &'a Location,
    pub stack: &'a str,
    /// The command, recorded in the lock so a second run can name it.
    pub command: &'a str,
    /// How long to wait for a lock held by a live run; zero fails at once.
    pub lock_wait: Duration,
}

/// A storage backend: the engine sees only [`StateStore`]. Opening a backend takes the
/// lock and reads the state; it is released on [`Backend::release`] or drop.
pub trait Backend: Send + Sync {
    /// A path or an `s3://` URL, for messages.
    fn location(&self) -> &str;
    /// Persists `state` whole, replacing the copy this backend last read or wrote, and
    /// fails without changing anything when that copy is no longer the current one.
    fn write(&self, state: State) -> BoxFuture<'_, Result<()>>;
    /// Releases the lock (idempotent; also done on drop).
    fn release(&self) -> Result<()>;
}

/// Opens the backend of `location`: takes the lock, reads the state (or starts an empty one).
pub async fn open_backend(opts: &OpenOptions<'_>, aws: &Aws) -> Result<(Box<dyn Backend>, State)> {
    match opts.location {
        Location::Local(dir) => {
            let (backend, state) = LocalBackend::open(dir, opts.stack, opts.command, opts.lock_wait).await?;
            Ok((Box::new(backend), state.unwrap_or_else(|| State::new(opts.stack))))
        }
        Location::S3(url) => {
            let (backend, state) = S3Backend::open(url, aws, opts.stack, opts.command, opts.lock_wait).await?;
            Ok((Box::new(backend), state.unwrap_or_else(|| State::new(opts.stack))))
        }
    }
}

/// Reads the state without taking the lock (outputs, pull): both backends replace the
/// state whole, so a concurrent run never shows a torn one. `None` when there is none.
pub async fn read(location: &Location, stack: &str, aws: Option<&Aws>) -> Result<Option<(State, String)>> {
    match location {
        Location::Local(dir) => {
            let path = dir.join(format!("{stack}.json"));
            let state = local::read(&path, stack)?;
            Ok(state.map(|s| (s, path.display().to_string())))
        }
        Location::S3(url) => {
            let aws = aws.ok_or_else(|| anyhow!("reading {}: no AWS configuration", url.state_url(stack)))?;
            let state = S3Backend::read(url, aws, stack).await?;
            Ok(state.map(|s| (s, url.state_url(stack))))
        }
    }
}

/// An open, locked state: reads come from memory, every change is persisted before it
/// is acknowledged.
///
/// Concurrent changes are committed in groups: while one write is in flight, the changes
/// made meanwhile wait and go out together in the next write, and each `update` returns
/// only once a write holding its change has succeeded. The executor drives every resource
/// from one task, so `update` is async: a resource waiting for its write lets the others
/// run (and queue their changes) instead of stalling the whole run for a round trip.
pub struct StateStore {
    backend: Box<dyn Backend>,
    inner: Mutex<Inner>,
    /// One write at a time; changes made while it is held go out in the next write.
    writer: tokio::sync::Mutex<()>,
}

struct Inner {
    /// What has been written: what readers see.
    persisted: State,
    /// `persisted` plus the changes not yet written.
    latest: State,
    /// Tickets of the changes applied to `latest`, in order.
    next_ticket: u64,
    /// Every change with a ticket up to this one is persisted.
    durable: u64,
    /// Every change with a ticket up to this one (and above `durable`) was dropped by a
    /// failed write; its `update` returns `failure`.
    failed: u64,
    failure: String,
    writes: usize,
}

impl Inner {
    /// `Some` once the change with `ticket` is settled: written, or dropped by a failure.
    fn settled(&self, ticket: u64) -> Option<Result<()>> {
        if self.durable >= ticket {
            Some(Ok(()))
        } else if self.failed >= ticket {
            Some(Err(anyhow!("{}", self.failure)))
        } else {
            None
        }
    }
}

impl StateStore {
    pub fn new(backend: Box<dyn Backend>, state: State) -> StateStore {
        StateStore {
            backend,
            inner: Mutex::new(Inner {
                persisted: state.clone(),
                latest: state,
                next_ticket: 0,
                durable: 0,
                failed: 0,
                failure: String::new(),
                writes: 0,
            }),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens the state at `opts.location`, waiting up to `opts.lock_wait` for its lock.
    pub async fn open(opts: &OpenOptions<'_>, aws: &Aws) -> Result<StateStore> {
        let (backend, state) = open_backend(opts, aws).await?;
        Ok(StateStore::new(backend, state))
    }

    /// A path or an `s3://` URL, for messages.
    pub fn location(&self) -> &str {
        self.backend.location()
    }

    /// How many writes reached the backend.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// How many changes were made (each acknowledged only once written; one write may
    /// carry several).
    pub fn changes(&self) -> u64 {
        self.lock().next_ticket
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> State {
        self.lock().persisted.clone()
    }

    pub fn get(&self, logical: &str) -> Option<ResourceState> {
        self.lock().persisted.resources.get(logical).cloned()
    }

    /// Applies `change` and persists the result before returning.
    pub async fn update(&self, change: impl FnOnce(&mut State)) -> Result<()> {
        let ticket = {
            let mut inner = self.lock();
            let mut next = inner.latest.clone();
            change(&mut next);
            if next == inner.latest {
                return Ok(());
            }
            next.serial = inner.latest.serial + 1;
            inner.latest = next;
            inner.next_ticket += 1;
            inner.next_ticket
        };
        let _writer = self.writer.lock().await;
        // The write we waited for may have carried this change already.
        let (batch, upto) = {
            let inner = self.lock();
            if let Some(result) = inner.settled(ticket) {
                return result;
            }
            (inner.latest.clone(), inner.next_ticket)
        };
        let result = self.backend.write(batch.clone()).await;
        let mut inner = self.lock();
        inner.writes += 1;
        match result {
            Ok(()) => {
                inner.durable = upto;
                inner.persisted = batch;
                Ok(())
            }
            Err(e) => {
                // Drop every change not persisted, so memory never runs ahead of what is
                // stored; each of their callers gets this error.
                inner.failed = inner.next_ticket;
                inner.failure = format!("{e:#}");
                inner.latest = inner.persisted.clone();
                Err(e)
            }
        }
    }

    pub async fn set(&self, logical: &str, resource: ResourceState) -> Result<()> {
        self.update(|s| {
            s.resources.insert(logical.to_string(), resource);
        })
        .await
    }

    pub async fn remove(&self, logical: &str) -> Result<()> {
        self.update(|s| {
            s.resources.remove(logical);
        })
        .await
    }
}

/// Runs a blocking wait (the S3 backend's drop): on the multi-threaded runtime the worker
/// hands its other tasks to another thread first, so calls in flight keep moving.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The local path of `<dir>/<stack>.json`.
pub fn local_state_path(dir: &Path, stack: &str) -> std::path::PathBuf {
    dir.join(format!("{stack}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    pub(super) fn sample() -> State {
        let mut s = State::new("books");
        s.serial = 7;
        s.resources.insert(
            "vpc".into(),
            ResourceState {
                kind: "vpc".into(),
                phase: Phase::Created,
                physical_id: Some("vpc-123".into()),
                client_token: None,
                attributes: [("cidr".to_string(), "10.0.0.0/16".to_string())].into(),
            },
        );
        s
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = sample();
        let text = String::from_utf8(s.to_json().unwrap()).unwrap();
        assert_eq!(State::parse(&text, "x.json").unwrap(), s);
    }

    #[test]
    fn newer_version_is_refused_and_named() {
        let text = serde_json::to_string(&sample()).unwrap().replace("\"version\":1", "\"version\":99");
        let err = State::parse(&text, "x.json").unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }

    #[test]
    fn old_lock_files_without_lease_fields_still_parse() {
        let h: LockHolder = serde_json::from_str(r#"{"pid":4242,"host":"ci-box","command":"up","since":"2026-11-25T21:00:00Z"}"#).unwrap();
        assert_eq!(h.describe(), "pid 4242 on ci-box running `up` since 2026-11-25T21:00:00Z");
    }

    /// A backend that records what it was asked to write, slowly, and fails on demand.
    struct Recording {
        writes: Mutex<Vec<State>>,
        fail_next: Mutex<bool>,
    }

    impl Backend for Arc<Recording> {
        fn location(&self) -> &str {
            "memory"
        }
        fn write(&self, state: State) -> BoxFuture<'_, Result<()>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
                    bail!("injected failure");
                }
                self.writes.lock().unwrap().push(state);
                Ok(())
            })
        }
        fn release(&self) -> Result<()> {
            Ok(())
        }
    }

    fn resource(id: &str) -> ResourceState {
        ResourceState { kind: "vpc".into(), phase: Phase::Created, physical_id: Some(id.into()), client_token: None, attributes: BTreeMap::new() }
    }

    #[tokio::test]
    async fn concurrent_changes_are_committed_together_and_each_is_durable_when_acknowledged() {
        let rec = Arc::new(Recording { writes: Mutex::default(), fail_next: Mutex::new(false) });
        let store = StateStore::new(Box::new(rec.clone()), State::new("books"));
        // As the executor does: many resources in one task, each awaiting its write.
        let changes = (0..16).map(|i| {
            let (store, rec) = (&store, &rec);
            async move {
                store.set(&format!("r{i}"), resource(&format!("id-{i}"))).await.unwrap();
                // Acknowledged means a completed write holds the change.
                assert!(rec.writes.lock().unwrap().iter().any(|s| s.resources.contains_key(&format!("r{i}"))));
            }
        });
        futures::future::join_all(changes).await;
        let writes = rec.writes.lock().unwrap();
        assert_eq!(writes.len(), 2, "16 concurrent changes: the first alone, then the 15 that queued behind it");
        let last = writes.last().unwrap();
        assert_eq!(last.resources.len(), 16);
        assert_eq!(last.serial, 16, "serial counts changes, not writes");
        assert!(writes.windows(2).all(|w| w[0].serial < w[1].serial));
        assert_eq!(store.snapshot(), *last);
        assert_eq!((store.writes(), store.changes()), (2, 16));
    }

    #[tokio::test]
    async fn a_failed_write_drops_its_changes_and_later_changes_still_persist() {
        let rec = Arc::new(Recording { writes: Mutex::default(), fail_next: Mutex::new(false) });
        let store = StateStore::new(Box::new(rec.clone()), State::new("books"));
        store.set("a", resource("id-a")).await.unwrap();
        *rec.fail_next.lock().unwrap() = true;
        let err = store.set("b", resource("id-b")).await.unwrap_err().to_string();
        assert!(err.contains("injected failure"), "{err}");
        assert!(store.get("b").is_none(), "a change that was not persisted is visible");
        store.set("c", resource("id-c")).await.unwrap();
        let last = rec.writes.lock().unwrap().last().unwrap().clone();
        assert_eq!(last.resources.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(store.snapshot(), last);
    }
}
