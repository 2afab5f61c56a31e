//! The golden-image contract, checked on any tarball (ours, or one made by Packer/Docker).
//!
//! This module owns the list of contract rules ([`Rule`]), the streaming scan of a root
//! filesystem tarball and the [`Report`] it produces. It reads the tarball exactly once, as a
//! stream, keeps only the few small files it needs in memory, and never modifies or extracts
//! the tarball. It must never write anything: a verdict is data, printing is the CLI's job.
//!
//! The cleanup half of the contract is enforced at build time by
//! [`crate::stage::invariants::enforce`]; the rules here are deliberately the same, so that an
//! image which passed `enforce` passes `verify`, and an image from elsewhere is held to the
//! same bar.

mod decompress;
mod proxmox;
mod rules;
mod scan;
mod sshd;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::export::compress::Compression;

// The cleanup rules' paths and patterns are defined once, in `crate::golden`, for both the
// stage's invariants and these checks.
pub use crate::golden::{HISTORY_FILES, INSTANCE_SECRETS};

/// One rule of the golden-image contract. Serialised (and displayed) as its kebab-case id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The input is a readable (gzip/zstd/xz/plain) tar archive.
    ArchiveFormat,
    /// The root filesystem is at the archive root (`etc/…`, not `rootfs/etc/…`), with no
    /// absolute or `..` paths.
    RootLayout,
    /// No `/etc/ssh/ssh_host_*` keys: every instance must generate its own.
    HostKeys,
    /// `/etc/machine-id` exists and is empty.
    MachineId,
    /// `/var/lib/dbus/machine-id` is absent or a symlink to `/etc/machine-id`.
    DbusMachineId,
    /// No per-instance secrets of systemd (`/var/lib/systemd/random-seed`,
    /// `/var/lib/systemd/credential.secret`): clones would share them.
    InstanceSecrets,
    /// No apt package lists in `/var/lib/apt/lists` (only `lock` and empty directories).
    AptLists,
    /// No apt binary caches (`/var/cache/apt/*.bin`) or downloaded `.deb`s.
    AptCache,
    /// `/tmp`, `/var/tmp` and `/run` are empty directories with modes 1777, 1777, 0755.
    TmpDirs,
    /// Every regular file under `/var/log` is empty.
    Logs,
    /// `/etc/hostname` is absent or neutral (`localhost`), never a build host's name.
    Hostname,
    /// `/etc/resolv.conf` is the distribution's (a symlink into `/run`, or no resolver of the
    /// build host).
    ResolvConf,
    /// No `/usr/sbin/policy-rc.d` left over from the build.
    PolicyRcD,
    /// No shell or tool history files in `/root` or `/home/*`.
    ShellHistory,
    /// No `/root/.ssh`.
    RootSsh,
    /// No account with uid ≥ 1000 in `/etc/passwd` except `nobody` (65534).
    Users,
    /// No password hash in `/etc/shadow` or `/etc/gshadow` (only locked forms such as `*`,
    /// `!`, `!*`, `!<hash>`).
    Passwords,
    /// No `authorized_keys` or `authorized_keys2` file anywhere.
    AuthorizedKeys,
    /// No PEM or OpenSSH private key in any regular file.
    PrivateKeys,
    /// The effective global sshd settings (as sshd computes them) disable password and
    /// keyboard-interactive logins and allow root only with a key.
    SshdConfig,
    /// Every owner and group id is within 0..=65535 (what an unprivileged LXC map covers).
    Owners,
    /// No character or block device nodes (LXC and Proxmox provide `/dev`).
    DeviceNodes,
    /// No world-writable regular file, and no world-writable directory without the sticky
    /// bit.
    WorldWritable,
    /// `/sbin/init` resolves (through symlinks inside the archive) to a regular file.
    Init,
    /// `/etc/os-release` identifies the distribution (`ID`, `VERSION_ID`).
    OsRelease,
    /// `/etc/lsb-release` identifies the distribution (`DISTRIB_ID`, `DISTRIB_RELEASE`);
    /// required on Ubuntu, where base-files ships it.
    LsbRelease,
    /// `--proxmox`: what Proxmox's container setup reads to identify the distribution
    /// (`/etc/os-release` `ID`; on Ubuntu `/etc/lsb-release` `DISTRIB_ID` and a release it
    /// knows).
    ProxmoxRelease,
    /// `--proxmox`: `/bin/sh` is an ELF executable of the image's architecture.
    ProxmoxArch,
    /// `--proxmox`: a systemd `/sbin/init` is new enough for cgroup v2 (systemd ≥ 232).
    ProxmoxSystemd,
    /// `--proxmox`: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (which Proxmox writes)
    /// are not directories nor symlinks that climb out of the tree.
    ProxmoxWrittenFiles,
    /// `--proxmox`: nothing under `/dev` (Proxmox extracts with `--exclude ./dev/*`).
    ProxmoxDev,
    /// `/etc/debian_version` names the release `os-release` says; required on Debian, where
    /// base-files ships it (Proxmox's setup reads it).
    DebianVersion,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: &'static [Rule] = &[
        Rule::ArchiveFormat,
        Rule::RootLayout,
        Rule::HostKeys,
        Rule::MachineId,
        Rule::DbusMachineId,
        Rule::InstanceSecrets,
        Rule::AptLists,
        Rule::AptCache,
        Rule::TmpDirs,
        Rule::Logs,
        Rule::Hostname,
        Rule::ResolvConf,
        Rule::PolicyRcD,
        Rule::ShellHistory,
        Rule::RootSsh,
        Rule::Users,
        Rule::Passwords,
        Rule::AuthorizedKeys,
        Rule::PrivateKeys,
        Rule::SshdConfig,
        Rule::Owners,
        Rule::DeviceNodes,
        Rule::WorldWritable,
        Rule::Init,
        Rule::OsRelease,
        Rule::LsbRelease,
        Rule::DebianVersion,
    ];

    /// The rules `verify --proxmox` adds to [`Rule::ALL`].
    pub const PROXMOX: &'static [Rule] = &[
        Rule::ProxmoxRelease,
        Rule::ProxmoxArch,
        Rule::ProxmoxSystemd,
        Rule::ProxmoxWrittenFiles,
        Rule::ProxmoxDev,
    ];

    /// The stable id used in reports and JSON, e.g. `host-keys`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::ArchiveFormat => "archive-format",
            Rule::RootLayout => "root-layout",
            Rule::HostKeys => "host-keys",
            Rule::MachineId => "machine-id",
            Rule::DbusMachineId => "dbus-machine-id",
            Rule::InstanceSecrets => "instance-secrets",
            Rule::AptLists => "apt-lists",
            Rule::AptCache => "apt-cache",
            Rule::TmpDirs => "tmp-dirs",
            Rule::Logs => "logs",
            Rule::Hostname => "hostname",
            Rule::ResolvConf => "resolv-conf",
            Rule::PolicyRcD => "policy-rc-d",
            Rule::ShellHistory => "shell-history",
            Rule::RootSsh => "root-ssh",
            Rule::Users => "users",
            Rule::Passwords => "passwords",
            Rule::AuthorizedKeys => "authorized-keys",
            Rule::PrivateKeys => "private-keys",
            Rule::SshdConfig => "sshd-config",
            Rule::Owners => "owners",
            Rule::DeviceNodes => "device-nodes",
            Rule::WorldWritable => "world-writable",
            Rule::Init => "init",
            Rule::OsRelease => "os-release",
            Rule::LsbRelease => "lsb-release",
            Rule::ProxmoxRelease => "proxmox-release",
            Rule::ProxmoxArch => "proxmox-arch",
            Rule::ProxmoxSystemd => "proxmox-systemd",
            Rule::ProxmoxWrittenFiles => "proxmox-written-files",
            Rule::ProxmoxDev => "proxmox-dev",
            Rule::DebianVersion => "debian-version",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One broken rule, at one path of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// The path inside the image, absolute (`/etc/ssh/ssh_host_rsa_key`).
    pub path: String,
    /// What was found, and what the contract expects.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.rule, self.path, self.detail)
    }
}

