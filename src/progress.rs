//! Live progress per resource: spinners with elapsed time on a terminal, plain lines
//! otherwise (CI logs, pipes). Everything goes to stderr; stdout carries results.
//!
//! A wait deep inside a resource's verbs says what AWS answers (`creating`, `PENDING`) with
//! [`waiting`]: the engine runs each resource's work inside [`Reporter::scope`], so the
//! wait needs no handle on the progress display.

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Off a terminal, a resource that keeps waiting in one state is reported again this often,
/// so a log shows life during a ten-minute Aurora wait.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

pub struct Progress {
    /// Spinners by resource, on a terminal only.
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    started: Mutex<HashMap<String, Instant>>,
    /// Off a terminal: per waiting resource, the state AWS last answered, when the wait
    /// began, and when a line about it was last printed.
    waits: Mutex<HashMap<String, Wait>>,
    verbose: bool,
}

/// Reports `state` of the resource whose work the current task is doing (what AWS answers
/// for it) and how long it has been awaited. Does nothing outside [`Reporter::scope`].
pub fn waiting(state: &str, since: Instant) {
    let _ = REPORTER.try_with(|r| r.progress.waiting(&r.id, state, since.elapsed()));
}

/// Reports a step (a retry, a refusal being waited out) of the current resource.
pub fn step(what: &str) {
    let _ = REPORTER.try_with(|r| r.progress.step(&r.id, what));
}

/// Whether the current resource's progress is drawn on a terminal, where every line of a
/// long step's own output (an image build, its push) is worth showing as the spinner's
/// message; off one, a step is one line.
pub fn on_terminal() -> bool {
    REPORTER.try_with(|r| r.progress.bars.is_some()).unwrap_or(false)
}

struct Wait {
    state: String,
    since: Instant,
    printed: Instant,
}

tokio::task_local! {
    static REPORTER: Reporter;
}

/// Which resource the work of a task is for, and where its progress goes.
#[derive(Clone)]
pub struct Reporter {
    pub id: String,
    pub progress: Arc<Progress>,
}

impl Reporter {
    /// Runs `work` with its waits reported as this resource's.
    pub async fn scope<T>(self, work: impl Future<Output = T>) -> T {
        REPORTER.scope(self, work).await
    }
}

/// `4m12s`, `38s`, `1.4s`: how long something has been awaited, at a glance.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 10 {
        format!("{secs}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Progress {
    pub fn new(verbose: bool) -> Progress {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), Mutex::new(HashMap::new())));
        Progress { bars, started: Mutex::new(HashMap::new()), waits: Mutex::new(HashMap::new()), verbose }
    }

    /// A resource starts a step (`creating`, `waiting for available`, `deleting`, ...).
    pub fn step(&self, id: &str, what: &str) {
        self.started.lock().unwrap().entry(id.to_string()).or_insert_with(Instant::now);
        self.waits.lock().unwrap().remove(id);
        match &self.bars {
            Some(_) => self.bar(id).set_message(what.to_string()),
            None => eprintln!("  {id:<32} {what}"),
        }
    }

    /// A resource waits on AWS, which answers `state`: the spinner shows the state and the
    /// time waited; off a terminal a line is printed when the state changes, and every
    /// [`HEARTBEAT`] while it stays.
    pub fn waiting(&self, id: &str, state: &str, waited: Duration) {
        self.started.lock().unwrap().entry(id.to_string()).or_insert_with(Instant::now);
        match &self.bars {
            Some(_) => self.bar(id).set_message(format!("{state:<12} {}", short_duration(waited))),
            None => {
                let mut waits = self.waits.lock().unwrap();
                let now = Instant::now();
                let since = now.checked_sub(waited).unwrap_or(now);
                if waits.get(id).is_none_or(|w| w.state != state) {
                    eprintln!("  {id:<32} {state:<12} {}", short_duration(waited));
                    waits.insert(id.to_string(), Wait { state: state.to_string(), since, printed: now });
                }
            }
        }
    }

    /// Off a terminal, prints every resource still waiting whose last line is
    /// [`HEARTBEAT`] old, until the progress display is dropped: a log shows that a long
    /// wait goes on, and in which state, at least every 30 s.
    pub fn start_heartbeat(self: &Arc<Self>) {
        if self.bars.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let progress = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(progress) = progress.upgrade() else { return };
                let mut waits = progress.waits.lock().unwrap();
                let now = Instant::now();
                let mut due: Vec<(&String, &mut Wait)> = waits.iter_mut().filter(|(_, w)| now - w.printed >= HEARTBEAT - Duration::from_secs(1)).collect();
                due.sort_by(|a, b| a.0.cmp(b.0));
                for (id, wait) in due {
                    eprintln!("  {id:<32} {:<12} {}", wait.state, short_duration(now - wait.since));
                    wait.printed = now;
                }
            }
        });
    }

    fn bar(&self, id: &str) -> ProgressBar {
        let (multi, bars) = self.bars.as_ref().expect("on a terminal");
        bars.lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("{spinner} {prefix:<32} {msg} ({elapsed})").unwrap());
                bar.set_prefix(id.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
            .clone()
    }

    /// A resource is done; `what` says how (`created vpc-1`, `unchanged`, `deleted`).
    pub fn done(&self, id: &str, what: &str) {
        let quiet = what == "unchanged" && !self.verbose;
        let elapsed = self.started.lock().unwrap().remove(id).map(|s| s.elapsed());
        self.waits.lock().unwrap().remove(id);
        let line = match elapsed {
            Some(e) => format!("✓ {id:<32} {what} in {:.2}s", e.as_secs_f64()),
            None => format!("✓ {id:<32} {what}"),
        };
        self.finish_line(id, &line, quiet);
    }

    pub fn failed(&self, id: &str, error: &str) {
        self.started.lock().unwrap().remove(id);
        self.waits.lock().unwrap().remove(id);
        self.finish_line(id, &format!("✗ {id:<32} {error}"), false);
    }

    /// A free-standing message (warnings, summaries).
    pub fn note(&self, message: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(message);
            }
            None => eprintln!("{message}"),
        }
    }

    fn finish_line(&self, id: &str, line: &str, quiet: bool) {
        match &self.bars {
            Some((multi, bars)) => {
                if let Some(bar) = bars.lock().unwrap().remove(id) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                if !quiet {
                    let _ = multi.println(line);
                }
            }
            None if !quiet => eprintln!("{line}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(short_duration(Duration::from_millis(1400)), "1.4s");
        assert_eq!(short_duration(Duration::from_secs(38)), "38s");
        assert_eq!(short_duration(Duration::from_secs(252)), "4m12s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }
}
