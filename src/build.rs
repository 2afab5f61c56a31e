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
use crate::artifact::{BuildInputs, OutputDir, PackageRecord, SuiteRecord, VersionRequest};
use crate::epoch::{BuildEpoch, EpochSource};
use crate::export::compress::{self, Compression};
use crate::fetch::{self, Cache};
use crate::net::Transport;
use crate::plan::{self, Plan, Selection};
use crate::progress::{self, Reporter};
use crate::recipe::{Recipe, RecipeOverrides};
use crate::stage::{self, StageDeb, StageOutput, StageSpec};
use crate::verify;

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

impl CommonOptions {
    /// The recipe these options name, with `--mirror` and `--allow-expired` applied.
    pub fn load_recipe(&self) -> Result<Recipe, crate::recipe::RecipeError> {
        Recipe::load(
            &self.recipe,
            &RecipeOverrides {
                mirror: self.mirror.clone(),
                allow_expired: self.allow_expired,
            },
        )
    }
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
    /// Install exactly the set of the recipe's `ingot.lock` (see [`crate::lock`]).
    pub locked: bool,
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
    let recipe = o.load_recipe()?;
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
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("archive thread panicked"))
            })
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
    let plan = plan::resolve(&universe, &Selection::of(&recipe))
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

/// Resolve, then download (or take from the cache) every planned `.deb`.
fn resolve_and_fetch(
    o: &CommonOptions,
    reporter: &dyn Reporter,
    locked: bool,
) -> anyhow::Result<(Resolved, Cache, Vec<fetch::FetchedDeb>, fetch::FetchSummary)> {
    if locked {
        let r = crate::lock::resolve_locked(o, reporter)?;
        let cache = cache_for(o);
        let (debs, summary) =
            fetch::fetch_plan(&Transport::new(), &r.plan, &cache, o.jobs, reporter)
                .map_err(crate::lock::explain_fetch_error)?;
        return Ok((r, cache, debs, summary));
    }
    let r = resolve_recipe(o, reporter)?;
    let cache = cache_for(o);
    let (debs, summary) = fetch::fetch_plan(&Transport::new(), &r.plan, &cache, o.jobs, reporter)?;
    Ok((r, cache, debs, summary))
}

/// `ingot fetch`: resolve, download into the cache, print the totals.
pub fn cmd_fetch(o: &CommonOptions, json: bool) -> anyhow::Result<ExitCode> {
    let reporter = progress::for_cli(o.quiet);
    let t = Instant::now();
    let (_, cache, _, summary) = resolve_and_fetch(o, reporter.as_ref(), false)?;
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

/// `ingot build`: the whole pipeline; prints the published path (or the tree's path).
pub fn cmd_build(o: &CommonOptions, b: &BuildOptions) -> anyhow::Result<ExitCode> {
    let reporter = progress::for_cli(o.quiet);
    let (r, cache, debs, _) = resolve_and_fetch(o, reporter.as_ref(), b.locked)?;
    let first_round = r.plan.essential_closure();
    let stage_debs: Vec<StageDeb> = debs
        .iter()
        .map(|d| StageDeb {
            name: d.package.name.clone(),
            version: d.package.version.clone(),
            architecture: d.package.architecture.clone(),
            essential: first_round.contains(&d.package.name),
            path: d.path.clone(),
            pre_depends_on: d.package.pre_depends_on.clone(),
            depends_on: d.package.depends_on.clone(),
        })
        .collect();
    let mut spec = StageSpec {
        debs: stage_debs,
        provision: r.recipe.provision.clone(),
        provision_network: r.recipe.provision_network,
        cleanup: r.recipe.cleanup.clone(),
        staging_parent: cache.root().join("staging"),
        keep_staging: b.keep_staging.clone(),
        epoch: r.epoch,
        output: StageOutput::Tar,
        seed: None,
        apt_extended_states: Some(r.plan.apt_extended_states(&r.recipe.source.architecture)),
    };
    std::fs::create_dir_all(&spec.staging_parent)
        .with_context(|| format!("creating {}", spec.staging_parent.display()))?;

    if b.format == OutputFormat::Dir {
        if b.out.exists() {
            anyhow::bail!(
                "{}: already exists (--format dir writes a new directory; never over an old one)",
                b.out.display()
            );
        }
        let parent = match b.out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let out = std::fs::canonicalize(&parent)?.join(b.out.file_name().unwrap_or_default());
        spec.staging_parent = std::fs::canonicalize(&parent)?;
        spec.output = StageOutput::Dir(out.clone());
        stage::run_stage(&spec, &mut |_| Ok(()), reporter.as_ref())?;
        print_result(b.json, &out, None)?;
        return Ok(ExitCode::SUCCESS);
    }

    let dir = OutputDir::lock(&b.out, &r.recipe.image.name)?;
    let request = match b.version {
        Some(n) => VersionRequest::Exact(n),
        None => VersionRequest::Next,
    };
    let mut claim = dir.claim(request, b.compression)?;
    reporter.message(&format!("building {}", claim.file_name()));
    let mut compressed: Option<Result<u64, crate::export::ExportError>> = None;
    stage::run_stage(
        &spec,
        &mut |tar| {
            let res = compress::compress_stream(b.compression, tar, &mut claim);
            let failed = res.is_err();
            compressed = Some(res);
            if failed {
                Err(std::io::Error::other("compression failed"))
            } else {
                Ok(())
            }
        },
        reporter.as_ref(),
    )
    .map_err(anyhow::Error::from)
    .and_then(|()| match compressed.take() {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err(anyhow::anyhow!("the build produced no tar stream")),
    })?;
    claim.flush()?;

    reporter.begin("verify", None);
    let report = verify::verify_tarball(claim.temp_path())?;
    if !report.ok() {
        anyhow::bail!(
            "refusing to publish {}: the image breaks the golden-image contract:\n{report}",
            claim.file_name()
        );
    }
    reporter.finish("golden-image contract holds");

    let inputs = BuildInputs {
        recipe_digest: r.recipe.digest.clone(),
        build_epoch: r.epoch,
        epoch_source: r.epoch_source,
        suites: r
            .releases
            .iter()
            .map(|s| SuiteRecord {
                suite: s.source.suite.clone(),
                inrelease_url: s.url.clone(),
                inrelease_sha256: s.sha256.clone(),
            })
            .collect(),
        packages: r
            .plan
            .packages
            .iter()
            .map(|p| PackageRecord {
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                sha256: p.sha256.clone(),
            })
            .collect(),
    };
    let sbom = crate::sbom::describe_packages(&debs)?;
    let published = claim.publish_with_sbom(inputs, &sbom)?;
    print_result(b.json, &published.path, Some(&published.manifest))?;
    Ok(ExitCode::SUCCESS)
}

fn print_result(
    json: bool,
    path: &std::path::Path,
    manifest: Option<&crate::artifact::Manifest>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "path": path, "manifest": manifest });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

/// `ingot verify`: the golden-image contract on any tarball; exit 1 on any violation.
pub fn cmd_verify(tarball: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = verify::verify_tarball(tarball)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ingot doctor`: can this host build rootless?
pub fn cmd_doctor(json: bool) -> anyhow::Result<ExitCode> {
    let checks = stage::doctor();
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
