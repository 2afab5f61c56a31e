//! The archive stage accepts a correctly signed archive and refuses every broken one with the
//! right error, naming the URL at fault — over `file://` and over `http://`.
//!
//! Fixtures are real: a fresh Ed25519 key, `.deb`s built by `dpkg-deb`, `InRelease` and
//! `Release.gpg` signed by rPGP, served from disk and from a loopback HTTP server.

mod support;

use std::path::{Path, PathBuf};

use ingot::archive::keyring::Keyring;
use ingot::archive::{
    ArchiveError, ArchiveOptions, VerifiedRelease, fetch_index, load_suite, verify_release,
};
use ingot::net::Transport;
use ingot::recipe::SuiteSource;
use sha2::{Digest, Sha256};
use support::{DebSpec, FixtureArchive, FixtureKey, FixtureOptions, HttpGuard, serve_http};

const SUITE: &str = "testing";

/// A fixture archive, the key that signed it and a keyring file trusting that key.
struct Fixture {
    _dir: tempfile::TempDir,
    archive: FixtureArchive,
    key: FixtureKey,
    keyring: PathBuf,
}

fn debs(dir: &Path) -> Vec<PathBuf> {
    let out = dir.join("debs");
    vec![
        DebSpec::new("base-files", "13.1")
            .essential()
            .conffile("/etc/debian_version", b"13.1\n")
            .build(&out),
        DebSpec::new("hello", "2.10-3")
            .depends("libc6 (>= 2.34)")
            .file("/usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
            .build(&out),
        DebSpec::new("libfoo1", "1:1.0-1")
            .arch("all")
            .provides("libfoo")
            .build(&out),
    ]
}

fn fixture(options: FixtureOptions) -> Fixture {
    fixture_signed_by(options, None)
}

/// An archive signed by `signer` (default: the trusted key) while the keyring trusts a fresh
/// key.
fn fixture_signed_by(options: FixtureOptions, signer: Option<&FixtureKey>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = FixtureKey::generate("ingot test archive");
    let keyring = key.write_keyring(&dir.path().join("trusted.gpg"));
    let debs = debs(dir.path());
    let archive = FixtureArchive::build(
        &dir.path().join("mirror"),
        SUITE,
        &debs,
        signer.unwrap_or(&key),
        &options,
    );
    Fixture {
        _dir: dir,
        archive,
        key,
        keyring,
    }
}

/// The archive as a `file://` mirror and as an `http://` one (with the guard keeping the
/// server alive).
fn mirrors(archive: &FixtureArchive) -> Vec<(String, Option<HttpGuard>)> {
    let (http, guard) = serve_http(&archive.root);
    vec![(archive.file_url(), None), (http, Some(guard))]
}

fn transport() -> Transport {
    Transport::new().with_retries(0, std::time::Duration::from_millis(1))
}

fn opts() -> ArchiveOptions {
    ArchiveOptions {
        allow_expired: false,
        now: support::unix_now(),
    }
}

fn source(mirror: &str) -> SuiteSource {
    SuiteSource {
        suite: SUITE.to_string(),
        mirror: mirror.to_string(),
    }
}

fn verify(
    f: &Fixture,
    mirror: &str,
    opts: ArchiveOptions,
) -> Result<VerifiedRelease, ArchiveError> {
    let keyring = Keyring::load(&f.keyring)?;
    verify_release(&transport(), &keyring, &source(mirror), opts)
}

/// Every mirror of `f` must refuse with an error matching `expected`, whose message names
/// `dists/<suite>/<file>` on that mirror.
fn assert_refused(
    f: &Fixture,
    opts: ArchiveOptions,
    file: &str,
    expected: impl Fn(&ArchiveError) -> bool,
) {
    for (mirror, _guard) in mirrors(&f.archive) {
        let err = verify(f, &mirror, opts).expect_err("must be refused");
        let url = format!("{mirror}/dists/{SUITE}/{file}");
        assert!(expected(&err), "{mirror}: wrong error variant: {err:?}");
        assert!(
            err.to_string().contains(&url),
            "message must name {url}: {err}"
        );
    }
}

/// The verified release lists the fixture's indexes, and the `main` index holds every pool
/// file with its real SHA-256.
fn assert_indexes_verify(f: &Fixture, mirror: &str, release: &VerifiedRelease) {
    assert_eq!(release.signer, f.key.fingerprint());
    assert_eq!(release.date, f.archive.date);
    let index = fetch_index(&transport(), release, "main", "amd64").expect("main index");
    assert!(index.url.starts_with(mirror), "{}", index.url);
    for (_, pool_path, sha) in &f.archive.pool {
        assert!(index.text.contains(&format!("Filename: {pool_path}\n")));
        assert!(index.text.contains(&format!("SHA256: {sha}\n")));
    }
    for name in ["base-files", "hello", "libfoo1"] {
        assert!(index.text.contains(&format!("Package: {name}\n")), "{name}");
    }
}

#[test]
fn good_archive_verifies_over_file_and_http() {
    let f = fixture(FixtureOptions::default());
    let inrelease = std::fs::read(f.archive.dists_file("InRelease")).unwrap();
    for (mirror, _guard) in mirrors(&f.archive) {
        let release = verify(&f, &mirror, opts()).expect("good archive verifies");
        assert_eq!(release.url, format!("{mirror}/dists/{SUITE}/InRelease"));
        assert_eq!(release.sha256, hex::encode(Sha256::digest(&inrelease)));
        assert_eq!(release.suite_field.as_deref(), Some(SUITE));
        assert_eq!(release.valid_until, None);
        assert_eq!(release.files.len(), 3, "{:?}", release.files.keys());
        assert_indexes_verify(&f, &mirror, &release);
        // The best listed compression is the one fetched.
        let index = fetch_index(&transport(), &release, "main", "amd64").unwrap();
        assert!(index.url.ends_with("/main/binary-amd64/Packages.xz"));
    }
}

#[test]
fn good_archive_lists_its_packages_through_load_suite() {
    let f = fixture(FixtureOptions::default());
    for (mirror, _guard) in mirrors(&f.archive) {
        let index = load_suite(
            &transport(),
            &f.keyring,
            &source(&mirror),
            &["main".to_string()],
            "amd64",
            opts(),
        )
        .expect("good archive loads");
        assert_eq!(index.release.signer, f.key.fingerprint());
        let mut names: Vec<_> = index.packages.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["base-files", "hello", "libfoo1"]);
        for p in &index.packages {
            let (_, pool_path, sha) = f
                .archive
                .pool
                .iter()
                .find(|(_, path, _)| path.contains(&format!("/{}_", p.name)))
                .expect("package in pool");
            assert_eq!(&p.filename, pool_path);
            assert_eq!(&p.sha256, sha);
            assert_eq!(p.suite, SUITE);
            assert_eq!(p.mirror, mirror);
        }
        let base = index.packages.iter().find(|p| p.name == "base-files");
        assert!(base.is_some_and(|p| p.essential));
    }
}

