//! The one table of exit codes (the README's "exit codes" section is this table):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok (`outdated`: nothing to rebuild) |
//! | 1 | the build or check failed (`verify` found violations, `lock --check` differs, `outdated`: a rebuild is due) |
//! | 2 | bad usage or bad input (arguments, a recipe, a lock, a key or CA file, `--out`, `--version`, a tarball that does not exist) |
//! | 3 | `outdated` could not check (the archive could not be reached or was refused) |
//!
//! Library errors are typed; this module alone decides which code each one gets.

use std::process::ExitCode;

/// The build or check failed.
pub const FAILED: u8 = 1;
/// Bad usage or bad input.
pub const BAD_INPUT: u8 = 2;
/// `ingot outdated` could not check.
pub const COULD_NOT_CHECK: u8 = 3;

/// Whether an error is the user's input at fault rather than a failed build or check.
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    use ingot::artifact::ArtifactError;
    use ingot::lock::LockError;
    e.chain().any(|c| {
        c.is::<ingot::recipe::RecipeError>()
            || c.is::<ingot::net::CaFileError>()
            || c.is::<ingot::stage::staging::StagingError>()
            || c.is::<ingot::build::BuildError>()
            || c.is::<ingot::outdated::OutdatedError>()
            || c.is::<ingot::provenance::keys::KeyError>()
            || c.downcast_ref::<ingot::scaffold::ScaffoldError>()
                .is_some_and(ingot::scaffold::ScaffoldError::is_bad_input)
            || c.downcast_ref::<ingot::provenance::ProvenanceError>()
                .is_some_and(ingot::provenance::ProvenanceError::is_bad_input)
            || matches!(
                c.downcast_ref::<ingot::verify::VerifyError>(),
                Some(ingot::verify::VerifyError::Open { .. })
            )
            || matches!(
                c.downcast_ref::<LockError>(),
                Some(
                    LockError::Missing { .. } | LockError::Malformed { .. } | LockError::Io { .. }
                )
            )
            || matches!(
                c.downcast_ref::<ArtifactError>(),
                Some(
                    ArtifactError::VersionExists { .. }
                        | ArtifactError::VersionZero
                        | ArtifactError::BadImageName { .. }
                )
            )
            || c.downcast_ref::<ingot::upload::UploadError>()
                .is_some_and(ingot::upload::UploadError::is_bad_input)
    })
}

/// The exit code of a failed verb: 2 for bad input, 1 for everything else.
pub fn code(e: &anyhow::Error) -> u8 {
    if is_bad_input(e) { BAD_INPUT } else { FAILED }
}

/// [`code`] as an [`ExitCode`].
pub fn exit(e: &anyhow::Error) -> ExitCode {
    ExitCode::from(code(e))
}

/// Print a verb's typed error as its one `ingot: error:` line and give its code: 2 when
/// `bad_input`, else 1 (for verbs whose errors say themselves which they are).
pub fn report(e: impl std::error::Error + Send + Sync + 'static, bad_input: bool) -> ExitCode {
    eprintln!(
        "ingot: error: {}",
        ingot::progress::one_line(&anyhow::Error::new(e))
    );
    ExitCode::from(if bad_input { BAD_INPUT } else { FAILED })
}
