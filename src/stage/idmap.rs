//! Id mapping of the build's user namespace: uid/gid 0 → the caller, 1..65535 → the caller's
//! subordinate range from `/etc/subuid`/`/etc/subgid` (via the setuid `newuidmap`/`newgidmap`),
//! or the identity 0..65535 when the caller is real root (written to `/proc/PID/*_map`).
//!
//! This module runs in the parent, outside the namespace. It never writes a map for any
//! process but the build child it was given.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Ids every image may use: 0..=65535.
pub const IMAGE_IDS: u32 = 65_536;
/// Subordinate ids needed for 1..=65535 (0 is the caller itself).
pub const SUBORDINATE_IDS_NEEDED: u32 = IMAGE_IDS - 1;

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
    /// Real root: identity 0..65535, written directly.
    Identity,
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
        return Ok(IdMapPlan::Identity);
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
        IdMapPlan::Identity => {
            // setgroups stays "allow": apt and dpkg's helpers call setgroups(2) when dropping
            // privileges; real root may write gid_map without denying it.
            for name in ["uid_map", "gid_map"] {
                let path = PathBuf::from(format!("/proc/{pid}/{name}"));
                std::fs::write(&path, format!("0 0 {IMAGE_IDS}\n"))
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
}
