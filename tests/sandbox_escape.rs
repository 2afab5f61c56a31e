//! Nothing run inside the image reaches the build host: each known way out of the sandbox,
//! tried by a provision script (and through a package's maintainer script), is refused.
//!
//! Hermetic and real: the stage runs through the real `ingot __stage` child (user, mount and
//! pid namespaces; newuidmap for an ordinary user), the image is seeded with a static busybox
//! and a static probe compiled here from `tests/support/sandbox_probe.c` (`cc -static`), and
//! the maintainer-script case installs the mini distribution with its own dpkg. The build is
//! started from a helper process that has a controlling terminal (a pty) and a leaked,
//! inheritable descriptor on a host directory, so the terminal and descriptor escapes have
//! something to find if the sandbox let them through. The host directory holds a `secret`
//! outside the staging tree; after each build the test checks on the host that it was neither
//! read nor written, besides the probe's own report.
//!
//! Runs as real root and as an ordinary user with a subordinate id range (`INGOT_TEST_BIN`
//! may point at an `ingot` binary that user can execute).

#[path = "support/busybox.rs"]
mod busybox;
#[path = "support/minidistro.rs"]
mod minidistro;

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ingot::epoch::BuildEpoch;
use ingot::progress::Silent;
use ingot::stage::{StageBinary, StageDeb, StageOutput, StageSpec};

const HELPER_SPEC: &str = "INGOT_TEST_SANDBOX_SPEC";
const HELPER_RESULT: &str = "INGOT_TEST_SANDBOX_RESULT";
/// A "user" key the helper adds to its session keyring before the build (and whose `-left`
/// twin must not be there after it).
const HELPER_KEY: &str = "INGOT_TEST_SANDBOX_KEY";
const SECRET: &str = "host-secret: the build host's own file\n";
/// The descriptor number the helper leaks into the build (inheritable, on the host dir).
const LEAKED_DIR_FD: i32 = 100;
/// The same, on the secret file itself.
const LEAKED_FILE_FD: i32 = 101;

fn ingot() -> StageBinary {
    match std::env::var_os("INGOT_TEST_BIN") {
        Some(bin) => StageBinary::at(bin),
        None => StageBinary::at(env!("CARGO_BIN_EXE_ingot")),
    }
}

/// The probe, compiled once per test process into a directory that lives as long.
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ingot-sandbox-probe-")
            .tempdir()
            .unwrap()
            .keep();
        let out = dir.join("sandbox-probe");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sandbox_probe.c");
        let result = std::process::Command::new("cc")
            .args(["-static", "-O1", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
            .expect(
                "these tests need a C compiler with a static libc: apt-get install gcc libc6-dev",
            );
        assert!(
            result.status.success(),
            "compiling {}: {}",
            source.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        out
    })
}

/// The host side of one trial: a directory with the secret, outside any staging tree.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-files");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret"), SECRET).unwrap();
        // Readable by anyone: only the sandbox may stand in the way.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
        Host { dir }
    }

    fn files(&self) -> PathBuf {
        self.dir.path().join("host-files")
    }

    /// The host directory is exactly as the test left it: the secret unchanged, nothing
    /// written next to it.
    fn assert_untouched(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.files())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["secret"],
            "something was written into the host's directory"
        );
        assert_eq!(
            std::fs::read_to_string(self.files().join("secret")).unwrap(),
            SECRET
        );
    }
}

fn seed(dir: &Path) -> PathBuf {
    let seed = busybox::seed(
        dir,
        &[
            "sh", "cat", "echo", "ln", "rm", "mkdir", "umount", "ls", "sleep", "test", "printf",
            "dd", "wc", "nslookup",
        ],
    );
    std::fs::copy(probe(), seed.join("bin/sandbox-probe")).unwrap();
    seed
}

fn base_spec(dir: &Path, out: &Path) -> StageSpec {
    StageSpec::new(
        dir.join("staging"),
        StageOutput::Dir(out.to_path_buf()),
        BuildEpoch(1_700_000_000),
    )
}

/// A spec seeded with busybox and the probe whose one provision script is `script`.
fn seeded_spec(dir: &Path, out: &Path, script: &str) -> StageSpec {
    let mut spec = base_spec(dir, out);
    spec.seed = Some(seed(dir));
    let path = dir.join("provision.sh");
    std::fs::write(&path, script).unwrap();
    spec.provision.push(path);
    spec
}

/// A script that runs the probe with `args`, records its report and exit status in the
/// image at `report`, and always succeeds (the test reads the report).
fn probe_script(report: &str, args: &str) -> String {
    format!("#!/bin/sh\nsandbox-probe {args} > {report} 2>&1\necho \"probe exit $?\" >> {report}\n")
}

/// Run the stage for `spec` in a helper process that has a controlling terminal and leaks
/// descriptors on `host`; returns the stage's result as text (`ok` or the error).
fn build_in_helper(spec: &StageSpec, host: &Host) -> String {
    build_in_helper_with_key(spec, host, None)
}