/// The verdict on one tarball.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The tarball that was read.
    pub tarball: PathBuf,
    /// Its compression, detected from the magic bytes.
    pub compression: Compression,
    /// How many tar entries it holds.
    pub entries: u64,
    /// The rules that were checked (all of [`Rule::ALL`]).
    pub checked: Vec<Rule>,
    /// What broke them; empty when the image honours the contract.
    pub violations: Vec<Violation>,
}

impl Report {
    /// True when no rule is broken.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations of one rule.
    pub fn violations_of(&self, rule: Rule) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.rule == rule)
    }

    /// The report as pretty-printed JSON (`ok`, `tarball`, `compression`, `entries`,
    /// `checked`, `violations`).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct WithVerdict<'a> {
            ok: bool,
            #[serde(flatten)]
            report: &'a Report,
        }
        // Serialising plain strings, numbers and enums cannot fail.
        serde_json::to_string_pretty(&WithVerdict {
            ok: self.ok(),
            report: self,
        })
        .unwrap_or_default()
    }
}

/// One line per violation, then a summary line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        if self.ok() {
            write!(
                f,
                "ok: {}: {} rules checked on {} entries",
                self.tarball.display(),
                self.checked.len(),
                self.entries
            )
        } else {
            let mut broken: Vec<Rule> = self.violations.iter().map(|v| v.rule).collect();
            broken.sort();
            broken.dedup();
            write!(
                f,
                "FAILED: {}: {} violation(s) of {} rule(s) ({}) out of {} checked",
                self.tarball.display(),
                self.violations.len(),
                broken.len(),
                broken.iter().map(|r| r.id()).collect::<Vec<_>>().join(", "),
                self.checked.len()
            )
        }
    }
}

