//! The build epoch: the one timestamp every mtime in the image is clamped to.
//!
//! `SOURCE_DATE_EPOCH` wins when set; otherwise the newest signed `InRelease` `Date` of the
//! build, so an unchanged archive gives unchanged bytes without the user setting anything.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, used as the clamp for every mtime in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildEpoch(pub i64);

/// Where the build epoch came from, recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpochSource {
    /// The `SOURCE_DATE_EPOCH` environment variable.
    SourceDateEpoch,
    /// The newest `Date` of the verified `InRelease` files.
    InRelease,
    /// The lock file (`ingot build --locked`): the same lock gives the same bytes any day.
    Lock,
}

/// Errors reading `SOURCE_DATE_EPOCH`.
#[derive(Debug, thiserror::Error)]
#[error("SOURCE_DATE_EPOCH={value:?} is not a non-negative integer number of seconds")]
pub struct EpochError {
    /// The offending value.
    pub value: String,
}

impl BuildEpoch {
    /// `SOURCE_DATE_EPOCH` if set (and valid), else the newest of the release dates.
    pub fn choose(
        source_date_epoch: Option<&str>,
        release_dates: impl IntoIterator<Item = i64>,
    ) -> Result<(BuildEpoch, EpochSource), EpochError> {
        if let Some(value) = source_date_epoch.filter(|v| !v.is_empty()) {
            let secs: i64 = value.trim().parse().map_err(|_| EpochError {
                value: value.to_string(),
            })?;
            if secs < 0 {
                return Err(EpochError {
                    value: value.to_string(),
                });
            }
            return Ok((BuildEpoch(secs), EpochSource::SourceDateEpoch));
        }
        let newest = release_dates.into_iter().max().unwrap_or(0);
        Ok((BuildEpoch(newest), EpochSource::InRelease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_wins() {
        let (e, s) = BuildEpoch::choose(Some("1700000000"), [5, 9]).unwrap();
        assert_eq!(
            (e, s),
            (BuildEpoch(1_700_000_000), EpochSource::SourceDateEpoch)
        );
        let (e, s) = BuildEpoch::choose(None, [5, 9, 7]).unwrap();
        assert_eq!((e, s), (BuildEpoch(9), EpochSource::InRelease));
        assert!(BuildEpoch::choose(Some("yesterday"), [1]).is_err());
        assert!(BuildEpoch::choose(Some("-4"), [1]).is_err());
    }
}
