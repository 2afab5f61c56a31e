//! Installing packages into the staging root: safe extraction of `.deb`s and configuration
//! with the target's own dpkg, in the order mmdebstrap (and debootstrap) use.
//!
//! Owns, for a fresh staging root: the directories and dpkg database files mmdebstrap's setup
//! creates (`var/lib/dpkg/{status,arch,info,…}`, `tmp` 1777, …), the extraction of the
//! Essential set ([`unpack`]), the temporary fake `start-stop-daemon`, the copies of the
//! `.deb`s inside the root, and every dpkg run. The Essential set is unpacked once, by the
//! extraction: [`register`] then records each package in dpkg's database exactly as `dpkg
//! --unpack` would have (its `preinst` run, `info/`, `status`, trigger interests, conffiles
//! waiting as `.dpkg-new`) and `dpkg --configure --force-depends` configures them (with the
//! `double-unpack` bench lever, or a database it cannot take, `dpkg --install
//! --force-depends` unpacks them a second time instead, as before). Then — once
//! [`configure_packages_gated`]'s `rest_ready` says the other `.deb`s have finished
//! downloading — `dpkg --unpack` of the rest in rounds ordered by Pre-Depends with the needed
//! `dpkg --configure`s between them, then one `dpkg --configure --pending`, each run in the
//! [`sandbox`] without network. Every run uses `--force-unsafe-io` (the
//! staging tree is thrown away if the build dies) and every run but the last `--no-triggers`,
//! so each pending trigger is processed once, at the end, as apt does.
//!
//! Must never: write outside the root (all in-root paths go through [`RootDir`]),
//! leave the copied `.deb`s or the fake `start-stop-daemon` behind, or run anything but the
//! target's own programs inside the image (always through the sandbox runner). `/proc`,
//! `/dev` and `policy-rc.d` belong to the caller (the stage). The SSH host keys are never
//! generated here: empty placeholders stand at the missing host-key paths while dpkg
//! configures (the golden contract deletes host keys anyway) and are removed afterwards.

pub mod register;
pub mod unpack;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::Path;

use crate::stage::StageDeb;
use crate::stage::confined::RootDir;
use crate::stage::sandbox::{self, Network};
use unpack::UnpackError;

/// Where the `.deb`s are copied inside the root while dpkg runs; removed afterwards.
pub const DEB_DIR: &str = "tmp/ingot-debs";

/// How many lines of dpkg's output an error carries.
const OUTPUT_TAIL: usize = 15;

/// The directories mmdebstrap's `run_setup` creates before extracting anything (chroot mode),
/// with their modes. They are part of its output, so they are part of ours.
const SETUP_DIRS: &[(&str, u32)] = &[
    ("etc/apt/apt.conf.d", 0o755),
    ("etc/apt/sources.list.d", 0o755),
    ("etc/apt/preferences.d", 0o755),
    ("var/cache/apt", 0o755),
    ("var/lib/apt/lists/partial", 0o755),
    ("tmp", 0o1777),
    ("var/lib/dpkg", 0o755),
    ("etc/dpkg/dpkg.cfg.d", 0o755),
    ("var/log/apt", 0o755),
    ("var/lib/dpkg/triggers", 0o755),
    ("var/lib/dpkg/info", 0o755),
    ("var/lib/dpkg/alternatives", 0o755),
    ("var/lib/dpkg/updates", 0o755),
];

const START_STOP_DAEMON: &str = "sbin/start-stop-daemon";
const START_STOP_DAEMON_REAL: &str = "sbin/start-stop-daemon.REAL";
/// mmdebstrap's stand-in while packages are configured: no daemon starts in the build.
const FAKE_START_STOP_DAEMON: &str =
    "#!/bin/sh\necho \"Warning: Fake start-stop-daemon called, doing nothing\">&2\n";

/// The dpkg levers for a tree that is thrown away if the build fails: no `fsync` per file
/// (`--force-unsafe-io`), and triggers deferred (`--no-triggers`) from every run but the last
/// `--configure --pending`, which processes each pending trigger once, as apt does. Neither
/// changes what ends up in the tree. Nor does the third: the Essential set, extracted from
/// Rust, is registered with dpkg and only configured (`register_essential`), not unpacked by
/// `dpkg --install` a second time.
///
/// And one for the image's contract: a golden image ships no SSH host keys (the cleanup
/// invariants delete them), so generating them while packages are configured is wasted work —
/// openssh-server's postinst spends over a second on the RSA key alone. While dpkg configures,
/// an empty placeholder stands at each host-key path that is missing (the postinst creates
/// only missing keys); they are removed before the provision scripts run, so those see what
/// the image will hold: no host keys.
#[derive(Debug, Clone, Copy)]
struct Levers {
    unsafe_io: bool,
    register_essential: bool,
    defer_triggers: bool,
    skip_host_keys: bool,
}

