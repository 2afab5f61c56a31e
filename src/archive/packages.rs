//! Parsing `Packages` indexes (deb822 stanzas) into [`BinaryPackage`]s, fast enough for all of
//! noble `main` + `universe` (~80 000 stanzas) in a fraction of a second.

use super::BinaryPackage;

/// A stanza that lacks a field ingot needs or has a malformed one.
#[derive(Debug, thiserror::Error)]
#[error("stanza {index} (package {package:?}): {message}")]
pub struct PackagesParseError {
    /// 0-based stanza number.
    pub index: usize,
    /// The `Package` field, if it was read.
    pub package: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parse a whole (decompressed) `Packages` file listed by `suite` at `mirror`.
pub fn parse_packages(
    text: &str,
    suite: &str,
    mirror: &str,
) -> Result<Vec<BinaryPackage>, PackagesParseError> {
    let _ = (text, suite, mirror);
    todo!("archive::packages::parse_packages")
}
