//! The recipe's provision and cleanup scripts, run inside the chroot.
//!
//! Each script is copied into the root as `/tmp/ingot-<kind>-<n>`, run with `/bin/sh` via
//! [`command_in_chroot`](super::chroot::command_in_chroot) (clean environment, nothing of the
//! caller's), its output streamed line by line to stderr prefixed with the script's name, and
//! the copy removed again. A script that fails fails the build, naming the script, its status
//! and its last lines of output.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::OFlag;

use super::confined;

/// Lines of a failing script's output quoted in the error.
const TAIL_LINES: usize = 5;

/// Provision or cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// Runs after the packages are configured, with the host's resolv.conf.
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
    /// Starting `/bin/sh` in the chroot.
    #[error("{kind} script {name}: cannot run /bin/sh in the image: {source}")]
    Start {
        /// provision/cleanup.
        kind: &'static str,
        /// The script's file name.
        name: String,
        /// The cause.
        source: std::io::Error,
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

/// Run the host script `script` as the `index`th (1-based) script of `kind` in `root`.
pub fn run_script(
    root: &Path,
    script: &Path,
    kind: ScriptKind,
    index: usize,
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
    let result = run_copied(root, &format!("/{shown}"), &name, word, log);
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
    log: &mut dyn FnMut(&str),
) -> Result<(), ScriptError> {
    let start = |source| ScriptError::Start {
        kind: word,
        name: name.to_string(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(start)?;
    let writer2 = writer.try_clone().map_err(start)?;
    let mut cmd = super::chroot::command_in_chroot(root, "/bin/sh", [inside]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    let mut child = cmd.spawn().map_err(start)?;
    // The Command still holds the write ends; drop it so EOF arrives when the script ends.
    drop(cmd);
    // Lines are read on a thread so that the script's own exit, not the end of its output,
    // ends the step: a daemon it left in the background may hold the pipe open forever.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader_thread = std::thread::spawn(move || {
        super::for_each_line(reader, |line| lines_tx.send(line).is_ok());
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let show = |log: &mut dyn FnMut(&str), line: String, tail: &mut VecDeque<String>| {
        log(&crate::progress::output_line(name, &line));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let status = loop {
        match lines_rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => show(&mut *log, line, &mut tail),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().map_err(start)? {
                    break status;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                break child.wait().map_err(start)?;
            }
        }
    };
    if kill_leftover_processes() {
        log(&format!("{name}: stopped the processes it left running"));
    }
    // Every writer is gone now (or never existed outside our pid namespace): drain.
    for line in lines_rx.iter() {
        show(&mut *log, line, &mut tail);
    }
    let _ = reader_thread.join();
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by {}", super::signals::signal_name(sig)),
        _ => status.to_string(),
    };
    let last_output = if tail.is_empty() {
        "(none)".to_string()
    } else {
        Vec::from(tail).join(" | ")
    };
    Err(ScriptError::Failed {
        kind: word,
        name: name.to_string(),
        status,
        last_output,
    })
}

/// In the build's pid namespace (this process is its init, pid 1), kill every other process:
/// nothing a maintainer or recipe script started may outlive its step. Does nothing anywhere
/// else (outside its own pid namespace, `kill(-1)` would reach the host's processes). Returns
/// whether any process was killed.
pub fn kill_leftover_processes() -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    if nix::unistd::getpid().as_raw() != 1 {
        return false;
    }
    let any = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(-1),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok();
    if any {
        // Reap them (we are their reaper); none of our own children is still running here.
        loop {
            match waitpid(nix::unistd::Pid::from_raw(-1), None::<WaitPidFlag>) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    any
}

/// Is there a `/bin/sh` in the root (resolved as the chroot would)?
pub fn has_shell(root: &Path) -> bool {
    confined::open_root(root)
        .and_then(|fd| confined::open_in(&fd, "bin/sh", OFlag::O_PATH))
        .is_ok()
}
