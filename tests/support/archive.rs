//! A signed Debian-style archive on disk, laid out like a real mirror:
//!
//! ```text
//! <root>/pool/<component>/<initial>/<name>/<name>_<version>_<arch>.deb
//! <root>/dists/<suite>/<component>/binary-<arch>/Packages{,.gz,.xz}
//! <root>/dists/<suite>/Release, InRelease, Release.gpg
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::key::FixtureKey;

/// How to lay out and sign a fixture archive; `Default` gives a correct, signed archive.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// The architecture of the indexes (`binary-<arch>`).
    pub arch: String,
    /// Components; the `.deb`s passed to [`FixtureArchive::build`] go into the first,
    /// the others get empty indexes unless `extra_debs` fills them.
    pub components: Vec<String>,
    /// More `.deb`s: (component, path).
    pub extra_debs: Vec<(String, PathBuf)>,
    /// `Suite` field; `None` writes the requested suite name.
    pub suite_field: Option<String>,
    /// `Codename` field; `None` writes the requested suite name.
    pub codename: Option<String>,
    /// `Date`, seconds since the epoch; `None` is now.
    pub date: Option<i64>,
    /// `Valid-Until`, seconds since the epoch; `None` omits the field.
    pub valid_until: Option<i64>,
    /// Which index files to write and list: any of `""`, `".gz"`, `".xz"`.
    pub index_compressions: Vec<String>,
    /// Write `InRelease` (off: clients must fall back to `Release` + `Release.gpg`).
    pub inrelease: bool,
    /// Write `Release.gpg`.
    pub release_gpg: bool,
    /// Sign at all: off writes `InRelease` as the plain `Release` text, and no `Release.gpg`.
    pub signed: bool,
    /// After signing, change one byte of the signed text in `InRelease` and of `Release`
    /// (the `Date` line): the signatures must then fail.
    pub tamper_signed_text: bool,
    /// After signing, append a byte to every listed index file (a hash/size mismatch).
    pub tamper_indexes: bool,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        FixtureOptions {
            arch: "amd64".to_string(),
            components: vec!["main".to_string()],
            extra_debs: Vec::new(),
            suite_field: None,
            codename: None,
            date: None,
            valid_until: None,
            index_compressions: vec![String::new(), ".gz".to_string(), ".xz".to_string()],
            inrelease: true,
            release_gpg: true,
            signed: true,
            tamper_signed_text: false,
            tamper_indexes: false,
        }
    }
}

/// A fixture archive that was written to disk.
#[derive(Debug, Clone)]
pub struct FixtureArchive {
    /// The archive root (the mirror directory).
    pub root: PathBuf,
    /// The suite directory name under `dists/`.
    pub suite: String,
    /// The `Release` text as signed (before any tampering).
    pub release_text: String,
    /// The `Date` written, seconds since the epoch.
    pub date: i64,
    /// Every `.deb` in the pool: (component, pool path relative to the root, SHA-256).
    pub pool: Vec<(String, String, String)>,
}

