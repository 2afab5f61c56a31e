//! Opening signed release files and reading the fields ingot trusts from them.
//!
//! `InRelease` is an OpenPGP cleartext-signed message; `Release` + `Release.gpg` is a file and
//! its detached signature. Either way, this module hands out the signatures and the exact bytes
//! they cover, and parses `Release` fields only from text that [`super::keyring::Keyring`] has
//! verified: nothing outside the signed part is ever read.

use std::collections::BTreeMap;

use pgp::composed::{CleartextSignedMessage, Deserializable, DetachedSignature};
use pgp::packet::Signature;

use super::ArchiveError;

/// The armor line every cleartext-signed `InRelease` starts with.
const CLEARTEXT_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";

/// A release file split into what was signed and the signatures over it.
#[derive(Debug, Clone)]
pub struct SignedRelease {
    /// The exact bytes the signatures cover (CRLF-normalised for a cleartext message).
    pub signed_bytes: Vec<u8>,
    /// The signed text with LF line endings: what fields are parsed from.
    pub text: String,
    /// The signatures found (not yet verified).
    pub signatures: Vec<Signature>,
}

/// Split an `InRelease` (cleartext-signed) file fetched from `url`.
///
/// A file without the cleartext armor is [`ArchiveError::Unsigned`]; one with the armor that
/// does not parse (junk before or after, broken signature block) is
/// [`ArchiveError::BadSignature`].
pub fn open_inrelease(url: &str, bytes: &[u8]) -> Result<SignedRelease, ArchiveError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ArchiveError::BadSignature {
        url: url.to_string(),
        message: format!("not a UTF-8 cleartext-signed message: {e}"),
    })?;
    if !text.starts_with(CLEARTEXT_HEADER) {
        if text.contains(CLEARTEXT_HEADER) {
            // apt refuses this too: unsigned bytes before the signed part could be read by a
            // lax parser as if they were signed.
            return Err(ArchiveError::BadSignature {
                url: url.to_string(),
                message: "data before the cleartext-signed message".to_string(),
            });
        }
        return Err(ArchiveError::Unsigned {
            url: url.to_string(),
        });
    }
    let (msg, _headers) =
        CleartextSignedMessage::from_string(text).map_err(|e| ArchiveError::BadSignature {
            url: url.to_string(),
            message: format!("malformed cleartext-signed message: {e}"),
        })?;
    let signed = msg.signed_text();
    Ok(SignedRelease {
        text: signed.replace("\r\n", "\n"),
        signed_bytes: signed.into_bytes(),
        signatures: msg.signatures().to_vec(),
    })
}

/// Pair a plain `Release` with its detached `Release.gpg` (armored or binary), fetched from
/// `sig_url`.
pub fn open_detached(
    release_url: &str,
    release: &[u8],
    sig_url: &str,
    signature: &[u8],
) -> Result<SignedRelease, ArchiveError> {
    let bad = |message: String| ArchiveError::BadSignature {
        url: sig_url.to_string(),
        message,
    };
    let (parsed, _headers) = DetachedSignature::from_reader_many(signature)
        .map_err(|e| bad(format!("not an OpenPGP signature: {e}")))?;
    let mut signatures = Vec::new();
    for sig in parsed {
        signatures.push(
            sig.map_err(|e| bad(format!("not an OpenPGP signature: {e}")))?
                .signature,
        );
    }
    if signatures.is_empty() {
        return Err(ArchiveError::Unsigned {
            url: release_url.to_string(),
        });
    }
    let text = std::str::from_utf8(release).map_err(|e| ArchiveError::Malformed {
        url: release_url.to_string(),
        message: format!("not UTF-8: {e}"),
    })?;
    Ok(SignedRelease {
        signed_bytes: release.to_vec(),
        text: text.to_string(),
        signatures,
    })
}

/// The fields of a verified `Release` that ingot uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFields {
    /// `Date`, seconds since the epoch.
    pub date: i64,
    /// `Valid-Until` as written and in seconds since the epoch, if present.
    pub valid_until: Option<(String, i64)>,
    /// `Suite`, if present.
    pub suite: Option<String>,
    /// `Codename`, if present.
    pub codename: Option<String>,
    /// `SHA256`: path relative to `dists/<suite>/` → (size, lowercase hex digest).
    pub sha256: BTreeMap<String, (u64, String)>,
}

