//! The one way from a recipe to a resolved package set: recipe → verified suites (signature,
//! `Suite`, dates, the replay ledger and `--allow-older`, the recipe's keys) → plan. `build`,
//! `resolve`, `fetch`, `lock`, `mirror` and `outdated` all read the archive through here, so a
//! check added to one is a check of all.
//!
//! Two roads lead in: today's archive ([`resolve_recipe`]: every `InRelease` fetched, verified
//! and admitted by the ledger) and a lock ([`resolve_locked`]: the locked `InRelease`s
//! verified offline, their indexes fetched, and exactly the locked set accepted). The lock's
//! file format lives in [`crate::lock`]; this module never downloads a `.deb`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::archive::freshness::{Admission, DateLedger};
use crate::archive::keyring::Keyring;
use crate::archive::{self, ArchiveError, ArchiveOptions, BinaryPackage, VerifiedRelease};
use crate::cache::Cache;
use crate::epoch::{BuildEpoch, EpochSource};
use crate::lock::{self, LockError, LockFile, PackageLock, RecipeLock, SuiteLock};
use crate::net::{Transport, TransportError, join_url};
use crate::plan::{self, Plan, Selection};
use crate::progress::Reporter;
use crate::recipe::{Recipe, RecipeOverrides, SuiteSource};

/// Options shared by every verb that reads an archive (`resolve`, `fetch`, `build`, `lock`,
/// `mirror`, `outdated`).
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Recipe folder or file.
    pub recipe: PathBuf,
    /// Mirror override for every suite.
    pub mirror: Option<String>,
    /// Accept expired releases.
    pub allow_expired: bool,
    /// Accept a release older than the newest seen for its mirror and suite.
    pub allow_older: bool,
    /// Cache directory override.
    pub cache_dir: Option<PathBuf>,
    /// Parallel downloads.
    pub jobs: usize,
    /// No progress.
    pub quiet: bool,
    /// Trust only the CA certificates of this PEM file for `https://` mirrors.
    pub ca_file: Option<PathBuf>,
    /// `--suite-mirror SUITE=URL`, each over `--mirror` for its suite.
    pub suite_mirrors: Vec<String>,
}

impl CommonOptions {
    /// The transport these options ask for: `jobs` connections per host, and the CA of
    /// `--ca-file` as the only trust root when one is given.
    pub fn transport(&self) -> Result<Transport, crate::net::CaFileError> {
        match &self.ca_file {
            Some(ca_file) => Transport::for_jobs_trusting(self.jobs, ca_file),
            None => Ok(Transport::for_jobs(self.jobs)),
        }
    }

    /// The recipe these options name, with `--mirror` and `--allow-expired` applied.
    pub fn load_recipe(&self) -> Result<Recipe, crate::recipe::RecipeError> {
        Recipe::load(
            &self.recipe,
            &RecipeOverrides {
                mirror: self.mirror.clone(),
                allow_expired: self.allow_expired,
                suite_mirrors: self.suite_mirrors.clone(),
            },
        )
    }

    /// The cache these options name (`--cache-dir`, else the default).
    pub fn cache(&self) -> Cache {
        Cache::new(self.cache_dir.clone().unwrap_or_else(Cache::default_root))
    }
}

/// The outcome of the network half of a build: verified suites and the resolved plan.
#[derive(Debug)]
pub struct Resolved {
    /// The recipe, validated.
    pub recipe: Recipe,
    /// Every suite's verified release (with its signed bytes).
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
    /// The transport that loaded the archive: fetching reuses its connections and lookups.
    pub transport: Transport,
}

/// Today's verified suites of a recipe: each release and every stanza of its indexes.
#[derive(Debug)]
pub struct VerifiedSuites {
    /// Every suite's verified release, in recipe order.
    pub releases: Vec<VerifiedRelease>,
    /// Every stanza of every suite's indexes.
    pub universe: Vec<BinaryPackage>,
}