/// [`build_in_helper`], the helper holding the session key `key` during the build.
fn build_in_helper_with_key(spec: &StageSpec, host: &Host, key: Option<&str>) -> String {
    build_in_helper_at(spec, host, key, None)
}

/// [`build_in_helper_with_key`], the helper started in the network namespace `netns` (a name
/// of `ip netns`, whose `/etc/netns/NAME/resolv.conf` the helper then sees) if given.
fn build_in_helper_at(
    spec: &StageSpec,
    host: &Host,
    key: Option<&str>,
    netns: Option<&str>,
) -> String {
    let work = tempfile::tempdir().unwrap();
    let spec_path = work.path().join("spec.json");
    let result_path = work.path().join("result");
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal for the helper");
    // openpty's descriptors are inheritable: keep them out of other tests' helpers.
    for fd in [pty.master.as_raw_fd(), pty.slave.as_raw_fd()] {
        // SAFETY: fcntl(F_SETFD) on a descriptor this function owns.
        unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    }
    let dir_fd: OwnedFd = std::fs::File::open(host.files()).unwrap().into();
    let file_fd: OwnedFd = std::fs::File::open(host.files().join("secret"))
        .unwrap()
        .into();
    let (slave, dir_raw, file_raw) = (
        pty.slave.as_raw_fd(),
        dir_fd.as_raw_fd(),
        file_fd.as_raw_fd(),
    );
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns])
                .arg(std::env::current_exe().unwrap());
            c
        }
        None => std::process::Command::new(std::env::current_exe().unwrap()),
    };
    cmd.args([
        "helper_build_from_env",
        "--exact",
        "--ignored",
        "--nocapture",
    ])
    .env(HELPER_SPEC, &spec_path)
    .env(HELPER_RESULT, &result_path)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    // SAFETY: between fork and exec; only async-signal-safe syscalls on descriptors opened
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::setsid() == -1
                || nix::libc::ioctl(slave, nix::libc::TIOCSCTTY, 0) == -1
                || nix::libc::dup2(dir_raw, LEAKED_DIR_FD) == -1
                || nix::libc::dup2(file_raw, LEAKED_FILE_FD) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(key) = key {
        cmd.env(HELPER_KEY, key);
    }
    let status = cmd.status().unwrap();
    drop(pty);
    assert!(status.success(), "the helper process failed: {status}");
    std::fs::read_to_string(&result_path).expect("the helper wrote no result")
}

/// Run by [`build_in_helper`] in a separate process (this test binary, re-executed).
#[test]
#[ignore = "helper process for the sandbox tests"]
fn helper_build_from_env() {
    let (Some(spec), Some(result)) = (
        std::env::var_os(HELPER_SPEC),
        std::env::var_os(HELPER_RESULT),
    ) else {
        panic!("run only by build_in_helper");
    };
    let spec: StageSpec = serde_json::from_slice(&std::fs::read(spec).unwrap()).unwrap();
    // The terminal and the descriptors this process got must be real, or the tests that
    // rely on them could not fail.
    assert!(
        nix::unistd::isatty(std::fs::File::open("/dev/tty").unwrap()).unwrap_or(false),
        "the helper has no controlling terminal"
    );
    for fd in [LEAKED_DIR_FD, LEAKED_FILE_FD] {
        // SAFETY: fcntl(F_GETFD) on a descriptor number only queries it.
        let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
        assert!(
            flags != -1 && flags & nix::libc::FD_CLOEXEC == 0,
            "fd {fd} not inherited"
        );
    }
    let key = std::env::var(HELPER_KEY).ok();
    if let Some(desc) = &key {
        assert!(
            session_key(desc, Some(b"host-secret key")),
            "cannot add a key to the helper's session keyring"
        );
    }
    let outcome = ingot().run(
        &spec,
        &mut |r| std::io::copy(r, &mut std::io::sink()).map(drop),
        &Silent,
    );
    let mut text = match outcome {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    if let Some(desc) = &key
        && session_key(&format!("{desc}-left"), None)
    {
        text.push_str(" | a key the build added is left in the caller's session keyring");
    }
    std::fs::write(result, text).unwrap();
}

/// With `add`: add a "user" key `desc` with that payload to this thread's session keyring;
/// without: whether the session keyring holds one. Either way true on success.
fn session_key(desc: &str, add: Option<&[u8]>) -> bool {
    let desc = std::ffi::CString::new(desc).unwrap();
    const SESSION: nix::libc::c_long = -3;
    // SAFETY: add_key/keyctl(KEYCTL_SEARCH = 10) on NUL-terminated strings and a byte slice
    // that outlive the calls.
    let ret = unsafe {
        match add {
            Some(payload) => nix::libc::syscall(
                nix::libc::SYS_add_key,
                c"user".as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                SESSION,
            ),
            None => nix::libc::syscall(
                nix::libc::SYS_keyctl,
                10 as nix::libc::c_long,
                SESSION,
                c"user".as_ptr(),
                desc.as_ptr(),
                0 as nix::libc::c_long,
            ),
        }
    };
    ret >= 0
}

/// The probe's report, asserted clean: it ran, nothing escaped, it exited 0.
fn assert_refused(report: &str, expected: &[&str]) {
    assert!(
        !report.contains("ESCAPED") && !report.contains("FAILED"),
        "escaped:\n{report}"
    );
    assert!(
        report.ends_with("probe exit 0\n"),
        "probe failed:\n{report}"
    );
    for what in expected {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("refused {what}"))),
            "no refusal of {what:?} in:\n{report}"
        );
    }
}