/// Parse the fields of a verified `Release` text; `url` names it in errors.
pub fn parse_release(url: &str, text: &str) -> Result<ReleaseFields, ArchiveError> {
    let bad = |message: String| ArchiveError::Malformed {
        url: url.to_string(),
        message,
    };
    let para: deb822_fast::Paragraph = text
        .parse()
        .map_err(|e| bad(format!("not a single deb822 paragraph: {e}")))?;
    let date_text = para
        .get("Date")
        .ok_or_else(|| bad("no Date field".to_string()))?;
    let date = parse_release_date(date_text)
        .ok_or_else(|| bad(format!("Date {date_text:?} is not an RFC 2822 UTC date")))?;
    let valid_until = match para.get("Valid-Until") {
        None => None,
        Some(v) => {
            let secs = parse_release_date(v)
                .ok_or_else(|| bad(format!("Valid-Until {v:?} is not an RFC 2822 UTC date")))?;
            Some((v.trim().to_string(), secs))
        }
    };
    let field = |name: &str| {
        para.get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut sha256 = BTreeMap::new();
    let list = para
        .get("SHA256")
        .ok_or_else(|| bad("no SHA256 file list".to_string()))?;
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut parts = line.split_ascii_whitespace();
        let (Some(digest), Some(size), Some(path), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!(
                "SHA256 line {line:?} is not `<digest> <size> <path>`"
            )));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| bad(format!("SHA256 line {line:?}: size is not a number")))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "SHA256 line {line:?}: digest is not 64 hex digits"
            )));
        }
        sha256.insert(path.to_string(), (size, digest.to_ascii_lowercase()));
    }
    Ok(ReleaseFields {
        date,
        valid_until,
        suite: field("Suite"),
        codename: field("Codename"),
        sha256,
    })
}

/// Parse a `Release` date (`Thu, 25 Apr 2024 15:10:33 UTC`) into seconds since the epoch.
///
/// Written by hand because the date crates in our tree reject the `UTC` zone name that every
/// Debian and Ubuntu archive writes. Accepts, like apt: an optional weekday, the zone names
/// `UTC`, `GMT`, `UT`, `Z`, or a numeric `+hhmm`/`-hhmm` offset.
pub fn parse_release_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once(',') {
        Some((weekday, rest)) if weekday.len() == 3 => rest.trim_start(),
        Some(_) => return None,
        None => s,
    };
    let mut parts = s.split_ascii_whitespace();
    let day: i64 = parts.next()?.parse().ok()?;
    let month = match parts.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: i64 = hms.next().map_or(Some(0), |v| v.parse().ok())?;
    if hms.next().is_some() {
        return None;
    }
    let offset = match parts.next()? {
        "UTC" | "GMT" | "UT" | "Z" => 0,
        zone => {
            let (sign, digits) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i64 = digits[..2].parse().ok()?;
            let m: i64 = digits[2..].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    if parts.next().is_some()
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
        || !(1970..=9999).contains(&year)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates() {
        // `date -u -d 'Thu, 25 Apr 2024 15:10:33 UTC' +%s`
        assert_eq!(
            parse_release_date("Thu, 25 Apr 2024 15:10:33 UTC"),
            Some(1_714_057_833)
        );
        assert_eq!(
            parse_release_date("Sat, 10 Jun 2023 08:53:33 +0000"),
            Some(1_686_387_213)
        );
        assert_eq!(
            parse_release_date("25 Apr 2024 17:10:33 +0200"),
            Some(1_714_057_833)
        );
        assert_eq!(
            parse_release_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_release_date("Thu, 1 Jan 1970 00:00:00 UTC"), Some(0));
        for bad in [
            "",
            "Thu, 25 Apr 2024",
            "Thu, 25 Foo 2024 15:10:33 UTC",
            "Thu, 25 Apr 2024 15:10:33 CEST",
            "Thu, 25 Apr 2024 25:10:33 UTC",
            "Thu, 25 Apr 2024 15:10:33 UTC trailing",
            "2024-04-25T15:10:33Z",
        ] {
            assert_eq!(parse_release_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn release_fields_and_file_list() {
        let text = "Origin: Ubuntu\nSuite: noble\nCodename: noble\n\
                    Date: Thu, 25 Apr 2024 15:10:33 UTC\n\
                    Valid-Until: Fri, 26 Apr 2024 15:10:33 UTC\nSHA256:\n \
                    0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF 42 main/binary-amd64/Packages.xz\n \
                    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 7 main/binary-amd64/Release\n";
        let f = parse_release("u", text).unwrap();
        assert_eq!(f.date, 1_714_057_833);
        assert_eq!(
            f.valid_until,
            Some(("Fri, 26 Apr 2024 15:10:33 UTC".to_string(), 1_714_144_233))
        );
        assert_eq!(f.suite.as_deref(), Some("noble"));
        assert_eq!(
            f.sha256["main/binary-amd64/Packages.xz"],
            (
                42,
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()
            )
        );
        assert_eq!(f.sha256.len(), 2);
        let broken = text.replace(" 42 ", " forty-two ");
        assert!(matches!(
            parse_release("u", &broken),
            Err(ArchiveError::Malformed { .. })
        ));
        let no_date = text.replace("Date: Thu", "X-Date: Thu");
        assert!(matches!(
            parse_release("u", &no_date),
            Err(ArchiveError::Malformed { .. })
        ));
    }
}
