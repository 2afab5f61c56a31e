//! Registering the Essential set, already extracted by [`super::unpack`], in dpkg's database
//! exactly as `dpkg --unpack` of each package would have left it, so that `dpkg --configure`
//! can take over without unpacking any of them a second time.
//!
//! Per package, in the order given (dpkg 1.22's `process_archive` for a package that is not
//! installed yet; every activation it records is dropped because no package is configured, see
//! `trig_record_activation`):
//! 1. the control members are extracted to `var/lib/dpkg/tmp.ci/`, the package is noted
//!    `install reinstreq half-installed` in `status`, and its `preinst install` runs from
//!    there in the image's sandbox, with the environment dpkg gives maintainer scripts;
//! 2. each conffile is copied to `<path>.dpkg-new`, where dpkg unpacks a new conffile next to
//!    the file already there (the extracted one): `--configure` finds both identical, keeps
//!    the file, removes the copy and records the md5sum, as after today's second unpack;
//! 3. the directories holding its files get a new mtime (dpkg unpacks each file there as
//!    `.dpkg-new` and renames it: the image's directory mtimes are the same as after a real
//!    unpack); `info/<pkg>.list` (the `data.tar` members in order, `/.` for the root, directories
//!    without a trailing slash), the trigger interests (`triggers/File` for paths,
//!    `triggers/<name>` for explicit triggers), the control members as `info/<pkg>.<member>`
//!    (`control` and names with a dot excepted), `info/<pkg>.md5sums` computed from the data
//!    when the package ships none, and the `status` stanza: the control fields,
//!    `Status: install ok unpacked` and `Conffiles:` with `newconffile` for each.
//!
//! `info/<pkg>` is `<pkg>:<arch>` for `Multi-Arch: same` packages, as dpkg names them.
//!
//! Only for a fresh database: [`unsupported`] says why a set cannot be registered (a `status`
//! that is not empty, conffile flags, a conffile that is not a regular file, a `list` control
//! member), and the caller then has dpkg install it instead. What only shows while
//! registering (a path another package's `preinst` diverted, a file two packages ship) fails
//! the build ([`InstallError::CannotRegister`]) rather than being registered wrongly. Must
//! never: write outside the root (every path goes through
//! [`RootDir`]), or run anything but the package's own `preinst` (through the sandbox).

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

use md5::Digest as _;
use nix::fcntl::OFlag;

use super::unpack::{self, UnpackError};
use super::{InstallError, OUTPUT_TAIL, setup_err};
use crate::deb::{DebMember, with_member};
use crate::stage::StageDeb;
use crate::stage::confined::{RootDir, fd_path, read_at};
use crate::stage::sandbox::{self, Network};

const ADMINDIR: &str = "var/lib/dpkg";
const STATUS: &str = "var/lib/dpkg/status";
const INFO: &str = "var/lib/dpkg/info";
const TRIGGERS: &str = "var/lib/dpkg/triggers";
const TMP_CI: &str = "var/lib/dpkg/tmp.ci";

/// One package's control area, read from its `.deb`.
struct Control {
    /// `Package`, `Architecture`, `Multi-Arch` of the `control` file.
    name: String,
    arch: String,
    multi_arch_same: bool,
    /// The `control` file as shipped.
    control: String,
    /// The member names (without `./`) other than `control`, in archive order.
    members: Vec<String>,
    conffiles: Vec<String>,
    triggers: String,
    /// The whole (decompressed) `control.tar`, extracted to `tmp.ci` as dpkg-deb does.
    tar: Vec<u8>,
}

