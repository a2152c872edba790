//! The state file `state/<stack>.json`: what `infra` created, by logical id.
//!
//! Written atomically after every resource change (temp file, fsync, rename, fsync of the
//! directory), the previous version kept as `<stack>.json.backup`, mode 0600. An exclusive
//! advisory lock on `<stack>.lock` is held for the whole run; its contents name the holder.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Bumped when the format changes incompatibly; a newer file is refused, never rewritten.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Incremented on every write, so two copies of a state can be ordered.
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

    pub fn parse(text: &str, path: &Path) -> Result<State> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_str(text).with_context(|| {
            format!("state file {} does not parse; it was left untouched (a previous version may be in {}.backup)", path.display(), path.display())
        })?;
        if v.version > STATE_VERSION {
            bail!(
                "state file {} has format version {}, newer than this infra understands ({STATE_VERSION}); upgrade infra. The file was left untouched.",
                path.display(),
                v.version
            );
        }
        serde_json::from_str(text).with_context(|| format!("state file {} does not parse; it was left untouched", path.display()))
    }

    pub fn physical_id(&self, logical: &str) -> Option<&str> {
        self.resources.get(logical).and_then(|r| r.physical_id.as_deref())
    }
}

/// Who holds the lock; written into the lock file so a second run can name it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub since: String,
}

/// An open, locked state: reads come from memory, every change is persisted at once.
pub struct StateStore {
    path: PathBuf,
    state: Mutex<State>,
    /// Kept open: closing the file would release the advisory lock.
    _lock: File,
}

impl StateStore {
    /// Locks `<dir>/<stack>.lock` and loads `<dir>/<stack>.json` (or starts an empty state).
    pub fn open(dir: &Path, stack: &str, command: &str) -> Result<StateStore> {
        fs::create_dir_all(dir).with_context(|| format!("creating state directory {}", dir.display()))?;
        let lock_path = dir.join(format!("{stack}.lock"));
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("opening lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                let holder = match serde_json::from_str::<LockHolder>(&text) {
                    Ok(h) => format!("pid {} on {} running `{}` since {}", h.pid, h.host, h.command, h.since),
                    Err(_) => "another process (holder unknown)".to_string(),
                };
                bail!("state for stack {stack:?} is locked by {holder}; wait for it to finish (lock file {})", lock_path.display());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
        let holder = LockHolder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            command: command.to_string(),
            since: now_rfc3339(),
        };
        lock.set_len(0)?;
        lock.seek(SeekFrom::Start(0))?;
        lock.write_all(serde_json::to_string(&holder)?.as_bytes())?;
        lock.flush()?;

        let path = dir.join(format!("{stack}.json"));
        let state = match fs::read_to_string(&path) {
            Ok(text) => {
                let state = State::parse(&text, &path)?;
                if state.stack != stack {
                    bail!("state file {} belongs to stack {:?}, not {stack:?}; it was left untouched", path.display(), state.stack);
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(stack),
            Err(e) => return Err(e).with_context(|| format!("reading state file {}", path.display())),
        };
        Ok(StateStore { path, state: Mutex::new(state), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> State {
        self.state.lock().unwrap().clone()
    }

    pub fn get(&self, logical: &str) -> Option<ResourceState> {
        self.state.lock().unwrap().resources.get(logical).cloned()
    }

    /// Applies `change` and persists the result before returning.
    pub fn update(&self, change: impl FnOnce(&mut State)) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        let mut next = state.clone();
        change(&mut next);
        if next == *state {
            return Ok(());
        }
        next.serial = state.serial + 1;
        write_atomically(&self.path, &next)?;
        *state = next;
        Ok(())
    }

    pub fn set(&self, logical: &str, resource: ResourceState) -> Result<()> {
        self.update(|s| {
            s.resources.insert(logical.to_string(), resource);
        })
    }

    pub fn remove(&self, logical: &str) -> Result<()> {
        self.update(|s| {
            s.resources.remove(logical);
        })
    }
}

/// Temp file in the same directory, fsync, keep the old file as `.backup`, rename, fsync
/// the directory: a crash at any instant leaves either the old or the new state whole.
pub fn write_atomically(path: &Path, state: &State) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut json = serde_json::to_vec_pretty(state)?;
    json.push(b'\n');
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    if path.exists() {
        let backup = path.with_extension("json.backup");
        fs::copy(path, &backup).with_context(|| format!("keeping backup {}", backup.display()))?;
        fs::set_permissions(&backup, fs::Permissions::from_mode(0o600))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
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
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(State::parse(&text, Path::new("x.json")).unwrap(), s);
    }

    #[test]
    fn newer_version_is_refused_and_named() {
        let text = serde_json::to_string(&sample()).unwrap().replace("\"version\":1", "\"version\":99");
        let err = State::parse(&text, Path::new("x.json")).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
    }

    #[test]
    fn atomic_write_keeps_backup_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        let mut s = sample();
        write_atomically(&path, &s).unwrap();
        s.serial = 8;
        write_atomically(&path, &s).unwrap();
        let current = State::parse(&fs::read_to_string(&path).unwrap(), &path).unwrap();
        let backup_path = path.with_extension("json.backup");
        let backup = State::parse(&fs::read_to_string(&backup_path).unwrap(), &backup_path).unwrap();
        assert_eq!((current.serial, backup.serial), (8, 7));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&backup_path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn corrupt_state_is_an_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        fs::write(&path, "{ not json").unwrap();
        let err = StateStore::open(dir.path(), "books", "up").err().unwrap().to_string();
        assert!(err.contains("does not parse"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{ not json");
    }

    #[test]
    fn second_open_names_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path(), "books", "up").unwrap();
        let err = StateStore::open(dir.path(), "books", "down").err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("`up`"), "{err}");
    }
}
