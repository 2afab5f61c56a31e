//! `[provision] network = true`: a network for the provision scripts through a user-mode
//! network stack (`pasta` from passt, or `slirp4netns`), never the build host's own network
//! namespace.
//!
//! For each provision script the build's worker makes a fresh network namespace (owned by the
//! build's user namespace), and starts the stack on it. The stack lives in the host's network
//! namespace as an ordinary process of the caller's (no capability over the host's network)
//! and relays the namespace's TCP and UDP as its own sockets: outbound connections and DNS
//! work, while
//! - the host's loopback is out of reach: `pasta --no-map-gw -T none -U none` (no gateway
//!   address mapped to the host, no port of the namespace's loopback forwarded to the host's),
//!   `slirp4netns --disable-host-loopback`;
//! - the host's abstract unix sockets (X11, D-Bus, ibus) are out of reach: they belong to a
//!   network namespace, and the script's is not the host's;
//! - nothing listens for the host: no port is forwarded into the namespace (`-t none -u none`).
//!
//! Both stacks give the script the same, fixed addresses (so nothing of the build host's own
//! addresses can end up in the image): `eth0` with 10.0.2.100/24, gateway 10.0.2.2, DNS at
//! 10.0.2.3 (forwarded to the host's first resolver; by pasta also when that is a loopback
//! one such as systemd-resolved's 127.0.0.53), IPv4 only. The image's `/etc/resolv.conf` is a read-only
//! `nameserver 10.0.2.3` while the provision scripts run.
//!
//! The namespace is handed to the stack as an inherited descriptor (`--netns
//! /proc/self/fd/3`): a stack that drops its capabilities and its uid could open neither
//! another process's `/proc/PID/ns/net` nor a file in the private staging directory. The
//! stack is killed when the script ends, and the namespace goes with its last descriptor, so
//! nothing is shared between two scripts.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The script's address, as both stacks configure it.
pub const ADDRESS: &str = "10.0.2.100/24";
/// Its gateway.
pub const GATEWAY: &str = "10.0.2.2";
/// Its resolver (relayed to the host's).
pub const DNS: &str = "10.0.2.3";
/// How long a stack may take to bring the namespace's interface up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The user-mode network stacks ingot can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stack {
    /// `pasta`, from the `passt` package (preferred: faster, and it keeps no state).
    Pasta,
    /// `slirp4netns`.
    Slirp4netns,
}

crate::named_choice!(Stack {
    "pasta" => Stack::Pasta,
    "slirp4netns" => Stack::Slirp4netns,
});

impl Stack {
    fn program(self) -> &'static str {
        match self {
            Stack::Pasta => "pasta",
            Stack::Slirp4netns => "slirp4netns",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Stack::Pasta => "passt",
            Stack::Slirp4netns => "slirp4netns",
        }
    }
}

/// A stack found on this host: which one, and its program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Helper {
    /// Which stack.
    pub stack: Stack,
    /// Its absolute path.
    pub program: PathBuf,
}

impl Helper {
    /// The stack asked for (`None`: pasta, else slirp4netns), looked up on `PATH` and in the
    /// usual system directories. The error says what to install.
    pub fn find(wanted: Option<Stack>) -> Result<Helper, String> {
        let candidates = match wanted {
            Some(stack) => vec![stack],
            None => vec![Stack::Pasta, Stack::Slirp4netns],
        };
        let found = candidates
            .iter()
            .find_map(|stack| which(stack.program()).map(|program| (*stack, program)));
        if let Some((stack, program)) = found {
            tun_is_usable()?;
            return Ok(Helper { stack, program });
        }
        Err(match wanted {
            Some(stack) => format!(
                "[provision] network = true with --network-stack {stack}: no `{}` on PATH \
                 (apt-get install {})",
                stack.program(),
                stack.package()
            ),
            None => "[provision] network = true needs a user-mode network stack: neither \
                     `pasta` nor `slirp4netns` is on PATH (apt-get install passt, or slirp4netns)"
                .to_string(),
        })
    }

