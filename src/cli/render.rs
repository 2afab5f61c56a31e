//! Terminal rendering of progress: one line per step (with its duration) when stderr is piped,
//! indicatif bars on a terminal, nothing with `--quiet`; `--verbose` also streams the build log
//! (dpkg's and the scripts' output). Everything here goes to stderr; results go to stdout.

use std::io::IsTerminal;
use std::sync::Mutex;

use ingot::progress::{Reporter, Silent};

/// The reporter the command line uses.
pub fn reporter(quiet: bool, verbose: bool) -> Box<dyn Reporter> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars {
            verbose,
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Lines {
            verbose,
            stage: Mutex::new(String::new()),
        })
    }
}

/// Plain lines on stderr (piped output, CI logs): nothing when a step begins, one line when
/// it ends.
struct Lines {
    verbose: bool,
    stage: Mutex<String>,
}

impl Reporter for Lines {
    fn begin(&self, stage: &str, _total: Option<u64>) {
        if let Ok(mut s) = self.stage.lock() {
            *s = stage.to_string();
        }
        if self.verbose {
            eprintln!("ingot: {stage}: starting");
        }
    }
    fn advance(&self, _: u64) {}
    fn message(&self, line: &str) {
        eprintln!("ingot: {line}");
    }
    fn finish(&self, summary: &str) {
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("ingot: {stage}: {summary}");
    }
    fn output(&self, line: &str) {
        if self.verbose {
            eprintln!("  {line}");
        }
    }
}

/// indicatif bars on a terminal: download bytes, packages configured of N, export bytes.
struct Bars {
    verbose: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter for Bars {
    fn begin(&self, stage: &str, total: Option<u64>) {
        let bar = match (stage, total) {
            ("install", Some(n)) => {
                let b = indicatif::ProgressBar::new(n);
                b.set_style(style(
                    "{prefix:>9} [{bar:30}] {pos}/{len} packages configured {msg}",
                ));
                b
            }
            (_, Some(t)) => {
                let b = indicatif::ProgressBar::new(t);
                b.set_style(style(
                    "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ));
                b
            }
            ("export", None) => {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_style(style(
                    "{prefix:>9} {spinner} {bytes} written {bytes_per_sec}",
                ));
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            }
            _ => {
                let b = indicatif::ProgressBar::new_spinner();
                b.set_style(style("{prefix:>9} {spinner} {elapsed} {msg}"));
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
        self.print(line);
    }
    fn finish(&self, summary: &str) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(b) = slot.take()
        {
            let prefix = b.prefix();
            b.finish_and_clear();
            eprintln!("{prefix:>9} {summary}");
        }
    }
    fn output(&self, line: &str) {
        if self.verbose {
            self.print(&format!("  {line}"));
        }
    }
}

/// A step that never finished (the build failed): clear its bar so the error prints cleanly.
impl Drop for Bars {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(b) = slot.take()
        {
            b.finish_and_clear();
        }
    }
}

impl Bars {
    /// A line above the bar (the bar is redrawn below it).
    fn print(&self, line: &str) {
        if let Ok(slot) = self.bar.lock() {
            match slot.as_ref() {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
        }
    }
}