/// One provision-script trial of `checks`; returns the probe's report.
fn provision_trial(host: &Host, checks: &str, port: &str, network: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let args = format!("{} {port} {checks}", host.files().display());
    let mut spec = seeded_spec(dir.path(), &out, &probe_script("/srv/report", &args));
    spec.provision_network = network;
    let result = build_in_helper(&spec, host);
    assert_eq!(result, "ok", "the build failed");
    let report = std::fs::read_to_string(out.join("srv/report")).unwrap();
    ingot().remove_tree(&out).unwrap();
    host.assert_untouched();
    report
}

/// Run the probe's `check` from a provision script without network; each of `expected` must
/// be refused and nothing may escape.
fn offline_probe_is_refused(check: &str, expected: &[&str]) {
    let host = Host::new();
    let report = provision_trial(&host, check, "0", false);
    assert_refused(&report, expected);
}

#[test]
fn proc_1_root_and_cwd_lead_nowhere() {
    offline_probe_is_refused("proc1", &["/proc/1/root", "/proc/1/cwd"]);
}

#[test]
fn no_process_handle_in_proc_leads_to_the_host() {
    offline_probe_is_refused("procpids", &["/proc/1/root", "/proc/1/cwd", "/proc/1/fd"]);
}

#[test]
fn no_descriptor_is_inherited() {
    offline_probe_is_refused("fds", &["inherited fds"]);
}

#[test]
fn a_second_chroot_does_not_climb_out() {
    offline_probe_is_refused("chroot", &["second chroot"]);
}

#[test]
fn the_sandbox_mounts_cannot_be_undone_or_covered() {
    offline_probe_is_refused(
        "mounts",
        &[
            "umount /proc",
            "umount /dev",
            "umount /dev/pts",
            "umount /",
            "mount tmpfs on /dev",
            "remount /dev/null",
            "move /dev away",
        ],
    );
}

#[test]
fn the_build_worker_cannot_be_ptraced() {
    offline_probe_is_refused(
        "ptrace",
        &["ptrace attach to pid 1", "ptrace seize of pid 1"],
    );
}

#[test]
fn the_hosts_terminal_is_out_of_reach() {
    offline_probe_is_refused("tty", &["open /dev/tty", "TIOCSTI on fd 0"]);
}

#[test]
fn a_host_file_cannot_be_read_by_its_path() {
    offline_probe_is_refused("hostfile", &["read the host's file by its path"]);
}

#[test]
fn the_hosts_kernel_settings_cannot_be_written() {
    offline_probe_is_refused(
        "hostsys",
        &[
            "write /proc/sys/kernel/core_pattern",
            "write /proc/sys/kernel/hostname",
            "write /proc/sysrq-trigger",
        ],
    );
}

#[test]
fn proc_keeps_the_kernel_settings_read_only_and_masks_memory_keys_and_timers() {
    let mut expected = vec![
        "writable mount of /proc/sys",
        "write /proc/sys/net/ipv4/ping_group_range",
        "read /proc/kcore",
        "read /proc/keys",
        "read /proc/timer_list",
    ];
    // Not every kernel has them (CONFIG_MAGIC_SYSRQ, CONFIG_PROC_FS's bus/ entries).
    for (path, line) in [
        (
            "/proc/sysrq-trigger",
            "writable mount of /proc/sysrq-trigger",
        ),
        ("/proc/irq", "writable mount of /proc/irq"),
        ("/proc/bus", "writable mount of /proc/bus"),
    ] {
        if Path::new(path).exists() {
            expected.push(line);
        }
    }
    offline_probe_is_refused("procmasks", &expected);
}

#[test]
fn the_syscall_filter_refuses_each_call_it_lists() {
    let host = Host::new();
    let report = provision_trial(&host, "seccomp", "0", false);
    assert_refused(&report, &["no syscall filter"]);
    let eperm = [
        "unshare(CLONE_NEWUSER)",
        "clone(CLONE_NEWUSER)",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "userfaultfd",
        "perf_event_open",
        "bpf",
        "kexec_load",
        "kexec_file_load",
        "mount",
        "umount2",
        "open_tree",
        "fsopen",
        "ioctl(TIOCSTI)",
        "ioctl(TIOCLINUX)",
    ];
    // The filter's own answers: without it the kernel says EINVAL, EFAULT, ENOKEY, ENOTTY,
    // or lets the call through.
    for name in eperm {
        let line = format!("refused {name}: Operation not permitted");
        assert!(
            report.lines().any(|l| l == line),
            "no {line:?} in:\n{report}"
        );
    }
    assert!(
        report
            .lines()
            .any(|l| l == "refused clone3: Function not implemented"),
        "clone3 is not refused with ENOSYS:\n{report}"
    );
}