/// The SSH host keys openssh-server's postinst generates when they are missing.
const HOST_KEYS: &[&str] = &[
    "etc/ssh/ssh_host_rsa_key",
    "etc/ssh/ssh_host_dsa_key",
    "etc/ssh/ssh_host_ecdsa_key",
    "etc/ssh/ssh_host_ed25519_key",
];

/// Turns levers off for measuring them (scripts/bench.sh only): `INGOT_BENCH_DPKG` holds
/// `safe-io`, `triggers-each-run`, `host-keys` and/or `double-unpack`, comma-separated.
const BENCH_DPKG_ENV: &str = "INGOT_BENCH_DPKG";

/// The dpkg options in effect, as text: part of the base cache's key.
pub fn install_options() -> String {
    format!("{:?}", Levers::from_env())
}

impl Levers {
    fn from_env() -> Self {
        let off = std::env::var(BENCH_DPKG_ENV).unwrap_or_default();
        let off: Vec<&str> = off.split(',').map(str::trim).collect();
        Levers {
            unsafe_io: !off.contains(&"safe-io"),
            register_essential: !off.contains(&"double-unpack"),
            defer_triggers: !off.contains(&"triggers-each-run"),
            skip_host_keys: !off.contains(&"host-keys"),
        }
    }

    /// `base` plus the options for a run that is not the last one.
    fn args<'a>(&self, base: &[&'a str], last: bool) -> Vec<&'a str> {
        let mut args = base.to_vec();
        if self.unsafe_io {
            args.push("--force-unsafe-io");
        }
        if self.defer_triggers && !last {
            args.push("--no-triggers");
        }
        args
    }
}

/// Why the packages could not be installed; names the package(s) and what failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A package could not be read or extracted safely.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// Preparing the staging root (dpkg database, copies of the `.deb`s) failed.
    #[error("cannot prepare {path} in the staging root: {source}")]
    Setup {
        /// The path inside the root.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A program could not be started inside the image's sandbox.
    #[error("cannot run {program} in the staging root: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// dpkg failed.
    #[error(
        "dpkg {action} failed for {} with {status}; last output:\n{output}",
        packages.join(", ")
    )]
    Dpkg {
        /// What dpkg was asked to do (`--install --force-depends`, `--unpack`, …).
        action: String,
        /// The packages it was given.
        packages: Vec<String>,
        /// Its exit status.
        status: String,
        /// The last lines of its output.
        output: String,
    },
    /// No order satisfies the Pre-Depends of these packages.
    #[error("cannot order packages by Pre-Depends (cycle?): {}", packages.join(", "))]
    PreDependsCycle {
        /// The packages that could not be unpacked.
        packages: Vec<String>,
    },
    /// The copy of a `.deb` made for dpkg does not have the SHA-256 of the signed index.
    #[error(
        "{path}: the .deb of {package} changed after it was verified: SHA-256 {actual} while copying or extracting it, the signed index says {expected}"
    )]
    Tampered {
        /// The package.
        package: String,
        /// The cache file copied.
        path: String,
        /// SHA-256 from the plan.
        expected: String,
        /// SHA-256 of the bytes copied.
        actual: String,
    },
    /// dpkg's unpack of an Essential package would not leave what its extraction left.
    #[error(
        "cannot register {package} with dpkg after extracting it: {reason}, so dpkg would unpack it differently"
    )]
    CannotRegister {
        /// The package.
        package: String,
        /// What dpkg would do differently.
        reason: String,
    },
    /// No package says which architecture the target is.
    #[error("no package has a native architecture (all are Architecture: all)")]
    NoNativeArchitecture,
    /// The packages after the Essential set, downloading while it was installed, did not
    /// arrive.
    #[error("the {packages} packages after the Essential set were not downloaded: {detail}")]
    NotDownloaded {
        /// How many.
        packages: usize,
        /// What the download said.
        detail: String,
    },
}