/// Fetch and verify every suite of `recipe` (in parallel), and admit each through the replay
/// ledger of the cache: a release older than the newest `Date` seen for its mirror and suite
/// is refused unless `allow_older`. Reports one line per suite.
pub fn verified_suites(
    recipe: &Recipe,
    transport: &Transport,
    cache: &Cache,
    allow_older: bool,
    reporter: &dyn Reporter,
) -> anyhow::Result<VerifiedSuites> {
    let opts = ArchiveOptions::now(recipe.source.allow_expired);
    let results: Vec<Result<archive::SuiteIndex, ArchiveError>> = std::thread::scope(|s| {
        let handles: Vec<_> = recipe
            .source
            .suites
            .iter()
            .map(|suite| {
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
    // Replay protection: the newest Date per mirror and suite lives in the (private) cache.
    cache.ensure()?;
    let ledger = DateLedger::new(cache.root());
    let mut releases = Vec::new();
    let mut universe = Vec::new();
    for r in results {
        let idx = r?;
        if let Admission::OlderAllowed { seen } = ledger.admit(&idx.release, allow_older)? {
            reporter.message(&format!(
                "{}: older than the newest Date seen ({seen}), accepted by --allow-older",
                idx.release.url
            ));
        }
        reporter.message(&format!(
            "{} verified ({} packages, signed by {})",
            idx.release.url,
            idx.packages.len(),
            idx.release.signer
        ));
        releases.push(idx.release);
        universe.extend(idx.packages);
    }
    Ok(VerifiedSuites { releases, universe })
}

/// The recipe resolved against today's archive, or with `locked` its `ingot.lock`.
pub fn resolve(
    o: &CommonOptions,
    reporter: &dyn Reporter,
    locked: bool,
) -> anyhow::Result<Resolved> {
    if locked {
        resolve_locked(o, reporter)
    } else {
        resolve_recipe(o, reporter)
    }
}

/// Load the recipe, verify every suite of today's archive, and resolve the package set.
pub fn resolve_recipe(o: &CommonOptions, reporter: &dyn Reporter) -> anyhow::Result<Resolved> {
    let recipe = o.load_recipe()?;
    let transport = o.transport()?;
    let t0 = Instant::now();
    reporter.begin("archive", None);
    let suites = verified_suites(&recipe, &transport, &o.cache(), o.allow_older, reporter)?;
    let t_archive = t0.elapsed().as_millis();
    reporter.finish(&format!(
        "{} suites verified, {} packages indexed",
        suites.releases.len(),
        suites.universe.len(),
    ));
    let t1 = Instant::now();
    reporter.begin("resolve", None);
    let plan = plan::resolve(&suites.universe, &Selection::of(&recipe))
        .with_context(|| format!("resolving {}", recipe.file.display()))?;
    let t_resolve = t1.elapsed().as_millis();
    reporter.finish(&format!(
        "{} packages, {:.1} MiB",
        plan.packages.len(),
        plan.total_size() as f64 / 1048576.0
    ));
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let (epoch, epoch_source) =
        BuildEpoch::choose(sde.as_deref(), suites.releases.iter().map(|r| r.date))?;
    Ok(Resolved {
        recipe,
        stanzas: suites.universe.len(),
        releases: suites.releases,
        plan,
        epoch,
        epoch_source,
        timings_ms: (t_archive, t_resolve),
        transport,
    })
}

/// Resolve the recipe against today's archive and describe the result as a lock. The signed
/// `InRelease` bytes are the ones verified (no second download).
pub fn lock_recipe(o: &CommonOptions, reporter: &dyn Reporter) -> anyhow::Result<LockFile> {
    let r = resolve_recipe(o, reporter)?;
    let mut suites = Vec::new();
    for release in &r.releases {
        if !release.url.ends_with("/InRelease") {
            return Err(LockError::NoInRelease {
                url: release.url.clone(),
            }
            .into());
        }
        let inrelease =
            String::from_utf8(release.file_bytes.clone()).map_err(|_| LockError::NoInRelease {
                url: release.url.clone(),
            })?;
        suites.push(SuiteLock {
            suite: release.source.suite.clone(),
            mirror: release.source.mirror.clone(),
            date: release.date,
            inrelease_sha256: release.sha256.clone(),
            inrelease,
        });
    }
    let mut packages: Vec<PackageLock> = r.plan.packages.iter().map(PackageLock::from).collect();
    packages.sort_by(|a, b| {
        (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
    });
    Ok(LockFile {
        lock_version: lock::LOCK_VERSION,
        epoch: r.epoch.0,
        recipe: RecipeLock {
            digest: r.recipe.digest.clone(),
            files: lock::recipe_files(&r.recipe)?,
        },
        suites,
        packages,
    })
}

/// The suites of a lock with the mirror to read them from now: `--mirror` when given, else
/// the mirror the lock was made from; each `InRelease` verified offline (keys judged at its
/// own `Date`). The ledger does not apply: the lock, not the day, decides what is built.
pub fn locked_releases(
    o: &CommonOptions,
    recipe: &Recipe,
    lock: &LockFile,
) -> Result<Vec<VerifiedRelease>, ArchiveError> {
    let keyring = Keyring::load(&recipe.source.keyring)?;
    let mut out = Vec::new();
    for s in &lock.suites {
        let mirror = match (
            &o.mirror,
            recipe.source.suites.iter().find(|r| r.suite == s.suite),
        ) {
            (Some(_), Some(r)) => r.mirror.clone(),
            _ => s.mirror.clone(),
        };
        let source = SuiteSource {
            suite: s.suite.clone(),
            mirror,
        };
        let url = join_url(&source.mirror, &format!("dists/{}/InRelease", s.suite));
        let release = archive::verify_inrelease_bytes(
            &url,
            s.inrelease.as_bytes(),
            &keyring,
            &source,
            s.date,
        )?;
        if release.date != s.date {
            return Err(ArchiveError::Malformed {
                url,
                message: format!(
                    "Date is {}, the lock says {} (the lock was altered)",
                    release.date, s.date
                ),
            });
        }
        out.push(release);
    }
    Ok(out)
}

/// `ingot lock --check`: the lock matches the recipe and every locked `InRelease` verifies.
pub fn check_lock(o: &CommonOptions) -> anyhow::Result<(Recipe, PathBuf)> {
    let recipe = o.load_recipe()?;
    let (lock, path) = lock::read_for(&recipe)?;
    lock.check_recipe(&recipe, &path)?;
    locked_releases(o, &recipe, &lock)?;
    Ok((recipe, path))
}

/// The network half of `ingot build --locked`: check the recipe against the lock, verify the
/// locked `InRelease`s offline, fetch the `Packages` indexes they sign from the mirror,
/// resolve, and accept only exactly the locked set. The epoch is the lock's.
pub fn resolve_locked(o: &CommonOptions, reporter: &dyn Reporter) -> anyhow::Result<Resolved> {
    let recipe = o.load_recipe()?;
    let (lock, path) = lock::read_for(&recipe)?;
    lock.check_recipe(&recipe, &path)?;
    let transport = o.transport()?;
    let t0 = Instant::now();
    reporter.begin("archive", None);
    let mut releases = Vec::new();
    let mut universe = Vec::new();
    for release in locked_releases(o, &recipe, &lock)? {
        let packages = archive::load_indexes(
            &transport,
            &release,
            &recipe.source.components,
            &recipe.source.architecture,
        )
        .map_err(|e| explain_index_error(e, &path))?;
        reporter.message(&format!(
            "{} verified from {} ({} packages)",
            release.url,
            path.display(),
            packages.len()
        ));
        universe.extend(packages);
        releases.push(release);
    }
    reporter.finish(&format!("{} locked suites verified", releases.len()));
    let t_archive = t0.elapsed().as_millis();
    let t1 = Instant::now();
    let plan = plan::resolve(&universe, &Selection::of(&recipe))?;
    lock.check_plan(&plan.packages, &path)?;
    Ok(Resolved {
        stanzas: universe.len(),
        recipe,
        releases,
        plan,
        epoch: BuildEpoch(lock.epoch),
        epoch_source: EpochSource::Lock,
        timings_ms: (t_archive, t1.elapsed().as_millis()),
        transport,
    })
}

/// A locked index that no longer matches usually means the mirror moved on: say what to use.
fn explain_index_error(e: ArchiveError, lock: &std::path::Path) -> anyhow::Error {
    let hint = match &e {
        ArchiveError::HashMismatch { .. } => Some(format!(
            "differs from the index signed in {} (a tampered file, or a mirror that moved on: \
             use `ingot mirror` or a snapshot mirror)",
            lock.display()
        )),
        ArchiveError::Transport(TransportError::NotFound { .. }) => Some(format!(
            "an index of {} is gone from the mirror (use `ingot mirror` or a snapshot mirror)",
            lock.display()
        )),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::Error::from(e).context(h),
        None => e.into(),
    }
}

/// A locked `.deb` gone from the mirror: suggest a snapshot mirror.
pub fn explain_locked_fetch_error(e: crate::fetch::FetchError) -> anyhow::Error {
    if let crate::fetch::FetchError::Transport(TransportError::NotFound { .. }) = &e {
        return anyhow::Error::from(e).context(
            "a locked package is gone from the mirror (use a snapshot mirror such as \
             http://snapshot.ubuntu.com/ubuntu/<date>, or a DIR made by `ingot mirror`)",
        );
    }
    e.into()
}
