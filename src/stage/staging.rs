//! Where the staging tree lives: on a private tmpfs mounted in the build's own mount
//! namespace, or in a directory on disk under the staging parent.
//!
//! A tar build's tree only ever exists inside the build: every program that reads or writes it
//! (dpkg, the maintainer and recipe scripts, the exporter, the base cache) runs in the
//! build's mount namespace. Putting it on a tmpfs mounted there costs memory the size of the
//! installed tree while the build runs and buys three things: no journal, no `fsync`, no
//! per-extent discard on a disk mounted with `discard` (the golden build's dpkg runs and tar
//! export spend a fifth to a third of their time in the filesystem otherwise); teardown is one
//! unmount; and a build killed with SIGKILL leaves nothing, because the tmpfs dies with the
//! namespace. Other users of the host cannot reach it at all (it is not in their mount
//! namespace).
//!
//! [`StagingMedium::Auto`] picks the tmpfs when the tree can outlive nothing (a tar build
//! without `--keep-staging`) and eight times the `.deb`s' size plus headroom fits in a
//! quarter of the memory available; the tmpfs is then capped at half the available memory.
//! `--format dir` and `--keep-staging` need the tree on disk after the build, so they always
//! use the disk.
//!
//! Must never: pick the tmpfs for a tree that must survive the build, or size it beyond what
//! the host has available.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StageOutput;

/// Room for what the provision scripts and dpkg's bookkeeping add to the packages' own
/// `Installed-Size`.
const HEADROOM: u64 = 512 << 20;

/// The user's choice (`--staging`, `INGOT_STAGING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StagingMedium {
    /// A private tmpfs when the tree fits in memory and need not outlive the build, else disk.
    #[default]
    Auto,
    /// A private tmpfs in the build's mount namespace (refused with `--format dir` or
    /// `--keep-staging`).
    Tmpfs,
    /// A directory under the cache's `staging/` on disk.
    Disk,
}

crate::named_choice!(StagingMedium {
    "auto" => StagingMedium::Auto,
    "tmpfs" => StagingMedium::Tmpfs,
    "disk" => StagingMedium::Disk,
});

/// Why the staging medium cannot be what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A tmpfs was asked for a tree that must outlive the build.
    #[error(
        "--staging tmpfs: the tree must outlive the build with {0}, and a tmpfs dies with it; use --staging disk"
    )]
    MustPersist(&'static str),
    /// A tmpfs was asked but memory is short.
    #[error(
        "--staging tmpfs: the packages need about {need_mib} MiB installed, only {available_mib} MiB of memory is available; use --staging disk"
    )]
    NoMemory {
        /// The estimate.
        need_mib: u64,
        /// `MemAvailable`.
        available_mib: u64,
    },
}

/// Refuse a tmpfs asked for a tree that must outlive the build (checked before anything is
/// fetched; [`decide`] checks it again).
pub fn check(
    choice: StagingMedium,
    output: &StageOutput,
    keep_staging: bool,
) -> Result<(), StagingError> {
    match (choice, must_persist(output, keep_staging)) {
        (StagingMedium::Tmpfs, Some(why)) => Err(StagingError::MustPersist(why)),
        _ => Ok(()),
    }
}

/// Which option makes the tree outlive the build, if any.
fn must_persist(output: &StageOutput, keep_staging: bool) -> Option<&'static str> {
    match (output, keep_staging) {
        (StageOutput::Dir(_), _) => Some("--format dir"),
        (_, true) => Some("--keep-staging"),
        _ => None,
    }
}

/// The size cap of the staging tmpfs in bytes, or `None` for a directory on disk.
/// `deb_bytes` is the packages' `.deb`s' total size (from the signed indexes: the stage may
/// start before they are all downloaded).
pub fn decide(
    choice: StagingMedium,
    deb_bytes: u64,
    output: &StageOutput,
    keep_staging: bool,
) -> Result<Option<u64>, StagingError> {
    check(choice, output, keep_staging)?;
    if choice == StagingMedium::Disk || must_persist(output, keep_staging).is_some() {
        return Ok(None);
    }
    let need = estimated_tree_bytes(deb_bytes);
    let available = mem_available().unwrap_or(0);
    let cap = available / 2;
    let fits = match choice {
        StagingMedium::Auto => need <= available / 4,
        _ => need <= cap,
    };
    if fits {
        Ok(Some(cap))
    } else if choice == StagingMedium::Auto {
        Ok(None)
    } else {
        Err(StagingError::NoMemory {
            need_mib: need >> 20,
            available_mib: available >> 20,
        })
    }
}