fn setup_err(path: &str) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Setup {
        path: path.to_string(),
        source,
    }
}

/// The file name apt would give the `.deb` in `/var/cache/apt/archives`.
fn deb_file_name(deb: &StageDeb) -> String {
    format!(
        "{}_{}_{}.deb",
        deb.name,
        deb.version.replace(':', "%3a"),
        deb.architecture
    )
}

/// The target's native architecture: dpkg's own, else the first that is not `all`.
fn native_architecture(debs: &[StageDeb]) -> Result<&str, InstallError> {
    debs.iter()
        .find(|d| d.name == "dpkg" && d.architecture != "all")
        .or_else(|| debs.iter().find(|d| d.architecture != "all"))
        .map(|d| d.architecture.as_str())
        .ok_or(InstallError::NoNativeArchitecture)
}

/// The Essential packages and everything they (Pre-)Depend on, transitively: what
/// mmdebstrap's `apt-get install ?essential` downloads, extracts and installs first. Without
/// the dependencies (libc6 above all) the extracted Essential binaries could not even run.
fn essential_closure(debs: &[StageDeb]) -> HashSet<&str> {
    let by_name: HashMap<&str, &StageDeb> = debs.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut set = HashSet::new();
    let mut todo: Vec<&str> = debs
        .iter()
        .filter(|d| d.essential)
        .map(|d| d.name.as_str())
        .collect();
    while let Some(name) = todo.pop() {
        let Some(deb) = by_name.get(name) else {
            continue;
        };
        if set.insert(deb.name.as_str()) {
            todo.extend(deb.pre_depends_on.iter().map(String::as_str));
            todo.extend(deb.depends_on.iter().map(String::as_str));
        }
    }
    set
}

/// What mmdebstrap's setup writes before extracting: its directories, an empty
/// `var/lib/dpkg/status`, `var/lib/dpkg/arch` with the native architecture and the
/// placeholder `etc/fstab`. (Not its `etc/apt/sources.list`, `apt.conf.d/00mmdebstrap`,
/// nor the host's `etc/hostname`/`resolv.conf`: the image brings its own or none.)
fn prepare_root(root: &RootDir, arch: &str) -> Result<(), InstallError> {
    for (dir, mode) in SETUP_DIRS {
        // mmdebstrap forces /tmp to 1777 even if it existed.
        root.create_dir_all(dir, *mode, *dir == "tmp")
            .map_err(setup_err(dir))?;
    }
    for (file, contents) in [
        ("var/lib/dpkg/status", String::new()),
        ("var/lib/dpkg/arch", format!("{arch}\n")),
        // debootstrap and mmdebstrap both leave this placeholder; no package ships fstab.
        (
            "etc/fstab",
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n".to_string(),
        ),
    ] {
        if !root.exists(file).map_err(setup_err(file))? {
            root.write_file(file, contents.as_bytes(), 0o644)
                .map_err(setup_err(file))?;
        }
    }
    Ok(())
}

/// The copies of the `.deb`s inside the root and the fake `start-stop-daemon`: undone on drop,
/// so they are gone on every path out of [`install_packages`].
struct Scaffolding<'a> {
    root: &'a RootDir,
    /// File names copied into [`DEB_DIR`] (the directory exists iff this is `Some`).
    debs_copied: Option<Vec<String>>,
    fake_ssd: bool,
    /// Host-key placeholders this build created (see [`Levers`]).
    host_key_placeholders: Vec<&'static str>,
}

