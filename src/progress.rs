//! Live progress per resource: spinners with elapsed time on a terminal, plain lines
//! otherwise (CI logs, pipes). Everything goes to stderr; stdout carries results.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    /// Spinners by resource, on a terminal only.
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    started: Mutex<HashMap<String, Instant>>,
    verbose: bool,
}

impl Progress {
    pub fn new(verbose: bool) -> Progress {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), Mutex::new(HashMap::new())));
        Progress { bars, started: Mutex::new(HashMap::new()), verbose }
    }

    /// A resource starts a step (`creating`, `waiting for available`, `deleting`, ...).
    pub fn step(&self, id: &str, what: &str) {
        self.started.lock().unwrap().entry(id.to_string()).or_insert_with(Instant::now);
        match &self.bars {
            Some((multi, bars)) => {
                let mut bars = bars.lock().unwrap();
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(ProgressStyle::with_template("{spinner} {prefix:<32} {msg} ({elapsed})").unwrap());
                    bar.set_prefix(id.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(what.to_string());
            }
            None => eprintln!("  {id:<32} {what}"),
        }
    }

    /// A resource is done; `what` says how (`created vpc-1`, `unchanged`, `deleted`).
    pub fn done(&self, id: &str, what: &str) {
        let quiet = what == "unchanged" && !self.verbose;
        let elapsed = self.started.lock().unwrap().remove(id).map(|s| s.elapsed());
        let line = match elapsed {
            Some(e) => format!("✓ {id:<32} {what} in {:.2}s", e.as_secs_f64()),
            None => format!("✓ {id:<32} {what}"),
        };
        self.finish_line(id, &line, quiet);
    }

    pub fn failed(&self, id: &str, error: &str) {
        self.started.lock().unwrap().remove(id);
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