/// How much a tree installed from `deb_bytes` of `.deb`s may take: eight times as much (the
/// golden image's tree, with dpkg's copies of the `.deb`s, is under five), plus 512 MiB.
pub fn estimated_tree_bytes(deb_bytes: u64) -> u64 {
    deb_bytes.saturating_mul(8).saturating_add(HEADROOM)
}

/// The memory this process may still use, in bytes: `MemAvailable` from `/proc/meminfo`, or
/// less where a memory cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`, at this process's
/// cgroup or any ancestor) leaves less headroom — a tmpfs's pages are charged to the cgroup of
/// the process that writes them.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let host = parse_mem_available(&text)?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    Some(
        cgroup_headroom(&cgroups, |p| std::fs::read_to_string(p).ok())
            .map_or(host, |c| c.min(host)),
    )
}

/// The least headroom (limit minus usage) over the memory cgroups of `proc_self_cgroup`'s
/// text and their ancestors, reading control files through `read`; `None` if no limit is set
/// or visible.
fn cgroup_headroom(proc_self_cgroup: &str, read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let number = |p: &Path| read(p).and_then(|t| t.trim().parse::<u64>().ok());
    let mut least: Option<u64> = None;
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (base, limit_file, usage_file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max", "memory.current"),
            c if c.split(',').any(|c| c == "memory") => (
                "/sys/fs/cgroup/memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            ),
            _ => continue,
        };
        let mut dir = Path::new(base).join(path.trim_start_matches('/'));
        loop {
            // "max" (v2) or a page-rounded i64::MAX (v1) parse as no limit.
            if let (Some(limit), Some(usage)) =
                (number(&dir.join(limit_file)), number(&dir.join(usage_file)))
                && limit < (1 << 60)
            {
                let headroom = limit.saturating_sub(usage);
                least = Some(least.map_or(headroom, |l| l.min(headroom)));
            }
            if dir == Path::new(base) || !dir.pop() {
                break;
            }
        }
    }
    least
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let text =
            "MemTotal:       24684096 kB\nMemFree:        1000 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(text), Some(2048 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn a_memory_cgroup_limit_bounds_the_tmpfs() {
        let files = |p: &Path| -> Option<String> {
            match p.to_str()? {
                "/sys/fs/cgroup/ci/job/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/ci/job/memory.current" => Some("100\n".into()),
                "/sys/fs/cgroup/ci/memory.max" => Some("4096\n".into()),
                "/sys/fs/cgroup/ci/memory.current" => Some("1024\n".into()),
                "/sys/fs/cgroup/memory/runner/memory.limit_in_bytes" => Some("9000\n".into()),
                "/sys/fs/cgroup/memory/runner/memory.usage_in_bytes" => Some("1000\n".into()),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes" => {
                    Some("9223372036854771712\n".into())
                }
                "/sys/fs/cgroup/memory/memory.usage_in_bytes" => Some("5\n".into()),
                _ => None,
            }
        };
        // v2: the parent's 4096 - 1024 binds; the job's own "max" does not.
        assert_eq!(cgroup_headroom("0::/ci/job\n", files), Some(3072));
        // v1: the runner's limit; the root's page-rounded i64::MAX is no limit.
        assert_eq!(
            cgroup_headroom("4:memory:/runner\n1:cpu:/\n", files),
            Some(8000)
        );
        assert_eq!(cgroup_headroom("0::/\n", files), None);
    }

    #[test]
    fn a_tree_that_must_persist_is_never_on_tmpfs() {
        let dir = StageOutput::Dir("/nonexistent/out".into());
        assert_eq!(decide(StagingMedium::Auto, 0, &dir, false).unwrap(), None);
        assert_eq!(
            decide(StagingMedium::Auto, 0, &StageOutput::Tar, true).unwrap(),
            None
        );
        assert!(matches!(
            decide(StagingMedium::Tmpfs, 0, &dir, false),
            Err(StagingError::MustPersist("--format dir"))
        ));
        assert!(matches!(
            decide(StagingMedium::Tmpfs, 0, &StageOutput::Tar, true),
            Err(StagingError::MustPersist("--keep-staging"))
        ));
        assert_eq!(
            decide(StagingMedium::Disk, 0, &StageOutput::Tar, false).unwrap(),
            None
        );
    }
}
