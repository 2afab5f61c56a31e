//! The namespaced side of `ingot __stage JOB.json`.
//!
//! The re-executed process (the *supervisor*) unshares user, mount and pid namespaces while it
//! is still single-threaded, tells the parent it is ready, waits until the parent has written
//! its id maps, and is then root in the namespace. For a build it forks once: the *worker*
//! becomes pid 1 of the build's pid namespace and assembles the tree; the supervisor waits,
//! and whatever happened (success, failure, a signal, a crash) unmounts everything under the
//! staging root and moves or removes the staging tree — except a finished tar build's, which
//! it leaves to the parent: removing it is slow on a disk that discards synchronously, and
//! only a process outside the build's pid namespace can do it with threads (the `Remove`
//! task, [`confined::remove_tree`]). Killing the worker (SIGKILL) ends every process of the
//! build at once, so teardown never races a leftover daemon.
//!
//! Logs go to stderr as `ingot: stage: …` lines; a failure ends with one
//! `ingot: stage: error: …` line that the parent reports. Within them, the start of each step
//! (`install`, `provision`, `cleanup`, `export`) and every line dpkg or a script prints carry
//! the tags of [`crate::progress`] ([`step_line`](crate::progress::step_line),
//! [`output_line`](crate::progress::output_line)), so that the parent can time the steps and
//! send program output to the build log instead of the terminal. Stdout carries only the tar
//! stream.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::wait::WaitStatus;
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use super::confined;
use super::mounts::{self, ChrootEnv};
use super::sandbox::Network;
use super::scripts::{self, ScriptKind};
use super::{StageOutput, StageSpec, StepFailure, signals};

/// What the parent asks of the namespaced child (the JSON file given to `__stage`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildJob {
    /// Write one byte here once the namespaces exist.
    pub ready_fd: i32,
    /// One byte arrives here once the id maps are written.
    pub go_fd: i32,
    /// The work.
    pub task: ChildTask,
}

/// The work of one namespaced child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChildTask {
    /// Assemble the image in `staging/root` (`staging` created empty, mode 0700, by the
    /// parent: setuid files in the tree are never reachable by other users of the host).
    Build {
        /// The spec (boxed: it dwarfs the other tasks).
        spec: Box<StageSpec>,
        /// The staging directory (absolute, canonical).
        staging: PathBuf,
        /// Read one byte here before the packages after the Essential set are needed (see
        /// [`super::run_stage_gated`]); `None`: they are all in the cache already.
        #[serde(default)]
        rest_gate_fd: Option<i32>,
    },
    /// Remove a tree whose files belong to subordinate ids.
    Remove {
        /// The tree.
        path: PathBuf,
    },
    /// `ingot doctor`'s trial: map ids, mount, chown to a subordinate id.
    Probe,
}

/// One progress line on stderr.
///
/// Write errors are ignored: when the parent is gone (stderr is a broken pipe) the cleanup
/// must still run, and `eprintln!` would panic.
pub(crate) fn log(line: &str) {
    if let Some(step) = line.strip_prefix(crate::progress::STEP_TAG)
        && let Ok(mut current) = CURRENT_STEP.lock()
    {
        *current = step.to_string();
    }
    let _ = writeln!(std::io::stderr(), "ingot: stage: {line}");
}

/// The step the child announced last: the step a failure belongs to.
static CURRENT_STEP: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// A failure of the current step, from a message already worded for the user.
impl From<String> for StepFailure {
    fn from(message: String) -> Self {
        StepFailure {
            step: CURRENT_STEP.lock().map(|s| s.clone()).unwrap_or_default(),
            status: None,
            message,
            output: Vec::new(),
        }
    }
}

impl From<scripts::ScriptError> for StepFailure {
    fn from(e: scripts::ScriptError) -> Self {
        match e {
            scripts::ScriptError::Failed {
                kind,
                name,
                status,
                last_output,
            } => StepFailure {
                step: kind.to_string(),
                message: format!("{kind} script {name} {status}"),
                status: Some(status),
                output: split_output(&last_output),
            },
            other => StepFailure::from(other.to_string()),
        }
    }
}

