//! Progress reporting as a small trait, so the library never depends on the terminal UI, and
//! the [`Recorder`] that turns a build's raw progress into named, timed steps and a build log.
//!
//! The library calls a [`Reporter`]; the binary renders it (bars on a terminal, one line per
//! step when piped, nothing with `--quiet`). This module owns the line protocol between the
//! stage child and the parent — `ingot: step: NAME` starts a step, `ingot: output: SOURCE: LINE`
//! is a line that dpkg or a script printed — and the build log. It must never write to the
//! terminal itself.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Receives progress from long-running library work. Implementations must be cheap.
pub trait Reporter: Send + Sync {
    /// A stage begins (`fetch`, `install`, …) with `total` units (bytes or items), if known.
    fn begin(&self, stage: &str, total: Option<u64>);
    /// `amount` more units of the current stage are done.
    fn advance(&self, amount: u64);
    /// A human-readable line about the current stage (build-log material, not a result).
    fn message(&self, line: &str);
    /// The current stage is over; `summary` says what it did (and, from a [`Recorder`], how
    /// long it took).
    fn finish(&self, summary: &str);
    /// A build-log line: what a program run inside the image printed (`SOURCE: LINE`, e.g.
    /// `dpkg: Setting up …`) or the stage's own detail (`installing 150 packages`). Only a
    /// verbose renderer shows it.
    fn output(&self, _line: &str) {}
}

/// Says nothing (`--quiet`, library use, tests).
pub struct Silent;

impl Reporter for Silent {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn finish(&self, _: &str) {}
}

/// Tag of a stage-child line that starts a named step of the stage.
pub const STEP_TAG: &str = "ingot: step: ";
/// Tag of a stage-child line that a program inside the image printed.
pub const OUTPUT_TAG: &str = "ingot: output: ";
/// Lines of output shown when a step fails.
pub const FAILURE_TAIL: usize = 20;

/// The child's marker for the start of step `name` (`install`, `provision`, `cleanup`,
/// `export`).
pub fn step_line(name: &str) -> String {
    format!("{STEP_TAG}{name}")
}

/// The child's marker for one line that `source` (dpkg, a script's name) printed.
pub fn output_line(source: &str, line: &str) -> String {
    format!("{OUTPUT_TAG}{source}: {line}")
}

/// How long one step of a build took (`--json` results and the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    /// `archive`, `resolve`, `fetch`, `install`, `provision`, `cleanup`, `export`, `verify`.
    pub name: String,
    /// Wall-clock seconds (milliseconds precision).
    pub seconds: f64,
}

struct Open {
    name: String,
    started: Instant,
    /// Packages configured (`dpkg: Setting up …`) during `install`.
    configured: u64,
    /// Packages unpacked (`dpkg: Unpacking …`) during `install`.
    unpacked: u64,
    /// Units advanced (bytes for `fetch` and `export`).
    advanced: u64,
}

struct State {
    open: Option<Open>,
    times: Vec<StageTime>,
    /// Lines before the log file exists.
    pending: Vec<String>,
    log: Option<(PathBuf, std::fs::File)>,
    tail: VecDeque<String>,
    packages: u64,
    /// The current step was entered through a `ingot: step:` line (inside `stage`).
    in_stage: bool,
}

/// Wraps the renderer for one build: names and times every step, routes the stage child's
/// lines (steps, program output, progress), counts dpkg's packages for the install bar, and
/// writes everything to the build log.
pub struct Recorder<'a> {
    inner: &'a dyn Reporter,
    state: Mutex<State>,
}