    /// The build log's line on the provision network.
    pub fn describe(&self) -> String {
        format!(
            "provision network: {} ({}): eth0 {ADDRESS}, gateway {GATEWAY}, DNS {DNS}; the \
             host's loopback and abstract sockets are out of reach",
            self.stack,
            self.program.display()
        )
    }
}

/// The stacks open `/dev/net/tun` with the builder's own ids, inside the build's user
/// namespace: it must be there and readable and writable by everyone (udev's mode, 0666).
fn tun_is_usable() -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let tun = Path::new(TUN);
    match std::fs::metadata(tun) {
        Ok(m) if m.file_type().is_char_device() && m.permissions().mode() & 0o006 == 0o006 => {
            Ok(())
        }
        Ok(m) => Err(format!(
            "[provision] network = true: {TUN} is mode {:04o}; the user-mode network stack runs              with the builder's ids and must open it (chmod 0666 {TUN}, the mode udev gives it)",
            m.permissions().mode() & 0o7777
        )),
        Err(e) => Err(format!(
            "[provision] network = true: {TUN}: {e} (the user-mode network stack needs the tun              device: modprobe tun)"
        )),
    }
}

/// The device the stacks make the namespace's interface with.
pub const TUN: &str = "/dev/net/tun";

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

/// The contents of the image's `/etc/resolv.conf` while a provision script has the network.
pub fn resolv_conf() -> String {
    format!(
        "# ingot: the provision network's resolver (relayed to the build host's)\nnameserver {DNS}\n"
    )
}

/// One script's network: its namespace and the stack serving it.
#[derive(Debug)]
pub struct Link {
    netns: OwnedFd,
    stack_pid: i32,
}

/// The descriptor numbers the stack gets: the namespace, and pasta's pid pipe.
const NETNS_FD: i32 = 3;
const PID_FD: i32 = 4;

impl Link {
    /// A fresh network namespace with `helper` serving it; the stack's stderr goes to `log`
    /// (read when it fails). Returns once the namespace's interface is configured.
    pub fn up(helper: &Helper, log: &Path) -> Result<Link, String> {
        let netns = new_netns()?;
        let started = match helper.stack {
            Stack::Pasta => start_pasta(helper, &netns, log),
            Stack::Slirp4netns => start_slirp4netns(helper, &netns, log),
        };
        let _ = std::fs::remove_file(log);
        match started {
            Ok(pid) => Ok(Link {
                netns,
                stack_pid: pid,
            }),
            Err(e) => Err(format!(
                "{} ({}): {e}",
                helper.stack,
                helper.program.display()
            )),
        }
    }

    /// The namespace, for the sandbox to join.
    pub fn netns(&self) -> std::os::fd::RawFd {
        self.netns.as_raw_fd()
    }

    /// The stack's process id (in the build's pid namespace).
    pub fn stack_pid(&self) -> i32 {
        self.stack_pid
    }

    /// Stop the stack (if it still runs); the namespace goes with its last descriptor.
    pub fn down(self) {
        stop_stack(self.stack_pid);
    }
}

/// Stop the stack with process id `pid` (a child of this process's: the worker is the
/// reaper of the daemon pasta leaves), unless it is gone and reaped already. The sandbox calls
/// it before it sweeps a program's leftovers, so the sweep reports only what the program left
/// behind. `pid` 0: nothing.
pub fn stop_stack(pid: i32) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    if pid <= 0 {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    // ECHILD: reaped already (by an earlier call); nothing of that number is ours to kill.
    if let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}

/// A new network namespace, made on a thread of its own (only that thread changes namespace).
fn new_netns() -> Result<OwnedFd, String> {
    std::thread::spawn(|| -> Result<OwnedFd, String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("a network namespace for the provision script: {e}"))?;
        Ok(std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("opening the new network namespace: {e}"))?
            .into())
    })
    .join()
    .map_err(|_| "the network namespace thread panicked".to_string())?
}

