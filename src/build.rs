//! The build pipeline, top to bottom: recipe → archive → plan → fetch → stage → export →
//! artifact. Each step is a library call; this module only wires them together and words the
//! results for the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::export::compress::Compression;

/// Options shared by `resolve`, `fetch` and `build`.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Recipe folder or file.
    pub recipe: PathBuf,
    /// Mirror override for every suite.
    pub mirror: Option<String>,
    /// Accept expired releases.
    pub allow_expired: bool,
    /// Cache directory override.
    pub cache_dir: Option<PathBuf>,
    /// Parallel downloads.
    pub jobs: usize,
    /// No progress.
    pub quiet: bool,
}

/// `tar` (artifact) or `dir` (tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A versioned, compressed tarball.
    Tar,
    /// The assembled tree in a directory.
    Dir,
}

/// Options of `ingot build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory.
    pub out: PathBuf,
    /// Tarball or directory.
    pub format: OutputFormat,
    /// Next version (default).
    pub next: bool,
    /// Exact version.
    pub version: Option<u32>,
    /// Compression.
    pub compression: Compression,
    /// Keep the staging tree.
    pub keep_staging: Option<PathBuf>,
    /// JSON output.
    pub json: bool,
}

/// `ingot resolve`.
pub fn cmd_resolve(o: &CommonOptions, json: bool) -> anyhow::Result<ExitCode> {
    let _ = (o, json);
    todo!()
}

/// `ingot fetch`.
pub fn cmd_fetch(o: &CommonOptions, json: bool) -> anyhow::Result<ExitCode> {
    let _ = (o, json);
    todo!()
}

/// `ingot build`.
pub fn cmd_build(o: &CommonOptions, b: &BuildOptions) -> anyhow::Result<ExitCode> {
    let _ = (o, b);
    todo!()
}

/// `ingot verify`.
pub fn cmd_verify(tarball: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let _ = (tarball, json);
    todo!()
}

/// `ingot doctor`.
pub fn cmd_doctor(json: bool) -> anyhow::Result<ExitCode> {
    let _ = json;
    todo!()
}

/// The error chain as one line: `outer: inner: innermost`, without repeats.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// 2 for bad input (recipe, usage), 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain()
        .any(|c| c.downcast_ref::<crate::recipe::RecipeError>().is_some())
    {
        2
    } else {
        1
    }
}