/// SysV and POSIX IPC objects of the host, by key: (SysV segment, SysV queue, POSIX queue).
fn host_ipc(key: i32, create: bool) -> (bool, bool, bool) {
    use nix::libc;
    let name = std::ffi::CString::new(format!("/ingot-probe-{key}")).unwrap();
    let flags = if create { libc::IPC_CREAT | 0o666 } else { 0 };
    // SAFETY: SysV and POSIX IPC calls on a key and a NUL-terminated name.
    unsafe {
        let shm = libc::shmget(key, 4096, flags) >= 0;
        let msg = libc::msgget(key, flags) >= 0;
        let oflag = if create {
            libc::O_CREAT | libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let q = libc::mq_open(
            name.as_ptr(),
            oflag,
            0o666 as libc::mode_t,
            std::ptr::null::<libc::mq_attr>(),
        );
        let mq = q != -1;
        if mq {
            libc::mq_close(q);
        }
        (shm, msg, mq)
    }
}

fn remove_host_ipc(key: i32) {
    use nix::libc;
    let name = std::ffi::CString::new(format!("/ingot-probe-{key}")).unwrap();
    // SAFETY: as in host_ipc; removing objects this test created (or the probe left).
    unsafe {
        let shm = libc::shmget(key, 0, 0);
        if shm >= 0 {
            libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut());
        }
        let msg = libc::msgget(key, 0);
        if msg >= 0 {
            libc::msgctl(msg, libc::IPC_RMID, std::ptr::null_mut());
        }
        libc::mq_unlink(name.as_ptr());
    }
}

#[test]
fn sysv_ipc_and_posix_queues_are_private_and_gone_with_the_program() {
    let key = 0x1d70_0000 + 2 * (std::process::id() as i32 & 0x7fff);
    assert_eq!(
        host_ipc(key, true),
        (true, true, true),
        "cannot create the host's IPC objects"
    );
    let host = Host::new();
    let report = provision_trial(&host, &format!("ipc:{key}"), "0", false);
    let left = host_ipc(key + 1, false);
    remove_host_ipc(key);
    remove_host_ipc(key + 1);
    assert_refused(
        &report,
        &[
            "the host's SysV shared memory",
            "the host's SysV message queue",
            "the host's POSIX message queue",
        ],
    );
    assert!(
        report.contains("left a SysV segment") && report.contains("left a POSIX message queue"),
        "the probe could not create IPC objects of its own:\n{report}"
    );
    assert_eq!(
        left,
        (false, false, false),
        "the build left IPC objects on the host"
    );
}

#[test]
fn the_hostname_is_localhost_not_the_hosts() {
    let name = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_ne!(
        name, "localhost",
        "this host is named localhost: the test cannot tell the sandbox's name from it"
    );
    let host = Host::new();
    let report = provision_trial(&host, &format!("uts:{name}"), "0", false);
    assert_refused(&report, &["the host's hostname", "sethostname"]);
    assert!(report.contains("hostname localhost\n"), "{report}");
}

#[test]
fn the_callers_keyring_is_out_of_reach_and_keeps_nothing() {
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let desc = format!("ingot-probe-{}", std::process::id());
    let args = format!("{} 0 keys:{desc}", host.files().display());
    let spec = seeded_spec(dir.path(), &out, &probe_script("/srv/report", &args));
    let result = build_in_helper_with_key(&spec, &host, Some(&desc));
    assert_eq!(result, "ok", "the build failed (or left a key)");
    let report = std::fs::read_to_string(out.join("srv/report")).unwrap();
    ingot().remove_tree(&out).unwrap();
    assert_refused(
        &report,
        &[
            "the caller's session keyring",
            "request_key of the caller's key",
        ],
    );
}

