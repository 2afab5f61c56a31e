//! The binary's side of each verb: call the library, then word the result for a person
//! (stdout: results, paths, JSON; stderr: progress and errors) and choose the exit code.
//!
//! To add a verb: a variant in `main.rs`'s `Command`, a `pub fn` here (or in a file of its own
//! under `src/cli/`) returning `anyhow::Result<ExitCode>`. Errors returned from a verb are
//! printed once by `main`, as one line, with the exit code of [`ingot::build::exit_code`].

pub mod assets;
pub mod recipes;
pub mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ingot::build::{self, BuildOptions, CommonOptions};
use ingot::progress::{FAILURE_TAIL, Recorder};

/// `ingot resolve`: the plan as a table or JSON.
pub fn resolve(o: &CommonOptions, verbose: bool, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let recorder = Recorder::new(reporter.as_ref());
    let r = build::resolve_recipe(o, &recorder)?;
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "recipe": r.recipe.file,
            "suites": r.releases.iter().map(|s| serde_json::json!({
                "suite": s.source.suite, "url": s.url, "sha256": s.sha256, "date": s.date,
                "signer": s.signer,
            })).collect::<Vec<_>>(),
            "stanzas": r.stanzas,
            "resolve_ms": r.timings_ms.1,
            "total_size": r.plan.total_size(),
            "packages": r.plan.packages,
            "stages": recorder.times(),
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for p in &r.plan.packages {
            writeln!(
                out,
                "{:<36} {:<40} {:<6} {:>10} {} {}",
                p.name, p.version, p.architecture, p.size, p.sha256, p.filename
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ingot fetch`: resolve, download into the cache, print the totals.
pub fn fetch(o: &CommonOptions, verbose: bool, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let recorder = Recorder::new(reporter.as_ref());
    let t = Instant::now();
    let (_, cache, _, summary) = build::resolve_and_fetch(o, &recorder, false)?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(&summary)?;
        v["cache"] = serde_json::json!(cache.root());
        v["seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
        v["stages"] = serde_json::to_value(recorder.times())?;
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} packages, {:.1} MiB: {} downloaded ({:.1} MiB), {} from cache ({})",
            summary.packages,
            summary.total_bytes as f64 / 1048576.0,
            summary.downloaded,
            summary.downloaded_bytes as f64 / 1048576.0,
            summary.cached,
            cache.root().display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ingot build`: the published path (or JSON with the manifest, the log and each step's
/// duration). A failure prints the error once, the log's last lines and the log's path.
pub fn build(o: &CommonOptions, b: &BuildOptions, verbose: bool) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    match build::build_image(o, b, reporter.as_ref()) {
        Ok(built) => {
            let mut out = std::io::stdout().lock();
            if b.json {
                let doc = serde_json::json!({
                    "path": built.path,
                    "manifest": built.manifest,
                    "log": built.log,
                    "stages": built.stages,
                });
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", built.path.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            // Clears a terminal's unfinished bar before the failure is printed.
            drop(reporter);
            let message = build::one_line(&failure.error);
            let mut err = std::io::stderr().lock();
            match &failure.log {
                Some(log) => {
                    // The child's error repeats the step's last output; the tail below shows it.
                    let head = message
                        .split_once("; last output:")
                        .map_or(message.as_str(), |(head, _)| head);
                    writeln!(err, "ingot: error: {head}")?;
                    if !failure.tail.is_empty() {
                        writeln!(
                            err,
                            "ingot: the last {} lines of the build log:",
                            failure.tail.len().min(FAILURE_TAIL)
                        )?;
                        for line in &failure.tail {
                            writeln!(err, "    {line}")?;
                        }
                    }
                    writeln!(err, "ingot: the whole build log: {}", log.display())?;
                }
                None => writeln!(err, "ingot: error: {message}")?,
            }
            Ok(ExitCode::from(build::exit_code(&failure.error)))
        }
    }
}

/// `ingot verify`: the golden-image contract on any tarball; exit 1 on any violation, 2 when
/// the file cannot be read. `--json` prints JSON in every case.
pub fn verify(tarball: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match ingot::verify::verify_tarball(tarball) {
        Ok(report) => {
            if json {
                writeln!(out, "{}", report.to_json())?;
            } else {
                writeln!(out, "{report}")?;
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) if json => {
            let (rule, text) = (e.rule(), e.to_string());
            let code = build::exit_code(&anyhow::Error::new(e));
            let doc = serde_json::json!({
                "ok": false,
                "tarball": tarball,
                "error": text,
                "violations": [{ "rule": rule, "path": "/", "detail": text }],
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
            eprintln!("ingot: error: {text}");
            Ok(ExitCode::from(code))
        }
        Err(e) => Err(e.into()),
    }
}

/// `ingot doctor`: can this host build rootless? Exit 1 naming each problem.
pub fn doctor(json: bool) -> anyhow::Result<ExitCode> {
    let checks = ingot::stage::doctor();
    let ok = checks.iter().all(|c| c.ok);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "ok": ok, "checks": checks }))?;
        writeln!(out)?;
    } else {
        for c in &checks {
            writeln!(
                out,
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.message
            )?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ingot cache prune`: bound the cache to `max_bytes` (least recently used first).
pub fn cache_prune(
    cache_dir: Option<PathBuf>,
    max_bytes: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let root = cache_dir.unwrap_or_else(ingot::fetch::Cache::default_root);
    let s = ingot::stage::base_cache::prune(&root, max_bytes)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &s)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{}: removed {} files ({:.1} MiB), {:.1} MiB kept",
            root.display(),
            s.removed,
            s.freed_bytes as f64 / 1048576.0,
            s.kept_bytes as f64 / 1048576.0
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