#[test]
fn each_index_compression_is_fetched_and_checked() {
    for (ext, suffix) in [(".gz", "Packages.gz"), ("", "Packages")] {
        let f = fixture(FixtureOptions {
            index_compressions: vec![ext.to_string()],
            ..FixtureOptions::default()
        });
        for (mirror, _guard) in mirrors(&f.archive) {
            let release = verify(&f, &mirror, opts()).unwrap();
            assert_indexes_verify(&f, &mirror, &release);
            let index = fetch_index(&transport(), &release, "main", "amd64").unwrap();
            assert!(index.url.ends_with(&format!("/binary-amd64/{suffix}")));
        }
    }
}

#[test]
fn tampered_signed_text_is_refused() {
    let f = fixture(FixtureOptions {
        tamper_signed_text: true,
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "InRelease", |e| {
        matches!(e, ArchiveError::BadSignature { .. })
    });
    // The same tampering of Release under a detached signature.
    let f = fixture(FixtureOptions {
        tamper_signed_text: true,
        inrelease: false,
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "Release", |e| {
        matches!(e, ArchiveError::BadSignature { .. })
    });
}

#[test]
fn signature_by_an_unknown_key_is_refused_naming_the_key() {
    let stranger = FixtureKey::generate("someone else");
    for inrelease in [true, false] {
        let f = fixture_signed_by(
            FixtureOptions {
                inrelease,
                ..FixtureOptions::default()
            },
            Some(&stranger),
        );
        let file = if inrelease { "InRelease" } else { "Release" };
        assert_refused(
            &f,
            opts(),
            file,
            |e| matches!(e, ArchiveError::UnknownKey { issuers, .. } if issuers.contains(&stranger.fingerprint())),
        );
    }
}

#[test]
fn a_signature_by_an_expired_key_is_refused() {
    let now = support::unix_now();
    let dir = tempfile::tempdir().unwrap();
    let created = (now - 30 * 86_400) as u32;
    let expired = FixtureKey::generate_expiring("expired", created, 86_400);
    let keyring = expired.write_keyring(&dir.path().join("expired.gpg"));
    let f = fixture_signed_by(FixtureOptions::default(), Some(&expired));
    let f = Fixture { keyring, ..f };
    assert_refused(&f, opts(), "InRelease", |e| {
        matches!(e, ArchiveError::KeyNotValid { message, .. }
            if message.contains(&expired.fingerprint()) && message.contains("expired"))
    });
    // The same key with a lifetime that has not run out yet is fine.
    let fresh = FixtureKey::generate_expiring("fresh", created, 60 * 86_400);
    let f = fixture_signed_by(FixtureOptions::default(), Some(&fresh));
    let keyring = fresh.write_keyring(&dir.path().join("fresh.gpg"));
    let f = Fixture { keyring, ..f };
    let release = verify(&f, &f.archive.file_url(), opts()).expect("unexpired key verifies");
    assert_eq!(release.signer, fresh.fingerprint());
}

#[test]
fn a_signing_subkey_is_accepted_and_reported_under_its_primary() {
    let signer = FixtureKey::generate_with_signing_subkey("subkey signer");
    assert_ne!(signer.signing_fingerprint(), signer.fingerprint());
    for inrelease in [true, false] {
        let f = fixture_signed_by(
            FixtureOptions {
                inrelease,
                ..FixtureOptions::default()
            },
            Some(&signer),
        );
        let dir = tempfile::tempdir().unwrap();
        let keyring = signer.write_keyring(&dir.path().join("subkey.gpg"));
        let f = Fixture { keyring, ..f };
        for (mirror, _guard) in mirrors(&f.archive) {
            let release = verify(&f, &mirror, opts()).expect("subkey signature verifies");
            assert_eq!(release.signer, signer.fingerprint());
        }
    }
    // Unknown: the message names the subkey that signed.
    let f = fixture_signed_by(FixtureOptions::default(), Some(&signer));
    assert_refused(
        &f,
        opts(),
        "InRelease",
        |e| matches!(e, ArchiveError::UnknownKey { issuers, .. } if issuers.contains(&signer.signing_fingerprint())),
    );
}

#[test]
fn a_keyring_of_several_keys_and_an_armored_keyring_are_accepted() {
    let signer = FixtureKey::generate("signer");
    let other = FixtureKey::generate("other");
    let f = fixture_signed_by(FixtureOptions::default(), Some(&signer));
    let dir = tempfile::tempdir().unwrap();
    let several = FixtureKey::write_keyring_of(&[&other, &signer], &dir.path().join("k.gpg"));
    let armored = dir.path().join("k.asc");
    std::fs::write(&armored, signer.public_armored()).unwrap();
    for keyring in [several, armored] {
        let keyring = Keyring::load(&keyring).expect("keyring loads");
        let release = verify_release(
            &transport(),
            &keyring,
            &source(&f.archive.file_url()),
            opts(),
        )
        .expect("verifies");
        assert_eq!(release.signer, signer.fingerprint());
    }
}

#[test]
fn missing_signatures_are_refused() {
    // InRelease present but not signed.
    let f = fixture(FixtureOptions {
        signed: false,
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "InRelease", |e| {
        matches!(e, ArchiveError::Unsigned { .. })
    });
    // No InRelease, Release without Release.gpg.
    let f = fixture(FixtureOptions {
        inrelease: false,
        release_gpg: false,
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "Release", |e| {
        matches!(e, ArchiveError::Unsigned { .. })
    });
}

#[test]
fn junk_around_the_signed_message_is_refused() {
    let f = fixture(FixtureOptions::default());
    let path = f.archive.dists_file("InRelease");
    let signed = std::fs::read_to_string(&path).unwrap();
    for bad in [
        format!("Suite: {SUITE}\n{signed}"),
        format!("{signed}Suite: other\n"),
    ] {
        std::fs::write(&path, &bad).unwrap();
        assert_refused(&f, opts(), "InRelease", |e| {
            matches!(e, ArchiveError::BadSignature { .. })
        });
    }
}

#[test]
fn expired_valid_until_is_refused_unless_allowed() {
    let now = support::unix_now();
    let f = fixture(FixtureOptions {
        date: Some(now - 10 * 86_400),
        valid_until: Some(now - 3 * 86_400),
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "InRelease", |e| {
        matches!(e, ArchiveError::Expired { .. })
    });
    for (mirror, _guard) in mirrors(&f.archive) {
        let allowed = ArchiveOptions {
            allow_expired: true,
            now,
        };
        let release = verify(&f, &mirror, allowed).expect("allowed when expired is allowed");
        assert_eq!(release.valid_until, Some(now - 3 * 86_400));
        assert_indexes_verify(&f, &mirror, &release);
    }
    // Still valid: accepted without the flag.
    let f = fixture(FixtureOptions {
        valid_until: Some(now + 86_400),
        ..FixtureOptions::default()
    });
    verify(&f, &f.archive.file_url(), opts()).expect("valid until tomorrow");
}

#[test]
fn a_date_in_the_future_is_refused() {
    let now = support::unix_now();
    let f = fixture(FixtureOptions {
        date: Some(now + 86_400),
        ..FixtureOptions::default()
    });
    assert_refused(&f, opts(), "InRelease", |e| {
        matches!(e, ArchiveError::NotYetValid { .. })
    });
}

#[test]
fn wrong_packages_hash_is_refused() {
    let f = fixture(FixtureOptions {
        tamper_indexes: true,
        ..FixtureOptions::default()
    });
    for (mirror, _guard) in mirrors(&f.archive) {
        // The release itself is fine; the index is not.
        let release = verify(&f, &mirror, opts()).expect("release verifies");
        let err = fetch_index(&transport(), &release, "main", "amd64").unwrap_err();
        let url = format!("{mirror}/dists/{SUITE}/main/binary-amd64/Packages.xz");
        assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(&url), "{err}");
        // And through the whole stage.
        let err = load_suite(
            &transport(),
            &f.keyring,
            &source(&mirror),
            &["main".to_string()],
            "amd64",
            opts(),
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(&url), "{err}");
    }
}

#[test]
fn an_index_the_release_does_not_list_is_refused() {
    let f = fixture(FixtureOptions::default());
    for (mirror, _guard) in mirrors(&f.archive) {
        let err = load_suite(
            &transport(),
            &f.keyring,
            &source(&mirror),
            &["main".to_string(), "universe".to_string()],
            "amd64",
            opts(),
        )
        .unwrap_err();
        let url = format!("{mirror}/dists/{SUITE}/universe/binary-amd64/Packages");
        assert!(
            matches!(err, ArchiveError::IndexNotListed { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");
    }
}

#[test]
fn wrong_suite_is_refused_but_either_field_may_match() {
    let f = fixture(FixtureOptions {
        suite_field: Some("stable".to_string()),
        codename: Some("trixie".to_string()),
        ..FixtureOptions::default()
    });
    assert_refused(
        &f,
        opts(),
        "InRelease",
        |e| matches!(e, ArchiveError::WrongSuite { found, .. } if found.contains("stable") && found.contains("trixie")),
    );
    // Codename names the suite, Suite does not (as with `dists/noble` vs `Suite: noble`).
    let f = fixture(FixtureOptions {
        suite_field: Some("stable".to_string()),
        ..FixtureOptions::default()
    });
    verify(&f, &f.archive.file_url(), opts()).expect("Codename matches");
    let f = fixture(FixtureOptions {
        codename: Some("trixie".to_string()),
        ..FixtureOptions::default()
    });
    verify(&f, &f.archive.file_url(), opts()).expect("Suite matches");
}

#[test]
fn without_inrelease_release_and_release_gpg_are_used() {
    let f = fixture(FixtureOptions {
        inrelease: false,
        ..FixtureOptions::default()
    });
    assert!(!f.archive.dists_file("InRelease").exists());
    let release_bytes = std::fs::read(f.archive.dists_file("Release")).unwrap();
    for (mirror, _guard) in mirrors(&f.archive) {
        let release = verify(&f, &mirror, opts()).expect("fallback verifies");
        assert_eq!(release.url, format!("{mirror}/dists/{SUITE}/Release"));
        assert_eq!(release.sha256, hex::encode(Sha256::digest(&release_bytes)));
        assert_indexes_verify(&f, &mirror, &release);
    }
    // A corrupt Release.gpg is a bad signature, not a silent pass.
    std::fs::write(f.archive.dists_file("Release.gpg"), b"not a signature").unwrap();
    assert_refused(&f, opts(), "Release.gpg", |e| {
        matches!(e, ArchiveError::BadSignature { .. })
    });
}

#[test]
fn an_unreadable_keyring_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gpg");
    std::fs::write(&path, b"this is not a keyring").unwrap();
    let err = Keyring::load(&path).unwrap_err();
    assert!(matches!(err, ArchiveError::Keyring { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    let missing = dir.path().join("missing.gpg");
    let err = Keyring::load(&missing).unwrap_err();
    assert!(err.to_string().contains(&missing.display().to_string()));
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn ubuntu_keyring_holds_the_2018_archive_key() {
    let keyring = Keyring::load(&repo_file("keyrings/ubuntu-archive-keyring.gpg")).unwrap();
    assert!(
        keyring
            .primary_fingerprints()
            .contains(&"F6ECB3762474EDA9D21B7022871920D1991BC93C".to_string()),
        "{:?}",
        keyring.primary_fingerprints()
    );
}

#[test]
fn keyrings_readme_and_keyrings_list_the_same_keys() {
    let readme = std::fs::read_to_string(repo_file("keyrings/README.md")).unwrap();
    let listed: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(fp, _)| fp.replace(' ', "")))
        .filter(|fp| fp.len() == 40)
        .collect();
    assert!(listed.len() >= 12, "README table rows: {listed:?}");
    let mut known = Vec::new();
    for name in ["ubuntu-archive-keyring.gpg", "debian-archive-keyring.gpg"] {
        let keyring = Keyring::load(&repo_file(&format!("keyrings/{name}"))).unwrap();
        for fp in keyring.primary_fingerprints() {
            assert!(
                listed.contains(&fp),
                "{name}: key {fp} is not in keyrings/README.md"
            );
        }
        known.extend(keyring.all_fingerprints());
    }
    for fp in &listed {
        assert!(known.contains(fp), "{fp} is listed but in no keyring");
    }
}

/// The fixture is a real signed archive, not one only ingot understands: GnuPG's `gpgv` (what
/// apt and mmdebstrap use) accepts its signatures and rejects the tampered ones.
#[test]
fn gpgv_agrees_with_the_fixture_signatures() {
    let gpgv = |f: &Fixture, args: &[&Path]| {
        std::process::Command::new("gpgv")
            .arg("--keyring")
            .arg(&f.keyring)
            .args(args)
            .output()
            .expect("run gpgv (Debian's gpgv package)")
    };
    let f = fixture(FixtureOptions::default());
    let inrelease = f.archive.dists_file("InRelease");
    let release = f.archive.dists_file("Release");
    let detached = f.archive.dists_file("Release.gpg");
    let out = gpgv(&f, &[&inrelease]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gpgv(&f, &[&detached, &release]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let f = fixture(FixtureOptions {
        tamper_signed_text: true,
        ..FixtureOptions::default()
    });
    assert!(
        !gpgv(&f, &[&f.archive.dists_file("InRelease")])
            .status
            .success()
    );
    let (detached, release) = (
        f.archive.dists_file("Release.gpg"),
        f.archive.dists_file("Release"),
    );
    assert!(!gpgv(&f, &[&detached, &release]).status.success());
}

/// apt itself accepts the fixture archive (so mmdebstrap can use it as a mirror) and refuses
/// the tampered one.
#[test]
fn apt_agrees_with_the_fixture_archive() {
    let apt_update = |f: &Fixture| {
        let state = tempfile::tempdir().unwrap();
        let d = state.path();
        for sub in [
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("var/lib/dpkg/status"), b"").unwrap();
        std::fs::write(
            d.join("etc/apt/sources.list"),
            format!(
                "deb [signed-by={}] {} {SUITE} main\n",
                f.keyring.display(),
                f.archive.file_url()
            ),
        )
        .unwrap();
        let common = [
            format!("Dir={}", d.display()),
            format!(
                "Dir::State::status={}",
                d.join("var/lib/dpkg/status").display()
            ),
            "Dir::Etc::trusted=/dev/null".to_string(),
            "Dir::Etc::trustedparts=/dev/null".to_string(),
            "APT::Architecture=amd64".to_string(),
        ];
        let run = |tool: &str, args: &[&str]| {
            let mut cmd = std::process::Command::new(tool);
            for o in &common {
                cmd.arg("-o").arg(o);
            }
            cmd.args(args).output().expect("run apt (Debian host)")
        };
        let update = run("apt-get", &["update"]);
        let show = run("apt-cache", &["show", "hello"]);
        (update, show)
    };
    let f = fixture(FixtureOptions::default());
    let (update, show) = apt_update(&f);
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(
        update.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&show.stdout).contains("Package: hello"));

    let f = fixture(FixtureOptions {
        tamper_signed_text: true,
        ..FixtureOptions::default()
    });
    let (update, show) = apt_update(&f);
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(
        !update.status.success() || stderr.contains("E:"),
        "apt accepted a tampered InRelease: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&show.stdout).contains("Package: hello"));
}
