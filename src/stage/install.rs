//! Installing packages into the staging root: safe extraction of `.deb`s and configuration
//! with the target's own dpkg, in the order debootstrap/mmdebstrap use.
//!
//! TEMPORARY STAND-IN (branch `stage` only): helper `install` owns this file; the lead drops
//! this stub when merging the real implementation.

use std::path::Path;

use super::StageDeb;

/// Stand-in error type until helper `install` lands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InstallError(pub String);

/// Stand-in: installs nothing; refuses any package.
pub fn install_packages(
    root: &Path,
    debs: &[StageDeb],
    log: &mut dyn FnMut(&str),
) -> Result<(), InstallError> {
    let _ = root;
    if let Some(first) = debs.first() {
        return Err(InstallError(format!(
            "package installation is not available in this build (first package: {})",
            first.name
        )));
    }
    log("no packages to install");
    Ok(())
}