impl Control {
    fn read(deb: &StageDeb) -> Result<Control, InstallError> {
        let bad = |reason: String| InstallError::Setup {
            path: deb.path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidData, reason),
        };
        let tar = with_member(&deb.path, DebMember::Control, |r| {
            let mut tar = Vec::new();
            r.read_to_end(&mut tar).map(|_| tar)
        })
        .map_err(|e| bad(e.to_string()))?
        .map_err(|e| bad(format!("control.tar: {e}")))?;
        let mut control = None;
        let mut members = Vec::new();
        let mut conffiles = String::new();
        let mut triggers = String::new();
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive
            .entries()
            .map_err(|e| bad(format!("control.tar: {e}")))?
        {
            let mut entry = entry.map_err(|e| bad(format!("control.tar: {e}")))?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if name.is_empty() || entry.header().entry_type().is_dir() {
                continue;
            }
            let mut text = String::new();
            let wanted = matches!(name.as_str(), "control" | "conffiles" | "triggers");
            if wanted {
                entry
                    .read_to_string(&mut text)
                    .map_err(|e| bad(format!("control.tar member {name}: {e}")))?;
            }
            match name.as_str() {
                "control" => control = Some(text),
                "conffiles" => conffiles = text,
                "triggers" => triggers = text,
                _ => {}
            }
            if name != "control" {
                members.push(name);
            }
        }
        let control = control.ok_or_else(|| bad("control.tar has no control file".into()))?;
        let field = |key: &str| {
            control.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(key).then(|| v.trim().to_string())
            })
        };
        let name = field("Package").ok_or_else(|| bad("control has no Package".into()))?;
        let arch = field("Architecture").unwrap_or_else(|| deb.architecture.clone());
        let multi_arch_same = field("Multi-Arch").is_some_and(|v| v == "same") && arch != "all";
        Ok(Control {
            name,
            arch,
            multi_arch_same,
            control,
            members,
            conffiles: conffiles
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            triggers,
            tar,
        })
    }

    /// The name dpkg files its info under: `pkg`, or `pkg:arch` for `Multi-Arch: same`.
    fn info_name(&self) -> String {
        if self.multi_arch_same {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    /// The `status` stanza with `status` (`install ok unpacked`…), the control fields and the
    /// conffiles, as `newconffile` until `--configure` records their md5sums.
    fn stanza(&self, status: &str) -> String {
        let mut out = String::new();
        let mut lines = self.control.lines().filter(|l| !l.trim().is_empty());
        // `Package` first, then `Status`, then the rest: dpkg's own order for these two.
        let mut rest = Vec::new();
        for line in lines.by_ref() {
            if line.split_once(':').is_some_and(|(k, _)| k == "Package") {
                out.push_str(line);
                out.push('\n');
            } else {
                rest.push(line);
            }
        }
        out.push_str(&format!("Status: {status}\n"));
        for line in rest {
            out.push_str(line);
            out.push('\n');
        }
        if !self.conffiles.is_empty() {
            out.push_str("Conffiles:\n");
            for path in &self.conffiles {
                out.push_str(&format!(" {path} newconffile\n"));
            }
        }
        out.push('\n');
        out
    }

    /// The stanza dpkg writes while the package's `preinst` runs (`pkg_set_status` to
    /// half-installed before `maintscript_new`): nothing of it is installed yet.
    fn half_installed_stanza(&self) -> String {
        let mut out = format!(
            "Package: {}\nStatus: install reinstreq half-installed\n",
            self.name
        );
        out.push_str(&format!("Architecture: {}\n", self.arch));
        if self.multi_arch_same {
            out.push_str("Multi-Arch: same\n");
        }
        let version = self
            .control
            .lines()
            .find_map(|l| l.strip_prefix("Version:"));
        if let Some(version) = version {
            out.push_str(&format!("Version: {}\n", version.trim()));
        }
        out.push('\n');
        out
    }
}

/// Why `debs` cannot be registered (dpkg must unpack them itself), or `None`: a database
/// that is not fresh, conffile flags, a conffile that is not a regular file after extraction,
/// a control member called `list`.
pub fn unsupported(root: &RootDir, debs: &[&StageDeb]) -> Result<Option<String>, InstallError> {
    let status = read_in_root(root, STATUS)?;
    if !status.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(format!("{STATUS} is not empty")));
    }
    for deb in debs {
        let control = Control::read(deb)?;
        if let Some(line) = control.conffiles.iter().find(|l| !l.starts_with('/')) {
            return Ok(Some(format!("{}: conffile with a flag ({line})", deb.name)));
        }
        for path in &control.conffiles {
            let rel = path.trim_start_matches('/');
            if !root.is_regular_file(rel).map_err(setup_err(rel))? {
                return Ok(Some(format!(
                    "{}: conffile {path} is not a regular file after extraction",
                    deb.name
                )));
            }
        }
        if control.members.iter().any(|m| m == "list") {
            return Ok(Some(format!("{}: a control member called list", deb.name)));
        }
    }
    Ok(None)
}

