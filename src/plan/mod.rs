//! The plan stage: choose the package set the way debootstrap/mmdebstrap (through apt) would.
//!
//! Selection is `Essential: yes` (+ `Priority: required` + `apt` for minbase) + the recipe's
//! includes; resolution closes over `Pre-Depends` and `Depends` with alternatives, versioned
//! constraints, `Provides`, architecture qualifiers, and honours `Conflicts`/`Breaks`. When a
//! package is in several suites the highest version wins. This stage never downloads.

use serde::Serialize;

use crate::archive::BinaryPackage;
use crate::recipe::Variant;

/// What the user asked for, before resolution.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The base set.
    pub variant: Variant,
    /// Extra packages (`name` or `name=version`).
    pub include: Vec<String>,
    /// The target architecture (`amd64`).
    pub architecture: String,
}

/// One package of the resolved set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedPackage {
    /// Package name.
    pub name: String,
    /// Version chosen.
    pub version: String,
    /// Architecture (`amd64` or `all`).
    pub architecture: String,
    /// `Essential: yes` (installed in the first round).
    pub essential: bool,
    /// `Priority`, if given.
    pub priority: Option<String>,
    /// Size of the `.deb`.
    pub size: u64,
    /// SHA-256 of the `.deb`.
    pub sha256: String,
    /// Pool path relative to the mirror.
    pub filename: String,
    /// Archive root URL it comes from.
    pub mirror: String,
    /// Suite whose index listed it.
    pub suite: String,
    /// `Source` package name (the package's own name when absent).
    pub source: String,
    /// Names of selected packages that satisfy this package's `Pre-Depends`.
    pub pre_depends_on: Vec<String>,
    /// Names of selected packages that satisfy this package's `Depends`.
    pub depends_on: Vec<String>,
}

impl PlannedPackage {
    /// The full download URL of the `.deb`.
    pub fn url(&self) -> String {
        crate::fetch::transport::join_url(&self.mirror, &self.filename)
    }
}

/// The resolved set, sorted by name.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every package to install, sorted by name.
    pub packages: Vec<PlannedPackage>,
}

impl Plan {
    /// Total download size in bytes.
    pub fn total_size(&self) -> u64 {
        self.packages.iter().map(|p| p.size).sum()
    }
}

/// Why no installable set exists; names the package and the chain that led to it.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An include (or `apt`) is in no index.
    #[error(
        "package {name:?} is not in any suite/component of the archive (asked for by {requested_by})"
    )]
    UnknownPackage {
        /// The missing name.
        name: String,
        /// Who asked (`recipe include`, `variant minbase`, …).
        requested_by: String,
    },
    /// A dependency cannot be satisfied.
    #[error("unsatisfiable dependency {dependency:?} of {chain}")]
    Unsatisfiable {
        /// The dependency as written.
        dependency: String,
        /// `include openssh-server → openssh-client → libfoo (>= 3)`.
        chain: String,
    },
    /// Two selected packages conflict (Conflicts or Breaks).
    #[error("{package} {relation} {target}, but both are required ({chain})")]
    Conflict {
        /// The package declaring the relation.
        package: String,
        /// `Conflicts` or `Breaks`.
        relation: String,
        /// The other package.
        target: String,
        /// How the package came in.
        chain: String,
    },
    /// A dependency field could not be parsed.
    #[error("package {package}: cannot parse {field}: {message}")]
    BadField {
        /// The package.
        package: String,
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
}

/// Resolve `selection` against every stanza of every suite.
pub fn resolve(universe: &[BinaryPackage], selection: &Selection) -> Result<Plan, PlanError> {
    let _ = (universe, selection);
    todo!("plan::resolve")
}
