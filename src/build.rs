//! The build pipeline, top to bottom: recipe → archive → plan → fetch → stage → export →
//! artifact. Each step is a library call; this module only wires them together, times each
//! step and keeps the build log (through [`Recorder`]).
//!
//! It must never write to stdout or stderr: the results are returned, and the binary
//! renders them (and the progress it receives through a [`Reporter`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::artifact::{
    BuildInputs, Manifest, OutputDir, PackageRecord, SuiteRecord, VersionRequest,
};
use crate::export::compress::{self, Compression};
use crate::fetch::{self, Cache};
use crate::net::Transport;
use crate::plan;
use crate::progress::{Recorder, Reporter, StageTime};
use crate::signal_hold::SignalHold;
use crate::stage::{self, StageDeb, StageOutput, StageSpec};
use crate::verify;

pub use crate::resolve::{CommonOptions, Resolved};

/// `tar` (artifact) or `dir` (tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A versioned, compressed tarball.
    Tar,
    /// The assembled tree at `OUT/rootfs`, `OUT` a new directory of mode 0700.
    Dir,
}

crate::named_choice!(OutputFormat {
    "tar" => OutputFormat::Tar,
    "dir" => OutputFormat::Dir,
});

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
    /// Neither restore nor store the configured tree in the base cache.
    pub no_base_cache: bool,
    /// Where the staging tree lives (see [`crate::stage::staging`]).
    pub staging: crate::stage::staging::StagingMedium,
    /// JSON output.
    pub json: bool,
    /// Install exactly the set of the recipe's `ingot.lock` (see [`crate::lock`]).
    pub locked: bool,
    /// Also publish `<name>-v<N>.oci.tar` (see [`crate::oci`]); the recipe's `[image] oci`
    /// turns it on too.
    pub oci: bool,
    /// Sign `<artifact>.provenance.json` with this Ed25519 PKCS#8 PEM key (see
    /// [`crate::provenance`]); read before anything is built.
    pub sign_key: Option<PathBuf>,
    /// The user-mode network stack for a recipe's `[provision] network = true` (`None`: pasta,
    /// else slirp4netns; see [`crate::stage::usernet`]).
    pub network_stack: Option<crate::stage::usernet::Stack>,
}

/// Resolve, then download (or take from the cache) every planned `.deb`.
pub fn resolve_and_fetch(
    o: &CommonOptions,
    reporter: &dyn Reporter,
    locked: bool,
) -> anyhow::Result<(Resolved, Cache, Vec<fetch::FetchedDeb>, fetch::FetchSummary)> {
    let r = crate::resolve::resolve(o, reporter, locked)?;
    let cache = o.cache();
    let all: Vec<&plan::PlannedPackage> = r.plan.packages.iter().collect();
    let (debs, summary) = fetch_some(&r.transport, &cache, &all, (o.jobs, locked), reporter)?;
    Ok((r, cache, debs, summary))
}

/// [`fetch::fetch_packages`]; a locked build's errors say which file of the lock no longer
/// matches.
fn fetch_some(
    transport: &Transport,
    cache: &Cache,
    packages: &[&plan::PlannedPackage],
    (jobs, locked): (usize, bool),
    reporter: &dyn Reporter,
) -> anyhow::Result<(Vec<fetch::FetchedDeb>, fetch::FetchSummary)> {
    let fetched = fetch::fetch_packages(transport, packages, cache, jobs, reporter);
    if locked {
        fetched.map_err(crate::resolve::explain_locked_fetch_error)
    } else {
        Ok(fetched?)
    }
}