/// The contents of `rel` in the root; empty if it does not exist.
pub(super) fn read_in_root(root: &RootDir, rel: &str) -> Result<Vec<u8>, InstallError> {
    let parts = RootDir::checked(rel).map_err(setup_err(rel))?;
    let Some((name, parent)) = parts.split_last() else {
        return Ok(Vec::new());
    };
    let dir = match root.open_dir_at(parent, OFlag::O_RDONLY) {
        Ok(dir) => dir,
        Err(nix::errno::Errno::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(setup_err(rel)(e.into())),
    };
    match read_at(&dir, &String::from_utf8_lossy(name), rel) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.errno == nix::errno::Errno::ENOENT => Ok(Vec::new()),
        Err(e) => Err(setup_err(rel)(io::Error::other(e.to_string()))),
    }
}

/// What dpkg records and touches for one `data.tar`.
struct Listing {
    /// The paths of `info/<pkg>.list`, in archive order.
    list: Vec<String>,
    /// `info/<pkg>.md5sums` as dpkg computes it (regular files and hard links), if asked.
    md5sums: String,
    /// The directories that hold a non-directory member: dpkg unpacks each such member as
    /// `<name>.dpkg-new` there and renames it into place, which changes their mtime.
    parents: std::collections::BTreeSet<String>,
    /// The non-directory members (as in `list`).
    files: Vec<String>,
}

/// The [`Listing`] of `deb`'s `data.tar`; md5sums only when `want_md5` is set.
fn data_listing(deb: &StageDeb, want_md5: bool) -> Result<Listing, InstallError> {
    let io_err = |source: io::Error| {
        InstallError::Unpack(UnpackError::Io {
            package: deb.name.clone(),
            member: "data.tar".into(),
            source,
        })
    };
    let result = with_member(&deb.path, DebMember::Data, |r| {
        let mut list = Vec::new();
        let mut md5sums = String::new();
        let mut parents = std::collections::BTreeSet::new();
        let mut files = Vec::new();
        let mut hashes: std::collections::HashMap<String, String> = Default::default();
        let mut archive = tar::Archive::new(r);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = dpkg_name(&raw);
            let kind = entry.header().entry_type();
            if want_md5 {
                let hash = if kind.is_file() {
                    let mut hasher = md5::Md5::new();
                    io::copy(&mut entry, &mut hasher)?;
                    Some(hex::encode(hasher.finalize()))
                } else if kind.is_hard_link() {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| dpkg_name(&String::from_utf8_lossy(&t)));
                    target.and_then(|t| hashes.get(&t).cloned())
                } else {
                    None
                };
                if let Some(hash) = hash {
                    md5sums.push_str(&format!("{hash}  {}\n", &name[1..]));
                    hashes.insert(name.clone(), hash);
                }
            }
            if !kind.is_dir()
                && let Some((parent, _)) = name.rsplit_once('/')
            {
                parents.insert(parent.trim_start_matches('/').to_string());
            }
            if !kind.is_dir() {
                files.push(name.clone());
            }
            list.push(name);
        }
        Ok::<_, io::Error>(Listing {
            list,
            md5sums,
            parents,
            files,
        })
    });
    match result {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(io_err(e)),
        Err(source) => Err(InstallError::Unpack(UnpackError::Deb {
            package: deb.name.clone(),
            source,
        })),
    }
}

