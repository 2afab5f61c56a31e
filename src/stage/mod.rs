//! The stage: from verified `.deb`s to a configured, provisioned, cleaned root filesystem,
//! inside a user + mount + pid namespace, without host privileges.
//!
//! Process model: the (multi-threaded) parent re-executes `/proc/self/exe __stage JOB` (never a
//! bare fork); the child unshares user, mount and pid namespaces while single-threaded, the
//! parent writes the id maps (newuidmap/newgidmap, or directly as real root) and releases it
//! through a pipe. Inside, a supervisor forks the worker (pid 1 of the build), which sets up
//! the image's environment ([`mounts`]), installs the packages ([`install`]), runs the provision
//! and cleanup scripts ([`scripts`]), tears the environment down, enforces the cleanup
//! invariants ([`invariants`]) and either leaves the tree in place (`--format dir`) or streams
//! it on stdout for the parent to compress, through the [`TreeExporter`] the binary hands it
//! (the stage never depends on the export format). Whatever happens, the supervisor
//! unmounts everything and removes (or keeps, on request) the staging tree; if even the
//! supervisor died, the parent removes the tree with a namespaced `rm -rf`. (The parent
//! creates the empty staging directory itself, mode 0700, under `staging_parent`, so that it
//! always knows which tree to remove; the image's root is `root/` inside it, so its setuid
//! files are never reachable by other users of the host.) A tar build's tree is usually on a
//! tmpfs the supervisor mounts on that directory in its own mount namespace ([`staging`]):
//! then unmounting is removing, and nothing survives the namespace. Every program run inside
//! the image goes through the one [`sandbox`] runner.
//!
//! This module owns the namespaces, the id maps, the image's environment and the teardown. It
//! must never run anything on the host's root filesystem, and never leave a mount or a staging
//! tree behind.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::epoch::BuildEpoch;

/// One `.deb` to install.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageDeb {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// In the first round (extracted, then installed): `Essential: yes` and everything those
    /// need through `Pre-Depends`/`Depends` (see `Plan::essential_closure`).
    pub essential: bool,
    /// The verified `.deb` in the cache.
    pub path: PathBuf,
    /// Its SHA-256 (lowercase hex) from the signed index: the copy dpkg unpacks is hashed
    /// while it is written and refused unless it matches.
    pub sha256: String,
    /// Selected packages that satisfy its `Pre-Depends`.
    pub pre_depends_on: Vec<String>,
    /// Selected packages that satisfy its `Depends`.
    pub depends_on: Vec<String>,
}

/// What the child produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StageOutput {
    /// Leave the tree at this path (it must not exist yet).
    Dir(PathBuf),
    /// Stream a deterministic tar of the tree on stdout, then remove the tree.
    Tar,
}