impl From<super::install::InstallError> for StepFailure {
    fn from(e: super::install::InstallError) -> Self {
        match e {
            super::install::InstallError::Dpkg {
                action,
                packages,
                status,
                output,
            } => StepFailure {
                step: "install".into(),
                message: format!(
                    "installing packages: dpkg {action} failed for {} with {status}",
                    packages.join(", ")
                ),
                status: Some(status),
                output: split_output(&output),
            },
            other => StepFailure::from(format!("installing packages: {other}")),
        }
    }
}

/// Output lines as a script or dpkg error carries them (`a | b` or one per line).
fn split_output(text: &str) -> Vec<String> {
    text.split(['\n', '|'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Report a failed step: its `error:` line (for the log and older parents) and the typed
/// failure line the parent returns as [`super::StageError::StepFailed`].
fn fail_step(failure: &StepFailure) -> i32 {
    let code = fail(&failure.to_string());
    let _ = writeln!(std::io::stderr(), "{}", failure.to_line());
    code
}

/// Report the failure as one `ingot: stage: error: …` line (the parent reports the last one;
/// multi-line messages, e.g. dpkg's output, are joined with ` | `).
fn fail(message: &str) -> i32 {
    let one_line = message
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let _ = writeln!(std::io::stderr(), "ingot: stage: error: {one_line}");
    1
}

/// Entry point of `ingot __stage JOB.json`.
pub(crate) fn child_entry(job_path: &Path, export: super::TreeExporter) -> i32 {
    let job: ChildJob = match std::fs::read(job_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(job) => job,
        Err(e) => {
            let _ = fail(&format!(
                "cannot read the stage job {}: {e} (this subcommand is internal)",
                job_path.display()
            ));
            return 2;
        }
    };
    // SAFETY: the parent passed these two pipe ends to this process for this purpose; nothing
    // else in this process owns them.
    let (ready, go) = unsafe {
        (
            OwnedFd::from_raw_fd(job.ready_fd),
            OwnedFd::from_raw_fd(job.go_fd),
        )
    };
    for fd in [&ready, &go] {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    if let Err(e) = enter_namespace(ready, go, &job.task) {
        return fail(&e);
    }
    match job.task {
        ChildTask::Build {
            spec,
            staging,
            rest_gate_fd,
        } => {
            // SAFETY: the parent passed this pipe end to this process (and cleared its
            // close-on-exec flag for it alone); nothing else in this process owns it.
            let gate = rest_gate_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
            if let Some(fd) = &gate {
                // Never passed on to dpkg or the scripts.
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
            supervise_build(&spec, &staging, export, gate)
        }
        ChildTask::Remove { path } => match remove_tree(&path) {
            Ok(()) => 0,
            Err(e) => fail(&format!("removing {}: {e}", path.display())),
        },
        ChildTask::Probe => probe(),
    }
}

fn thread_count() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn enter_namespace(ready: OwnedFd, go: OwnedFd, task: &ChildTask) -> Result<(), String> {
    if let Some(n) = thread_count().filter(|n| *n != 1) {
        return Err(format!(
            "the stage child has {n} threads; user namespaces need a single-threaded process"
        ));
    }
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if !matches!(task, ChildTask::Remove { .. }) {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    nix::sched::unshare(flags).map_err(|e| {
        format!("unshare(user, mount, pid namespaces) failed: {e}; run `ingot doctor`")
    })?;
    let mut ready = std::fs::File::from(ready);
    ready
        .write_all(&[1])
        .map_err(|e| format!("signalling the parent: {e}"))?;
    drop(ready);
    let mut byte = [0u8; 1];
    let mut go = std::fs::File::from(go);
    if go.read(&mut byte).unwrap_or(0) != 1 {
        return Err("the parent did not map our ids (it gave up or died)".into());
    }
    if !nix::unistd::getuid().is_root() {
        // A real-root build: this process is still the host's root, which the namespace maps
        // above the image's ids; become the image's root (see idmap.rs).
        let zero = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
        let parent = nix::unistd::getppid();
        nix::unistd::setresgid(zero.0, zero.0, zero.0)
            .and_then(|()| nix::unistd::setgroups(&[]))
            .and_then(|()| nix::unistd::setresuid(zero.1, zero.1, zero.1))
            .map_err(|e| format!("becoming root of the build's user namespace: {e}"))?;
        // Changing credentials cleared the parent-death signal (spawn.rs set it): again, and
        // the parent may have died meanwhile.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
            .map_err(|e| format!("setting the parent-death signal: {e}"))?;
        if nix::unistd::getppid() != parent {
            return Err("the parent died while the ids were mapped".into());
        }
    }
    if !nix::unistd::getuid().is_root() {
        return Err(format!(
            "after id mapping this process is uid {} in the namespace, not 0",
            nix::unistd::getuid()
        ));
    }
    // Supplementary groups of the caller show as nobody here; drop them where allowed.
    let _ = nix::unistd::setgroups(&[]);
    // Nothing mounted below may propagate back to the host (the kernel already demotes
    // shared mounts to slaves in a less privileged namespace; make it explicit).
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the mount namespace private: {e}"))?;
    Ok(())
}

/// Fork the pid-namespace init; in the child run `work` and return its exit code.
enum Forked {
    Worker(i32),
    Supervisor(WaitStatus),
}

fn fork_worker(work: impl FnOnce() -> i32) -> Result<Forked, String> {
    // The worker is pid 1 of the new pid namespace, so getppid() there is 0: a pipe whose write
    // end only the supervisor holds tells the worker whether the supervisor still lives.
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process is single-threaded (checked before unshare, and nothing since has
    // spawned a thread), so the child inherits no lock held by another thread.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(alive_w);
            signals::reset_handlers();
            // Not dumpable: the worker is pid 1 of the build, and its /proc/1/{root,cwd,fd}
            // (which lead to the host's tree) must give the sandboxed programs nothing, nor
            // may they ptrace it. Its memory belongs to the host's user namespace, where the
            // build holds no capability.
            if nix::sys::prctl::set_dumpable(false).is_err() {
                return Ok(Forked::Worker(1));
            }
            // A dying supervisor takes the whole build down.
            if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err() {
                return Ok(Forked::Worker(1));
            }
            // Non-blocking read: EAGAIN while the write end is open, EOF once it is gone.
            let _ = nix::fcntl::fcntl(
                &alive_r,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            if nix::unistd::read(&alive_r, &mut [0u8; 1]) != Err(nix::errno::Errno::EAGAIN) {
                return Ok(Forked::Worker(1));
            }
            drop(alive_r);
            Ok(Forked::Worker(work()))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            // Held (never written) until this process exits.
            std::mem::forget(alive_w);
            signals::set_worker(child.as_raw());
            loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("waiting for the worker: {e}")),
                    Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                        return Ok(Forked::Supervisor(status));
                    }
                    Ok(_) => continue,
                }
            }
        }
    }
}

fn supervise_build(
    spec: &StageSpec,
    staging: &Path,
    export: super::TreeExporter,
    rest_gate: Option<OwnedFd>,
) -> i32 {
    signals::install_supervisor_handlers();
    let on_tmpfs = match mount_staging_tmpfs(spec, staging) {
        Ok(on) => on,
        Err(e) => {
            let _ = fail(&e);
            remove_or_keep(staging, &staging.join("root"), None);
            return 1;
        }
    };
    // The image's root, inside the private staging directory.
    let root = staging.join("root");
    if let Err(e) = std::fs::create_dir(&root) {
        return fail(&format!("creating {}: {e}", root.display()));
    }
    let status = match fork_worker(|| {
        let run = super::nested_userns::mount_build_proc(&staging.join("proc"))
            .map_err(StepFailure::from)
            .and_then(|()| assemble(spec, &root, export, rest_gate));
        match run {
            Ok(()) => 0,
            Err(e) => fail_step(&e),
        }
    }) {
        Ok(Forked::Worker(code)) => return code,
        Ok(Forked::Supervisor(status)) => Some(status),
        Err(e) => {
            let _ = fail(&e);
            None
        }
    };
    // From here on this process must not hold the tar pipe: the parent's reader sees EOF as
    // soon as the worker is gone.
    let _ = nix::unistd::dup2_stdout(std::io::stderr());

    let worker_ok = matches!(status, Some(WaitStatus::Exited(_, 0)));
    let interrupted = signals::supervisor_signal();
    let mut code = match (interrupted, status) {
        (Some(sig), _) => {
            let _ = fail(&format!("interrupted by {}", signals::signal_name(sig)));
            128 + sig
        }
        (None, Some(WaitStatus::Exited(_, 0))) => 0,
        (None, Some(WaitStatus::Exited(_, c))) => c,
        (None, Some(WaitStatus::Signaled(_, sig, _))) => {
            fail(&format!("the build worker was killed by {}", sig.as_str()))
        }
        (None, _) => 1,
    };
    if let Err(e) = mounts::unmount_all_under(staging) {
        code = fail(&e.to_string());
    }
    let success = worker_ok && interrupted.is_none() && code == 0;
    match (&spec.output, success) {
        (StageOutput::Dir(out), true) => {
            if let Err(e) = rename_noreplace(&root, out) {
                code = fail(&format!(
                    "moving the finished tree from {} to {}: {e} (the staging parent and the \
                     output must be on one filesystem, and the output must not exist)",
                    root.display(),
                    out.display()
                ));
                remove_or_keep(staging, &root, spec.keep_staging.as_deref());
            } else {
                log(&format!("tree ready at {}", out.display()));
                remove_or_keep(staging, &root, None);
            }
        }
        // A finished tar build's tree is left for the parent, which removes it from a fresh
        // user namespace with several threads (see [`confined::remove_tree`]); this process
        // cannot start a thread (its children's pid namespace is the worker's, now gone).
        // On a tmpfs the unmount above took the tree with it: only the empty directory is left.
        (StageOutput::Tar, true) if spec.keep_staging.is_none() && !on_tmpfs => {}
        _ => remove_or_keep(staging, &root, spec.keep_staging.as_deref()),
    }
    code
}

/// Mount the staging tmpfs the spec asks for on `staging` (see [`super::staging`]); true if
/// mounted. Only this mount namespace (and the sandboxes below it) sees it; it disappears with
/// the namespace, so even a SIGKILL leaves no tree behind.
fn mount_staging_tmpfs(spec: &StageSpec, staging: &Path) -> Result<bool, String> {
    let Some(bytes) = spec.staging_tmpfs else {
        return Ok(false);
    };
    if !matches!(spec.output, StageOutput::Tar) || spec.keep_staging.is_some() {
        return Err("a staging tmpfs was asked for a tree that must outlive the build".into());
    }
    nix::mount::mount(
        Some("ingot-staging"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=0700,size={bytes}").as_str()),
    )
    .map_err(|e| {
        format!(
            "mounting the staging tmpfs on {}: {e} (--staging disk builds on disk)",
            staging.display()
        )
    })?;
    log(&format!(
        "staging on a private tmpfs (at most {} MiB)",
        bytes >> 20
    ));
    Ok(true)
}

fn rename_noreplace(from: &Path, to: &Path) -> nix::Result<()> {
    nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        from,
        nix::fcntl::AT_FDCWD,
        to,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
}

/// Move the image's `root` to `keep` if asked, then remove the private `staging` directory
/// with whatever is left in it.
fn remove_or_keep(staging: &Path, root: &Path, keep: Option<&Path>) {
    if let Some(keep) = keep {
        match rename_noreplace(root, keep) {
            Ok(()) => log(&format!("kept the staging tree at {}", keep.display())),
            Err(e) => {
                log(&format!(
                    "could not move the staging tree to {} ({e}); it stays at {}",
                    keep.display(),
                    root.display()
                ));
                return;
            }
        }
    }
    match std::fs::remove_dir_all(staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let _ = fail(&format!(
                "removing the staging tree {}: {e}",
                staging.display()
            ));
        }
    }
}

/// Remove the tree at `path` (nothing there is fine) with [`confined::remove_tree`], whose
/// threads overlap the disk's waits (this process has no pid namespace of its own, so it may
/// start threads).
fn remove_tree(path: &Path) -> Result<(), String> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("not a removable path".into());
    };
    let dir =
        std::fs::File::open(parent).map_err(|e| format!("opening {}: {e}", parent.display()))?;
    confined::remove_tree(&dir, name, &name.to_string_lossy()).map_err(|e| e.to_string())
}