/// Mode, owner and times of the host's device nodes the sandbox binds in.
fn host_dev_nodes() -> Vec<(String, u32, u32, u32, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    // Not tty: terminal output through /dev/tty updates its times on any host.
    ["null", "zero", "full", "random", "urandom"]
        .iter()
        .filter_map(|n| {
            let m = std::fs::metadata(format!("/dev/{n}")).ok()?;
            Some((
                n.to_string(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec(),
            ))
        })
        .collect()
}

#[test]
fn the_hosts_device_nodes_cannot_be_re_moded_re_owned_or_touched() {
    let before = host_dev_nodes();
    offline_probe_is_refused(
        "devnodes",
        &[
            "chmod /dev/null",
            "chown /dev/null",
            "set the times of /dev/null",
            "touch /dev/null",
            "touch /dev/full",
            "touch /dev/urandom",
        ],
    );
    assert_eq!(host_dev_nodes(), before, "the host's device nodes changed");
}

#[test]
fn terminal_escape_sequences_in_script_output_reach_no_terminal() {
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let spec = seeded_spec(
        dir.path(),
        &out,
        "printf '\\033]0;pwned\\007\\033[2Jboom\\n'\nexit 3\n",
    );
    let result = build_in_helper(&spec, &host);
    assert!(
        !result.chars().any(char::is_control),
        "a control character in the error: {result:?}"
    );
    assert!(
        result.contains("\\x1b]0;pwned\\x07\\x1b[2Jboom"),
        "the script's output is not in the error, escaped: {result:?}"
    );
}

/// Build `spec` (a `--format dir` one) in the helper and read `rel` of the finished tree.
fn build_and_read(spec: &StageSpec, out: &Path, rel: &str) -> String {
    let host = Host::new();
    let result = build_in_helper(spec, &host);
    assert_eq!(result, "ok", "the build failed");
    let text = std::fs::read_to_string(out.join(rel)).unwrap();
    ingot().remove_tree(out).unwrap();
    text
}

#[test]
fn a_fork_bomb_stops_at_the_process_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    // The subshell stops at the first fork that fails; the count says how far it got.
    let spec = seeded_spec(
        dir.path(),
        &out,
        "(n=0; while [ $n -lt 1500 ]; do sleep 120 & n=$((n+1)); echo $n > /srv/forks; done) \
         2>/dev/null\nexit 0\n",
    );
    let forks: u64 = build_and_read(&spec, &out, "srv/forks")
        .trim()
        .parse()
        .unwrap();
    assert!(
        (100..=1024).contains(&forks),
        "{forks} processes started: not bounded by the sandbox's limit of 1024"
    );
}

/// A build with `script` as its provision script and the given limits; its error.
fn limited_build_error(script: &str, memory: Option<u64>, pids: Option<u64>) -> String {
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let mut spec = seeded_spec(dir.path(), &out, script);
    spec.memory_max_bytes = memory;
    spec.pids_max = pids;
    let result = build_in_helper(&spec, &host);
    assert!(!out.exists(), "a tree was published: {result}");
    let left: Vec<_> = std::fs::read_dir(&spec.staging_parent)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
    assert_ne!(result, "ok", "the build passed its limits");
    result
}

/// The build's own cgroups (none may be left behind).
fn build_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for top in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
    ] {
        let mut stack = vec![PathBuf::from(top)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("ingot-build-{}-", std::process::id()))
                    {
                        found.push(p.clone());
                    }
                    if stack.len() < 64 {
                        stack.push(p);
                    }
                }
            }
        }
    }
    found
}

#[test]
fn one_process_past_the_memory_bound_fails_the_script_naming_the_limit() {
    // busybox dd allocates its block: 400 MiB cannot be mapped under a 256 MiB bound.
    let err = limited_build_error(
        "dd if=/dev/zero of=/dev/null bs=400M count=1\n",
        Some(256 << 20),
        None,
    );
    assert!(
        err.contains(
            "provision script provision.sh exited with status 1: it ran out of memory: \
                      each program in the image may map at most 256 MiB (RLIMIT_AS)"
        ),
        "{err}"
    );
}

/// A real-root build of `script` under the cgroup limits given must fail naming the script
/// and `limit`, and leave no cgroup behind. Only real root gets a cgroup of its own: elsewhere
/// this fails, with the reason.
fn assert_stopped_by_the_cgroup(script: &str, memory: Option<u64>, pids: Option<u64>, limit: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "only real root gets a cgroup of its own (an ordinary user's build runs under rlimits): \
         run this test as root"
    );
    let err = limited_build_error(script, memory, pids);
    assert!(
        err.contains("provision script provision.sh") && err.contains(limit),
        "{err}"
    );
    assert_eq!(
        build_cgroups(),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
}

#[test]
fn processes_together_past_the_builds_memory_cgroup_are_stopped_naming_the_limit() {
    // Three processes of 120 MiB each: every one within the per-process bound, all three
    // together past the build's 256 MiB.
    assert_stopped_by_the_cgroup(
        "set -e\n\
         dd if=/dev/zero of=/dev/null bs=120M count=200 & a=$!\n\
         dd if=/dev/zero of=/dev/null bs=120M count=200 & b=$!\n\
         dd if=/dev/zero of=/dev/null bs=120M count=200 & c=$!\n\
         wait $a; wait $b; wait $c\n",
        Some(256 << 20),
        None,
        "stopped by the build's memory limit of 256 MiB (cgroup v",
    );
}

#[test]
fn the_builds_process_cgroup_stops_a_fork_bomb_naming_the_limit() {
    // Under the per-program 1024, past the build's 200: the cgroup's refusal is what stops it.
    assert_stopped_by_the_cgroup(
        "n=0; while [ $n -lt 500 ]; do sleep 120 & n=$((n+1)); done 2>/dev/null\n",
        None,
        Some(200),
        "the build's limit of 200 processes was reached (cgroup v",
    );
}

