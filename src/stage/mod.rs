//! The stage: from verified `.deb`s to a configured, provisioned, cleaned root filesystem,
//! inside a user + mount namespace, without host privileges.
//!
//! Process model: the (multi-threaded) parent re-executes `/proc/self/exe __stage SPEC` in new
//! user and mount namespaces, writes the id maps (newuidmap/newgidmap, or directly as real root)
//! and releases the child through a pipe. The child, root inside the namespace, unpacks,
//! configures with the target's own dpkg in a chroot, runs the provision and cleanup scripts,
//! enforces the cleanup invariants, and then either leaves the tree in place (`--format dir`)
//! or streams it as a tar archive on its stdout for the parent to compress.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::epoch::BuildEpoch;

/// One `.deb` to install.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageDeb {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// `Essential: yes`: extracted and installed in the first round.
    pub essential: bool,
    /// The verified `.deb` in the cache.
    pub path: PathBuf,
    /// Selected packages that satisfy its `Pre-Depends`.
    pub pre_depends_on: Vec<String>,
    /// Selected packages that satisfy its `Depends`.
    pub depends_on: Vec<String>,
}

/// What the child produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StageOutput {
    /// Leave the tree at this path (it must not exist yet).
    Dir(PathBuf),
    /// Stream a deterministic tar of the tree on stdout, then remove the tree.
    Tar,
}

/// Everything the namespaced child needs, passed to it as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSpec {
    /// The packages, in plan order.
    pub debs: Vec<StageDeb>,
    /// Provision scripts (host paths), run in order inside the chroot.
    pub provision: Vec<PathBuf>,
    /// Cleanup scripts (host paths), run after provisioning, before the cleanup invariants.
    pub cleanup: Vec<PathBuf>,
    /// Where the staging directory is created (a fresh subdirectory of it).
    pub staging_parent: PathBuf,
    /// Keep the staging tree here instead of removing it (debugging).
    pub keep_staging: Option<PathBuf>,
    /// Clamp for every mtime written.
    pub epoch: BuildEpoch,
    /// Directory or tar stream.
    pub output: StageOutput,
}

pub mod chroot;
pub mod install;
pub mod invariants;

/// A stage failure, as one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Anything that went wrong, already worded for the user.
    #[error("{0}")]
    Failed(String),
}

/// Parent side: run the namespaced child for `spec`. With [`StageOutput::Tar`], the child's
/// tar stream is handed to `sink` (which must read it to the end).
pub fn run_stage(
    spec: &StageSpec,
    sink: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    reporter: &dyn crate::progress::Reporter,
) -> Result<(), StageError> {
    let _ = (spec, sink, reporter);
    todo!("stage::run_stage")
}

/// Child side: the entry point of `ingot __stage SPEC.json`; returns the process exit code.
pub fn child_main(spec: &std::path::Path) -> i32 {
    let _ = spec;
    todo!("stage::child_main")
}
