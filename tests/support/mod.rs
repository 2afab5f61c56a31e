//! Shared fixtures for ingot's hermetic integration tests: a throw-away signing key, real
//! `.deb` files built with `dpkg-deb`, a signed Debian-style archive on disk, and a loopback HTTP
//! server for it. Nothing here touches the network or needs root.
//!
//! Typical use from a test file (`mod support;` at the top):
//!
//! ```ignore
//! use support::{DebSpec, FixtureArchive, FixtureKey, FixtureOptions, serve_http};
//!
//! let dir = tempfile::tempdir()?;
//! let key = FixtureKey::generate("Test Archive Key");
//! let keyring = key.write_keyring(&dir.path().join("trusted.gpg"));
//! let debs = dir.path().join("debs");
//! let hello = DebSpec::new("hello", "1.0-1").essential().file("/usr/bin/hello", b"#!/bin/sh\n", 0o755).build(&debs);
//! let archive = FixtureArchive::build(&dir.path().join("mirror"), "testing", &[hello], &key, &FixtureOptions::default());
//! let (http_url, _server) = serve_http(&archive.root);
//! // archive.file_url() or http_url is the mirror; keyring is the trusted keyring.
//! ```
//!
//! Broken variants (unsigned, tampered, expired, wrong suite, wrong index hash, no `InRelease`)
//! are [`FixtureOptions`] fields; a wrong key is simply a second [`FixtureKey`].
//!
//! Helpers panic on failure: they are test setup, and a panic message names what broke.
#![allow(dead_code, unused_imports)]

mod archive;
mod deb;
mod http;
mod key;
pub mod privilege;

pub use archive::{FixtureArchive, FixtureOptions, rfc2822_date};
pub use deb::DebSpec;
pub use http::{Fault, FaultyServer, HttpGuard, faulty_server, serve_http};
pub use key::FixtureKey;

/// A recipe folder `dir` that trusts `key` (as `trusted.gpg`), with `recipe_toml` as its
/// `recipe.toml`; returns `dir`.
pub fn write_recipe(
    dir: &std::path::Path,
    key: &FixtureKey,
    recipe_toml: &str,
) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    key.write_keyring(&dir.join("trusted.gpg"));
    std::fs::write(dir.join("recipe.toml"), recipe_toml).unwrap();
    dir.to_path_buf()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
