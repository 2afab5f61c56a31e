//! The build pipeline, top to bottom: recipe → archive → plan → fetch → stage → export →
//! artifact. Each step is a library call; this module only wires them together and words the
//! results for the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use std::io::Write;
use std::time::Instant;

use anyhow::Context;

use crate::archive::{self, ArchiveError, ArchiveOptions, SuiteIndex, VerifiedRelease};
use crate::epoch::{BuildEpoch, EpochSource};
use crate::export::compress::Compression;
use crate::fetch::transport::Transport;
use crate::fetch::{self, Cache};
use crate::plan::{self, Plan, Selection};
use crate::progress::{self, Reporter};
use crate::recipe::{Recipe, RecipeOverrides};

/// Options shared by `resolve`, `fetch` and `build`.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Recipe folder or file.
    pub recipe: PathBuf,
    /// Mirror override for every suite.
    pub mirror: Option<String>,
    /// Accept expired releases.
    pub allow_expired: bool,
    /// Cache directory override.
    pub cache_dir: Option<PathBuf>,
    /// Parallel downloads.
    pub jobs: usize,
    /// No progress.
    pub quiet: bool,
}

/// `tar` (artifact) or `dir` (tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A versioned, compressed tarball.
    Tar,
    /// The assembled tree in a directory.
    Dir,
}

/// Options of `ingot build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory.
    pub out: PathBuf,
    /// Tarball or directory.
    pub format: OutputFormat,
    /// Next version (default).
    pub next: bool,
    /// Exact version.
    pub version: Option<u32>,
    /// Compression.
    pub compression: Compression,
    /// Keep the staging tree.
    pub keep_staging: Option<PathBuf>,
    /// JSON output.
    pub json: bool,
}

/// The outcome of the network half of a build: verified suites and the resolved plan.
#[derive(Debug)]
pub struct Resolved {
    /// The recipe, validated.
    pub recipe: Recipe,
    /// Every suite's verified release.
    pub releases: Vec<VerifiedRelease>,
    /// How many stanzas the indexes held.
    pub stanzas: usize,
    /// The resolved package set.
    pub plan: Plan,
    /// The clamp for every mtime.
    pub epoch: BuildEpoch,
    /// Where the epoch came from.
    pub epoch_source: EpochSource,
    /// Milliseconds spent verifying/loading indexes and resolving.
    pub timings_ms: (u128, u128),
}

/// Load the recipe, verify every suite of the archive, and resolve the package set.
pub fn resolve_recipe(o: &CommonOptions, reporter: &dyn Reporter) -> anyhow::Result<Resolved> {
    let recipe = Recipe::load(
        &o.recipe,
        &RecipeOverrides {
            mirror: o.mirror.clone(),
            allow_expired: o.allow_expired,
        },
    )?;
    let transport = Transport::new();
    let opts = ArchiveOptions {
        allow_expired: recipe.source.allow_expired,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let t0 = Instant::now();
    reporter.begin("archive", None);
    let results: Vec<Result<SuiteIndex, ArchiveError>> = std::thread::scope(|s| {
        let handles: Vec<_> = recipe
            .source
            .suites
            .iter()
            .map(|suite| {
                let (transport, recipe) = (&transport, &recipe);
                s.spawn(move || {
                    archive::load_suite(
                        transport,
                        &recipe.source.keyring,
                        suite,
                        &recipe.source.components,
                        &recipe.source.architecture,
                        opts,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("archive thread panicked")))
            .collect()
    });
    let mut releases = Vec::new();
    let mut universe = Vec::new();
    for r in results {
        let idx = r?;
        reporter.message(&format!(
            "{} verified ({} packages, signed by {})",
            idx.release.url,
            idx.packages.len(),
            idx.release.signer
        ));
        releases.push(idx.release);
        universe.extend(idx.packages);
    }
    let t_archive = t0.elapsed().as_millis();
    reporter.finish(&format!(
        "{} suites verified, {} stanzas in {} ms",
        releases.len(),
        universe.len(),
        t_archive
    ));
    let t1 = Instant::now();
    let plan = plan::resolve(
        &universe,
        &Selection {
            variant: recipe.packages.variant,
            include: recipe.packages.include.clone(),
            architecture: recipe.source.architecture.clone(),
        },
    )
    .with_context(|| format!("resolving {}", recipe.file.display()))?;
    let t_resolve = t1.elapsed().as_millis();
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let (epoch, epoch_source) =
        BuildEpoch::choose(sde.as_deref(), releases.iter().map(|r| r.date))?;
    Ok(Resolved {
        recipe,
        releases,
        stanzas: universe.len(),
        plan,
        epoch,
        epoch_source,
        timings_ms: (t_archive, t_resolve),
    })
}

fn cache_for(o: &CommonOptions) -> Cache {
    Cache::new(o.cache_dir.clone().unwrap_or_else(Cache::default_root))
}

/// `ingot resolve`: print the plan as a table or JSON.
pub fn cmd_resolve(o: &CommonOptions, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = progress::for_cli(o.quiet);
    let r = resolve_recipe(o, reporter.as_ref())?;
    if !o.quiet {
        eprintln!(
            "ingot: resolved {} packages ({:.1} MiB) from {} stanzas: indexes {} ms, resolver {} ms",
            r.plan.packages.len(),
            r.plan.total_size() as f64 / 1048576.0,
            r.stanzas,
            r.timings_ms.0,
            r.timings_ms.1
        );
    }
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
pub fn cmd_fetch(o: &CommonOptions, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = progress::for_cli(o.quiet);
    let r = resolve_recipe(o, reporter.as_ref())?;
    let cache = cache_for(o);
    let t = Instant::now();
    let (_debs, summary) = fetch::fetch_plan(
        &Transport::new(),
        &r.plan,
        &cache,
        o.jobs,
        reporter.as_ref(),
    )?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(&summary)?;
        v["cache"] = serde_json::json!(cache.root());
        v["seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
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

/// `ingot build`.
pub fn cmd_build(o: &CommonOptions, b: &BuildOptions) -> anyhow::Result<ExitCode> {
    let _ = (o, b);
    todo!()
}

/// `ingot verify`.
pub fn cmd_verify(tarball: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let _ = (tarball, json);
    todo!()
}

/// `ingot doctor`.
pub fn cmd_doctor(json: bool) -> anyhow::Result<ExitCode> {
    let _ = json;
    todo!()
}

/// The error chain as one line: `outer: inner: innermost`, without repeats.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// 2 for bad input (recipe, usage), 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.downcast_ref::<crate::recipe::RecipeError>().is_some())
    {
        2
    } else {
        1
    }
}
