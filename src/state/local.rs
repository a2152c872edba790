//! The state as a local file `<dir>/<stack>.json`.
//!
//! Written atomically after every change (temp file, fsync, rename, fsync of the
//! directory), the previous version kept as `<stack>.json.backup`, mode 0600. An exclusive
//! advisory lock on `<stack>.lock` is held for the whole run; its contents name the holder.
//! The kernel drops the lock when the process dies, so a local lock needs no lease.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::future::BoxFuture;

use super::{Backend, LockHolder, State};

/// How often a waiting run retries a held local lock.
const LOCK_POLL: Duration = Duration::from_millis(250);

pub struct LocalBackend {
    path: PathBuf,
    location: String,
    /// Kept open: closing the file releases the advisory lock.
    lock: Mutex<Option<File>>,
}

impl LocalBackend {
    /// Locks `<dir>/<stack>.lock` (waiting up to `wait` for a live holder) and reads
    /// `<dir>/<stack>.json` (`None` when there is none yet).
    pub async fn open(dir: &Path, stack: &str, command: &str, wait: Duration) -> Result<(LocalBackend, Option<State>)> {
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
        let deadline = Instant::now() + wait;
        let mut announced = false;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut lock);
                    if Instant::now() >= deadline {
                        let hint = if wait.is_zero() { "; wait for it to finish, or pass --lock-wait 2m to wait" } else { "" };
                        bail!("state for stack {stack:?} is locked by {holder}{hint} (lock file {})", lock_path.display());
                    }
                    if !announced {
                        eprintln!("state for stack {stack:?} is locked by {holder}; waiting up to {}", humantime::format_duration(wait));
                        announced = true;
                    }
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", lock_path.display()))
                }
            }
        }
        let holder = LockHolder::this_process(command);
        lock.set_len(0)?;
        lock.seek(SeekFrom::Start(0))?;
        lock.write_all(serde_json::to_string(&holder)?.as_bytes())?;
        lock.flush()?;

        let path = super::local_state_path(dir, stack);
        let state = read(&path, stack)?;
        let location = path.display().to_string();
        Ok((LocalBackend { path, location, lock: Mutex::new(Some(lock)) }, state))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds a lock file, in words.
pub fn read_holder(lock: &mut File) -> String {
    let mut text = String::new();
    let _ = lock.seek(SeekFrom::Start(0));
    let _ = lock.read_to_string(&mut text);
    match serde_json::from_str::<LockHolder>(&text) {
        Ok(h) => h.describe(),
        Err(_) => "another process (holder unknown)".to_string(),
    }
}

/// Reads and checks a state file; `None` when it does not exist.
pub fn read(path: &Path, stack: &str) -> Result<Option<State>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let state = State::parse(&text, &path.display().to_string())?;
            if state.stack != stack {
                bail!("state file {} belongs to stack {:?}, not {stack:?}; it was left untouched", path.display(), state.stack);
            }
            Ok(Some(state))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading state file {}", path.display())),
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn write(&self, state: State) -> BoxFuture<'_, Result<()>> {
        // fsync blocks: off the executor's thread, so other resources keep moving.
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || write_atomically(&path, &state)).await.context("state writer panicked")?
        })
    }

    fn release(&self) -> Result<()> {
        // Closing the file releases the lock; the holder text stays for the curious.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// Temp file in the same directory, fsync, keep the old file as `.backup`, rename, fsync
/// the directory: a crash at any instant leaves either the old or the new state whole.
pub fn write_atomically(path: &Path, state: &State) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let json = state.to_json()?;
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

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    fn open(dir: &Path, command: &str) -> Result<(LocalBackend, Option<State>)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(LocalBackend::open(dir, "books", command, Duration::ZERO))
    }

    #[test]
    fn atomic_write_keeps_backup_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("books.json");
        let mut s = sample();
        write_atomically(&path, &s).unwrap();
        s.serial = 8;
        write_atomically(&path, &s).unwrap();
        let current = read(&path, "books").unwrap().unwrap();
        let backup_path = path.with_extension("json.backup");
        let backup = read(&backup_path, "books").unwrap().unwrap();
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
        let err = open(dir.path(), "up").err().unwrap().to_string();
        assert!(err.contains("does not parse"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{ not json");
    }

    #[test]
    fn second_open_names_the_lock_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = open(dir.path(), "up").unwrap();
        let err = open(dir.path(), "down").err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("`up`"), "{err}");
        first.release().unwrap();
        assert!(open(dir.path(), "down").is_ok());
    }
}
