//! Stage durations of a build, for the manifest: a [`Reporter`] that passes everything on to
//! the CLI's reporter and notes when each stage begins.
//!
//! Owns only the clock. Stages are the library's `begin` calls (`archive`, `fetch`, `stage`,
//! `verify`) and, inside `stage`, the child's phase lines (extracting the Essential set, dpkg,
//! provision and cleanup scripts, the tar stream). Must never change what is reported.

use std::sync::Mutex;
use std::time::Instant;

use crate::artifact::StageTime;
use crate::progress::Reporter;

/// The phase lines of the stage child that start a sub-stage (prefix, and suffix or ""),
/// and the sub-stage's name.
const STAGE_PHASES: &[(&str, &str, &str)] = &[
    ("extracting ", "", "stage.extract"),
    ("installing ", " essential packages", "stage.dpkg"),
    ("unpacking ", "", "stage.dpkg"),
    ("restoring the configured tree", "", "stage.base-restore"),
    ("storing the configured tree", "", "stage.base-store"),
    ("running provision script", "", "stage.provision"),
    ("running cleanup script", "", "stage.cleanup"),
    ("invariant: ", "", "stage.invariants"),
    ("streaming the tar archive", "", "stage.export"),
];

/// Wraps a reporter and records each stage's wall time.
pub struct StageClock<'a> {
    inner: &'a dyn Reporter,
    state: Mutex<ClockState>,
}

struct ClockState {
    done: Vec<StageTime>,
    current: Option<(String, Instant)>,
}

impl<'a> StageClock<'a> {
    /// A clock in front of `inner`.
    pub fn new(inner: &'a dyn Reporter) -> Self {
        StageClock {
            inner,
            state: Mutex::new(ClockState {
                done: Vec::new(),
                current: None,
            }),
        }
    }

    /// Start stage `name` (ending the current one), unless it is already the current one.
    pub fn mark(&self, name: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.current.as_ref().is_some_and(|(n, _)| n == name) {
            return;
        }
        let now = Instant::now();
        if let Some((prev, t)) = st.current.take() {
            st.done.push(StageTime {
                name: prev,
                seconds: round_ms(now.duration_since(t).as_secs_f64()),
            });
        }
        st.current = Some((name.to_string(), now));
    }

    /// Every stage so far, the current one included (as far as it got).
    pub fn stages(&self) -> Vec<StageTime> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = st.done.clone();
        if let Some((name, t)) = &st.current {
            out.push(StageTime {
                name: name.clone(),
                seconds: round_ms(t.elapsed().as_secs_f64()),
            });
        }
        out
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

impl Reporter for StageClock<'_> {
    fn begin(&self, stage: &str, total: Option<u64>) {
        self.mark(stage);
        self.inner.begin(stage, total);
    }

    fn advance(&self, amount: u64) {
        self.inner.advance(amount);
    }

    fn message(&self, line: &str) {
        let in_stage = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.current
                .as_ref()
                .is_some_and(|(n, _)| n == "stage" || n.starts_with("stage."))
        };
        if in_stage
            && let Some((_, _, name)) = STAGE_PHASES
                .iter()
                .find(|(p, end, _)| line.starts_with(p) && line.ends_with(end))
        {
            self.mark(name);
        }
        self.inner.message(line);
    }

    fn finish(&self, summary: &str) {
        self.inner.finish(summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn stage_clock_splits_the_stage_by_the_child_phase_lines() {
        let clock = StageClock::new(&Silent);
        clock.begin("archive", None);
        clock.message("installing 3 packages"); // not inside `stage`: no sub-stage
        clock.begin("fetch", Some(10));
        clock.begin("stage", None);
        clock.message("installing 3 packages");
        clock.message("extracting 2 essential packages");
        clock.message("installing 2 essential packages");
        clock.message("unpacking 1 packages (step 1)");
        clock.message("running provision script provision.sh");
        clock.message("streaming the tar archive");
        clock.begin("verify", None);
        let names: Vec<String> = clock.stages().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "archive",
                "fetch",
                "stage",
                "stage.extract",
                "stage.dpkg",
                "stage.provision",
                "stage.export",
                "verify"
            ]
        );
    }
}
