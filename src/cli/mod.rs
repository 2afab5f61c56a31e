//! The binary's side of each verb: call the library, then word the result for a person
//! (stdout: results, paths, JSON; stderr: progress and errors) and choose the exit code.
//!
//! To add a verb: a variant in `main.rs`'s `Command`, a `pub fn` here (or in a file of its own
//! under `src/cli/`) returning `anyhow::Result<ExitCode>`. Errors returned from a verb are
//! printed once by `main`, as one line, with the exit code of [`exit::code`]. Nothing outside
//! `src/cli/` and `main.rs` prints (`tests/code_structure.rs` fails if something does).

pub mod assets;
pub mod exit;
pub mod provenance;
pub mod push;
pub mod recipes;
pub mod render;
pub mod upload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ingot::build::{self, BuildOptions, CommonOptions};
use ingot::progress::{FAILURE_TAIL, Recorder, one_line};

/// `ingot resolve`: the plan as a table or JSON.
pub fn resolve(o: &CommonOptions, verbose: bool, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let recorder = Recorder::new(reporter.as_ref());
    let r = ingot::resolve::resolve_recipe(o, &recorder)?;
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
                    "oci": built.oci,
                });
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", built.path.display())?;
                if let Some(oci) = &built.oci {
                    writeln!(out, "{}", oci.display())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            // Clears a terminal's unfinished bar before the failure is printed.
            drop(reporter);
            let message = one_line(&failure.error);
            let step = failure.error.chain().find_map(|c| {
                match c.downcast_ref::<ingot::stage::StageError>() {
                    Some(ingot::stage::StageError::StepFailed(f)) => Some(f),
                    _ => None,
                }
            });
            let mut err = std::io::stderr().lock();
            match &failure.log {
                Some(log) => {
                    // A failed step's output is in the log's tail below: the error line names
                    // the step and its status only.
                    let head = match step {
                        Some(f) => ingot::progress::escape_controls(&f.message),
                        None => message,
                    };
                    writeln!(err, "ingot: error: {head}")?;
                    if !failure.tail.is_empty() {
                        writeln!(
                            err,
                            "ingot: the last {} lines of the build log:",
                            failure.tail.len().min(FAILURE_TAIL)
                        )?;
                        for line in &failure.tail {
                            writeln!(err, "    {}", ingot::progress::escape_controls(line))?;
                        }
                    }
                    writeln!(err, "ingot: the whole build log: {}", log.display())?;
                }
                None => writeln!(err, "ingot: error: {message}")?,
            }
            if b.json {
                // A pipeline reads the failing step from the fields, not from the message.
                let doc = serde_json::json!({
                    "ok": false,
                    "error": one_line(&failure.error),
                    "step": step.map(|f| &f.step),
                    "status": step.and_then(|f| f.status.as_ref()),
                    "output": step.map(|f| &f.output),
                    "log": failure.log,
                });
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            }
            Ok(exit::exit(&failure.error))
        }
    }
}

/// `ingot verify`: the golden-image contract on any tarball; exit 1 on any violation, 2 when
/// the file cannot be read. `--json` prints JSON in every case.
pub fn verify(
    tarball: &Path,
    json: bool,
    options: &ingot::verify::VerifyOptions,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match ingot::verify::verify_tarball_with(tarball, options) {
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
            let code = exit::code(&anyhow::Error::new(e));
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
    let cache =
        ingot::cache::Cache::new(cache_dir.unwrap_or_else(ingot::cache::Cache::default_root));
    let root = cache.root();
    let s = ingot::stage::base_cache::prune(&cache, max_bytes)?;
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

/// `ingot lock RECIPE`: write the lock and print its path; with `check`, write nothing and
/// exit 1 when the lock no longer matches the recipe.
pub fn lock(o: &CommonOptions, check: bool, verbose: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if check {
        return match ingot::resolve::check_lock(o) {
            Ok((recipe, path)) => {
                writeln!(out, "{}: matches {}", path.display(), recipe.file.display())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e),
        };
    }
    let reporter = render::reporter(o.quiet, verbose);
    let lock = ingot::resolve::lock_recipe(o, reporter.as_ref())?;
    let recipe = o.load_recipe()?;
    let path = ingot::lock::lock_path(&recipe);
    lock.write(&path)?;
    reporter.message(&format!(
        "locked {} packages from {} suites, epoch {}",
        lock.packages.len(),
        lock.suites.len(),
        lock.epoch
    ));
    writeln!(out, "{}", path.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `ingot mirror RECIPE --to DIR`: prints DIR (stdout) and what was written (stderr).
pub fn mirror(o: &CommonOptions, dir: &Path, verbose: bool) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let summary = ingot::mirror::write_mirror(o, dir, reporter.as_ref())?;
    reporter.message(&format!(
        "mirror of {} suites, {} indexes, {} packages ({:.1} MiB)",
        summary.suites,
        summary.indexes,
        summary.packages,
        summary.package_bytes as f64 / 1048576.0
    ));
    writeln!(std::io::stdout().lock(), "{}", dir.display())?;
    Ok(ExitCode::SUCCESS)
}

/// `ingot outdated RECIPE`: 0 up to date, 1 rebuild due, 2 bad input, 3 could not check (see
/// [`exit`]); `--json` prints the report, or the error, in every case.
pub fn outdated(
    o: &CommonOptions,
    out_dir: &Path,
    json: bool,
    verbose: bool,
) -> anyhow::Result<ExitCode> {
    let reporter = render::reporter(o.quiet, verbose);
    let mut out = std::io::stdout().lock();
    let report = match ingot::outdated::check(o, out_dir, reporter.as_ref()) {
        Ok(report) => report,
        Err(e) => {
            let code = if exit::is_bad_input(&e) {
                exit::BAD_INPUT
            } else {
                exit::COULD_NOT_CHECK
            };
            if json {
                let doc = serde_json::json!({
                    "rebuild_due": null,
                    "checked": false,
                    "error": one_line(&e),
                });
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            }
            eprintln!("ingot: error: {}", one_line(&e));
            if code == exit::COULD_NOT_CHECK {
                eprintln!("ingot: could not check whether a rebuild is due (exit {code})");
            }
            return Ok(ExitCode::from(code));
        }
    };
    let due = report.rebuild_due();
    if json {
        let doc = serde_json::json!({
            "baseline": report.baseline,
            "checked": true,
            "rebuild_due": due,
            "security": report.security(),
            "outdated": report.outdated,
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for p in &report.outdated {
            writeln!(
                out,
                "{:<36} {:<6} {} -> {} ({}){}",
                p.name,
                p.architecture,
                p.built,
                p.available,
                p.suites.join(", "),
                if p.security { " SECURITY" } else { "" }
            )?;
        }
        reporter.message(&format!(
            "{} of {} packages of {} have a newer version{}",
            report.outdated.len(),
            report.baseline_packages,
            report.baseline.file.display(),
            if due { ": rebuild due" } else { "" }
        ));
    }
    Ok(if due {
        ExitCode::from(exit::FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
