//! The export stage: a deterministic tar stream of a root filesystem, and its compression.
//!
//! The tar is written inside the namespace (so owners are the image's own 0..65535) to a
//! pipe; the parent compresses it straight into the artifact file. Nothing buffers the whole
//! image.
pub mod compress;
pub mod tar;