/// The tarball could not be read at all (rule [`Rule::ArchiveFormat`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Open {
        /// The tarball.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The magic bytes are not gzip, zstd, xz or a POSIX tar header.
    #[error(
        "{path}: not a tarball: expected gzip, zstd, xz or plain tar, found magic bytes {magic}"
    )]
    UnknownFormat {
        /// The tarball.
        path: PathBuf,
        /// The first bytes, in hex.
        magic: String,
    },
    /// The compressed stream or the tar structure is corrupt or truncated.
    #[error(
        "{path}: corrupt {compression:?} tar stream after {entries} entries (last: {last}): {source}"
    )]
    Corrupt {
        /// The tarball.
        path: PathBuf,
        /// The detected compression.
        compression: Compression,
        /// Entries read successfully before the failure.
        entries: u64,
        /// The last entry read successfully (or `-`).
        last: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An OCI image archive whose layout, digests or layer are wrong (the message says which).
    #[error("{0}")]
    Oci(String),
}

impl From<crate::oci::OciError> for VerifyError {
    fn from(e: crate::oci::OciError) -> Self {
        VerifyError::Oci(e.to_string())
    }
}

impl VerifyError {
    /// The contract rule this failure breaks (always [`Rule::ArchiveFormat`]).
    pub fn rule(&self) -> Rule {
        Rule::ArchiveFormat
    }
}

/// A tar member path as GNU tar interprets it, by component (`./etc//ssh/.` is `etc/ssh`, the
/// root is the empty string), and whether it is absolute or contains `..`: the spelling every
/// rule sees, whatever the archive wrote.
pub fn normalise_tar_path(raw: &str) -> (String, bool) {
    let mut hostile = Vec::new();
    let path = scan::normalise(raw, &mut hostile);
    (path, !hostile.is_empty())
}

/// Check the golden-image contract on the tarball at `path` (gzip, zstd, xz or plain tar,
/// detected by magic). Streams the file once; never modifies it.
pub fn verify_tarball(path: &Path) -> Result<Report, VerifyError> {
    verify_tarball_with(path, &VerifyOptions::default())
}

/// What `verify` checks beyond the golden-image contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Also check what Proxmox VE's container setup reads and writes ([`Rule::PROXMOX`]).
    pub proxmox: bool,
    /// The Debian architecture `/bin/sh` must be built for; by default an OCI archive's
    /// config's, else this host's.
    pub architecture: Option<String>,
}

/// [`verify_tarball`] with options. An OCI image archive (`oci-layout`, `index.json`,
/// `blobs/`) is read too: the single layer of its first manifest is checked against its
/// digest and `diff_id` while the contract is checked on its stream.
pub fn verify_tarball_with(path: &Path, options: &VerifyOptions) -> Result<Report, VerifyError> {
    if crate::oci::looks_like_oci_archive(path) {
        return verify_oci(path, options);
    }
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let arch = options
        .architecture
        .clone()
        .unwrap_or_else(|| proxmox::host_architecture().to_string());
    verify_stream(
        path,
        std::io::BufReader::with_capacity(1 << 20, file),
        options,
        &arch,
        Ok,
    )
}

/// Hashes what passes through into a borrowed hasher (read after the scan).
struct HashInto<'h, R> {
    inner: R,
    hasher: &'h mut sha2::Sha256,
}

impl<R: Read> Read for HashInto<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(self.hasher, &buf[..n]);
        Ok(n)
    }
}