#[test]
fn run_is_a_bounded_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let spec = seeded_spec(
        dir.path(),
        &out,
        "dd if=/dev/zero of=/run/fill bs=1048576 count=200 2>/dev/null\n\
         wc -c < /run/fill > /srv/run-bytes\nrm -f /run/fill\nexit 0\n",
    );
    let bytes: u64 = build_and_read(&spec, &out, "srv/run-bytes")
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1 << 20..=64 << 20).contains(&bytes),
        "{bytes} bytes written to /run: not bounded at 64 MiB"
    );
}

#[test]
fn a_script_past_its_time_limit_is_stopped_and_nothing_is_left() {
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let mut spec = seeded_spec(dir.path(), &out, "echo started\nsleep 60 &\nsleep 60\n");
    spec.script_timeout_secs = Some(2);
    let started = std::time::Instant::now();
    let result = build_in_helper(&spec, &host);
    let took = started.elapsed();
    assert!(
        result.contains("provision script provision.sh exceeded its time limit of 2 s"),
        "{result}"
    );
    assert!(result.contains("started"), "no last output in: {result}");
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    assert!(!out.exists(), "a tree was published");
    let left: Vec<_> = std::fs::read_dir(&spec.staging_parent)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// A loopback listener on the host; whether a connection arrived.
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn accepted(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

#[test]
fn no_network_without_network_true() {
    let host = Host::new();
    let (l, port) = listener();
    let report = provision_trial(&host, "tcp", &port.to_string(), false);
    assert_refused(&report, &["tcp connection to the host's loopback"]);
    assert!(!accepted(&l), "the host's listener got a connection");
}

/// The far side of the network tests: an HTTP server on a non-loopback address, and the
/// places a provision script must not reach: a loopback listener and an abstract unix socket
/// of the network namespace the build runs in (the "host's"), plus, as root, a DNS server.
///
/// As real root it is all in a network namespace of the test's own making (`ip netns add`):
/// an interface with the default route and a second one holding the server's address
/// 10.214.0.1, and `/etc/netns/NAME/resolv.conf` naming the test's DNS server there; the build
/// runs in that namespace. An ordinary user cannot make one and run a build with its
/// subordinate ids in it, so there the build runs in the host's namespace and the server
/// listens on the host's first global IPv4 address (DNS is then the host's: the end-to-end
/// suite resolves the real archive's name through it).
struct NetWorld {
    netns: Option<String>,
    server: std::net::Ipv4Addr,
    http_port: u16,
    token: String,
    loopback: TcpListener,
    loopback_port: u16,
    abstract_name: String,
    abstract_listener: std::os::unix::net::UnixListener,
}

/// The DNS name the test's DNS server answers (with the server's address), as root.
const TEST_HOST_NAME: &str = "srv.ingot.test";

impl NetWorld {
    fn new() -> NetWorld {
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let token = format!("ingot-network-token-{unique}");
        let root = nix::unistd::geteuid().is_root();
        let (netns, server) = if root {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("ingot-test-{}-{n}", std::process::id());
            make_test_netns(&name);
            (Some(name), std::net::Ipv4Addr::new(10, 214, 0, 1))
        } else {
            (None, host_global_ipv4())
        };
        let ns = netns.clone();
        let (http, loopback, abstract_listener, abstract_name, dns) = in_netns(ns.as_deref(), {
            let unique = unique.clone();
            move || {
                let http = TcpListener::bind((server, 0)).expect("binding the test's HTTP server");
                let loopback = TcpListener::bind("127.0.0.1:0").unwrap();
                let name = format!("ingot-test-abstract-{unique}");
                let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes()).unwrap();
                let abstract_listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
                let dns = root.then(|| {
                    std::net::UdpSocket::bind((server, 53)).expect("binding the test's DNS server")
                });
                (http, loopback, abstract_listener, name, dns)
            }
        });
        loopback.set_nonblocking(true).unwrap();
        abstract_listener.set_nonblocking(true).unwrap();
        let http_port = http.local_addr().unwrap().port();
        let loopback_port = loopback.local_addr().unwrap().port();
        let body = token.clone();
        std::thread::spawn(move || serve_http(http, &body));
        if let Some(dns) = dns {
            std::thread::spawn(move || serve_dns(dns, server));
        }
        NetWorld {
            netns,
            server,
            http_port,
            token,
            loopback,
            loopback_port,
            abstract_name,
            abstract_listener,
        }
    }

    /// Nothing reached the loopback listener or the abstract socket (`report`: the probe's).
    fn assert_untouched(&self, report: &str) {
        assert!(
            !accepted(&self.loopback),
            "the host's loopback listener got a connection from the build; the probe:\n{report}"
        );
        match self.abstract_listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(_) => panic!(
                "the host's abstract socket got a connection from the build; the probe:\n{report}"
            ),
            Err(e) => panic!("accept on the abstract socket: {e}"),
        }
    }
}

