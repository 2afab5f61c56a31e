//! Replay protection: the newest `Date` seen for each mirror and suite, kept in a small state
//! file in the cache, and the refusal of an older signed release.
//!
//! Ubuntu's `InRelease` carries no `Valid-Until`, so a signature alone cannot tell today's
//! `noble-security` from last year's (before a fix). Like apt, which refuses a `Release` older
//! than the one it already has, ingot remembers the newest `Date` per mirror + suite and refuses
//! an older one unless the user says `--allow-older` (`INGOT_ALLOW_OLDER`).
//!
//! This module owns the state file `release-dates.json` (and its lock) under the cache root
//! (their names are [`crate::cache`]'s).
//! It never records a release that was not verified, never lowers a recorded date, and writes
//! the file by rename so that a crash leaves the old state or the new one, never half of it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{ArchiveError, VerifiedRelease};

/// The state file's name under the cache root (the layout is [`crate::cache`]'s).
pub use crate::cache::LEDGER_FILE as STATE_FILE;
use crate::cache::LEDGER_LOCK as LOCK_FILE;

/// The newest `Date` seen per mirror and suite, in a cache directory.
#[derive(Debug, Clone)]
pub struct DateLedger {
    dir: PathBuf,
}

/// What [`DateLedger::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer than (or as new as) anything seen: recorded.
    Newest,
    /// Older than what was seen, accepted because the caller allowed it (not recorded).
    OlderAllowed {
        /// The newest `Date` recorded.
        seen: i64,
    },
}

impl DateLedger {
    /// The ledger in `dir` (the cache root, which the caller has checked).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DateLedger { dir: dir.into() }
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The key of a release: its archive root (without trailing `/`) and suite.
    fn key(release: &VerifiedRelease) -> String {
        format!(
            "{} {}",
            release.source.mirror.trim_end_matches('/'),
            release.source.suite
        )
    }

    /// The newest `Date` recorded for this release's mirror and suite.
    pub fn newest(&self, release: &VerifiedRelease) -> Result<Option<i64>, ArchiveError> {
        Ok(self.read()?.get(&Self::key(release)).copied())
    }

    /// Refuse `release` if a newer `Date` was seen for its mirror and suite (unless
    /// `allow_older`); otherwise record its `Date`. Concurrent builds serialise on a lock file.
    pub fn admit(
        &self,
        release: &VerifiedRelease,
        allow_older: bool,
    ) -> Result<Admission, ArchiveError> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| self.state_err(&lock_path, e))?;
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| self.state_err(&lock_path, e.into()))?;
        let mut dates = self.read()?;
        let key = Self::key(release);
        if let Some(&seen) = dates.get(&key)
            && seen > release.date
        {
            if allow_older {
                return Ok(Admission::OlderAllowed { seen });
            }
            return Err(ArchiveError::Replayed {
                url: release.url.clone(),
                date: release.date,
                seen,
                state: self.path(),
            });
        }
        if dates.get(&key) != Some(&release.date) {
            dates.insert(key, release.date);
            self.write(&dates)?;
        }
        Ok(Admission::Newest)
    }

    fn state_err(&self, path: &Path, source: std::io::Error) -> ArchiveError {
        ArchiveError::State {
            path: path.to_path_buf(),
            message: source.to_string(),
        }
    }

    fn read(&self) -> Result<BTreeMap<String, i64>, ArchiveError> {
        let path = self.path();
        let mut text = String::new();
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(mut f) => {
                (&mut f)
                    .take(16 << 20)
                    .read_to_string(&mut text)
                    .map_err(|e| self.state_err(&path, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.state_err(&path, e)),
        }
        serde_json::from_str(&text).map_err(|e| ArchiveError::State {
            path,
            message: format!(
                "not a JSON map of \"<mirror> <suite>\" to a Unix time ({e}); remove it to forget every recorded Date"
            ),
        })
    }

    fn write(&self, dates: &BTreeMap<String, i64>) -> Result<(), ArchiveError> {
        let path = self.path();
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| self.state_err(&self.dir, e))?;
        let text = serde_json::to_string_pretty(dates).unwrap_or_default();
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| self.state_err(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| self.state_err(&path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::SuiteSource;

    fn release(mirror: &str, suite: &str, date: i64) -> VerifiedRelease {
        VerifiedRelease {
            source: SuiteSource {
                suite: suite.into(),
                mirror: mirror.into(),
            },
            url: format!("{mirror}/dists/{suite}/InRelease"),
            sha256: String::new(),
            signer: String::new(),
            date,
            valid_until: None,
            suite_field: Some(suite.into()),
            codename: None,
            files: Default::default(),
            file_bytes: Vec::new(),
        }
    }

    #[test]
    fn an_older_date_is_refused_per_mirror_and_suite() {
        let d = tempfile::tempdir().unwrap();
        let ledger = DateLedger::new(d.path());
        let m = "http://mirror/ubuntu";
        assert_eq!(
            ledger.admit(&release(m, "noble", 200), false).unwrap(),
            Admission::Newest
        );
        let err = ledger.admit(&release(m, "noble", 100), false).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Replayed { seen: 200, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("dists/noble/InRelease"), "{err}");
        // Another suite, another mirror: their own history.
        ledger
            .admit(&release(m, "noble-security", 100), false)
            .unwrap();
        ledger
            .admit(&release("http://other/", "noble", 100), false)
            .unwrap();
        // Allowed: accepted, but the newest date stays recorded.
        assert_eq!(
            ledger.admit(&release(m, "noble", 100), true).unwrap(),
            Admission::OlderAllowed { seen: 200 }
        );
        assert_eq!(ledger.newest(&release(m, "noble", 0)).unwrap(), Some(200));
        ledger.admit(&release(m, "noble", 300), false).unwrap();
        assert_eq!(ledger.newest(&release(m, "noble", 0)).unwrap(), Some(300));
    }
}