impl Scaffolding<'_> {
    /// Put an empty placeholder at each missing host-key path once `etc/ssh` exists, so that
    /// the configure run that follows generates no key (see [`Levers`]).
    fn hold_host_keys(&mut self, levers: Levers) -> Result<(), InstallError> {
        if !levers.skip_host_keys || !self.root.is_dir("etc/ssh").map_err(setup_err("etc/ssh"))? {
            return Ok(());
        }
        for key in HOST_KEYS {
            if self.host_key_placeholders.contains(key)
                || self.root.exists(key).map_err(setup_err(key))?
            {
                continue;
            }
            // Recorded first, so a half-made placeholder is removed too.
            self.host_key_placeholders.push(key);
            self.root
                .write_file(key, b"", 0o600)
                .map_err(setup_err(key))?;
        }
        Ok(())
    }

    /// Put the fake `start-stop-daemon` back if a package's unpack replaced it.
    fn refake_start_stop_daemon(&self) -> Result<(), InstallError> {
        if !self.fake_ssd {
            return Ok(());
        }
        let current = register::read_in_root(self.root, START_STOP_DAEMON)?;
        if current == FAKE_START_STOP_DAEMON.as_bytes() {
            return Ok(());
        }
        self.root
            .write_file(START_STOP_DAEMON, FAKE_START_STOP_DAEMON.as_bytes(), 0o755)
            .map_err(setup_err(START_STOP_DAEMON))
    }

    fn undo(&mut self) -> Result<(), InstallError> {
        for key in std::mem::take(&mut self.host_key_placeholders) {
            self.root.remove_file(key).map_err(setup_err(key))?;
        }
        if self.fake_ssd {
            self.fake_ssd = false;
            self.root
                .rename(START_STOP_DAEMON_REAL, START_STOP_DAEMON)
                .map_err(setup_err(START_STOP_DAEMON))?;
        }
        if let Some(names) = self.debs_copied.take() {
            self.root
                .remove_dir_with(DEB_DIR, &names)
                .map_err(setup_err(DEB_DIR))?;
        }
        Ok(())
    }
}

impl Drop for Scaffolding<'_> {
    fn drop(&mut self) {
        // Best effort on the error path; the success path calls undo() and reports errors.
        let _ = self.undo();
    }
}

/// Install `debs` into the empty staging directory `root` the way mmdebstrap does in chroot
/// mode, with the target's own dpkg: [`extract_essential`] then [`configure_packages`].
/// Packages are taken in the order given.
///
/// Runs as root (in the build's user namespace or for real); `/proc`, `/dev` and
/// `policy-rc.d` are the caller's. `log` receives progress and every line dpkg prints.
pub fn install_packages(
    root: &Path,
    debs: &[StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    extract_essential(root, debs, log)?;
    configure_packages(root, debs, log)
}

/// The essential set (the `essential` packages and their dependency closure within `debs`)
/// and the rest, in the order given.
fn split_essential<'a>(
    debs: &'a [StageDeb],
    log: &mut dyn FnMut(&str),
) -> (Vec<&'a StageDeb>, Vec<&'a StageDeb>) {
    let essential_set = essential_closure(debs);
    let (essential, rest): (Vec<&StageDeb>, Vec<&StageDeb>) = debs
        .iter()
        .partition(|d| essential_set.contains(d.name.as_str()));
    let pulled_in: Vec<&str> = essential
        .iter()
        .filter(|d| !d.essential)
        .map(|d| d.name.as_str())
        .collect();
    if !pulled_in.is_empty() {
        log(&format!(
            "essential set also holds their dependencies: {}",
            pulled_in.join(", ")
        ));
    }
    (essential, rest)
}

/// First half, mmdebstrap's setup and extract steps: the initial directories and dpkg
/// database, then the data of the essential set extracted from Rust. Nothing runs in the
/// root yet, so the caller may set up `/proc`, `/dev` and `policy-rc.d` after this (as
/// mmdebstrap does) or before (existing mount points are left alone).
pub fn extract_essential(
    root: &Path,
    debs: &[StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    if debs.is_empty() {
        return Ok(());
    }
    let root_dir = RootDir::open(root).map_err(setup_err("/"))?;
    prepare_root(&root_dir, native_architecture(debs)?)?;
    let (essential, _) = split_essential(debs, log);
    log(&format!(
        "extracting {} essential packages",
        essential.len()
    ));
    for deb in &essential {
        // dpkg never unpacks these, so what is extracted must be the verified bytes: read
        // once, checked against the signed index, extracted from a private copy in memory.
        let verified = verified_copy(deb)?;
        let path = crate::stage::confined::fd_path(&verified);
        for member in unpack::extract_deb(root, &deb.name, &path)? {
            log(&format!("{}: skipped {member}", deb.name));
        }
    }
    Ok(())
}

/// `actual` (the SHA-256 of bytes about to be used) is the one the signed index gave `deb`.
fn check_verified(deb: &StageDeb, actual: String) -> Result<(), InstallError> {
    if actual == deb.sha256 {
        return Ok(());
    }
    Err(InstallError::Tampered {
        package: deb.name.clone(),
        path: deb.path.display().to_string(),
        expected: deb.sha256.clone(),
        actual,
    })
}

/// The bytes of `deb` in an anonymous in-memory file, after checking their SHA-256 against
/// the signed index (nothing can change them between the check and their extraction).
pub(super) fn verified_copy(deb: &StageDeb) -> Result<std::os::fd::OwnedFd, InstallError> {
    let cache_err = |source| InstallError::Setup {
        path: deb.path.display().to_string(),
        source,
    };
    let bytes = std::fs::read(&deb.path).map_err(cache_err)?;
    check_verified(
        deb,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
    )?;
    let fd =
        nix::sys::memfd::memfd_create(deb.name.as_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| cache_err(e.into()))?;
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, &bytes).map_err(cache_err)?;
    Ok(file.into())
}

