//! Id mapping of the build's user namespace: uid/gid 0 → the caller, 1..65535 → the caller's
//! subordinate range from `/etc/subuid`/`/etc/subgid` (via the setuid `newuidmap`/`newgidmap`).
//!
//! Real root is never the image's root: 0..65535 go to root's own `/etc/subuid`/`/etc/subgid`
//! entry (65536 ids), else to [`ROOT_DEFAULT_RANGE_START`]..+65535 (systemd's "foreign" range,
//! reserved for OS images), written to `/proc/PID/*_map` directly. The host's uid/gid 0 is
//! mapped too, but as [`HOST_ROOT_IN_BUILD`] (outside the image's ids), so that ingot's own
//! worker can still read a private cache and write the output; no program run inside the
//! image can use it: the [`sandbox`](super::sandbox) runs each of them in a nested user
//! namespace that maps only 0..65535 (see [`nested_userns`](super::nested_userns)).
//!
//! This module runs in the parent, outside the namespace. It never writes a map for any
//! process but the build child it was given.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Ids every image may use: 0..=65535.
pub const IMAGE_IDS: u32 = 65_536;
/// Subordinate ids needed for 1..=65535 (0 is the caller itself).
pub const SUBORDINATE_IDS_NEEDED: u32 = IMAGE_IDS - 1;
/// First host id of real root's range when `/etc/subuid` (or `/etc/subgid`) has no entry of
/// 65536 ids for root: 2147352576 = 0x7FFE0000, systemd's "foreign UID range" for OS images,
/// which no user allocation (useradd's subordinate ranges, systemd-nspawn's and
/// systemd-homed's picks) hands out.
pub const ROOT_DEFAULT_RANGE_START: u32 = 0x7FFE_0000;
/// The id the host's uid/gid 0 has in a real-root build's namespace: just above the image's.
pub const HOST_ROOT_IN_BUILD: u32 = IMAGE_IDS;

/// One `name:start:count` line of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubidRange {
    /// First host id of the range.
    pub start: u32,
    /// Number of ids.
    pub count: u32,
}

/// Why the ids could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// `/etc/subuid` or `/etc/subgid` is unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No usable range for the user.
    #[error(
        "{path} has no range of at least {SUBORDINATE_IDS_NEEDED} ids for user {user}; fix: \
         usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
    )]
    NoRange {
        /// The file.
        path: PathBuf,
        /// The user name (or uid).
        user: String,
    },
    /// `newuidmap`/`newgidmap` failed or is missing.
    #[error("{tool} {args} failed: {detail}; fix: apt-get install uidmap, and check {file}")]
    Tool {
        /// `newuidmap` or `newgidmap`.
        tool: &'static str,
        /// Its arguments.
        args: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
        /// `/etc/subuid` or `/etc/subgid`.
        file: &'static str,
    },
    /// Writing `/proc/PID/uid_map` (real root) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The map file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// How the parent maps the child's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapPlan {
    /// Real root: 0..65535 → root's subordinate ranges, host 0 → [`HOST_ROOT_IN_BUILD`],
    /// written directly.
    Root {
        /// Host uids of image uids 0..65535.
        uids: SubidRange,
        /// Host gids of image gids 0..65535.
        gids: SubidRange,
    },
    /// Unprivileged: 0 → caller, 1..65535 → subordinate ranges, via newuidmap/newgidmap.
    Subordinate {
        /// The caller's uid.
        uid: u32,
        /// The caller's gid.
        gid: u32,
        /// Range for uids 1..65535.
        subuid: SubidRange,
        /// Range for gids 1..65535.
        subgid: SubidRange,
    },
}

/// The caller's user name, or its uid as text when it has no passwd entry.
pub fn caller_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

/// The first range of at least [`SUBORDINATE_IDS_NEEDED`] ids for `user` (or its `uid`) in the
/// text of a subuid/subgid file.
pub fn find_subid_range(text: &str, user: &str, uid: u32) -> Option<SubidRange> {
    let uid_text = uid.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse::<u32>().ok()?;
            let count = fields.next()?.trim().parse::<u32>().ok()?;
            (owner == user || owner == uid_text).then_some(SubidRange { start, count })
        })
        .find(|r| r.count >= SUBORDINATE_IDS_NEEDED)
}

/// Real root's range in the text of a subuid/subgid file: its first entry (by name `root` or
/// uid 0) of at least [`IMAGE_IDS`] ids that does not contain id 0, else the default
/// [`ROOT_DEFAULT_RANGE_START`]; the second value says whether the default was taken.
pub fn root_range(text: &str) -> (SubidRange, bool) {
    let found = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse::<u32>().ok()?;
            let count = fields.next()?.trim().parse::<u32>().ok()?;
            (owner == "root" || owner == "0").then_some(SubidRange { start, count })
        })
        .find(|r| {
            r.start > 0 && r.count >= IMAGE_IDS && r.start.checked_add(IMAGE_IDS - 1).is_some()
        });
    match found {
        Some(r) => (
            SubidRange {
                start: r.start,
                count: IMAGE_IDS,
            },
            false,
        ),
        None => (
            SubidRange {
                start: ROOT_DEFAULT_RANGE_START,
                count: IMAGE_IDS,
            },
            true,
        ),
    }
}

