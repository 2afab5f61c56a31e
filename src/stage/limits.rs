//! The build's resource limits: how many processes and how much memory everything run in the
//! image may take, and how that is enforced.
//!
//! - **A cgroup of the build's own** when the caller may make one: real root on cgroup v2
//!   (a child of the root cgroup, whose `subtree_control` has `pids` and `memory`) or on the
//!   v1 `pids` and `memory` hierarchies (a child of the caller's own cgroup there). The stage
//!   child is moved into it before it is released, so the worker and everything it starts
//!   count: `pids.max` = [`BUILD_PIDS`] (or the spec's), `memory.max` / `memory.limit_in_bytes` = the memory
//!   bound (default [`DEFAULT_MEMORY_BYTES`]; v2 also `memory.swap.max` = 0). Removed when the
//!   stage ends.
//! - **Otherwise rlimits**: an ordinary user gets no cgroup (a delegated cgroup v2 subtree needs
//!   a scope of its own; `systemd-run --user --scope -p MemoryMax=… -p TasksMax=… ingot build`
//!   gives one, and ingot's limits then sit inside it).
//!
//! Always, per program run in the image: `RLIMIT_NPROC` ([`super::sandbox::MAX_PROCESSES`])
//! and `RLIMIT_AS` = the memory bound (no single process maps more). The build log says which
//! applies; a script stopped by a limit fails naming the script and the limit.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The memory bound of a build (its cgroup) and of each program in it (`RLIMIT_AS`): 8 GiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 8 << 30;
/// The processes (and threads) a whole build may have at once, where a cgroup enforces it.
pub const BUILD_PIDS: u64 = 4096;

/// How the limits are enforced for one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enforcement {
    /// A cgroup v2 directory of the build's own.
    CgroupV2 {
        /// `/sys/fs/cgroup/ingot-build-…`.
        dir: PathBuf,
    },
    /// Cgroup v1 directories of the build's own.
    CgroupV1 {
        /// In the `pids` hierarchy.
        pids: PathBuf,
        /// In the `memory` hierarchy.
        memory: PathBuf,
    },
    /// No cgroup; rlimits only.
    Rlimits {
        /// Why there is no cgroup.
        why: String,
    },
}

/// The limits one build runs under, as the stage child learns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// How.
    pub enforcement: Enforcement,
    /// The memory bound in bytes.
    pub memory_bytes: u64,
    /// The build's process bound (with a cgroup).
    pub pids: u64,
}

impl Default for Applied {
    fn default() -> Applied {
        Applied {
            enforcement: Enforcement::Rlimits {
                why: "not set up".into(),
            },
            memory_bytes: DEFAULT_MEMORY_BYTES,
            pids: BUILD_PIDS,
        }
    }
}

/// What the build's cgroup has counted so far: OOM kills and refused forks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    oom_kills: u64,
    pids_refused: u64,
}

impl Applied {
    /// The build log's words for it.
    pub fn describe(&self) -> String {
        let mib = self.memory_bytes >> 20;
        let max = self.pids;
        match &self.enforcement {
            Enforcement::CgroupV2 { dir } => format!(
                "cgroup v2 {} (pids.max {max}, memory.max {mib} MiB, no swap); per \
                 program RLIMIT_AS {mib} MiB",
                dir.display()
            ),
            Enforcement::CgroupV1 { pids, memory } => format!(
                "cgroup v1 {} (pids.max {max}) and {} (memory.limit_in_bytes {mib} MiB); \
                 per program RLIMIT_AS {mib} MiB",
                pids.display(),
                memory.display()
            ),
            Enforcement::Rlimits { why } => {
                format!("rlimits only (no cgroup: {why}): per program RLIMIT_AS {mib} MiB")
            }
        }
    }

    /// The cgroup's counters now (zero without a cgroup).
    pub fn counters(&self) -> Counters {
        match &self.enforcement {
            Enforcement::CgroupV2 { dir } => Counters {
                oom_kills: keyed(&dir.join("memory.events"), "oom_kill"),
                pids_refused: keyed(&dir.join("pids.events"), "max"),
            },
            Enforcement::CgroupV1 { pids, memory } => Counters {
                oom_kills: keyed(&memory.join("memory.oom_control"), "oom_kill"),
                pids_refused: keyed(&pids.join("pids.events"), "max"),
            },
            Enforcement::Rlimits { .. } => Counters::default(),
        }
    }

    /// Which limit a program that failed after `before` was taken was stopped by, if its
    /// counters (or, without a cgroup, its last output) say so.
    pub fn explain(&self, before: Counters, last_output: &str) -> Option<String> {
        let mib = self.memory_bytes >> 20;
        let now = self.counters();
        if now.oom_kills > before.oom_kills {
            return Some(format!(
                "stopped by the build's memory limit of {mib} MiB ({})",
                self.short()
            ));
        }
        if now.pids_refused > before.pids_refused {
            return Some(format!(
                "the build's limit of {} processes was reached ({})",
                self.pids,
                self.short()
            ));
        }
        let text = last_output.to_ascii_lowercase();
        if [
            "cannot allocate memory",
            "out of memory",
            "memory exhausted",
        ]
        .iter()
        .any(|m| text.contains(m))
        {
            return Some(format!(
                "it ran out of memory: each program in the image may map at most {mib} MiB \
                 (RLIMIT_AS)"
            ));
        }
        None
    }