/// Run `stage` while `rest` downloads in the background: `stage` gets the read end of a gate
/// that receives one byte once every package of `rest` is in the cache, verified, and is
/// closed without it if the download failed; the stage waits on it before it needs them (see
/// [`crate::stage::install`]). Returns the download's result (`None`: the stage failed while
/// the download was still running, which is then left to the end of the process) and the
/// stage's. A failed download is reported before its gate closes, so it is the build's
/// error even when the stage failed on the closed gate because of it.
fn while_rest_downloads<T, E>(
    r: &Resolved,
    cache: &Cache,
    rest: &[&plan::PlannedPackage],
    (jobs, locked): (usize, bool),
    stage: impl FnOnce(Option<std::os::fd::OwnedFd>) -> Result<T, E>,
) -> (Option<anyhow::Result<Vec<fetch::FetchedDeb>>>, Result<T, E>) {
    if rest.is_empty() {
        return (Some(Ok(Vec::new())), stage(None));
    }
    let fetch_rest = {
        let (transport, cache) = (r.transport.clone(), cache.clone());
        let rest: Vec<plan::PlannedPackage> = rest.iter().map(|p| (*p).clone()).collect();
        move || -> anyhow::Result<Vec<fetch::FetchedDeb>> {
            let refs: Vec<&plan::PlannedPackage> = rest.iter().collect();
            let silent = crate::progress::Silent;
            fetch_some(&transport, &cache, &refs, (jobs, locked), &silent).map(|(debs, _)| debs)
        }
    };
    let Ok((gate_r, gate_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        // No pipe, no overlap: the stage starts once everything is fetched.
        let fetched = fetch_rest();
        return (Some(fetched), stage(None));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // Not scoped: a stage that fails (or is interrupted) must not wait for a stalled download.
    std::thread::spawn(move || {
        let fetched = fetch_rest();
        let ok = fetched.is_ok();
        // The result first, then the gate: whoever sees the gate closed finds the reason.
        let _ = tx.send(fetched);
        if ok {
            let _ = nix::unistd::write(&gate_w, &[1]);
        }
        drop(gate_w);
    });
    let staged = stage(Some(gate_r));
    let fetched = if staged.is_ok() {
        // Even a stage that never needed them (a base-cache hit) needs them afterwards, for
        // the SBOM and the manifest.
        Some(
            rx.recv()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the download thread died"))),
        )
    } else {
        rx.try_recv().ok()
    };
    (fetched, staged)
}

/// A finished `ingot build`.
#[derive(Debug)]
pub struct Built {
    /// The published artifact (or, with `--format dir`, the tree).
    pub path: PathBuf,
    /// The manifest written beside the artifact (`--format tar` only).
    pub manifest: Option<Manifest>,
    /// The build log: everything dpkg and the scripts printed, and every progress line.
    pub log: Option<PathBuf>,
    /// How long each step took.
    pub stages: Vec<StageTime>,
    /// The OCI image archive published beside the tarball (`--oci`).
    pub oci: Option<PathBuf>,
}

/// A failed `ingot build`: the error, and the build log kept for it.
#[derive(Debug)]
pub struct BuildFailure {
    /// What went wrong.
    pub error: anyhow::Error,
    /// The log of the failed build, kept under the output directory (none if the build failed
    /// before it had anything to log, e.g. a bad recipe).
    pub log: Option<PathBuf>,
    /// The log's last lines (progress and program output).
    pub tail: Vec<String>,
}

/// Directory under `--out` where the logs of failed builds are kept.
pub const FAILED_LOG_DIR: &str = "failed-builds";

/// `ingot build`: the whole pipeline. Progress and the build log go through `reporter`; the
/// log is published as `<artifact>.log` (or `<tree>.log`), or kept under
/// `<out>/failed-builds/` when the build fails.
pub fn build_image(
    o: &CommonOptions,
    b: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<Built, BuildFailure> {
    let recorder = Recorder::new(reporter);
    let mut log_slot = LogSlot::None;
    // Set once the image's tar stream is written; held until the log is published or kept
    // (see `crate::signal_hold`).
    let mut hold: Option<SignalHold> = None;
    let result = build_recorded(o, b, &recorder, &mut log_slot, &mut hold);
    if let Err(error) = &result {
        // Into the log before it is closed: a kept log ends with what the user was told (the
        // whole chain; a stage child's own `error:` line may precede it).
        recorder.log(&format!(
            "ingot: error: {}",
            crate::progress::one_line(error)
        ));
    }
    let log = recorder.close_log();
    match result {
        Ok(mut built) => {
            built.log = match (log_slot, log) {
                (LogSlot::Publish(final_path), Some(temp)) => Some(
                    publish_log(&temp, &final_path).map_err(|error| BuildFailure {
                        error,
                        log: None,
                        tail: Vec::new(),
                    })?,
                ),
                (_, log) => log,
            };
            built.stages = recorder.times();
            if let Some(signal) = hold.as_ref().and_then(SignalHold::received) {
                reporter.message(&format!(
                    "{signal} arrived while publishing {}: the publish was finished first",
                    built.path.display()
                ));
            }
            Ok(built)
        }
        Err(error) if error.chain().any(|c| c.is::<fetch::FetchError>()) => {
            // A refused download is one line, as when every download came before the stage:
            // the log holds only progress so far, and is dropped rather than kept.
            if let Some(temp) = &log {
                let _ = std::fs::remove_file(temp);
            }
            Err(BuildFailure {
                error,
                log: None,
                tail: Vec::new(),
            })
        }
        Err(error) => {
            let kept = match log_slot {
                LogSlot::Publish(final_path) => log
                    .as_deref()
                    .and_then(|temp| keep_failed_log(temp, &final_path).ok()),
                _ => log,
            };
            Err(BuildFailure {
                error,
                log: kept,
                tail: recorder.tail(),
            })
        }
    }
}

/// Where the log goes once the build is over.
enum LogSlot {
    /// No log file was opened.
    None,
    /// Beside this artifact (`<artifact>.log`), from a hidden temp file.
    Publish(PathBuf),
    /// Written in place (`--format dir`).
    InPlace,
}

fn open_log_file(recorder: &Recorder, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating the build log {}", path.display()))?;
    recorder
        .open_log(path, file)
        .with_context(|| format!("writing the build log {}", path.display()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Publish the finished log as `<artifact>.log` (never over an existing file).
fn publish_log(temp: &Path, artifact: &Path) -> anyhow::Result<PathBuf> {
    let target = with_suffix(artifact, ".log");
    std::fs::hard_link(temp, &target)
        .and_then(|()| std::fs::remove_file(temp))
        .with_context(|| {
            format!(
                "publishing the build log {} as {}",
                temp.display(),
                target.display()
            )
        })?;
    Ok(target)
}

/// Keep a failed build's log as `<out>/failed-builds/<artifact>.<unix time>.log`.
fn keep_failed_log(temp: &Path, artifact: &Path) -> anyhow::Result<PathBuf> {
    let dir = artifact
        .parent()
        .unwrap_or(Path::new("."))
        .join(FAILED_LOG_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = artifact.file_name().unwrap_or_default().to_string_lossy();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for n in 0..100u32 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let target = dir.join(format!("{name}.{now}{suffix}.log"));
        match std::fs::hard_link(temp, &target) {
            Ok(()) => {
                let _ = std::fs::remove_file(temp);
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("keeping the build log {}", target.display()));
            }
        }
    }
    anyhow::bail!("keeping the build log: too many logs in {}", dir.display())
}

fn build_recorded(
    o: &CommonOptions,
    b: &BuildOptions,
    recorder: &Recorder,
    log_slot: &mut LogSlot,
    hold: &mut Option<SignalHold>,
) -> anyhow::Result<Built> {
    let started = std::time::SystemTime::now();
    let sign_key = b
        .sign_key
        .as_deref()
        .map(crate::provenance::keys::SignKey::load)
        .transpose()?;
    if b.format == OutputFormat::Tar {
        output_is_writable(&b.out)?;
    } else if b.oci {
        return Err(BuildError::Oci(
            "--oci publishes an OCI archive beside a tarball: it needs --format tar".into(),
        )
        .into());
    }
    let recipe = o.load_recipe()?;
    if b.format == OutputFormat::Tar {
        // An exact version that is taken is refused before anything is fetched (the claim
        // checks again under the directory's lock).
        if let Some(n) = b.version {
            crate::artifact::check_version_free(&b.out, &recipe.image.name, n)?;
        }
        // An OCI archive that cannot be made (xz, an unknown architecture) is refused first.
        if b.oci || recipe.image.oci {
            crate::oci::check_possible(b.compression, &recipe.source.architecture)
                .map_err(|e| BuildError::Oci(e.to_string()))?;
        }
    }
    let persistent_tree = StageOutput::Dir(PathBuf::new());
    let staged_output = match b.format {
        OutputFormat::Tar => &StageOutput::Tar,
        OutputFormat::Dir => &persistent_tree,
    };
    stage::staging::check(b.staging, staged_output, b.keep_staging.is_some())?;
    // A recipe that asks for the network needs a stack on this host: refused before anything
    // is fetched.
    if recipe.provision_network && !recipe.provision.is_empty() {
        stage::usernet::Helper::find(b.network_stack).map_err(BuildError::NetworkStack)?;
    }
    let r = crate::resolve::resolve(o, recorder, b.locked)?;
    let cache = o.cache();
    recorder.expect_packages(r.plan.packages.len());
    // The Essential closure is fetched first; a tar build's stage starts on it while the
    // rest still downloads (see `while_rest_downloads`).
    let first_round = r.plan.essential_closure();
    let (first, rest): (Vec<&plan::PlannedPackage>, Vec<&plan::PlannedPackage>) = r
        .plan
        .packages
        .iter()
        .partition(|p| first_round.contains(&p.name));
    let downloading = (o.jobs, b.locked);
    let (first_debs, _) = fetch_some(&r.transport, &cache, &first, downloading, recorder)?;
    let stage_debs: Vec<StageDeb> = r
        .plan
        .packages
        .iter()
        .map(|p| StageDeb {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            essential: first_round.contains(&p.name),
            path: cache.path_for(&p.sha256),
            sha256: p.sha256.clone(),
            pre_depends_on: p.pre_depends_on.clone(),
            depends_on: p.depends_on.clone(),
        })
        .collect();
    let mut spec = StageSpec {
        debs: stage_debs,
        provision: r.recipe.provision.clone(),
        provision_network: r.recipe.provision_network,
        network_stack: b.network_stack,
        cleanup: r.recipe.cleanup.clone(),
        staging_parent: cache.staging_dir(),
        keep_staging: b.keep_staging.clone(),
        epoch: r.epoch,
        output: StageOutput::Tar,
        seed: None,
        apt_extended_states: Some(r.plan.apt_extended_states(&r.recipe.source.architecture)),
        base_cache: (!b.no_base_cache).then(|| cache.base_dir()),
        staging_tmpfs: None,
        script_env: r.recipe.script_env(),
        script_timeout_secs: Some(r.recipe.script_timeout_secs),
        memory_max_bytes: None,
        pids_max: None,
        limits: Default::default(),
    };
    spec.staging_tmpfs = stage::staging::decide(
        b.staging,
        r.plan.total_size(),
        staged_output,
        b.keep_staging.is_some(),
    )?;
    if !rest.is_empty() {
        recorder.message(&format!(
            "{} more package{} download{} while the Essential set is installed",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            if rest.len() == 1 { "s" } else { "" },
        ));
    }
    std::fs::create_dir_all(&spec.staging_parent)
        .with_context(|| format!("creating {}", spec.staging_parent.display()))?;
    if let Some(keep) = &b.keep_staging {
        spec.keep_staging = Some(private_tree_dir(keep)?);
    }

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
        let dir_out = std::fs::canonicalize(&parent)?.join(b.out.file_name().unwrap_or_default());
        open_log_file(recorder, &with_suffix(&dir_out, ".log"))?;
        *log_slot = LogSlot::InPlace;
        let out = private_tree_dir(&dir_out)?;
        // Staged inside the private directory too: the same filesystem, never reachable.
        spec.staging_parent = dir_out.clone();
        spec.output = StageOutput::Dir(out.clone());
        let (fetched, staged) = while_rest_downloads(&r, &cache, &rest, downloading, |gate| {
            stage::run_stage_gated(&spec, gate, &mut |_| Ok(()), recorder)
        });
        if staged.is_err() {
            // Nothing half-written: the stage removed its tree; the private directory goes.
            let _ = std::fs::remove_dir(&dir_out);
        }
        if let Err(e @ stage::StageError::Interrupted { .. }) = staged {
            return Err(e.into());
        }
        if let Some(Err(e)) = fetched {
            return Err(e);
        }
        staged?;
        return Ok(Built {
            path: out,
            manifest: None,
            log: None,
            stages: Vec::new(),
            oci: None,
        });
    }

    let dir = match OutputDir::try_lock(&b.out, &r.recipe.image.name)? {
        Some(dir) => dir,
        None => {
            recorder.message(&format!(
                "waiting for another build of {} in {} to finish (it holds {})",
                r.recipe.image.name,
                b.out.display(),
                b.out
                    .join(format!(".{}.lock", r.recipe.image.name))
                    .display()
            ));
            OutputDir::lock(&b.out, &r.recipe.image.name)?
        }
    };
    let request = match b.version {
        Some(n) => VersionRequest::Exact(n),
        None => VersionRequest::Next,
    };
    let mut claim = dir.claim(request, b.compression)?;
    let final_path = b.out.join(claim.file_name());
    // Not a `.<image>-v….partial` name: a build that takes the directory's lock after this one
    // releases it sweeps those, and this log is published only after the lock is released.
    let temp_log = b.out.join(crate::artifact::build_log_temp_name(
        claim.file_name(),
        std::process::id(),
    ));
    open_log_file(recorder, &temp_log)?;
    *log_slot = LogSlot::Publish(final_path.clone());
    recorder.message(&format!("building {}", final_path.display()));
    let mut compressed: Option<Result<u64, crate::export::ExportError>> = None;
    // SHA-256 of the uncompressed tar (the OCI layer's diff_id), hashed on the way through.
    let mut diff_id: Option<String> = None;
    let (fetched, staged) = while_rest_downloads(&r, &cache, &rest, downloading, |gate| {
        stage::run_stage_gated(
            &spec,
            gate,
            &mut |tar| {
                let mut counted = CountingWriter {
                    inner: &mut claim,
                    reporter: recorder,
                };
                let mut tar = crate::oci::DiffIdReader::new(tar);
                let res = compress::compress_stream(b.compression, &mut tar, &mut counted);
                diff_id = Some(tar.sha256());
                // The image is written: from here to the end of the publish a signal must not
                // end the process between two files (nor leave the temp file). It is held (the
                // stage child, whose stream is over, is no longer told) and acted on just before
                // the publish begins.
                hold.get_or_insert_with(SignalHold::begin);
                let failed = res.is_err();
                compressed = Some(res);
                if failed {
                    Err(std::io::Error::other("compression failed"))
                } else {
                    Ok(())
                }
            },
            recorder,
        )
    });
    // Held already unless the stage ended before its stream did.
    let hold = hold.get_or_insert_with(SignalHold::begin);
    // The first error is the one reported: when writing the output failed (a full disk), the
    // stage child was stopped because of it, and its exit is a consequence, not the cause. A
    // signal the user sent still wins.
    let written = claim.temp_path().display().to_string();
    if let Err(e @ stage::StageError::Interrupted { .. }) = staged {
        return Err(e.into());
    }
    // A failed download stopped the stage (its gate closed): the download's error is the one.
    let rest_debs = match fetched {
        Some(Err(e)) => return Err(e),
        Some(Ok(debs)) => debs,
        None => Vec::new(),
    };
    match (staged, compressed.take()) {
        (Err(e @ stage::StageError::Interrupted { .. }), _) => return Err(e.into()),
        (_, Some(Err(e))) => {
            return Err(anyhow::Error::from(e).context(format!("writing {written}")));
        }
        (Err(e), _) => return Err(e.into()),
        (Ok(()), None) => anyhow::bail!("the build produced no tar stream"),
        (Ok(()), Some(Ok(_))) => {}
    }
    claim
        .flush()
        .with_context(|| format!("writing {written}"))?;

    recorder.begin("verify", None);
    crate::signal_hold::pause_for_test("verify");
    let report = verify::verify_tarball(claim.temp_path())?;
    if !report.ok() {
        anyhow::bail!(
            "refusing to publish {}: the image breaks the golden-image contract:\n{report}",
            claim.file_name()
        );
    }
    recorder.finish("golden-image contract holds");

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
        stages: recorder.times(),
    };
    // Every package, in plan order.
    let mut fetched_by_name: std::collections::HashMap<String, fetch::FetchedDeb> = first_debs
        .into_iter()
        .chain(rest_debs)
        .map(|d| (d.package.name.clone(), d))
        .collect();
    let debs: Vec<fetch::FetchedDeb> = r
        .plan
        .packages
        .iter()
        .filter_map(|p| fetched_by_name.remove(&p.name))
        .collect();
    let sbom = crate::sbom::describe_packages(&debs)?;
    // The decision point: a signal held until now abandons the build (the claim's temp file
    // goes with it); one that comes after is acted on once the publish is complete.
    if let Some(signal) = hold.received() {
        anyhow::bail!(
            "interrupted by {signal} before {} was published: nothing was published",
            claim.file_name()
        );
    }
    let choices = crate::provenance::BuildChoices {
        locked: b.locked,
        compression: b.compression,
        staging: b.staging,
        base_cache: !b.no_base_cache,
    };
    let statement = crate::provenance::statement_for_build(
        &r,
        &choices,
        claim.file_name(),
        &claim.sha256(),
        started,
    )?;
    let provenance = crate::provenance::render_envelope(&statement, sign_key.as_ref());
    let oci = match (b.oci || r.recipe.image.oci, &diff_id) {
        (true, Some(diff_id)) => Some(publish_oci(&dir, &claim, &r, diff_id)?),
        _ => None,
    };
    let published = match claim.publish_with_sidecars(
        inputs,
        &sbom,
        vec![(crate::provenance::SIDECAR_SUFFIX, provenance)],
    ) {
        Ok(published) => published,
        Err(e) => {
            // The tarball is the commit point: an OCI archive without it goes.
            if let Some(path) = &oci {
                let _ = std::fs::remove_file(crate::artifact::sidecar(path, ".sha256"));
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    recorder.log(&format!("published {}", published.path.display()));
    Ok(Built {
        path: published.path,
        manifest: Some(published.manifest),
        log: None,
        stages: Vec::new(),
        oci,
    })
}

/// Refuse an output directory the artifact cannot be written to before anything is fetched or
/// built, without creating anything: an existing directory must take a probe file; a missing
/// one must be creatable (its nearest existing ancestor writable). The directory itself is
/// created only once the recipe has been read and the archive verified.
fn output_is_writable(out: &std::path::Path) -> Result<(), BuildError> {
    let refused = |detail: String| BuildError::OutputNotWritable {
        dir: out.to_path_buf(),
        detail,
    };
    if out.is_dir() {
        return tempfile::Builder::new()
            .prefix(".ingot-probe-")
            .tempfile_in(out)
            .map(drop)
            .map_err(|e| refused(e.to_string()));
    }
    let absolute = std::path::absolute(out).map_err(|e| refused(e.to_string()))?;
    let mut ancestor = absolute.parent();
    while let Some(dir) = ancestor {
        if dir.is_dir() {
            return nix::unistd::access(
                dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .map_err(|e| refused(std::io::Error::from(e).to_string()));
        }
        if dir.exists() {
            return Err(refused(format!("{} is not a directory", dir.display())));
        }
        ancestor = dir.parent();
    }
    Err(refused("no existing ancestor".into()))
}

/// Why a build was refused before it started (the stage's, the archive's and the artifact's
/// errors are their own modules' types).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `[provision] network = true`, and no user-mode network stack to give it with.
    #[error("{0}")]
    NetworkStack(String),
    /// `--oci` cannot be honoured with these options (the message says why).
    #[error("{0}")]
    Oci(String),
    /// The output directory cannot take the artifact.
    #[error(
        "output directory {}: not writable (expected a directory this user can create files in): {detail}",
        dir.display()
    )]
    OutputNotWritable {
        /// The `--out` directory.
        dir: PathBuf,
        /// Why not.
        detail: String,
    },
}

/// Publishes `<image>-v<N>.oci.tar` beside the claimed tarball, whose written (not yet
/// published) bytes are its one layer. Reads the compressed layer once more to copy it into
/// the archive; the uncompressed tar is not read again (`diff_id` was hashed while streaming).
fn publish_oci(
    dir: &OutputDir,
    claim: &crate::artifact::Claim<'_>,
    r: &Resolved,
    diff_id: &str,
) -> anyhow::Result<PathBuf> {
    let path = dir.path().join(format!("{}.oci.tar", claim.base_name()));
    let layer_sha256 = claim.sha256_so_far();
    let version = claim.version().to_string();
    let ref_name = format!("v{version}");
    // The recipe it was built from, not the mirror: the bytes must not depend on where the
    // packages were fetched from.
    let source = format!(
        "recipes/{}",
        r.recipe
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let image = crate::oci::OciImage {
        layer_path: claim.temp_path(),
        layer_sha256: &layer_sha256,
        layer_size: claim.size(),
        compression: claim.compression(),
        diff_id,
        debian_arch: &r.recipe.source.architecture,
        epoch: r.epoch,
        ref_name: &ref_name,
        version: &version,
        revision: &r.recipe.digest,
        source: &source,
    };
    // With its own `.sha256`, as the tarball has one.
    dir.publish_new_with_sha256(&path, |out| {
        crate::oci::write_archive(out, &image)
            .map(drop)
            .map_err(anyhow::Error::from)
    })
    .with_context(|| format!("publishing {}", path.display()))?;
    Ok(path)
}

/// Counts the compressed bytes on their way into the artifact (the export bar).
struct CountingWriter<'w, 'r> {
    inner: &'w mut (dyn Write + Send),
    reporter: &'r dyn Reporter,
}

impl Write for CountingWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.reporter.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Create `dir` (it must not exist) as a directory only the caller can enter (mode 0700) and
/// return where a tree goes inside it, `dir/rootfs`: a `--format dir` or `--keep-staging`
/// tree's setuid files are then never runnable by other users of the host.
fn private_tree_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "creating {} (a new directory, mode 0700, for the tree)",
                dir.display()
            )
        })?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    Ok(dir.join("rootfs"))
}
