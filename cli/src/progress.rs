//! Progress and notes: bars with rate and ETA on stderr, JSON lines on stdout, or nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::time::Instant;

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
            Mode::Bars => eprintln!("{msg}"),
            Mode::Json => println!("{}", json!({"event": "note", "message": msg})),
            Mode::Quiet => {}
        }
    }

    /// A structured result line: printed as JSON in `--json` mode, as `text` otherwise.
    pub fn result(&self, value: serde_json::Value, text: &str) {
        match self.mode {
            Mode::Json => println!("{value}"),
            Mode::Bars => eprintln!("{text}"),
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
            println!(
                "{}",
                json!({"event": "stage", "stage": name, "total": total, "unit": unit})
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
            println!(
                "{}",
                json!({"event": "progress", "stage": self.name, "done": self.done, "total": self.total,
                       "rate_per_s": rate, "eta_s": eta})
            );
        }
    }

    /// Seconds since the stage started.
    pub fn finish(self) -> f64 {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64();
        if self.mode == Mode::Json {
            println!(
                "{}",
                json!({"event": "stage_done", "stage": self.name, "done": self.done, "seconds": secs})
            );
        }
        secs
    }
}