impl<'a> Recorder<'a> {
    /// A recorder in front of `inner`; the log is kept in memory until [`Recorder::open_log`].
    pub fn new(inner: &'a dyn Reporter) -> Recorder<'a> {
        Recorder {
            inner,
            state: Mutex::new(State {
                open: None,
                times: Vec::new(),
                pending: Vec::new(),
                log: None,
                tail: VecDeque::with_capacity(FAILURE_TAIL),
                packages: 0,
                in_stage: false,
            }),
        }
    }

    /// The number of packages the install step will configure (its bar's total).
    pub fn expect_packages(&self, n: usize) {
        self.with(|s| s.packages = n as u64);
    }

    /// Start writing the build log to `file` (at `path`), beginning with every line so far.
    pub fn open_log(&self, path: &Path, mut file: std::fs::File) -> std::io::Result<()> {
        let pending = self.with(|s| std::mem::take(&mut s.pending));
        for line in &pending {
            writeln!(file, "{line}")?;
        }
        self.with(|s| s.log = Some((path.to_path_buf(), file)));
        Ok(())
    }

    /// Flush and close the log; returns its path.
    pub fn close_log(&self) -> Option<PathBuf> {
        self.with(|s| {
            s.log.take().map(|(path, mut file)| {
                let _ = file.flush();
                let _ = file.sync_all();
                path
            })
        })
    }

    /// Every finished step with its duration, in order.
    pub fn times(&self) -> Vec<StageTime> {
        self.with(|s| s.times.clone())
    }

    /// The last [`FAILURE_TAIL`] lines of the log (progress and program output, without the
    /// child's own error line, which the caller reports).
    pub fn tail(&self) -> Vec<String> {
        self.with(|s| s.tail.iter().cloned().collect())
    }

    /// Write a line to the build log only (not to the renderer, not to the tail).
    pub fn log(&self, line: &str) {
        self.with(|s| write_log(s, line, false));
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Close the open step (if any) with `summary`, record its time, tell the renderer.
    fn close(&self, summary: Option<&str>) {
        let closed = self.with(|s| {
            let open = s.open.take()?;
            let seconds = (open.started.elapsed().as_millis() as f64) / 1000.0;
            s.times.push(StageTime {
                name: open.name.clone(),
                seconds,
            });
            let what = match summary {
                Some(text) => text.to_string(),
                None => default_summary(&open, s.packages),
            };
            let line = format!("{what} ({seconds:.1} s)");
            write_log(s, &format!("{}: {line}", open.name), false);
            Some(line)
        });
        if let Some(line) = closed {
            self.inner.finish(&line);
        }
    }

    fn open(&self, name: &str, total: Option<u64>, in_stage: bool) {
        self.with(|s| {
            s.open = Some(Open {
                name: name.to_string(),
                started: Instant::now(),
                configured: 0,
                unpacked: 0,
                advanced: 0,
            });
            s.in_stage = in_stage;
            write_log(s, &format!("== {name}"), false);
        });
        self.inner.begin(name, total);
    }
}

fn default_summary(open: &Open, packages: u64) -> String {
    match open.name.as_str() {
        "install" => format!(
            "{} of {packages} packages configured",
            open.configured.max(open.unpacked)
        ),
        "export" => format!("{:.1} MiB written", open.advanced as f64 / 1048576.0),
        _ => "done".to_string(),
    }
}

fn write_log(s: &mut State, line: &str, tail: bool) {
    if tail {
        if s.tail.len() == FAILURE_TAIL {
            s.tail.pop_front();
        }
        s.tail.push_back(line.to_string());
    }
    match &mut s.log {
        Some((_, file)) => {
            let _ = writeln!(file, "{line}");
        }
        None => s.pending.push(line.to_string()),
    }
}

impl Reporter for Recorder<'_> {
    fn begin(&self, stage: &str, total: Option<u64>) {
        self.close(None);
        // The stage's own steps are announced by the child (`ingot: step:`); until the first
        // one, time spent starting the child counts towards it.
        if stage == "stage" {
            self.with(|s| s.in_stage = true);
            return;
        }
        self.open(stage, total, false);
    }

    fn advance(&self, amount: u64) {
        self.with(|s| {
            if let Some(open) = &mut s.open {
                open.advanced += amount;
            }
        });
        self.inner.advance(amount);
    }

    fn message(&self, line: &str) {
        if let Some(program_line) = line.strip_prefix(OUTPUT_TAG) {
            self.output(program_line);
        } else if let Some(step) = line.strip_prefix(STEP_TAG) {
            let total = if step == "install" {
                Some(self.with(|s| s.packages)).filter(|n| *n > 0)
            } else {
                None
            };
            self.close(None);
            self.open(step, total, true);
        } else if line.starts_with("error: ") {
            // The child's failure line: the caller reports the error once, from the result.
            self.with(|s| write_log(s, line, false));
        } else if self.with(|s| s.in_stage) {
            // The stage child's own progress: detail for the log, not a line per event.
            self.with(|s| write_log(s, line, true));
            self.inner.output(line);
        } else {
            self.with(|s| write_log(s, line, true));
            self.inner.message(line);
        }
    }

    fn finish(&self, summary: &str) {
        // The stage's `finish("done")` ends its last step with that step's own summary.
        let in_stage = self.with(|s| s.in_stage);
        if in_stage {
            self.with(|s| s.in_stage = false);
            self.close(None);
        } else {
            self.close(Some(summary));
        }
    }

    fn output(&self, line: &str) {
        let advance = self.with(|s| {
            write_log(s, line, true);
            let open = s.open.as_mut()?;
            if open.name != "install" {
                return None;
            }
            let text = line.strip_prefix("dpkg: ")?;
            if text.starts_with("Setting up ") {
                open.configured += 1;
                Some(1)
            } else if text.starts_with("Unpacking ") {
                open.unpacked += 1;
                None
            } else {
                None
            }
        });
        if let Some(n) = advance {
            self.inner.advance(n);
        }
        self.inner.output(line);
    }
}

/// The error chain as one line: `outer: inner: innermost`, without repeats, with control
/// characters (a script's escape sequences) shown escaped rather than sent to a terminal.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    escape_controls(&parts.join(": ").replace('\n', " "))
}