impl FixtureArchive {
    /// Write an archive for `suite` under `root` holding `debs` (in the first component),
    /// signed by `key` as `options` say.
    pub fn build(
        root: &Path,
        suite: &str,
        debs: &[PathBuf],
        key: &FixtureKey,
        options: &FixtureOptions,
    ) -> FixtureArchive {
        let first = options
            .components
            .first()
            .expect("FixtureOptions::components must not be empty")
            .clone();
        let mut by_component: BTreeMap<String, Vec<PathBuf>> = options
            .components
            .iter()
            .map(|c| (c.clone(), Vec::new()))
            .collect();
        by_component
            .entry(first)
            .or_default()
            .extend(debs.iter().cloned());
        for (component, path) in &options.extra_debs {
            by_component
                .entry(component.clone())
                .or_default()
                .push(path.clone());
        }

        let dists = root.join("dists").join(suite);
        let mut listed: Vec<(String, Vec<u8>)> = Vec::new();
        let mut pool = Vec::new();
        for (component, debs) in &by_component {
            let mut packages = String::new();
            for deb in debs {
                let (stanza, pool_path, sha) = add_to_pool(root, component, deb);
                if !packages.is_empty() {
                    packages.push('\n');
                }
                packages.push_str(&stanza);
                pool.push((component.clone(), pool_path, sha));
            }
            let base = format!("{component}/binary-{}/Packages", options.arch);
            for ext in &options.index_compressions {
                let bytes = compress(ext, packages.as_bytes());
                listed.push((format!("{base}{ext}"), bytes));
            }
        }
        for (path, bytes) in &listed {
            write_file(&dists.join(path), bytes);
        }

        let date = options.date.unwrap_or_else(super::unix_now);
        let mut release = String::new();
        release.push_str("Origin: ingot-fixture\nLabel: ingot-fixture\n");
        release.push_str(&format!(
            "Suite: {}\nCodename: {}\n",
            options.suite_field.as_deref().unwrap_or(suite),
            options.codename.as_deref().unwrap_or(suite)
        ));
        release.push_str(&format!("Date: {}\n", rfc2822_date(date)));
        if let Some(v) = options.valid_until {
            release.push_str(&format!("Valid-Until: {}\n", rfc2822_date(v)));
        }
        release.push_str(&format!(
            "Architectures: {}\nComponents: {}\nDescription: ingot test fixture\nSHA256:\n",
            options.arch,
            options.components.join(" ")
        ));
        for (path, bytes) in &listed {
            release.push_str(&format!(
                " {} {:>16} {path}\n",
                hex::encode(Sha256::digest(bytes)),
                bytes.len()
            ));
        }

        let tamper = |text: &str| text.replacen("Date: ", "Date:  ", 1);
        let release_bytes = if options.tamper_signed_text {
            tamper(&release)
        } else {
            release.clone()
        };
        write_file(&dists.join("Release"), release_bytes.as_bytes());
        if options.signed {
            if options.inrelease {
                let mut signed = key.sign_cleartext(&release);
                if options.tamper_signed_text {
                    signed = tamper(&signed);
                }
                write_file(&dists.join("InRelease"), signed.as_bytes());
            }
            if options.release_gpg {
                write_file(
                    &dists.join("Release.gpg"),
                    &key.sign_detached(release.as_bytes()),
                );
            }
        } else if options.inrelease {
            write_file(&dists.join("InRelease"), release_bytes.as_bytes());
        }
        if options.tamper_indexes {
            for (path, _) in &listed {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(dists.join(path))
                    .expect("open index to tamper");
                f.write_all(b"\n").expect("tamper index");
            }
        }

        FixtureArchive {
            root: root.to_path_buf(),
            suite: suite.to_string(),
            release_text: release,
            date,
            pool,
        }
    }

    /// The archive root as a `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// `dists/<suite>/<name>` on disk.
    pub fn dists_file(&self, name: &str) -> PathBuf {
        self.root.join("dists").join(&self.suite).join(name)
    }
}

/// Copy `deb` into the pool; returns its `Packages` stanza, pool path and SHA-256.
fn add_to_pool(root: &Path, component: &str, deb: &Path) -> (String, String, String) {
    let output = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .output()
        .expect("run dpkg-deb --field");
    assert!(
        output.status.success(),
        "dpkg-deb --field {}: {}",
        deb.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let control = String::from_utf8(output.stdout).expect("UTF-8 control");
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{}: no {name} field", deb.display()))
            .to_string()
    };
    let name = field("Package");
    let initial = if name.starts_with("lib") && name.len() > 3 {
        &name[..4]
    } else {
        &name[..1]
    };
    let file_name = deb
        .file_name()
        .expect(".deb file name")
        .to_string_lossy()
        .to_string();
    let pool_path = format!("pool/{component}/{initial}/{name}/{file_name}");
    let bytes = std::fs::read(deb).unwrap_or_else(|e| panic!("read {}: {e}", deb.display()));
    write_file(&root.join(&pool_path), &bytes);
    let sha = hex::encode(Sha256::digest(&bytes));
    let mut stanza = control.trim_end().to_string();
    stanza.push_str(&format!(
        "\nFilename: {pool_path}\nSize: {}\nSHA256: {sha}\n",
        bytes.len()
    ));
    (stanza, pool_path, sha)
}

fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "" => data.to_vec(),
        ".gz" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).expect("gzip");
            enc.finish().expect("gzip")
        }
        ".xz" => {
            let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
            enc.write_all(data).expect("xz");
            enc.finish().expect("xz")
        }
        other => panic!("unknown index compression {other:?} (use \"\", \".gz\" or \".xz\")"),
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create archive directory");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Seconds since the epoch as a `Release` date: `Thu, 25 Apr 2024 15:10:33 UTC`.
pub fn rfc2822_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