fn read_or_empty(path: &Path) -> Result<String, IdMapError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(IdMapError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Real root's plan from `/etc/subuid` and `/etc/subgid`.
pub fn root_plan() -> Result<IdMapPlan, IdMapError> {
    Ok(IdMapPlan::Root {
        uids: root_range(&read_or_empty(Path::new("/etc/subuid"))?).0,
        gids: root_range(&read_or_empty(Path::new("/etc/subgid"))?).0,
    })
}

impl IdMapPlan {
    /// The host uid and gid that image uid/gid 0 lands on.
    pub fn host_ids_of_image_root(&self) -> (u32, u32) {
        match self {
            IdMapPlan::Root { uids, gids } => (uids.start, gids.start),
            IdMapPlan::Subordinate { uid, gid, .. } => (*uid, *gid),
        }
    }

    /// The host uid and gid that image ids `uid`/`gid` (1..=65535) land on.
    pub fn host_ids_of(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            IdMapPlan::Root { uids, gids } => (uids.start + uid, gids.start + gid),
            IdMapPlan::Subordinate { subuid, subgid, .. } => {
                (subuid.start + uid - 1, subgid.start + gid - 1)
            }
        }
    }
}

/// Read `path` and find the range for `user`.
pub fn subid_range_in(path: &Path, user: &str, uid: u32) -> Result<SubidRange, IdMapError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(IdMapError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    find_subid_range(&text, user, uid).ok_or_else(|| IdMapError::NoRange {
        path: path.to_path_buf(),
        user: user.to_string(),
    })
}

/// Decide how to map ids for the calling process.
pub fn plan_for_caller() -> Result<IdMapPlan, IdMapError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return root_plan();
    }
    let gid = nix::unistd::getegid().as_raw();
    let user = caller_name(uid);
    Ok(IdMapPlan::Subordinate {
        uid,
        gid,
        subuid: subid_range_in(Path::new("/etc/subuid"), &user, uid)?,
        subgid: subid_range_in(Path::new("/etc/subgid"), &user, uid)?,
    })
}

/// Write the maps of process `pid` (which must have unshared its user namespace already).
pub fn apply(pid: i32, plan: &IdMapPlan) -> Result<(), IdMapError> {
    match plan {
        IdMapPlan::Root { uids, gids } => {
            // setgroups stays "allow": apt and dpkg's helpers call setgroups(2) when dropping
            // privileges; real root may write gid_map without denying it.
            for (name, range) in [("uid_map", uids), ("gid_map", gids)] {
                let path = PathBuf::from(format!("/proc/{pid}/{name}"));
                std::fs::write(&path, root_map_text(*range))
                    .map_err(|source| IdMapError::Write { path, source })?;
            }
            Ok(())
        }
        IdMapPlan::Subordinate {
            uid,
            gid,
            subuid,
            subgid,
        } => {
            run_map_tool("newuidmap", "/etc/subuid", pid, *uid, *subuid)?;
            run_map_tool("newgidmap", "/etc/subgid", pid, *gid, *subgid)
        }
    }
}

/// The `uid_map`/`gid_map` text of a real-root build: the image's ids on `range`, the host's
/// 0 on [`HOST_ROOT_IN_BUILD`].
pub fn root_map_text(range: SubidRange) -> String {
    format!("0 {} {IMAGE_IDS}\n{HOST_ROOT_IN_BUILD} 0 1\n", range.start)
}

fn run_map_tool(
    tool: &'static str,
    file: &'static str,
    pid: i32,
    own: u32,
    range: SubidRange,
) -> Result<(), IdMapError> {
    let args = [
        pid.to_string(),
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.start.to_string(),
        SUBORDINATE_IDS_NEEDED.to_string(),
    ];
    let fail = |detail: String| IdMapError::Tool {
        tool,
        args: args.join(" "),
        detail,
        file,
    };
    let out = Command::new(tool)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ranges_by_name_or_uid_and_skips_small_ones() {
        let text = "# comment\nalice:100000:1000\nalice:200000:65536\n1002:300000:65535\n";
        assert_eq!(
            find_subid_range(text, "alice", 1001),
            Some(SubidRange {
                start: 200000,
                count: 65536
            })
        );
        assert_eq!(
            find_subid_range(text, "bob", 1002),
            Some(SubidRange {
                start: 300000,
                count: 65535
            })
        );
        assert_eq!(find_subid_range(text, "carol", 1003), None);
        assert_eq!(find_subid_range("alice:1:65534\n", "alice", 1), None);
    }

    #[test]
    fn root_takes_its_own_range_of_65536_or_the_documented_default() {
        let (r, default) = root_range("alice:100000:65536\nroot:1000000:1000000000\n");
        assert_eq!((r.start, r.count, default), (1_000_000, IMAGE_IDS, false));
        // Too small, or containing host uid 0: not usable.
        for text in [
            "root:100000:65535\n",
            "0:0:1000000\n",
            "",
            "root:4294967295:65536\n",
        ] {
            assert_eq!(
                root_range(text),
                (
                    SubidRange {
                        start: ROOT_DEFAULT_RANGE_START,
                        count: IMAGE_IDS
                    },
                    true
                ),
                "{text:?}"
            );
        }
        assert_eq!(root_range("0:200000:65536\n").0.start, 200_000);
        let text = root_map_text(SubidRange {
            start: 200_000,
            count: IMAGE_IDS,
        });
        assert_eq!(text, "0 200000 65536\n65536 0 1\n");
        // Never host 0 for an image id.
        assert!(!text.lines().any(|l| l.starts_with("0 0 ")));
    }
}
