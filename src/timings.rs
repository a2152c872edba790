//! The last `up` or `down`'s time per resource and the chain that set its wall time, kept
//! beside the local state as `<state-dir>/<stack>.timings.json` for `infra graph` to draw.
//! A sidecar, not a field of the state: the state's format stays as it is, and a lost or
//! stale sidecar costs nothing but the highlight.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTimings {
    pub version: u32,
    /// `up` or `down`.
    pub command: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    /// From the chain's first start to its last end.
    pub chain_seconds: f64,
    /// The chain that set the wall time, first resource first, each with its own time.
    pub chain: Vec<Link>,
    /// Every resource worked on, with its time.
    pub resources: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub seconds: f64,
}

impl RunTimings {
    pub fn new(command: &str, chain: &[(String, Duration)], span: Duration, resources: &BTreeMap<String, Duration>) -> RunTimings {
        RunTimings {
            version: FORMAT_VERSION,
            command: command.to_string(),
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            chain_seconds: span.as_secs_f64(),
            chain: chain.iter().map(|(id, d)| Link { id: id.clone(), seconds: d.as_secs_f64() }).collect(),
            resources: resources.iter().map(|(id, d)| (id.clone(), d.as_secs_f64())).collect(),
        }
    }
}

pub fn path(state_dir: &Path, stack: &str) -> PathBuf {
    state_dir.join(format!("{stack}.timings.json"))
}

/// Writes the sidecar through a temporary file and a rename, so a reader never sees half.
pub fn save(path: &Path, timings: &RunTimings) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(timings)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The sidecar, or `None` when no run has written one.
pub fn load(path: &Path) -> Result<Option<RunTimings>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let timings: RunTimings = serde_json::from_str(&text).with_context(|| format!("{} is not a timings file", path.display()))?;
    if timings.version != FORMAT_VERSION {
        bail!("{}: timings format {} (this infra reads {FORMAT_VERSION})", path.display(), timings.version);
    }
    Ok(Some(timings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_round_trip_through_the_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("state"), "books");
        assert_eq!(load(&p).unwrap(), None);
        let chain = vec![("vpc".to_string(), Duration::from_millis(1500)), ("subnet.db.a".to_string(), Duration::from_secs(2))];
        let all: BTreeMap<String, Duration> = chain.iter().cloned().chain([("sg.db".to_string(), Duration::from_secs(1))]).collect();
        let t = RunTimings::new("up", &chain, Duration::from_secs(4), &all);
        save(&p, &t).unwrap();
        assert_eq!(load(&p).unwrap(), Some(t));
        assert!(p.ends_with("state/books.timings.json"));
        std::fs::write(&p, "{}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("not a timings file"));
    }
}