/// `cmd` with a clean environment, stdin from /dev/null, stdout discarded, stderr to `log`,
/// and each `(fd, number)` of `inherit` open as `number` across exec.
fn prepare(
    helper: &Helper,
    log: &Path,
    inherit: Vec<(std::os::fd::RawFd, i32)>,
) -> Result<Command, String> {
    let mut cmd = Command::new(&helper.program);
    let err = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    // SAFETY: between fork and exec: dup2/fcntl on descriptor numbers only, no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            for &(fd, number) in &inherit {
                let ok = if fd == number {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) != -1
                } else {
                    nix::libc::dup2(fd, number) != -1
                };
                if !ok {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(cmd)
}

fn start_pasta(helper: &Helper, netns: &OwnedFd, log: &Path) -> Result<i32, String> {
    // The daemon writes its pid into this pipe (`--pid /proc/self/fd/4`).
    let (mut pid_r, pid_w) = io::pipe().map_err(|e| format!("a pipe: {e}"))?;
    let (address, prefix) = ADDRESS.split_once('/').expect("ADDRESS has a prefix");
    let mut cmd = prepare(
        helper,
        log,
        vec![(netns.as_raw_fd(), NETNS_FD), (pid_w.as_raw_fd(), PID_FD)],
    )?;
    cmd.arg("--config-net")
        .args(["--netns", &format!("/proc/self/fd/{NETNS_FD}")])
        .args(["--ipv4-only", "--address", address, "--netmask", prefix])
        .args(["--gateway", GATEWAY, "--dns-forward", DNS, "--no-map-gw"])
        .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
        .args(["--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra"])
        .args(["--ns-ifname", "eth0", "--quiet"])
        // As the caller (the worker's ids are the caller's on the host): pasta's default, a
        // switch to "nobody", would leave it unable to open /dev/net/tun.
        .args([
            "--runas",
            &format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid()),
        ])
        .args(["--pid", &format!("/proc/self/fd/{PID_FD}")]);
    // pasta configures the namespace, then goes to the background and exits: its exit
    // status says whether the interface is up.
    let status = cmd.status().map_err(|e| format!("starting it: {e}"))?;
    drop(cmd);
    drop(pid_w);
    if !status.success() {
        let err = std::fs::read_to_string(log).unwrap_or_default();
        return Err(format!("{status}: {}", said(&err)));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // One line; the daemon may keep the descriptor open after writing it.
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = pid_r.read(&mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            text.push(byte[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    let text = rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("no pid after {} s", READY_TIMEOUT.as_secs()))?;
    text.trim()
        .parse::<i32>()
        .map_err(|_| format!("it reported no pid ({:?})", text.trim()))
}

/// What a stack wrote, as one escaped line (without pasta's complaints about syslog).
fn said(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Failed to send"))
        .collect();
    if lines.is_empty() {
        return "(no output)".into();
    }
    crate::progress::escape_controls(&lines.join(" | "))
}

fn start_slirp4netns(helper: &Helper, netns: &OwnedFd, log: &Path) -> Result<i32, String> {
    let (mut ready_r, ready_w) = io::pipe().map_err(|e| format!("a pipe: {e}"))?;
    let mut cmd = prepare(
        helper,
        log,
        vec![(netns.as_raw_fd(), NETNS_FD), (ready_w.as_raw_fd(), PID_FD)],
    )?;
    cmd.args(["--configure", "--mtu=65520", "--disable-host-loopback"])
        .args(["--enable-sandbox", "--enable-seccomp", "--netns-type=path"])
        .arg(format!("--ready-fd={PID_FD}"))
        .arg(format!("/proc/self/fd/{NETNS_FD}"))
        .arg("eth0");
    let mut child = cmd.spawn().map_err(|e| format!("starting it: {e}"))?;
    drop(cmd);
    drop(ready_w);
    let pid = child.id() as i32;
    // "1" on the ready descriptor once the tap device is configured; end of file if it died.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = tx.send(ready_r.read(&mut byte).map(|n| n == 1 && byte[0] == b'1'));
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(true)) => Ok(pid),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(log).unwrap_or_default();
            Err(match other {
                Err(_) => format!("not ready after {} s", READY_TIMEOUT.as_secs()),
                _ => format!("it failed before the interface was up: {}", said(&err)),
            })
        }
    }
}