impl Drop for NetWorld {
    fn drop(&mut self) {
        if let Some(ns) = &self.netns {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", ns])
                .status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("these tests need iproute2's `ip` (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace `name`: `lo` up, a veth pair (this kernel may lack the dummy type)
/// whose uplink0 holds 10.213.0.1/24 and the default route and whose srv0 holds 10.214.0.1/32
/// (the server's), and a resolv.conf naming 10.214.0.1.
fn make_test_netns(name: &str) {
    ip(&["netns", "add", name]);
    for args in [
        vec!["link", "set", "lo", "up"],
        vec![
            "link", "add", "uplink0", "type", "veth", "peer", "name", "srv0",
        ],
        vec!["addr", "add", "10.213.0.1/24", "dev", "uplink0"],
        vec!["link", "set", "uplink0", "up"],
        vec![
            "route",
            "add",
            "default",
            "via",
            "10.213.0.254",
            "dev",
            "uplink0",
            "onlink",
        ],
        vec!["addr", "add", "10.214.0.1/32", "dev", "srv0"],
        vec!["link", "set", "srv0", "up"],
    ] {
        let mut all = vec!["-n", name];
        all.extend(args);
        ip(&all);
    }
    let etc = Path::new("/etc/netns").join(name);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("resolv.conf"), "nameserver 10.214.0.1\n").unwrap();
}

/// The host's first global IPv4 address (not loopback).
fn host_global_ipv4() -> std::net::Ipv4Addr {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("these tests need iproute2's `ip` (apt-get install iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the network test needs a global IPv4 address on this host for its server \
                 (ip -4 addr show scope global printed {text:?})"
            )
        })
}

/// Run `f` on a thread that entered the network namespace `netns` (None: this one), so
/// that the sockets it makes belong there.
fn in_netns<T: Send + 'static>(netns: Option<&str>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = netns.map(|ns| Path::new("/run/netns").join(ns));
    std::thread::spawn(move || {
        if let Some(path) = path {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        f()
    })
    .join()
    .unwrap()
}

fn serve_http(l: TcpListener, body: &str) {
    use std::io::{Read, Write};
    for conn in l.incoming() {
        let Ok(mut c) = conn else { continue };
        let mut buf = [0u8; 2048];
        let _ = c.read(&mut buf);
        let _ = write!(
            c,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

/// A DNS server that knows one name: [`TEST_HOST_NAME`] (A: `addr`); NXDOMAIN for others.
fn serve_dns(sock: std::net::UdpSocket, addr: std::net::Ipv4Addr) {
    let wanted: Vec<u8> = TEST_HOST_NAME
        .split('.')
        .flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes()))
        .chain([0])
        .collect();
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return;
        };
        let q = &buf[..n];
        if q.len() < 12 + wanted.len() + 4 {
            continue;
        }
        let mut end = 12;
        while end < q.len() && q[end] != 0 {
            end += 1 + q[end] as usize;
        }
        let qend = end + 5;
        if qend > q.len() {
            continue;
        }
        let name = q[12..=end].to_ascii_lowercase();
        let qtype = u16::from_be_bytes([q[end + 1], q[end + 2]]);
        let known = name == wanted;
        let answers = u8::from(known && qtype == 1);
        let mut r = Vec::with_capacity(qend + 16);
        r.extend_from_slice(&q[..2]);
        r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
        r.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
        r.extend_from_slice(&q[12..qend]);
        if answers == 1 {
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&addr.octets());
        }
        let _ = sock.send_to(&r, from);
    }
}

/// A provision script with `network = true` over `stack`: it fetches the server's token over
/// HTTP, and tries the build namespace's loopback (directly and through each address the
/// stacks use for the host: gateway 10.0.2.2 and DNS 10.0.2.3) and its abstract socket. The
/// token arrives; nothing else does; as root the test's DNS name resolves too.
fn network_true_trial(stack: ingot::stage::usernet::Stack) {
    let world = NetWorld::new();
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let lp = world.loopback_port;
    let checks = format!(
        "tcp abstract:{} get:{}:{}:/token noget:10.0.2.2:{lp} noget:10.0.2.3:{lp} noget:127.0.0.1:{lp}",
        world.abstract_name, world.server, world.http_port
    );
    let args = format!("{} {lp} {checks}", host.files().display());
    let mut script = probe_script("/srv/report", &args);
    script.push_str("cat /etc/resolv.conf > /srv/resolv\n");
    if world.netns.is_some() {
        script.push_str(&format!(
            "nslookup {TEST_HOST_NAME} > /srv/dns 2>&1 || true\n"
        ));
    }
    let mut spec = seeded_spec(dir.path(), &out, &script);
    spec.provision_network = true;
    spec.network_stack = Some(stack);
    let result = build_in_helper_at(&spec, &host, None, world.netns.as_deref());
    assert_eq!(result, "ok", "the build failed");
    let read = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap();
    let report = read("srv/report");
    let resolv = read("srv/resolv");
    let dns = world.netns.is_some().then(|| read("srv/dns"));
    ingot().remove_tree(&out).unwrap();
    host.assert_untouched();
    world.assert_untouched(&report);
    assert_refused(
        &report,
        &[
            "tcp connection to the host's loopback",
            &format!(
                "connection to the host's abstract socket @{}",
                world.abstract_name
            ),
        ],
    );
    assert!(
        report.contains(&format!(
            "got {}:{} {}",
            world.server, world.http_port, world.token
        )),
        "the provision script did not fetch the server's token:\n{report}"
    );
    assert_eq!(
        resolv,
        ingot::stage::usernet::resolv_conf(),
        "the provision script's resolv.conf"
    );
    if let Some(dns) = dns {
        assert!(
            dns.contains(&world.server.to_string()),
            "{TEST_HOST_NAME} did not resolve through the stack's DNS relay:\n{dns}"
        );
    }
}

