//! One host check of `ingot doctor` (the rootless preflight and the AppArmor check both
//! make them).

use serde::Serialize;

/// One host check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`subordinate ids`, `newuidmap`, …).
    pub name: String,
    /// Whether the host passes.
    pub ok: bool,
    /// What was found; when failing, the problem and its fix on one line.
    pub message: String,
}

impl Check {
    pub(super) fn pass(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            message: message.into(),
        }
    }
    pub(super) fn fail(name: &str, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}: {}", self.name, self.message)
    }
}