/// Everything the namespaced child needs, passed to it as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSpec {
    /// The packages, in plan order.
    pub debs: Vec<StageDeb>,
    /// Provision scripts (host paths), run in order inside the image's sandbox.
    pub provision: Vec<PathBuf>,
    /// Give the provision scripts a network through a user-mode network stack (recipe
    /// `[provision] network = true`; see [`usernet`]): outbound connections and DNS, never the
    /// host's loopback or its abstract sockets. Otherwise they, like dpkg and the cleanup
    /// scripts, see only a loopback interface of their own.
    #[serde(default)]
    pub provision_network: bool,
    /// The stack to use for it (`None`: pasta, else slirp4netns; `--network-stack`).
    #[serde(default)]
    pub network_stack: Option<usernet::Stack>,
    /// Cleanup scripts (host paths), run after provisioning, before the cleanup invariants.
    pub cleanup: Vec<PathBuf>,
    /// Where the staging directory is created (a fresh subdirectory of it).
    pub staging_parent: PathBuf,
    /// Keep the staging tree here instead of removing it (debugging).
    pub keep_staging: Option<PathBuf>,
    /// Clamp for every mtime written.
    pub epoch: BuildEpoch,
    /// Directory or tar stream.
    pub output: StageOutput,
    /// A host directory copied (owners and modes kept) into the empty root before any package
    /// is installed: a pre-seeded tree for tests or site overlays. `None` for a normal build.
    #[serde(default)]
    pub seed: Option<PathBuf>,
    /// `var/lib/apt/extended_states` to write after the packages are configured (apt's
    /// auto-installed marks), if apt is in the image.
    #[serde(default)]
    pub apt_extended_states: Option<String>,
    /// The base-cache directory (`<cache>/base`): restore the configured tree from it, or
    /// store it there ([`base_cache`]). `None` (`--no-base-cache`, or a seeded build): neither.
    #[serde(default)]
    pub base_cache: Option<PathBuf>,
    /// Put the staging tree on a private tmpfs of at most this many bytes, mounted in the
    /// build's mount namespace ([`staging`]); `None`: a directory on disk.
    #[serde(default)]
    pub staging_tmpfs: Option<u64>,
    /// Variables added to the provision and cleanup scripts' clean environment
    /// (`INGOT_SUITE_MIRRORS`: the build's `suite=URL` pairs).
    #[serde(default)]
    pub script_env: Vec<(String, String)>,
    /// The time limit of each provision and cleanup script in seconds (`[provision] timeout`);
    /// `None`: [`crate::recipe::DEFAULT_SCRIPT_TIMEOUT_SECS`].
    #[serde(default)]
    pub script_timeout_secs: Option<u64>,
    /// The memory bound of the build and of each program in it, in bytes (`None`:
    /// [`limits::DEFAULT_MEMORY_BYTES`]); see [`limits`].
    #[serde(default)]
    pub memory_max_bytes: Option<u64>,
    /// The processes the whole build may have at once where a cgroup enforces it (`None`:
    /// [`limits::BUILD_PIDS`]).
    #[serde(default)]
    pub pids_max: Option<u64>,
    /// Set by the stage itself (callers leave the default): the limits as enforced.
    #[serde(default)]
    pub limits: limits::Applied,
}

impl StageSpec {
    /// A spec with no packages, scripts, seed or caches, staged on disk under
    /// `staging_parent`: fill in what a build needs (`StageSpec { debs, ..StageSpec::new(…) }`).
    pub fn new(staging_parent: PathBuf, output: StageOutput, epoch: BuildEpoch) -> StageSpec {
        StageSpec {
            debs: Vec::new(),
            provision: Vec::new(),
            provision_network: false,
            network_stack: None,
            cleanup: Vec::new(),
            staging_parent,
            keep_staging: None,
            epoch,
            output,
            seed: None,
            apt_extended_states: None,
            base_cache: None,
            staging_tmpfs: None,
            script_env: Vec::new(),
            script_timeout_secs: None,
            memory_max_bytes: None,
            pids_max: None,
            limits: limits::Applied::default(),
        }
    }
}

pub mod apparmor;
pub mod base_cache;
mod check;
mod child;
pub mod confined;
pub mod doctor;
pub mod idmap;
pub mod install;
pub mod invariants;
pub mod limits;
pub mod mounts;
mod nested_userns;
pub mod proc_masks;
pub mod sandbox;
pub mod scripts;
mod signals;
mod spawn;
pub mod staging;
pub mod syscall_filter;
pub mod usernet;

pub use check::Check;

