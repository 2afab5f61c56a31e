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
//! without `--keep-staging`) and the packages' `Installed-Size` plus headroom fits in a
//! quarter of the memory available; the tmpfs is then capped at half the available memory.
//! `--format dir` and `--keep-staging` need the tree on disk after the build, so they always
//! use the disk.
//!
//! Must never: pick the tmpfs for a tree that must survive the build, or size it beyond what
//! the host has available.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{StageDeb, StageOutput};

/// Room for what the provision scripts and dpkg's bookkeeping add to the packages' own
/// `Installed-Size`.
const HEADROOM: u64 = 512 << 20;

/// The user's choice (`--staging`, `INGOT_STAGING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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
pub fn decide(
    choice: StagingMedium,
    debs: &[StageDeb],
    output: &StageOutput,
    keep_staging: bool,
) -> Result<Option<u64>, StagingError> {
    check(choice, output, keep_staging)?;
    if choice == StagingMedium::Disk || must_persist(output, keep_staging).is_some() {
        return Ok(None);
    }
    let need = estimated_tree_bytes(debs);
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

/// The packages' `Installed-Size` (KiB in their control files) plus [`HEADROOM`]; a package
/// whose control cannot be read counts eight times its `.deb`.
pub fn estimated_tree_bytes(debs: &[StageDeb]) -> u64 {
    debs.iter()
        .map(|d| installed_bytes(&d.path))
        .fold(HEADROOM, u64::saturating_add)
}

fn installed_bytes(deb: &Path) -> u64 {
    let from_control = crate::deb::read_control(deb).ok().and_then(|control| {
        control
            .lines()
            .find_map(|l| l.strip_prefix("Installed-Size:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match from_control {
        Some(kib) => kib.saturating_mul(1024),
        None => std::fs::metadata(deb)
            .map(|m| m.len().saturating_mul(8))
            .unwrap_or(0),
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
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
    fn a_tree_that_must_persist_is_never_on_tmpfs() {
        let dir = StageOutput::Dir("/nonexistent/out".into());
        assert_eq!(decide(StagingMedium::Auto, &[], &dir, false).unwrap(), None);
        assert_eq!(
            decide(StagingMedium::Auto, &[], &StageOutput::Tar, true).unwrap(),
            None
        );
        assert!(matches!(
            decide(StagingMedium::Tmpfs, &[], &dir, false),
            Err(StagingError::MustPersist("--format dir"))
        ));
        assert!(matches!(
            decide(StagingMedium::Tmpfs, &[], &StageOutput::Tar, true),
            Err(StagingError::MustPersist("--keep-staging"))
        ));
        assert_eq!(
            decide(StagingMedium::Disk, &[], &StageOutput::Tar, false).unwrap(),
            None
        );
    }
}
