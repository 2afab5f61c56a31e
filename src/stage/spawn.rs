//! Parent side of the re-exec: start `EXE __stage JOB.json`, wait until the child has unshared
//! its user namespace, write its id maps, and release it.
//!
//! The parent may be multi-threaded, so it never forks without exec: the only code that runs
//! between fork and exec is the async-signal-safe `pre_exec` closure below. The child unshares
//! itself (it is single-threaded right after exec).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::StageError;
use super::child::{ChildJob, ChildTask};
use super::idmap;

/// A namespaced child that has been released (its ids are mapped).
pub(crate) struct Released {
    /// The process.
    pub child: Child,
}

/// Start the child for `task` and complete the id-mapping handshake.
pub(crate) fn spawn_in_namespace(
    exe: &Path,
    task: ChildTask,
    stdout: Stdio,
    inherit: &[i32],
) -> Result<Released, StageError> {
    spawn_joined(exe, task, stdout, inherit, None)
}

/// [`spawn_in_namespace`], the child moved into `cgroup` before it is released (so that
/// nothing it starts is outside it).
pub(crate) fn spawn_joined(
    exe: &Path,
    task: ChildTask,
    stdout: Stdio,
    inherit: &[i32],
    cgroup: Option<&super::limits::BuildCgroup>,
) -> Result<Released, StageError> {
    let inherit: [i32; 1] = match inherit {
        [] => [-1],
        [fd] => [*fd],
        _ => {
            return Err(StageError::Failed(
                "the stage child inherits at most one extra descriptor".into(),
            ));
        }
    };
    let plan = idmap::plan_for_caller().map_err(|e| StageError::Preflight(e.to_string()))?;
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let job = ChildJob {
        ready_fd: ready_w.as_raw_fd(),
        go_fd: go_r.as_raw_fd(),
        task,
    };
    let mut job_file = tempfile::Builder::new()
        .prefix("ingot-stage-job-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| StageError::io("creating the stage job file", "$TMPDIR", e))?;
    let json = serde_json::to_vec(&job)
        .map_err(|e| StageError::Failed(format!("serialising the stage job: {e}")))?;
    job_file
        .write_all(&json)
        .and_then(|()| job_file.flush())
        .map_err(|e| StageError::io("writing the stage job file", job_file.path(), e))?;

    let mut cmd = Command::new(exe);
    cmd.arg("__stage")
        .arg(job_file.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let parent_pid = std::process::id() as i32;
    let keep = [ready_w.as_raw_fd(), go_r.as_raw_fd(), inherit[0]];
    // SAFETY: runs between fork and exec in the child; it only calls async-signal-safe
    // syscalls (fcntl, prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in keep.into_iter().filter(|fd| *fd >= 0) {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if nix::libc::prctl(
                nix::libc::PR_SET_PDEATHSIG,
                nix::libc::SIGTERM as nix::libc::c_ulong,
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent thread may have died between fork and prctl.
            if nix::libc::getppid() != parent_pid {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| StageError::Spawn {
        exe: exe.to_path_buf(),
        source: e,
    })?;
    drop(ready_w);
    drop(go_r);

    let mut byte = [0u8; 1];
    let mut ready = std::fs::File::from(ready_r);
    let got = ready.read(&mut byte).unwrap_or(0);
    drop(job_file);
    if got != 1 {
        let detail = child_failure(&mut child);
        return Err(StageError::Failed(format!(
            "the stage child could not enter its user namespace: {detail}"
        )));
    }
    if let Some(Err(e)) = cgroup.map(|c| c.join(child.id() as i32)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(StageError::Preflight(format!(
            "moving the stage child into its cgroup: {e}"
        )));
    }
    if let Err(e) = idmap::apply(child.id() as i32, &plan) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(StageError::Preflight(e.to_string()));
    }
    let mut go = std::fs::File::from(go_w);
    if let Err(e) = go.write_all(&[1]) {
        let detail = child_failure(&mut child);
        return Err(StageError::Failed(format!(
            "releasing the stage child failed ({e}): {detail}"
        )));
    }
    Ok(Released { child })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), StageError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StageError::Failed(format!("creating a pipe for the stage child: {e}")))
}

/// Wait for a child that failed early and word its stderr as one line.
fn child_failure(child: &mut Child) -> String {
    let _ = child.kill();
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    let status = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    let last = super::last_error_line(text.lines()).unwrap_or_else(|| text.trim().to_string());
    if last.is_empty() {
        status
    } else {
        format!("{last} ({status})")
    }
}