/// A stage failure, as one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A step inside the image failed (dpkg, a recipe script, the cleanup invariants, the
    /// export): which step, its exit status, and its last output.
    #[error("{0}")]
    StepFailed(StepFailure),
    /// Anything else that went wrong, already worded for the user (usually the child's last
    /// error line).
    #[error("{0}")]
    Failed(String),
    /// The host cannot build rootless: the first failing `ingot doctor` check, with its fix.
    #[error("host preflight failed: {0}")]
    Preflight(String),
    /// The stage child could not be started.
    #[error("cannot start the stage child {exe}: {source}")]
    Spawn {
        /// The executable re-executed.
        exe: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file operation in the parent.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The build was stopped by a signal; mounts are gone and the staging tree removed (or
    /// kept where `keep_staging` asked).
    #[error("stage interrupted by {signal}")]
    Interrupted {
        /// `SIGINT`, `SIGTERM`, …
        signal: String,
    },
    /// The staging tree could not be removed.
    #[error("the staging tree {path} could not be removed: {detail}")]
    Leftover {
        /// The tree.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// A failed step of the stage, as the child reports it to the parent (one JSON line: the
/// process boundary is why it is serialised at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step (`install`, `provision`, `cleanup`, `export`, …).
    pub step: String,
    /// The failing program's status (`exited with status 3`, `was killed by SIGKILL`), when a
    /// program failed.
    pub status: Option<String>,
    /// What failed, in one line, without the output (e.g. `provision script provision.sh
    /// exited with status 3`).
    pub message: String,
    /// The failing program's last lines of output.
    pub output: Vec<String>,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if !self.output.is_empty() {
            write!(f, "; last output: {}", self.output.join(" | "))?;
        }
        Ok(())
    }
}

/// The child's tag for its [`StepFailure`] line.
const FAILURE_TAG: &str = "ingot: stage: failure: ";

impl StepFailure {
    /// The line the child prints for the parent.
    pub(crate) fn to_line(&self) -> String {
        format!(
            "{FAILURE_TAG}{}",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
        )
    }

    /// The failure a child's line reports, if it is one.
    fn from_line(line: &str) -> Option<StepFailure> {
        serde_json::from_str(line.strip_prefix(FAILURE_TAG)?).ok()
    }
}

impl StageError {
    fn io(what: &str, path: impl Into<PathBuf>, source: std::io::Error) -> StageError {
        StageError::Io {
            what: what.to_string(),
            path: path.into(),
            source,
        }
    }
}

/// The program re-executed for the namespaced child: normally this very binary
/// (`/proc/self/exe`); tests and embedders point it at the `ingot` binary.
#[derive(Debug, Clone)]
pub struct StageBinary {
    exe: PathBuf,
}

impl StageBinary {
    /// This process's own executable.
    pub fn current() -> StageBinary {
        StageBinary {
            exe: PathBuf::from("/proc/self/exe"),
        }
    }

    /// An `ingot` binary at `exe` (its main must dispatch `__stage`).
    pub fn at(exe: impl Into<PathBuf>) -> StageBinary {
        StageBinary { exe: exe.into() }
    }

    /// The host checks of `ingot doctor`, ending with a real trial in a namespace.
    pub fn doctor(&self) -> Vec<Check> {
        doctor::run_checks(&self.exe)
    }

    /// Remove `path`, a tree whose files may belong to subordinate ids (a `--format dir`
    /// output, a kept staging tree), from inside a user namespace.
    pub fn remove_tree(&self, path: &Path) -> Result<(), StageError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        let path = path
            .canonicalize()
            .map_err(|e| StageError::io("resolving the tree to remove", path, e))?;
        let released = spawn::spawn_in_namespace(
            &self.exe,
            child::ChildTask::Remove { path: path.clone() },
            Stdio::null(),
            &[],
        )?;
        let mut child = released.child;
        let mut text = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        let status = child
            .wait()
            .map_err(|e| StageError::io("waiting for the removal child", &path, e))?;
        if status.success() && std::fs::symlink_metadata(&path).is_err() {
            Ok(())
        } else {
            Err(StageError::Leftover {
                detail: last_error_line(text.lines()).unwrap_or_else(|| status.to_string()),
                path,
            })
        }
    }

    /// Run the stage for `spec` (see [`run_stage`]).
    pub fn run(
        &self,
        spec: &StageSpec,
        sink: &mut dyn FnMut(&mut dyn Read) -> std::io::Result<()>,
        reporter: &dyn crate::progress::Reporter,
    ) -> Result<(), StageError> {
        self.run_gated(spec, None, sink, reporter)
    }

    /// Run the stage for `spec` while the packages after the Essential set may still be
    /// downloading (see [`run_stage_gated`]).
    pub fn run_gated(
        &self,
        spec: &StageSpec,
        rest_gate: Option<OwnedFd>,
        sink: &mut dyn FnMut(&mut dyn Read) -> std::io::Result<()>,
        reporter: &dyn crate::progress::Reporter,
    ) -> Result<(), StageError> {
        reporter.begin("stage", None);
        if let StageOutput::Dir(out) = &spec.output
            && std::fs::symlink_metadata(out).is_ok()
        {
            return Err(StageError::Failed(format!(
                "the output directory {} already exists; remove it or choose another",
                out.display()
            )));
        }
        doctor::preflight(&self.exe)?;
        std::fs::create_dir_all(&spec.staging_parent)
            .map_err(|e| StageError::io("creating the staging parent", &spec.staging_parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix("ingot-stage-")
            .tempdir_in(&spec.staging_parent)
            .map_err(|e| StageError::io("creating the staging dir", &spec.staging_parent, e))?
            .keep();
        // Private: the image's setuid files inside must not be reachable by other users.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        let staging = match std::fs::set_permissions(&staging, private)
            .and_then(|()| staging.canonicalize())
        {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir(&staging);
                return Err(StageError::io("resolving the staging dir", staging, e));
            }
        };
        let tar = matches!(spec.output, StageOutput::Tar);
        // The build's cgroup, if it may have one; removed (dropped) after the child is gone.
        let cgroup = limits::BuildCgroup::create(
            spec.memory_max_bytes
                .unwrap_or(limits::DEFAULT_MEMORY_BYTES),
            spec.pids_max.unwrap_or(limits::BUILD_PIDS),
        );
        let mut child_spec = spec.clone();
        child_spec.limits = cgroup.applied().clone();
        let task = child::ChildTask::Build {
            spec: Box::new(child_spec),
            staging: staging.clone(),
            rest_gate_fd: rest_gate.as_ref().map(|fd| fd.as_raw_fd()),
        };
        let stdout = if tar { Stdio::piped() } else { Stdio::null() };
        let inherit: Vec<i32> = rest_gate.iter().map(|fd| fd.as_raw_fd()).collect();
        let spawned = spawn::spawn_joined(&self.exe, task, stdout, &inherit, Some(&cgroup));
        // The child has its own copy: the gate's writer must see it alone.
        drop(rest_gate);
        let released = match spawned {
            Ok(r) => r,
            Err(e) => {
                // The child never touched it: still ours, still empty.
                let _ = std::fs::remove_dir(&staging);
                return Err(e);
            }
        };
        let mut child = released.child;
        let forwarding = signals::Forwarding::register(child.id() as i32);
        let stderr = child.stderr.take();
        let stdout = child.stdout.take();
        let (sink_result, tail) = std::thread::scope(|scope| {
            let logs = scope.spawn(move || relay_stderr(stderr, reporter));
            let sink_result = match stdout {
                Some(mut out) if tar => {
                    let r = sink(&mut out);
                    if r.is_err() {
                        // Stop the build; the child cleans up.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(child.id() as i32),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    r
                }
                _ => Ok(()),
            };
            (sink_result, logs.join().unwrap_or_default())
        });
        let status = child
            .wait()
            .map_err(|e| StageError::io("waiting for the stage child", &staging, e))?;
        let interrupted = forwarding.interrupted_by();
        drop(forwarding);
        drop(cgroup);

        let kept = spec.keep_staging.is_some();
        // A finished tar build's tree is ours to remove (see child.rs: the supervisor cannot
        // remove it with threads); anything else left behind is unexpected.
        let handed_over = tar && status.success() && interrupted.is_none();
        let leftover = if !kept && std::fs::symlink_metadata(&staging).is_ok() {
            if !handed_over {
                reporter.message("the stage child left its staging tree; removing it");
            }
            self.remove_tree(&staging).err()
        } else {
            None
        };

        let result = if let Some(sig) = interrupted {
            Err(StageError::Interrupted {
                signal: signals::signal_name(sig),
            })
        } else if let Err(e) = sink_result {
            // First: the sink's failure (a full output disk) is why the child was stopped.
            Err(StageError::Failed(format!(
                "consuming the image's tar stream failed: {e}"
            )))
        } else if let (false, Some(failure)) = (
            status.success(),
            tail.iter().rev().find_map(|l| StepFailure::from_line(l)),
        ) {
            Err(StageError::StepFailed(failure))
        } else if !status.success() {
            Err(StageError::Failed(
                last_error_line(tail.iter().map(String::as_str)).unwrap_or_else(|| {
                    format!(
                        "the stage child ended with {status}; last output: {}",
                        tail.join(" | ")
                    )
                }),
            ))
        } else {
            Ok(())
        };
        match (result, leftover) {
            (Ok(()), Some(e)) => Err(e),
            (Err(e), Some(left)) => Err(StageError::Failed(format!("{e}; also: {left}"))),
            (r, None) => {
                if r.is_ok() {
                    reporter.finish("done");
                }
                r
            }
        }
    }
}

/// Lines of the child's stderr kept for the error message.
const TAIL_LINES: usize = 12;

/// Forward the child's log lines to the reporter; return the last few (and, last, the
/// child's failure line if it sent one).
fn relay_stderr(
    stderr: Option<std::process::ChildStderr>,
    reporter: &dyn crate::progress::Reporter,
) -> Vec<String> {
    let mut tail = std::collections::VecDeque::with_capacity(TAIL_LINES);
    let mut failure = None;
    let Some(stderr) = stderr else {
        return Vec::new();
    };
    for_each_line(stderr, |line| {
        if line.starts_with(FAILURE_TAG) {
            // For the parent's result, not the log (the `error:` line before it is).
            failure = Some(line);
            return true;
        }
        reporter.message(line.strip_prefix("ingot: stage: ").unwrap_or(&line));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
        true
    });
    tail.into_iter().chain(failure).collect()
}

/// Call `f` with each line of `reader` (lossily decoded, line ending removed) until the end,
/// a read error, or `f` returns false.
pub(crate) fn for_each_line(reader: impl std::io::Read, mut f: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        if !f(line.trim_end_matches(['\n', '\r']).to_string()) {
            break;
        }
    }
}

/// The message of the last `ingot: stage: error: …` line, if any.
fn last_error_line<'a>(lines: impl Iterator<Item = &'a str>) -> Option<String> {
    lines
        .filter_map(|l| l.strip_prefix("ingot: stage: error: "))
        .last()
        .map(str::to_string)
}

