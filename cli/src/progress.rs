//! Progress and notes: bars with rate and ETA on stderr, JSON lines on stdout, or nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// One line on stdout. A closed pipe or a full device does not panic (as `println!` does): the
/// failure is remembered, the run goes on, and `main` reports it at the end
/// ([`stdout_failed`]).
pub fn out_line(line: &str) {
    let mut o = std::io::stdout().lock();
    if writeln!(o, "{line}").and_then(|()| o.flush()).is_err() {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
    }
}

/// One line on stderr; an error writing it is ignored (there is nowhere left to report it).
pub fn err_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// True when a line could not be written to stdout.
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Json,
    Quiet,
}

#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub mode: Mode,
}

pub struct Stage {
    mode: Mode,
    name: String,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    start: Instant,
    last_json: Instant,
}

impl Reporter {
    pub fn new(quiet: bool, json: bool) -> Self {
        let mode = if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else {
            Mode::Bars
        };
        Reporter { mode }
    }

    /// A human note on stderr (or a JSON `note` event).
    pub fn note(&self, msg: &str) {
        match self.mode {
            Mode::Bars => err_line(msg),
            Mode::Json => out_line(&json!({"event": "note", "message": msg}).to_string()),
            Mode::Quiet => {}
        }
    }

    /// A structured result line: printed as JSON in `--json` mode, as `text` otherwise.
    pub fn result(&self, value: serde_json::Value, text: &str) {
        match self.mode {
            Mode::Json => out_line(&value.to_string()),
            Mode::Bars => err_line(text),
            Mode::Quiet => {}
        }
    }

    pub fn stage(&self, name: &str, unit: &str, total: u64) -> Stage {
        let bar = (self.mode == Mode::Bars).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(name.to_string());
            b
        });
        if self.mode == Mode::Json {
            out_line(
                &json!({"event": "stage", "stage": name, "total": total, "unit": unit}).to_string(),
            );
        }
        Stage {
            mode: self.mode,
            name: name.to_string(),
            bar,
            total,
            done: 0,
            start: Instant::now(),
            last_json: Instant::now(),
        }
    }
}

impl Stage {
    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if self.mode == Mode::Json
            && (self.last_json.elapsed().as_secs_f64() >= 1.0 || self.done == self.total)
        {
            self.last_json = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            let rate = self.done as f64 / secs.max(1e-9);
            let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
            out_line(&json!({"event": "progress", "stage": self.name, "done": self.done, "total": self.total,
                       "rate_per_s": rate, "eta_s": eta}).to_string());
        }
    }

    /// Seconds since the stage started.
    pub fn finish(self) -> f64 {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64();
        if self.mode == Mode::Json {
            out_line(&json!({"event": "stage_done", "stage": self.name, "done": self.done, "seconds": secs}).to_string());
        }
        secs
    }
}