fn verify_oci(path: &Path, options: &VerifyOptions) -> Result<Report, VerifyError> {
    let layer = crate::oci::locate_layer(path)?;
    let expected = match layer.media_type.as_str() {
        "application/vnd.oci.image.layer.v1.tar+gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
        "application/vnd.oci.image.layer.v1.tar" => Compression::None,
        other => {
            return Err(VerifyError::Oci(format!(
                "{}: layer media type {other:?}: expected an OCI tar, tar+gzip or tar+zstd layer",
                path.display()
            )));
        }
    };
    let arch = match &options.architecture {
        Some(a) => a.clone(),
        None => proxmox::debian_architecture(&layer.architecture)
            .unwrap_or(layer.architecture.as_str())
            .to_string(),
    };
    let mut compressed = <sha2::Sha256 as sha2::Digest>::new();
    let mut uncompressed = <sha2::Sha256 as sha2::Digest>::new();
    let raw = HashInto {
        inner: std::io::BufReader::with_capacity(1 << 20, crate::oci::open_layer(path, &layer)?),
        hasher: &mut compressed,
    };
    let uncompressed_ref = &mut uncompressed;
    let report = verify_stream(path, raw, options, &arch, move |stream| {
        Ok(Box::new(HashInto {
            inner: stream,
            hasher: uncompressed_ref,
        }))
    })?;
    let wrap_oci = |what: &str, got: String, want: &str| {
        VerifyError::Oci(format!(
            "{}: the layer's {what} is sha256:{got}, the image says sha256:{want}",
            path.display()
        ))
    };
    let got = hex::encode(sha2::Digest::finalize(compressed));
    if got != layer.sha256 {
        return Err(wrap_oci("digest", got, &layer.sha256));
    }
    let got = hex::encode(sha2::Digest::finalize(uncompressed));
    if got != layer.diff_id {
        return Err(wrap_oci("diff_id (uncompressed)", got, &layer.diff_id));
    }
    if report.compression != expected {
        return Err(VerifyError::Oci(format!(
            "{}: the layer is {:?}-compressed but its media type says {}",
            path.display(),
            report.compression,
            layer.media_type
        )));
    }
    Ok(report)
}

/// The decompressed tar stream of the tarball at `path`, whatever its compression (detected
/// by magic, as [`verify_tarball`] does): for readers other than the contract's (`rebuild`'s
/// entry-by-entry comparison).
pub fn open_tar_stream(path: &Path) -> Result<(Compression, Box<dyn Read>), VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    decompress::open(path, std::io::BufReader::with_capacity(1 << 20, file))
}

fn verify_stream<'a>(
    name: &Path,
    reader: impl Read + 'a,
    options: &VerifyOptions,
    arch: &str,
    wrap: impl FnOnce(Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>, VerifyError> + 'a,
) -> Result<Report, VerifyError> {
    let (compression, stream) = decompress::open(name, reader)?;
    let stream = wrap(stream)?;
    let image = scan::scan(name, compression, stream)?;
    let mut violations = image.violations.clone();
    rules::check_image(&image, &mut violations);
    let mut checked = Rule::ALL.to_vec();
    if options.proxmox {
        proxmox::check(&image, arch, &mut violations);
        checked.extend_from_slice(Rule::PROXMOX);
    }
    violations.sort_by(|a, b| (a.rule, &a.path).cmp(&(b.rule, &b.path)));
    violations.dedup();
    Ok(Report {
        tarball: name.to_path_buf(),
        compression,
        entries: image.entries,
        checked,
        violations,
    })
}

/// Like [`verify_tarball`], for a tarball that is already open; `name` is used in the report
/// and in errors.
pub fn verify_reader(name: &Path, reader: impl Read) -> Result<Report, VerifyError> {
    verify_reader_with(name, reader, &VerifyOptions::default())
}

/// [`verify_reader`] with options (a plain or compressed tar stream, not an OCI archive).
pub fn verify_reader_with(
    name: &Path,
    reader: impl Read,
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let arch = options
        .architecture
        .clone()
        .unwrap_or_else(|| proxmox::host_architecture().to_string());
    verify_stream(name, reader, options, &arch, Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_serialise_as_themselves() {
        let mut seen = std::collections::HashSet::new();
        for rule in Rule::ALL {
            assert!(seen.insert(rule.id()), "duplicate id {rule}");
            assert_eq!(
                serde_json::to_value(rule).ok(),
                Some(serde_json::Value::String(rule.id().to_string()))
            );
        }
    }
}