    fn short(&self) -> &'static str {
        match self.enforcement {
            Enforcement::CgroupV2 { .. } => "cgroup v2",
            Enforcement::CgroupV1 { .. } => "cgroup v1",
            Enforcement::Rlimits { .. } => "rlimits",
        }
    }
}

/// The number after `key` in a `key value` file (0 if absent).
fn keyed(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// The caller-side handle of a build's cgroup: made before the stage child is released,
/// removed when dropped (after the child is gone).
#[derive(Debug)]
pub struct BuildCgroup {
    applied: Applied,
    dirs: Vec<PathBuf>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl BuildCgroup {
    /// A cgroup for one build with `memory_bytes`, or the reason there is none (never fails:
    /// without a cgroup the rlimits still apply).
    pub fn create(memory_bytes: u64, pids: u64) -> BuildCgroup {
        let name = format!(
            "ingot-build-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut made = BuildCgroup {
            applied: Applied {
                enforcement: Enforcement::Rlimits { why: String::new() },
                memory_bytes,
                pids,
            },
            dirs: Vec::new(),
        };
        let result = if !nix::unistd::geteuid().is_root() {
            Err("an ordinary user may not make one outside a delegated scope".to_string())
        } else if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            made.v2(&name, memory_bytes, pids)
        } else {
            made.v1(&name, memory_bytes, pids)
        };
        match result {
            Ok(enforcement) => made.applied.enforcement = enforcement,
            Err(why) => {
                made.remove();
                made.applied.enforcement = Enforcement::Rlimits { why };
            }
        }
        made
    }

    /// The limits, for the stage child.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Move process `pid` (the stage child, before it starts anything) into the cgroup.
    pub fn join(&self, pid: i32) -> Result<(), String> {
        for dir in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn v2(&mut self, name: &str, memory_bytes: u64, pids: u64) -> Result<Enforcement, String> {
        let root = Path::new(CGROUP_ROOT);
        let control = std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .map_err(|e| format!("{CGROUP_ROOT}/cgroup.subtree_control: {e}"))?;
        for wanted in ["pids", "memory"] {
            if !control.split_whitespace().any(|c| c == wanted) {
                return Err(format!(
                    "cgroup v2 without the {wanted} controller in {CGROUP_ROOT}/cgroup.subtree_control"
                ));
            }
        }
        let dir = self.mkdir(root.join(name))?;
        write(&dir.join("pids.max"), &pids.to_string())?;
        write(&dir.join("memory.max"), &memory_bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write(&dir.join("memory.swap.max"), "0")?;
        }
        Ok(Enforcement::CgroupV2 { dir })
    }

    fn v1(&mut self, name: &str, memory_bytes: u64, pids_max: u64) -> Result<Enforcement, String> {
        let own = |controller: &str| -> Result<PathBuf, String> {
            let hierarchy = Path::new(CGROUP_ROOT).join(controller);
            if !hierarchy.join("cgroup.procs").exists() {
                return Err(format!(
                    "no cgroup v1 {controller} hierarchy at {}",
                    hierarchy.display()
                ));
            }
            let text = std::fs::read_to_string("/proc/self/cgroup")
                .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
            let path = text
                .lines()
                .find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                    controllers
                        .split(',')
                        .any(|c| c == controller)
                        .then(|| path.to_string())
                })
                .ok_or_else(|| format!("this process is in no cgroup v1 {controller} group"))?;
            Ok(hierarchy.join(path.trim_start_matches('/')))
        };
        let pids = self.mkdir(own("pids")?.join(name))?;
        let memory = self.mkdir(own("memory")?.join(name))?;
        write(&pids.join("pids.max"), &pids_max.to_string())?;
        write(
            &memory.join("memory.limit_in_bytes"),
            &memory_bytes.to_string(),
        )?;
        Ok(Enforcement::CgroupV1 { pids, memory })
    }

    fn mkdir(&mut self, dir: PathBuf) -> Result<PathBuf, String> {
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    fn remove(&mut self) {
        for dir in self.dirs.drain(..).rev() {
            // The build's processes are gone, but the kernel may take a moment to say so.
            for _ in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value).map_err(|e| format!("writing {value} to {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_keyed_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("pids.events"), "max 7\n").unwrap();
        let applied = Applied {
            enforcement: Enforcement::CgroupV1 {
                pids: dir.path().into(),
                memory: dir.path().into(),
            },
            memory_bytes: 1 << 30,
            pids: 4096,
        };
        let before = Counters {
            oom_kills: 3,
            pids_refused: 6,
        };
        assert_eq!(
            applied.explain(before, ""),
            Some("the build's limit of 4096 processes was reached (cgroup v1)".into())
        );
        let before = Counters {
            oom_kills: 2,
            pids_refused: 7,
        };
        assert_eq!(
            applied.explain(before, ""),
            Some("stopped by the build's memory limit of 1024 MiB (cgroup v1)".into())
        );
        assert_eq!(applied.explain(applied.counters(), "fine"), None);
    }
}
