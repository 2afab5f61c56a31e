//! The recipe's provision and cleanup scripts, run inside the image's sandbox.
//!
//! Each script is copied into the root as `/tmp/ingot-<kind>-<n>`, run with `/bin/sh` in the
//! [`sandbox`] (clean environment, nothing of the caller's, no network unless
//! the recipe's provision asks for it), its output streamed line by line to stderr prefixed
//! with the script's name, and the copy removed again. A script that fails fails the build, naming the script, its status
//! and its last lines of output.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use nix::fcntl::OFlag;

use super::confined;
use super::sandbox::{self, Network};

/// Lines of a failing script's output quoted in the error.
const TAIL_LINES: usize = 5;

/// Provision or cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// Runs after the packages are configured; with the host's network and resolv.conf only
    /// when the recipe says `[provision] network = true`.
    Provision,
    /// Runs after provisioning, before the cleanup invariants, without network configuration.
    Cleanup,
}

impl ScriptKind {
    fn word(self) -> &'static str {
        match self {
            ScriptKind::Provision => "provision",
            ScriptKind::Cleanup => "cleanup",
        }
    }
}

/// A script that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// Reading the script on the host.
    #[error("cannot read {kind} script {path}: {source}")]
    Read {
        /// provision/cleanup.
        kind: &'static str,
        /// The host path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Placing the copy inside the root.
    #[error("{kind} script {name}: {source}")]
    Place {
        /// provision/cleanup.
        kind: &'static str,
        /// The script's file name.
        name: String,
        /// The cause.
        source: confined::ConfinedError,
    },
    /// Starting `/bin/sh` in the image's sandbox.
    #[error("{kind} script {name}: cannot run /bin/sh in the image: {source}")]
    Start {
        /// provision/cleanup.
        kind: &'static str,
        /// The script's file name.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The script ran past its time limit and was stopped.
    #[error(
        "{kind} script {name} exceeded its time limit of {limit_secs} s ([provision] timeout) \
         and was stopped; last output: {last_output}"
    )]
    TimedOut {
        /// provision/cleanup.
        kind: &'static str,
        /// The script's file name.
        name: String,
        /// The limit.
        limit_secs: u64,
        /// Its last lines, joined with ` | `.
        last_output: String,
    },
    /// The script failed.
    #[error("{kind} script {name} {status}; last output: {last_output}")]
    Failed {
        /// provision/cleanup.
        kind: &'static str,
        /// The script's file name.
        name: String,
        /// `exited with status 3` or `was killed by SIGKILL`.
        status: String,
        /// Its last lines, joined with ` | `.
        last_output: String,
    },
}

/// How a recipe script runs: its network, the variables added to its clean environment
/// (the build's suite mirrors), and its time limit.
#[derive(Debug, Clone, Copy)]
pub struct ScriptRun<'a> {
    /// Loopback only, or the network the recipe asked for.
    pub network: Network,
    /// Added to the sandbox's clean environment.
    pub env: &'a [(String, String)],
    /// Killed, with everything it started, after this long.
    pub timeout: std::time::Duration,
    /// The build's limits, to name the one a failing script hit.
    pub limits: &'a super::limits::Applied,
}

/// Run the host script `script` as the `index`th (1-based) script of `kind` in `root`.
pub fn run_script(
    root: &Path,
    script: &Path,
    kind: ScriptKind,
    index: usize,
    how: ScriptRun<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<(), ScriptError> {
    let word = kind.word();
    let name = script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| script.display().to_string());
    let body = std::fs::read(script).map_err(|source| ScriptError::Read {
        kind: word,
        path: script.to_path_buf(),
        source,
    })?;
    let place = |source| ScriptError::Place {
        kind: word,
        name: name.clone(),
        source,
    };
    let root_fd = confined::open_root(root).map_err(place)?;
    let mut created = Vec::new();
    let tmp = confined::ensure_dir_in(&root_fd, "tmp", 0o1777, &mut created).map_err(place)?;
    let copy = format!("ingot-{word}-{index}");
    let shown = format!("tmp/{copy}");
    // A stale copy from an earlier script of the same name cannot exist (fresh root), but a
    // package could ship one: refuse rather than overwrite (O_EXCL).
    confined::create_file_at(&tmp, &copy, 0o700, &body, &shown).map_err(place)?;

    log(&format!("running {word} script {name}"));
    let result = run_copied(root, &format!("/{shown}"), &name, word, how, log);
    let removed = confined::unlink_at(&tmp, &copy, &shown);
    result?;
    match removed {
        Ok(()) => Ok(()),
        // The script removed its own copy (e.g. `rm -rf /tmp/*`): fine.
        Err(e) if e.errno == nix::errno::Errno::ENOENT => Ok(()),
        Err(e) => Err(place(e)),
    }
}

fn run_copied(
    root: &Path,
    inside: &str,
    name: &str,
    word: &'static str,
    how: ScriptRun<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<(), ScriptError> {
    let before = how.limits.counters();
    let finished = sandbox::run_limited(
        root,
        "/bin/sh",
        [inside],
        how.env,
        how.network,
        TAIL_LINES,
        Some(how.timeout),
        &mut |line| log(&crate::progress::output_line(name, line)),
    )
    .map_err(|source| ScriptError::Start {
        kind: word,
        name: name.to_string(),
        source,
    })?;
    let last_output = if finished.tail.is_empty() {
        "(none)".to_string()
    } else {
        finished.tail.join(" | ")
    };
    if finished.timed_out {
        return Err(ScriptError::TimedOut {
            kind: word,
            name: name.to_string(),
            limit_secs: how.timeout.as_secs(),
            last_output,
        });
    }
    let status = finished.status;
    if status.success() {
        return Ok(());
    }
    let mut status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by {}", super::signals::signal_name(sig)),
        _ => status.to_string(),
    };
    if let Some(limit) = how.limits.explain(before, &last_output) {
        status = format!("{status}: {limit}");
    }
    Err(ScriptError::Failed {
        kind: word,
        name: name.to_string(),
        status,
        last_output,
    })
}

/// Is there a `/bin/sh` in the root (resolved as the chroot would)?
pub fn has_shell(root: &Path) -> bool {
    confined::open_root(root)
        .and_then(|fd| confined::open_in(&fd, "bin/sh", OFlag::O_PATH))
        .is_ok()
}
