//! The golden image's cleanup invariants, enforced by ingot after the recipe's cleanup scripts.
//!
//! TEMPORARY STAND-IN (branch `stage` only): helper `verify` owns this file; the lead drops
//! this stub when merging the real implementation.

use std::path::Path;

/// Stand-in error type until helper `verify` lands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvariantError(pub String);

/// Stand-in: enforces nothing.
pub fn enforce(root: &Path) -> Result<Vec<String>, InvariantError> {
    let _ = root;
    Ok(Vec::new())
}