/// A member name as dpkg records it: `/` + the path without `./` and trailing slashes;
/// `/.` for the root.
fn dpkg_name(raw: &str) -> String {
    let trimmed = raw.trim_start_matches("./").trim_end_matches('/');
    let trimmed = trimmed.trim_start_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        "/.".to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// The environment dpkg 1.22 gives a maintainer script (`main.c`, `script.c`): on top of its
/// own (the sandbox's), the admin dir, the root, the forces, and the script's identity.
fn maintscript_env(control: &Control, dpkg_version: &str, force: &str) -> Vec<String> {
    vec![
        "DPKG_ADMINDIR=/var/lib/dpkg".into(),
        "DPKG_ROOT=".into(),
        format!("DPKG_FORCE={force}"),
        format!("DPKG_MAINTSCRIPT_PACKAGE={}", control.name),
        "DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1".into(),
        format!("DPKG_MAINTSCRIPT_ARCH={}", control.arch),
        "DPKG_MAINTSCRIPT_NAME=preinst".into(),
        "DPKG_MAINTSCRIPT_DEBUG=0".into(),
        format!("DPKG_RUNNING_VERSION={dpkg_version}"),
    ]
}

/// Register `debs` (extracted into `root` already) in dpkg's database as `dpkg --unpack`
/// would, in order; see the module doc. `dpkg_version` is the target's dpkg (what its
/// `DPKG_RUNNING_VERSION` says), `force` the `DPKG_FORCE` its run would export.
pub fn register_unpacked(
    root: &Path,
    root_dir: &RootDir,
    debs: &[&StageDeb],
    dpkg_version: &str,
    force: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<String>, InstallError> {
    let mut status = String::from_utf8_lossy(&read_in_root(root_dir, STATUS)?).into_owned();
    let mut file_interests =
        String::from_utf8_lossy(&read_in_root(root_dir, &format!("{TRIGGERS}/File"))?).into_owned();
    let mut names = Vec::new();
    let mut owners = std::collections::HashMap::new();
    for deb in debs {
        // The maintainer scripts and the file list come from the verified bytes, as the
        // extraction did (see `extract_essential`), never from the cache file by path.
        let verified = super::verified_copy(deb)?;
        let deb = &StageDeb {
            path: crate::stage::confined::fd_path(&verified),
            ..(*deb).clone()
        };
        let control = Control::read(deb)?;
        let info = control.info_name();
        names.push(info.clone());

        // 1. Control area in tmp.ci, half-installed, preinst.
        extract_control(root_dir, &control, &deb.name)?;
        root_dir
            .write_file(
                STATUS,
                format!("{status}{}", control.half_installed_stanza()).as_bytes(),
                0o644,
            )
            .map_err(setup_err(STATUS))?;
        if control.members.iter().any(|m| m == "preinst") {
            log(&format!("{}: running preinst install", deb.name));
            let mut args = maintscript_env(&control, dpkg_version, force);
            args.push(format!("/{TMP_CI}/preinst"));
            args.push("install".into());
            let finished = sandbox::run(
                root,
                "/usr/bin/env",
                &args,
                Network::Loopback,
                OUTPUT_TAIL,
                &mut |line| log(&crate::progress::output_line("dpkg", line)),
            )
            .map_err(|source| InstallError::Spawn {
                program: format!("{} preinst", deb.name),
                source,
            })?;
            if !finished.status.success() {
                return Err(InstallError::Dpkg {
                    action: "preinst install".into(),
                    packages: vec![deb.name.clone()],
                    status: finished.status.to_string(),
                    output: finished.tail.join("\n"),
                });
            }
        }

        // 2. New conffiles wait as .dpkg-new for --configure. dpkg unpacks them there next
        // to the extracted copy, which stays: --configure finds both identical and keeps it.
        for path in &control.conffiles {
            let rel = path.trim_start_matches('/');
            let new = format!("{rel}.dpkg-new");
            let mode = root_dir
                .stat(rel)
                .map_err(setup_err(rel))?
                .map_or(0o644, |st| st.st_mode & 0o7777);
            let contents = read_in_root(root_dir, rel)?;
            root_dir
                .write_file(&new, &contents, mode)
                .map_err(setup_err(&new))?;
        }

        // 3. The database: list, trigger interests, info files, md5sums, status.
        let has_md5sums = control.members.iter().any(|m| m == "md5sums");
        let Listing {
            list,
            md5sums,
            parents,
            files,
        } = data_listing(deb, !has_md5sums)?;
        refuse_what_dpkg_would_unpack_differently(
            root_dir,
            &control.name,
            &list,
            &files,
            &mut owners,
        )?;
        let list_rel = format!("{INFO}/{info}.list");
        let mut list_text = list.join("\n");
        list_text.push('\n');
        root_dir
            .write_file(&list_rel, list_text.as_bytes(), 0o644)
            .map_err(setup_err(&list_rel))?;
        add_trigger_interests(root_dir, &control, &info, &mut file_interests)?;
        for member in &control.members {
            if member.contains('.') || member == "list" || member.contains('/') {
                continue;
            }
            let from = format!("{TMP_CI}/{member}");
            let to = format!("{INFO}/{info}.{member}");
            root_dir.rename(&from, &to).map_err(setup_err(&to))?;
        }
        if !has_md5sums {
            let rel = format!("{INFO}/{info}.md5sums");
            root_dir
                .write_file(&rel, md5sums.as_bytes(), 0o644)
                .map_err(setup_err(&rel))?;
        }
        remove_tmp_ci(root_dir)?;
        touch_dirs(root_dir, &parents)?;
        status.push_str(&control.stanza("install ok unpacked"));
        root_dir
            .write_file(STATUS, status.as_bytes(), 0o644)
            .map_err(setup_err(STATUS))?;
    }
    Ok(names)
}

/// The two things dpkg's unpack would do differently from the extraction, refused rather
/// than registered wrongly: a path another package's `preinst` diverted (dpkg would unpack it
/// under the diverted name), and a file an earlier package of the set ships too (dpkg would
/// take it over with `Replaces` or fail). Neither happens in Ubuntu's or Debian's Essential
/// sets today.
fn refuse_what_dpkg_would_unpack_differently(
    root: &RootDir,
    package: &str,
    list: &[String],
    files: &[String],
    owners: &mut std::collections::HashMap<String, String>,
) -> Result<(), InstallError> {
    let refuse = |reason: String| InstallError::CannotRegister {
        package: package.to_string(),
        reason,
    };
    let diversions = read_in_root(root, &format!("{ADMINDIR}/diversions"))?;
    let diversions = String::from_utf8_lossy(&diversions);
    let lines: Vec<&str> = diversions.lines().collect();
    for triple in lines.chunks(3) {
        if let [from, to, by] = triple
            && *by != package
            && list.iter().any(|p| p == from)
        {
            return Err(refuse(format!("{from} is diverted to {to} by {by}")));
        }
    }
    for file in files {
        if let Some(other) = owners.insert(file.clone(), package.to_string()) {
            return Err(refuse(format!("{file} is shipped by {other} too")));
        }
    }
    Ok(())
}

/// Set the mtime of each directory (in-root path, symlinks resolved inside the root as dpkg's
/// own path lookups do) to now, as dpkg's unpack of a file into it does.
fn touch_dirs(
    root: &RootDir,
    dirs: &std::collections::BTreeSet<String>,
) -> Result<(), InstallError> {
    use nix::sys::time::TimeSpec;
    for dir in dirs {
        let parts = if dir.is_empty() {
            Vec::new()
        } else {
            RootDir::checked(dir).map_err(setup_err(dir))?
        };
        let fd = match root.open_dir_at(&parts, OFlag::O_RDONLY) {
            Ok(fd) => fd,
            // Not a directory (any more): dpkg would have failed or replaced it; not ours.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => continue,
            Err(e) => return Err(setup_err(dir)(e.into())),
        };
        nix::sys::stat::futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &TimeSpec::UTIME_NOW)
            .map_err(|e| setup_err(dir)(e.into()))?;
    }
    Ok(())
}

/// `dpkg-deb --control` into `tmp.ci`: the control members with their modes and mtimes.
fn extract_control(root: &RootDir, control: &Control, package: &str) -> Result<(), InstallError> {
    remove_tmp_ci(root)?;
    root.create_dir_all(TMP_CI, 0o755, true)
        .map_err(setup_err(TMP_CI))?;
    let parts = RootDir::checked(TMP_CI).map_err(setup_err(TMP_CI))?;
    let dir = root.dir(&parts, false).map_err(setup_err(TMP_CI))?;
    let cidir = RootDir::open(&fd_path(&dir)).map_err(setup_err(TMP_CI))?;
    unpack::extract_data_tar(&cidir, package, &mut &control.tar[..])?;
    Ok(())
}

/// Remove `tmp.ci` and what is left in it (dpkg's `cu_cidir`).
fn remove_tmp_ci(root: &RootDir) -> Result<(), InstallError> {
    if !root.exists(TMP_CI).map_err(setup_err(TMP_CI))? {
        return Ok(());
    }
    let parts = RootDir::checked(ADMINDIR).map_err(setup_err(ADMINDIR))?;
    let admin = root
        .open_dir_at(&parts, OFlag::O_RDONLY)
        .map_err(|e| setup_err(ADMINDIR)(e.into()))?;
    crate::stage::confined::remove_tree(&admin, std::ffi::OsStr::new("tmp.ci"), TMP_CI)
        .map_err(|e| setup_err(TMP_CI)(io::Error::other(e.to_string())))
}

/// The `interest*` directives of the package's `triggers` member, recorded as dpkg's
/// `trig_cicb_interest_add` does: paths appended to `triggers/File` (`<path> <pkg>[/noawait]`),
/// explicit triggers to `triggers/<name>` (`<pkg>[/noawait]`).
fn add_trigger_interests(
    root: &RootDir,
    control: &Control,
    info: &str,
    file_interests: &mut String,
) -> Result<(), InstallError> {
    let mut files_edited = false;
    for line in control.triggers.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((directive, name)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let name = name.trim();
        let suffix = match directive {
            "interest" | "interest-await" => "",
            "interest-noawait" => "/noawait",
            _ => continue,
        };
        if name.starts_with('/') {
            let entry = format!("{name} {info}{suffix}\n");
            if !file_interests.lines().any(|l| {
                l.split_once(' ')
                    .is_some_and(|(p, who)| p == name && who.split('/').next() == Some(info))
            }) {
                file_interests.push_str(&entry);
                files_edited = true;
            }
        } else {
            let rel = format!("{TRIGGERS}/{name}");
            let old = String::from_utf8_lossy(&read_in_root(root, &rel)?).into_owned();
            let mut text: String = old
                .lines()
                .filter(|l| l.split('/').next() != Some(info))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!("{info}{suffix}\n"));
            root.write_file(&rel, text.as_bytes(), 0o644)
                .map_err(setup_err(&rel))?;
        }
    }
    if files_edited {
        let rel = format!("{TRIGGERS}/File");
        root.write_file(&rel, file_interests.as_bytes(), 0o644)
            .map_err(setup_err(&rel))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::dpkg_name;

    #[test]
    fn member_names_are_recorded_like_dpkg() {
        assert_eq!(dpkg_name("./"), "/.");
        assert_eq!(dpkg_name("./usr/"), "/usr");
        assert_eq!(dpkg_name("./usr/bin/ls"), "/usr/bin/ls");
        assert_eq!(dpkg_name("usr/share/"), "/usr/share");
    }
}
