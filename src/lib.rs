//! ingot builds golden, reproducible Ubuntu/Debian LXC root filesystems from a signed archive,
//! without Docker and without root.
//!
//! The pipeline runs one way (see the README's design section):
//! [`recipe`] → [`archive`] → [`plan`] → [`fetch`] → [`stage`] → [`export`] → [`artifact`],
//! with [`verify`] checking the golden-image contract on any tarball; [`net`] is the transport
//! that `archive` and `fetch` share. [`resolve`] is the one road from a recipe to verified
//! suites and a plan that every verb takes; [`cache`] owns the cache's layout. [`lock`] is
//! the file format that pins a resolution for `build --locked`,
//! [`mirror`] writes the partial archive of a lock, [`sbom`] describes what an artifact
//! contains, [`provenance`] proves where it came from, [`rebuild`] re-does a build and
//! compares, and [`outdated`] says when a rebuild is due. [`catalog`] finds recipes and
//! keyrings by name, [`scaffold`] writes a new recipe folder from an existing one.
#![deny(missing_docs)]

pub mod archive;
pub mod artifact;
pub mod build;
pub mod cache;
pub mod catalog;
pub mod choice;
pub mod deb;
pub mod epoch;
pub mod export;
pub mod fetch;
pub mod golden;
pub mod lock;
pub mod mirror;
pub mod net;
pub mod oci;
pub mod outdated;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod provenance;
pub mod push;
pub mod rebuild;
pub mod recipe;
pub mod resolve;
pub mod sbom;
pub mod scaffold;
pub mod signal_hold;
pub mod stage;
pub mod upload;
pub mod verify;
