//! Progress reporting as a small trait, so the library never depends on the terminal UI.
//!
//! The CLI picks an implementation: indicatif bars on a terminal, plain lines when piped,
//! nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;

/// Receives progress from long-running library work. Implementations must be cheap.
pub trait Reporter: Send + Sync {
    /// A stage begins (`fetch`, `unpack`, …) with `total` units (bytes or items), if known.
    fn begin(&self, stage: &str, total: Option<u64>);
    /// `amount` more units of the current stage are done.
    fn advance(&self, amount: u64);
    /// A human-readable line about the current stage.
    fn message(&self, line: &str);
    /// The current stage is over.
    fn finish(&self, summary: &str);
}

/// Says nothing (`--quiet`, library use, tests).
pub struct Silent;

impl Reporter for Silent {
    fn begin(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn finish(&self, _: &str) {}
}

/// Plain, line-oriented progress on stderr (piped output, CI logs).
pub struct Lines {
    stage: Mutex<String>,
}

impl Reporter for Lines {
    fn begin(&self, stage: &str, total: Option<u64>) {
        if let Ok(mut s) = self.stage.lock() {
            *s = stage.to_string();
        }
        match total {
            Some(t) => eprintln!("ingot: {stage}: starting ({t})"),
            None => eprintln!("ingot: {stage}: starting"),
        }
    }
    fn advance(&self, _: u64) {}
    fn message(&self, line: &str) {
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("ingot: {stage}: {line}");
    }
    fn finish(&self, summary: &str) {
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("ingot: {stage}: {summary}");
    }
}

/// indicatif bars on a terminal.
pub struct Bars {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Reporter for Bars {
    fn begin(&self, stage: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = indicatif::ProgressBar::new(t);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = indicatif::ProgressBar::new_spinner();
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            }
        };
        bar.set_prefix(stage.to_string());
        if let Ok(mut slot) = self.bar.lock()
            && let Some(old) = slot.replace(bar)
        {
            old.finish_and_clear();
        }
    }
    fn advance(&self, amount: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(b) = slot.as_ref()
        {
            b.inc(amount);
        }
    }
    fn message(&self, line: &str) {
        if let Ok(slot) = self.bar.lock() {
            match slot.as_ref() {
                Some(b) => b.set_message(line.to_string()),
                None => eprintln!("{line}"),
            }
        }
    }
    fn finish(&self, summary: &str) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(b) = slot.take()
        {
            let prefix = b.prefix();
            b.finish_and_clear();
            eprintln!("{prefix:>8} {summary}");
        }
    }
}

/// The reporter the CLI should use: silent when quiet, bars on a terminal, lines otherwise.
pub fn for_cli(quiet: bool) -> Box<dyn Reporter> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Lines {
            stage: Mutex::new(String::new()),
        })
    }
}