/// The worker: pid 1 of the build's pid namespace, root in its user namespace.
fn assemble(
    spec: &StageSpec,
    root: &Path,
    export: super::TreeExporter,
    rest_gate: Option<OwnedFd>,
) -> Result<(), StepFailure> {
    // Keep the real stdout for the tar stream only; everything else (dpkg, scripts) writing to
    // fd 1 lands on stderr.
    let tar_out = nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| format!("duplicating stdout: {e}"))?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returned a new descriptor that nothing else owns.
    let tar_out = unsafe { OwnedFd::from_raw_fd(tar_out) };
    nix::unistd::dup2_stdout(std::io::stderr())
        .map_err(|e| format!("redirecting stdout to stderr: {e}"))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    super::sandbox::set_memory_limit(spec.limits.memory_bytes);
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("setting the mode of {}: {e}", root.display()))?;

    if let Some(seed) = &spec.seed {
        seed_root(seed, root)?;
    }
    let mut logger = |line: &str| log(line);
    // The configured tree comes from the base cache when it holds this plan's.
    let base = super::base_cache::Base::for_spec(spec, &mut logger);
    let mut env = if base.restore(root, &mut logger).map_err(|e| e.to_string())? {
        ChrootEnv::enter(root, &mut logger).map_err(|e| e.to_string())?
    } else {
        let env = install(spec, root, rest_gate, &mut logger)?;
        base.store_between(env, root, export, &mut logger)
            .map_err(|e| e.to_string())?
    };

    let scripts_present = !spec.provision.is_empty() || !spec.cleanup.is_empty();
    if scripts_present && !scripts::has_shell(root) {
        return Err(StepFailure::from(
            "the image has no /bin/sh to run the recipe's scripts with".to_string(),
        ));
    }
    // The provision scripts' network: a user-mode stack on a namespace of their own.
    let stack = match spec.provision_network && !spec.provision.is_empty() {
        true => Some(super::usernet::Helper::find(spec.network_stack).map_err(StepFailure::from)?),
        false => None,
    };
    if !spec.provision.is_empty() {
        log(&crate::progress::step_line("provision"));
    }
    let staging = root.parent().unwrap_or(root);
    if let Some(helper) = &stack {
        log(&helper.describe());
        let resolv = staging.join("resolv.conf");
        std::fs::write(&resolv, super::usernet::resolv_conf())
            .map_err(|e| format!("writing {}: {e}", resolv.display()))?;
        env.bind_resolv_conf(&resolv, &mut logger)
            .map_err(|e| e.to_string())?;
    }
    let timeout = std::time::Duration::from_secs(
        spec.script_timeout_secs
            .unwrap_or(crate::recipe::DEFAULT_SCRIPT_TIMEOUT_SECS),
    );
    if scripts_present {
        log(&super::sandbox::limits_line(&spec.limits, timeout));
    }
    for (i, script) in spec.provision.iter().enumerate() {
        let link = match &stack {
            Some(helper) => Some(
                super::usernet::Link::up(helper, &staging.join("network-stack.log"))
                    .map_err(|e| format!("the provision network: {e}"))?,
            ),
            None => None,
        };
        let network = match &link {
            Some(link) => Network::Joined {
                netns: link.netns(),
                stack_pid: link.stack_pid(),
            },
            None => Network::Loopback,
        };
        let ran = scripts::run_script(
            root,
            script,
            ScriptKind::Provision,
            i + 1,
            scripts::ScriptRun {
                network,
                env: &spec.script_env,
                timeout,
                limits: &spec.limits,
            },
            &mut logger,
        );
        if let Some(link) = link {
            link.down();
        }
        ran?;
    }
    env.unbind_resolv_conf().map_err(|e| e.to_string())?;
    log(&crate::progress::step_line("cleanup"));
    for (i, script) in spec.cleanup.iter().enumerate() {
        scripts::run_script(
            root,
            script,
            ScriptKind::Cleanup,
            i + 1,
            scripts::ScriptRun {
                network: Network::Loopback,
                env: &spec.script_env,
                timeout,
                limits: &spec.limits,
            },
            &mut logger,
        )?;
    }
    env.leave(&mut logger).map_err(|e| e.to_string())?;

    let done = super::invariants::enforce(root)
        .map_err(|e| format!("enforcing the cleanup invariants: {e}"))?;
    for action in done {
        log(&format!("invariant: {action}"));
    }
    if matches!(spec.output, StageOutput::Tar) {
        log(&crate::progress::step_line("export"));
        log("streaming the tar archive");
        let mut out = std::fs::File::from(tar_out);
        export(root, &mut out, spec.epoch).map_err(|e| format!("writing the tar stream: {e}"))?;
        out.flush()
            .map_err(|e| format!("writing the tar stream: {e}"))?;
    }
    Ok(())
}