/// `line` with every control character but tab written as `\xNN` (C1 controls as `\u{NN}`), so
/// that output from inside the image can carry no terminal escape sequence to wherever it is
/// printed (the sandbox escapes program output with it; the CLI escapes error lines).
pub fn escape_controls(line: &str) -> String {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl Reporter for Seen {
        fn begin(&self, stage: &str, _: Option<u64>) {
            self.0.lock().unwrap().push(format!("begin {stage}"));
        }
        fn advance(&self, n: u64) {
            self.0.lock().unwrap().push(format!("advance {n}"));
        }
        fn message(&self, line: &str) {
            self.0.lock().unwrap().push(format!("message {line}"));
        }
        fn finish(&self, summary: &str) {
            let s = summary.split(" (").next().unwrap_or_default().to_string();
            self.0.lock().unwrap().push(format!("finish {s}"));
        }
        fn output(&self, line: &str) {
            self.0.lock().unwrap().push(format!("output {line}"));
        }
    }

    #[test]
    fn stage_child_lines_become_timed_steps_and_log_lines() {
        let seen = Seen::default();
        let rec = Recorder::new(&seen);
        rec.expect_packages(2);
        rec.begin("fetch", Some(10));
        rec.advance(10);
        rec.finish("2 packages");
        rec.begin("stage", None);
        rec.message(&step_line("install"));
        rec.message(&output_line("dpkg", "Unpacking a (1) ..."));
        rec.message(&output_line("dpkg", "Setting up a (1) ..."));
        rec.message("installing 2 packages");
        rec.message(&step_line("provision"));
        rec.message(&output_line("provision.sh", "hello"));
        rec.message("error: provision script provision.sh exited with status 3");
        let names: Vec<String> = rec.times().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["fetch", "install"]);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                "begin fetch",
                "advance 10",
                "finish 2 packages",
                "begin install",
                "output dpkg: Unpacking a (1) ...",
                "advance 1",
                "output dpkg: Setting up a (1) ...",
                "output installing 2 packages",
                "finish 1 of 2 packages configured",
                "begin provision",
                "output provision.sh: hello",
            ]
        );
        let tail = rec.tail();
        assert_eq!(tail.last().map(String::as_str), Some("provision.sh: hello"));
        assert!(!tail.iter().any(|l| l.starts_with("error: ")));
    }
}