/// Second half, mmdebstrap's essential and install steps, with the target's own dpkg in a
/// chroot: `dpkg --install --force-depends` the essential set, then the rest ordered by
/// Pre-Depends. Needs [`extract_essential`] done, `/proc`, `/dev` and `policy-rc.d` in place.
/// The `.deb` copies and the fake `start-stop-daemon` are gone afterwards, on error too.
pub fn configure_packages(
    root: &Path,
    debs: &[StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    configure_packages_gated(root, debs, &mut || Ok(()), log)
}

/// [`configure_packages`] while the `.deb`s after the Essential set may still be downloading:
/// `rest_ready` returns once they are all in the cache (or says why they are not), and is
/// called after the Essential set is configured, before any of them is needed.
pub fn configure_packages_gated(
    root: &Path,
    debs: &[StageDeb],
    rest_ready: &mut dyn FnMut() -> Result<(), String>,
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    if debs.is_empty() {
        return Ok(());
    }
    let root_dir = RootDir::open(root).map_err(setup_err("/"))?;
    let (essential, rest) = split_essential(debs, &mut |_| {});
    let mut scaffolding = Scaffolding {
        root: &root_dir,
        debs_copied: None,
        fake_ssd: false,
        host_key_placeholders: Vec::new(),
    };
    fake_start_stop_daemon(&root_dir, &mut scaffolding)?;
    let levers = Levers::from_env();
    if !essential.is_empty() {
        log(&format!(
            "installing {} essential packages",
            essential.len()
        ));
        let last = rest.is_empty();
        install_essential(root, &essential, levers, last, &mut scaffolding, log)?;
        // dpkg's own unpack of dpkg (the double-unpack path) puts the real start-stop-daemon
        // over the fake; mmdebstrap fakes it again for its install phase, and so do we.
        scaffolding.refake_start_stop_daemon()?;
    }
    if !rest.is_empty() {
        rest_ready().map_err(|detail| InstallError::NotDownloaded {
            packages: rest.len(),
            detail,
        })?;
        copy_debs(&root_dir, &rest, &mut scaffolding)?;
    }
    install_rest(root, &essential, &rest, debs, levers, &mut scaffolding, log)?;
    scaffolding.undo()
}

/// The Essential set, extracted by [`extract_essential`] already: registered in dpkg's
/// database as `dpkg --unpack` would leave it ([`register`]), then `dpkg --configure
/// --force-depends`, so that no package is unpacked twice. With the `double-unpack` bench
/// lever, or a database [`register::unsupported`] cannot take, `dpkg --install
/// --force-depends` unpacks them again instead.
fn install_essential(
    root: &Path,
    essential: &[&StageDeb],
    levers: Levers,
    last: bool,
    scaffolding: &mut Scaffolding<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let root_dir = scaffolding.root;
    let dpkg_version = if levers.register_essential {
        running_dpkg_version(root)
    } else {
        None
    };
    let why_not = if !levers.register_essential {
        Some("the double-unpack lever is set".to_string())
    } else if dpkg_version.is_none() {
        Some("`dpkg --robot --version` did not say which dpkg runs".to_string())
    } else {
        register::unsupported(root_dir, essential)?
    };
    if let Some(why) = why_not {
        log(&format!("dpkg unpacks the essential set again: {why}"));
        // Only this path needs the `.deb`s inside the root: registration reads the verified
        // extraction's packages, not copies.
        copy_debs(root_dir, essential, scaffolding)?;
        let args = levers.args(&["--install", "--force-depends"], last);
        return run_dpkg(root, &args, essential, log);
    }
    let mut force = String::from("security-mac,downgrade");
    if levers.unsafe_io {
        force.push_str(",unsafe-io");
    }
    force.push_str(",depends");
    log(&format!(
        "registering {} extracted essential packages with dpkg",
        essential.len()
    ));
    register::register_unpacked(
        root,
        root_dir,
        essential,
        dpkg_version.as_deref().unwrap_or_default(),
        &force,
        log,
    )?;
    let args = levers.args(&["--configure", "--force-depends"], last);
    run_dpkg_names(root, &args, essential, log)
}

/// The version the target's dpkg gives its maintainer scripts as `DPKG_RUNNING_VERSION`
/// (its `PACKAGE_VERSION`, e.g. `1.22.6` for Ubuntu's 1.22.6ubuntu6.5), as it prints it.
fn running_dpkg_version(root: &Path) -> Option<String> {
    let mut out = Vec::new();
    let finished = sandbox::run(
        root,
        "/usr/bin/dpkg",
        ["--robot", "--version"],
        Network::Loopback,
        0,
        &mut |line| out.push(line.to_string()),
    )
    .ok()?;
    let version = out.first()?.split_whitespace().next()?.to_string();
    (finished.status.success() && !version.is_empty()).then_some(version)
}

/// Copy `debs` into [`DEB_DIR`] (created by the first call), hashing each copy.
fn copy_debs(
    root: &RootDir,
    debs: &[&StageDeb],
    scaffolding: &mut Scaffolding<'_>,
) -> Result<(), InstallError> {
    if scaffolding.debs_copied.is_none() {
        root.create_dir_all(DEB_DIR, 0o700, true)
            .map_err(setup_err(DEB_DIR))?;
    }
    let names = scaffolding.debs_copied.get_or_insert_with(Vec::new);
    for deb in debs.iter().copied() {
        // Recorded before the copy, so a partial copy is removed too.
        names.push(deb_file_name(deb));
        let rel = format!("{DEB_DIR}/{}", deb_file_name(deb));
        let source = std::fs::File::open(&deb.path).map_err(|source| InstallError::Setup {
            path: deb.path.display().to_string(),
            source,
        })?;
        let mut copy = root.create_file(&rel, 0o644).map_err(setup_err(&rel))?;
        // The bytes dpkg unpacks are the bytes hashed: hash while copying, not the cache
        // file by path minutes earlier.
        let mut hashing = HashingReader::new(source);
        io::copy(&mut hashing, &mut copy).map_err(setup_err(&rel))?;
        check_verified(deb, hashing.hex())?;
    }
    Ok(())
}

/// A reader that hashes (SHA-256) what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: io::Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        }
    }

    fn hex(self) -> String {
        hex::encode(sha2::Digest::finalize(self.hasher))
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// mmdebstrap moves a real `sbin/start-stop-daemon` aside while packages are configured.
fn fake_start_stop_daemon(
    root: &RootDir,
    scaffolding: &mut Scaffolding<'_>,
) -> Result<(), InstallError> {
    if !root
        .is_regular_file(START_STOP_DAEMON)
        .map_err(setup_err(START_STOP_DAEMON))?
    {
        return Ok(());
    }
    if root
        .exists(START_STOP_DAEMON_REAL)
        .map_err(setup_err(START_STOP_DAEMON_REAL))?
    {
        return Err(InstallError::Setup {
            path: START_STOP_DAEMON_REAL.to_string(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    root.rename(START_STOP_DAEMON, START_STOP_DAEMON_REAL)
        .map_err(setup_err(START_STOP_DAEMON))?;
    scaffolding.fake_ssd = true;
    root.write_file(START_STOP_DAEMON, FAKE_START_STOP_DAEMON.as_bytes(), 0o755)
        .map_err(setup_err(START_STOP_DAEMON))
}

/// One dpkg run for the packages after the essential set.
#[derive(Debug)]
enum Step<'a> {
    /// `dpkg --unpack` these `.deb`s.
    Unpack(Vec<&'a StageDeb>),
    /// `dpkg --configure` these (unpacked) packages, which later packages Pre-Depend on.
    Configure(Vec<&'a StageDeb>),
}

/// Order the non-essential packages apt-style: a package is unpacked once everything it
/// Pre-Depends on (and their dependencies) is configured; between rounds exactly the packages
/// needed for that are configured. Everything else is left to one final `--configure
/// --pending`, where dpkg orders by Depends itself.
fn plan_steps<'a>(
    essential: &[&'a StageDeb],
    rest: &[&'a StageDeb],
    all: &'a [StageDeb],
) -> Result<Vec<Step<'a>>, InstallError> {
    let by_name: HashMap<&str, &StageDeb> = all.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut configured: HashSet<&str> = essential.iter().map(|d| d.name.as_str()).collect();
    let mut unpacked: HashSet<&str> = HashSet::new();
    let mut remaining: Vec<&StageDeb> = rest.to_vec();
    let mut steps = Vec::new();

    // Everything that must be configured before `deb` can be unpacked.
    let needs = |deb: &StageDeb, configured: &HashSet<&str>| -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<&str> = deb.pre_depends_on.iter().map(String::as_str).collect();
        while let Some(name) = todo.pop() {
            let Some(dep) = by_name.get(name) else {
                continue;
            };
            if configured.contains(name) || !out.insert(dep.name.as_str()) {
                continue;
            }
            todo.extend(dep.pre_depends_on.iter().map(String::as_str));
            todo.extend(dep.depends_on.iter().map(String::as_str));
        }
        out
    };

    while !remaining.is_empty() {
        let (ready, blocked): (Vec<&StageDeb>, Vec<&StageDeb>) = remaining
            .iter()
            .partition(|d| needs(d, &configured).is_empty());
        if !ready.is_empty() {
            unpacked.extend(ready.iter().map(|d| d.name.as_str()));
            steps.push(Step::Unpack(ready));
            remaining = blocked;
            continue;
        }
        // Configure what the blocked packages Pre-Depend on, where all of it is unpacked.
        let mut to_configure = BTreeSet::new();
        for deb in &blocked {
            let want = needs(deb, &configured);
            if want.iter().all(|n| unpacked.contains(n)) {
                to_configure.extend(want);
            }
        }
        if to_configure.is_empty() {
            return Err(InstallError::PreDependsCycle {
                packages: blocked.iter().map(|d| d.name.clone()).collect(),
            });
        }
        configured.extend(to_configure.iter().copied());
        steps.push(Step::Configure(
            to_configure
                .iter()
                .filter_map(|n| by_name.get(n).copied())
                .collect(),
        ));
        remaining = blocked;
    }
    Ok(steps)
}

/// Unpack and configure the packages after the essential set, per [`plan_steps`].
fn install_rest(
    root: &Path,
    essential: &[&StageDeb],
    rest: &[&StageDeb],
    all: &[StageDeb],
    levers: Levers,
    scaffolding: &mut Scaffolding<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    if rest.is_empty() {
        return Ok(());
    }
    for (round, step) in plan_steps(essential, rest, all)?.into_iter().enumerate() {
        match step {
            Step::Unpack(debs) => {
                log(&format!(
                    "unpacking {} packages (step {})",
                    debs.len(),
                    round + 1
                ));
                run_dpkg(root, &levers.args(&["--unpack"], false), &debs, log)?;
            }
            Step::Configure(debs) => {
                let names: Vec<&str> = debs.iter().map(|d| d.name.as_str()).collect();
                log(&format!(
                    "configuring {} (Pre-Depends of later packages)",
                    names.join(", ")
                ));
                scaffolding.hold_host_keys(levers)?;
                run_dpkg_names(root, &levers.args(&["--configure"], false), &debs, log)?;
            }
        }
    }
    log("configuring the remaining packages");
    scaffolding.hold_host_keys(levers)?;
    let args = levers.args(&["--configure", "--pending"], true);
    run_dpkg_names(root, &args, &[], log)
}

/// `dpkg ARGS /tmp/ingot-debs/<file>.deb…` inside the image's sandbox.
fn run_dpkg(
    root: &Path,
    args: &[&str],
    debs: &[&StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let files = debs
        .iter()
        .map(|d| format!("/{DEB_DIR}/{}", deb_file_name(d)));
    dpkg(root, args, files, debs, log)
}

/// `dpkg ARGS <package name>…` inside the image's sandbox.
fn run_dpkg_names(
    root: &Path,
    args: &[&str],
    debs: &[&StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let names = debs.iter().map(|d| d.name.clone());
    dpkg(root, args, names, debs, log)
}

fn dpkg(
    root: &Path,
    args: &[&str],
    operands: impl Iterator<Item = String>,
    debs: &[&StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let mut all_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all_args.extend(operands);
    let finished = sandbox::run(
        root,
        "/usr/bin/dpkg",
        &all_args,
        Network::Loopback,
        OUTPUT_TAIL,
        &mut |line| log(&crate::progress::output_line("dpkg", line)),
    )
    .map_err(|source| InstallError::Spawn {
        program: "dpkg".into(),
        source,
    })?;
    let (status, tail) = (finished.status, finished.tail);
    if status.success() {
        return Ok(());
    }
    Err(InstallError::Dpkg {
        action: args.join(" "),
        packages: if debs.is_empty() {
            vec!["all pending packages".to_string()]
        } else {
            debs.iter().map(|d| d.name.clone()).collect()
        },
        status: status.to_string(),
        output: tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb_file_names_escape_epochs_like_apt() {
        let deb = StageDeb {
            name: "libfoo".into(),
            version: "1:2.3-4".into(),
            architecture: "amd64".into(),
            essential: false,
            path: "/x.deb".into(),
            sha256: String::new(),
            pre_depends_on: vec![],
            depends_on: vec![],
        };
        assert_eq!(deb_file_name(&deb), "libfoo_1%3a2.3-4_amd64.deb");
    }

    fn deb(name: &str, essential: bool, depends: &[&str]) -> StageDeb {
        StageDeb {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            essential,
            path: "/x.deb".into(),
            sha256: String::new(),
            pre_depends_on: vec![],
            depends_on: depends.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn essential_set_includes_dependencies() {
        let debs = [
            deb("dash", true, &["libc6"]),
            deb("libc6", false, &["libgcc-s1"]),
            deb("libgcc-s1", false, &[]),
            deb("apt", false, &["libapt-pkg"]),
            deb("libapt-pkg", false, &["libc6"]),
        ];
        let mut set: Vec<&str> = essential_closure(&debs).into_iter().collect();
        set.sort();
        assert_eq!(set, ["dash", "libc6", "libgcc-s1"]);
    }

    fn names(step: &Step<'_>) -> (&'static str, Vec<String>) {
        match step {
            Step::Unpack(d) => ("unpack", d.iter().map(|d| d.name.clone()).collect()),
            Step::Configure(d) => ("configure", d.iter().map(|d| d.name.clone()).collect()),
        }
    }

    #[test]
    fn pre_depends_are_configured_before_unpacking() {
        let mut debs = vec![
            deb("libc6", true, &[]),
            deb("perl-base", false, &["libc6"]),
            deb("libperl", false, &["perl-base"]),
            deb("tool", false, &["libc6"]),
            deb("needs-perl", false, &[]),
            deb("needs-tool", false, &[]),
        ];
        debs[1].essential = true;
        // needs-perl Pre-Depends on libperl (which Depends on essential perl-base);
        // needs-tool Pre-Depends on needs-perl.
        debs[4].pre_depends_on = vec!["libperl".into()];
        debs[5].pre_depends_on = vec!["needs-perl".into()];
        let essential: Vec<&StageDeb> = debs[..2].iter().collect();
        let rest: Vec<&StageDeb> = debs[2..].iter().collect();
        let steps = plan_steps(&essential, &rest, &debs).unwrap();
        let steps: Vec<_> = steps.iter().map(names).collect();
        assert_eq!(
            steps,
            [
                ("unpack", vec!["libperl".to_string(), "tool".to_string()]),
                ("configure", vec!["libperl".to_string()]),
                ("unpack", vec!["needs-perl".to_string()]),
                ("configure", vec!["needs-perl".to_string()]),
                ("unpack", vec!["needs-tool".to_string()]),
            ]
        );
    }

    #[test]
    fn pre_depends_cycles_are_reported() {
        let mut debs = vec![deb("a", false, &[]), deb("b", false, &[])];
        debs[0].pre_depends_on = vec!["b".into()];
        debs[1].pre_depends_on = vec!["a".into()];
        let rest: Vec<&StageDeb> = debs.iter().collect();
        match plan_steps(&[], &rest, &debs) {
            Err(InstallError::PreDependsCycle { packages }) => assert_eq!(packages, ["a", "b"]),
            other => panic!("expected a cycle, got {other:?}"),
        }
    }
}
