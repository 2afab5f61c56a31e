//! The golden-image contract's cleanup rules, defined once: the paths and name patterns that
//! the stage's invariants ([`crate::stage::invariants::enforce`]) clean and that
//! [`crate::verify`] checks on any tarball, each with the [`Rule`](crate::verify::Rule) it belongs to.
//!
//! This module only holds data. It must never act on a tree or a tarball: enforcing is the
//! stage's job, checking is verify's.

/// SSH host keys: `etc/ssh/<name>` where name starts with this ([`Rule::HostKeys`](crate::verify::Rule::HostKeys)).
pub const HOST_KEY_DIR: &str = "etc/ssh";
/// See [`HOST_KEY_DIR`].
pub const HOST_KEY_PREFIX: &str = "ssh_host_";

/// An empty file, so that systemd generates an id at first boot ([`Rule::MachineId`](crate::verify::Rule::MachineId)).
pub const MACHINE_ID: &str = "etc/machine-id";
/// Absent or a symlink to `/etc/machine-id` ([`Rule::DbusMachineId`](crate::verify::Rule::DbusMachineId)).
pub const DBUS_MACHINE_ID: &str = "var/lib/dbus/machine-id";
/// The target that [`DBUS_MACHINE_ID`] may link to.
pub const DBUS_MACHINE_ID_TARGET: &str = "/etc/machine-id";

/// systemd's per-instance secrets, relative to the root ([`Rule::InstanceSecrets`](crate::verify::Rule::InstanceSecrets)).
pub const INSTANCE_SECRETS: &[&str] = &[
    "var/lib/systemd/random-seed",
    "var/lib/systemd/credential.secret",
];

/// apt's package lists: nothing but `lock` and (empty) directories ([`Rule::AptLists`](crate::verify::Rule::AptLists)).
pub const APT_LISTS: &str = "var/lib/apt/lists";
/// The one file [`APT_LISTS`] may hold.
pub const APT_LISTS_LOCK: &str = "lock";
/// apt's caches: no `*.bin` directly in it, no `archives/*.deb` ([`Rule::AptCache`](crate::verify::Rule::AptCache)).
pub const APT_CACHE: &str = "var/cache/apt";

/// Scratch directories: present, empty, with these modes ([`Rule::TmpDirs`](crate::verify::Rule::TmpDirs)).
pub const SCRATCH_DIRS: &[(&str, u32)] = &[("tmp", 0o1777), ("var/tmp", 0o1777), ("run", 0o755)];

/// Every regular file below is empty ([`Rule::Logs`](crate::verify::Rule::Logs)).
pub const LOG_DIR: &str = "var/log";

/// Absent or neutral ([`Rule::Hostname`](crate::verify::Rule::Hostname)).
pub const HOSTNAME: &str = "etc/hostname";
/// What the invariants write into [`HOSTNAME`].
pub const NEUTRAL_HOSTNAME: &[u8] = b"localhost\n";
/// Names a fresh image may carry in [`HOSTNAME`].
pub const NEUTRAL_HOSTNAMES: &[&str] = &["", "localhost", "localhost.localdomain"];

/// The distribution's resolver link or nothing of the build host's ([`Rule::ResolvConf`](crate::verify::Rule::ResolvConf)).
pub const RESOLV_CONF: &str = "etc/resolv.conf";
/// systemd-resolved's stub, the link the distribution ships.
pub const RESOLVED_STUB_LINK: &str = "../run/systemd/resolve/stub-resolv.conf";

/// Left over from the build if present ([`Rule::PolicyRcD`](crate::verify::Rule::PolicyRcD)).
pub const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// Shell and tool history files that must not be in `/root` or `/home/*`
/// ([`Rule::ShellHistory`](crate::verify::Rule::ShellHistory)).
pub const HISTORY_FILES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".ash_history",
    ".history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".mysql_history",
    ".psql_history",
    ".sqlite_history",
    ".wget-hsts",
];

/// No `/root/.ssh` ([`Rule::RootSsh`](crate::verify::Rule::RootSsh)).
pub const ROOT_SSH: &str = "root/.ssh";