/// Parent side: run the namespaced child for `spec`. With [`StageOutput::Tar`], the child's
/// tar stream is handed to `sink` (which must read it to the end).
///
/// Runs the preflight first (the first failing [`doctor`](mod@doctor) check is the error). SIGINT, SIGTERM
/// and SIGHUP received meanwhile are forwarded to the child, which tears down and removes the
/// staging tree; the result is then [`StageError::Interrupted`].
pub fn run_stage(
    spec: &StageSpec,
    sink: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    reporter: &dyn crate::progress::Reporter,
) -> Result<(), StageError> {
    StageBinary::current().run(spec, sink, reporter)
}

/// [`run_stage`] while the `.deb`s of the packages after the Essential set may still be
/// downloading: the stage extracts and installs the Essential set, then reads one byte from
/// `rest_gate` (the caller writes it once the others are in the cache, verified) before it
/// copies and unpacks them; end of file instead fails the stage. `None`: all are there.
pub fn run_stage_gated(
    spec: &StageSpec,
    rest_gate: Option<OwnedFd>,
    sink: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    reporter: &dyn crate::progress::Reporter,
) -> Result<(), StageError> {
    StageBinary::current().run_gated(spec, rest_gate, sink, reporter)
}

/// Writes the finished tree at the given root to the output as a stream (the tar exporter):
/// the stage hands the tree and the pipe to it and never depends on the export format.
pub type TreeExporter = fn(&Path, &mut dyn std::io::Write, BuildEpoch) -> Result<(), String>;

/// Child side: the entry point of `ingot __stage SPEC.json`, streaming the tree through
/// `export` for [`StageOutput::Tar`]; returns the process exit code.
pub fn child_main(spec: &std::path::Path, export: TreeExporter) -> i32 {
    child::child_entry(spec, export)
}

/// `ingot doctor`: every host check, ending with a trial in a real namespace.
pub fn doctor() -> Vec<Check> {
    StageBinary::current().doctor()
}

/// Remove a tree owned by subordinate ids (see [`StageBinary::remove_tree`]).
pub fn remove_staged_tree(path: &Path) -> Result<(), StageError> {
    StageBinary::current().remove_tree(path)
}