#[test]
fn network_true_through_pasta_reaches_a_server_not_the_hosts_loopback_or_sockets() {
    network_true_trial(ingot::stage::usernet::Stack::Pasta);
}

#[test]
fn network_true_through_slirp4netns_reaches_a_server_not_the_hosts_loopback_or_sockets() {
    network_true_trial(ingot::stage::usernet::Stack::Slirp4netns);
}

#[test]
fn replacing_dev_by_a_link_to_a_host_dir_does_not_empty_it() {
    let host = Host::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    // Whatever succeeds of it: get /dev out of the way, put a link to the host's dir there
    // (and the same path inside the image, so that it also resolves within the root).
    let script = format!(
        "umount -l /dev/pts /dev/null /dev; umount -l /dev\nrm -rf /dev\nmkdir -p {0}\n\
         ln -s {0} /dev\ntrue\n",
        host.files().display()
    );
    let spec = seeded_spec(dir.path(), &out, &script);
    let result = build_in_helper(&spec, &host);
    host.assert_untouched();
    if result == "ok" {
        assert!(out.join("dev").is_dir() && !out.join("dev").is_symlink());
        ingot().remove_tree(&out).unwrap();
    }
}

#[test]
fn a_maintainer_script_gets_the_same_sandbox() {
    let host = Host::new();
    let (l, port) = listener();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let debs_dir = dir.path().join("debs");
    let mut debs: Vec<StageDeb> = minidistro::build(&debs_dir);
    let args = format!("{} {port} all", host.files().display());
    let postinst = probe_script("/var/lib/probe-report", &args);
    debs.push(minidistro::build_package(
        &debs_dir,
        &minidistro::PackageSpec {
            name: "sandbox-probe",
            essential: false,
            depends: &["mini-base"],
            pre_depends: &[],
            scripts: &[("postinst", &postinst)],
            conffiles: &[],
            compression: "gzip",
        },
        |tree| {
            std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
            std::fs::copy(probe(), tree.join("usr/bin/sandbox-probe")).unwrap();
        },
    ));
    let mut spec = base_spec(dir.path(), &out);
    spec.debs = debs;
    let result = build_in_helper(&spec, &host);
    assert_eq!(result, "ok", "the build failed");
    let report = std::fs::read_to_string(out.join("var/lib/probe-report")).unwrap();
    ingot().remove_tree(&out).unwrap();
    host.assert_untouched();
    assert!(
        !accepted(&l),
        "dpkg's maintainer script reached the host's listener"
    );
    assert_refused(
        &report,
        &[
            "/proc/1/root",
            "inherited fds",
            "second chroot",
            "umount /proc",
            "ptrace attach to pid 1",
            "open /dev/tty",
            "tcp connection to the host's loopback",
            "read the host's file by its path",
        ],
    );
}

#[test]
fn staging_trees_are_private_to_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    // Wait, inside the build, until the test has looked at the staging tree.
    let spec = seeded_spec(
        dir.path(),
        &out,
        "echo > /srv/waiting\n\
         n=0; while ! test -e /srv/go; do sleep 1; n=$((n+1)); test $n -lt 120 || exit 9; done\n",
    );
    let staging_parent = spec.staging_parent.clone();
    let build = std::thread::spawn(move || {
        ingot().run(
            &spec,
            &mut |r| std::io::copy(r, &mut std::io::sink()).map(drop),
            &Silent,
        )
    });
    let staging = loop {
        let found = std::fs::read_dir(&staging_parent)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("root/srv/waiting").exists());
        if let Some(p) = found {
            break p;
        }
        assert!(
            !build.is_finished(),
            "the build ended before its script waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mode = std::fs::metadata(&staging).unwrap().permissions().mode() & 0o7777;
    let root_mode = std::fs::metadata(staging.join("root"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    std::fs::write(staging.join("root/srv/go"), b"").unwrap();
    let result = build.join().unwrap();
    assert_eq!(
        mode,
        0o700,
        "the staging directory {} is not private",
        staging.display()
    );
    assert_eq!(root_mode, 0o755, "the image's root keeps the image's mode");
    result.unwrap();
    ingot().remove_tree(&out).unwrap();
}