/// Install and configure every package; returns the chroot environment still set up.
fn install(
    spec: &StageSpec,
    root: &Path,
    rest_gate: Option<OwnedFd>,
    mut logger: &mut dyn FnMut(&str),
) -> Result<ChrootEnv, StepFailure> {
    log(&crate::progress::step_line("install"));
    log(&format!("installing {} packages", spec.debs.len()));
    // As mmdebstrap does: extract the essential set into the bare tree first, so that
    // base-files' /proc, /dev and /run keep their own modes, then mount for dpkg.
    super::install::extract_essential(root, &spec.debs, &mut logger)?;
    let env = ChrootEnv::enter(root, &mut logger).map_err(|e| e.to_string())?;
    let mut gate = rest_gate;
    let mut rest_ready = || wait_for_the_rest(gate.take());
    super::install::configure_packages_gated(root, &spec.debs, &mut rest_ready, &mut logger)?;
    if super::sandbox::kill_leftover_processes() {
        log("stopped processes the maintainer scripts left running");
    }
    if let Some(states) = &spec.apt_extended_states {
        write_apt_extended_states(root, states)?;
    }
    Ok(env)
}

/// Wait until the parent says the packages after the Essential set are in the cache (one
/// byte on `gate`); end of file means their download failed (the parent reports why).
fn wait_for_the_rest(gate: Option<OwnedFd>) -> Result<(), String> {
    let Some(gate) = gate else {
        return Ok(());
    };
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let mut byte = [0u8; 1];
    // First without blocking, to say whether the build waits.
    let _ = fcntl(&gate, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut waited = false;
    loop {
        match nix::unistd::read(&gate, &mut byte) {
            Ok(1) => {
                if waited {
                    log("the other packages are in the cache");
                }
                return Ok(());
            }
            Err(nix::errno::Errno::EAGAIN) => {
                log("waiting for the other packages to finish downloading");
                waited = true;
                let _ = fcntl(&gate, FcntlArg::F_SETFL(OFlag::empty()));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return Err("the other packages could not be downloaded".into()),
        }
    }
}

/// Copy the seed tree into the (still empty) root, owners and modes preserved.
fn seed_root(seed: &Path, root: &Path) -> Result<(), String> {
    let mut from = seed.as_os_str().to_owned();
    from.push("/.");
    let out = std::process::Command::new("cp")
        .args(["-a", "--no-target-directory", "--"])
        .arg(&from)
        .arg(root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| format!("running cp to seed the root from {}: {e}", seed.display()))?;
    if !out.status.success() {
        return Err(format!(
            "seeding the root from {} failed: {}",
            seed.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    host_root_to_image_root(root)
        .map_err(|e| format!("seeding the root from {}: {e}", seed.display()))
}

/// In a real-root build the host's root shows as [`idmap::HOST_ROOT_IN_BUILD`]: what the seed
/// copy kept of it becomes the image's root, as it was when the build ran as host root.
///
/// [`idmap::HOST_ROOT_IN_BUILD`]: super::idmap::HOST_ROOT_IN_BUILD
fn host_root_to_image_root(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let host_root = super::idmap::HOST_ROOT_IN_BUILD;
    let meta = std::fs::symlink_metadata(path)?;
    let uid = (meta.uid() == host_root).then_some(0);
    let gid = (meta.gid() == host_root).then_some(0);
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(path, uid, gid)?;
        if !meta.file_type().is_symlink() {
            // chown clears setuid/setgid bits: put the mode back.
            std::fs::set_permissions(path, meta.permissions())?;
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            host_root_to_image_root(&entry?.path())?;
        }
    }
    Ok(())
}

/// `ingot doctor`'s trial, in the namespaces: tmpfs, a fresh /proc, devpts and a chown to
/// subordinate ids — everything a build needs from the kernel.
fn probe() -> i32 {
    let scratch = Path::new("/tmp");
    let result = (|| -> Result<(), String> {
        nix::mount::mount(
            Some("tmpfs"),
            scratch,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0755,size=1m"),
        )
        .map_err(|e| format!("mounting a tmpfs: {e}"))?;
        let file = scratch.join("owned");
        std::fs::write(&file, b"").map_err(|e| format!("creating a file: {e}"))?;
        std::os::unix::fs::lchown(&file, Some(1), Some(1))
            .map_err(|e| format!("chown to a subordinate id (1:1): {e}"))?;
        std::os::unix::fs::lchown(&file, Some(65535), Some(65535))
            .map_err(|e| format!("chown to a subordinate id (65535:65535): {e}"))?;
        Ok(())
    })();
    if let Err(e) = result {
        return fail(&e);
    }
    match fork_worker(|| {
        let proc_dir = scratch.join("proc");
        let pts = scratch.join("pts");
        let r = std::fs::create_dir(&proc_dir)
            .and_then(|()| std::fs::create_dir(&pts))
            .map_err(|e| format!("creating mount points: {e}"))
            .and_then(|()| {
                nix::mount::mount(
                    Some("proc"),
                    &proc_dir,
                    Some("proc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None::<&str>,
                )
                .map_err(|e| {
                    // The sandbox never falls back to the host's /proc (see sandbox.rs).
                    format!("mounting a fresh /proc of the build's pid namespace: {e}")
                })
            })
            .and_then(|()| {
                nix::mount::mount(
                    Some("devpts"),
                    &pts,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
                )
                .map_err(|e| format!("mounting a new devpts: {e}"))
            });
        match r {
            Ok(()) => 0,
            Err(e) => fail(&e),
        }
    }) {
        Ok(Forked::Worker(code)) => code,
        Ok(Forked::Supervisor(WaitStatus::Exited(_, code))) => code,
        Ok(Forked::Supervisor(other)) => fail(&format!("the trial worker ended: {other:?}")),
        Err(e) => fail(&e),
    }
}

/// Record apt's auto-installed marks as apt would have after installing the same set, so that
/// `apt autoremove` in the image knows which packages came in as dependencies. Skipped when
/// the image has no apt.
fn write_apt_extended_states(root: &Path, states: &str) -> Result<(), String> {
    let root_fd = super::confined::open_root(root).map_err(|e| e.to_string())?;
    let Ok(dir) = super::confined::open_in(
        &root_fd,
        "var/lib/apt",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
    ) else {
        return Ok(());
    };
    // Replace, never write through, whatever a maintainer script may have left there.
    match nix::unistd::unlinkat(
        &dir,
        "extended_states",
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("removing /var/lib/apt/extended_states: {e}")),
    }
    super::confined::create_file_at(
        &dir,
        "extended_states",
        0o644,
        states.as_bytes(),
        "/var/lib/apt/extended_states",
    )
    .map_err(|e| e.to_string())
}
