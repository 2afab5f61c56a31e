//! A hostile archive, mirror or network against `ingot resolve` / `ingot fetch`: swapped
//! pockets, replayed releases, broken signatures, lying indexes, packages that are not what
//! the index says, a planted cache, and servers that drop, stall or fail. Every test runs the
//! real binary (or the library transport) against a generated, signed archive on `file://` or
//! a loopback server, and fails if ingot accepts the bad input or lets a bad file into the
//! cache. Every refusal must be one error line naming the URL or file.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::{
    DebSpec, Fault, FixtureArchive, FixtureKey, FixtureOptions, faulty_server, serve_http, unix_now,
};

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

/// A signed fixture archive for `suite` plus a recipe that trusts `trusted`.
struct World {
    dir: tempfile::TempDir,
    key: FixtureKey,
    archive: FixtureArchive,
    recipe: PathBuf,
    debs: Vec<PathBuf>,
}

fn debs(dir: &Path) -> Vec<PathBuf> {
    vec![
        DebSpec::new("base", "1.0")
            .essential()
            .depends("libthing")
            .file("/usr/bin/base", b"#!/bin/sh\n", 0o755)
            .build(dir),
        DebSpec::new("libthing", "2.1")
            .file("/usr/lib/libthing", &[7u8; 4096], 0o644)
            .build(dir),
    ]
}

fn world(suite: &str, options: FixtureOptions) -> World {
    world_trusting(suite, options, None)
}

/// Like [`world`], signed by the fixture key, but the recipe trusts `trusted` instead.
fn world_trusting(suite: &str, options: FixtureOptions, trusted: Option<&FixtureKey>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let key = FixtureKey::generate("hostile archive key");
    let debs = debs(&dir.path().join("debs"));
    let archive = FixtureArchive::build(&dir.path().join("mirror"), suite, &debs, &key, &options);
    let recipe = dir.path().join("recipe");
    fs::create_dir_all(&recipe).unwrap();
    trusted
        .unwrap_or(&key)
        .write_keyring(&recipe.join("trusted.gpg"));
    fs::write(
        recipe.join("recipe.toml"),
        format!(
            "[image]\nname = \"hostile\"\n[source]\nmirror = \"http://unused.invalid/ubuntu\"\n\
             suites = [\"{suite}\"]\narchitecture = \"amd64\"\nkeyring = \"trusted.gpg\"\n\
             [packages]\nvariant = \"essential\"\n"
        ),
    )
    .unwrap();
    World {
        dir,
        key,
        archive,
        recipe,
        debs,
    }
}

impl World {
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `ingot <cmd> <recipe> --mirror <mirror> --cache-dir <cache> -q` plus `extra`.
    fn run(&self, cmd: &str, mirror: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(INGOT);
        c.arg(cmd)
            .arg(&self.recipe)
            .args(["--mirror", mirror, "--cache-dir"])
            .arg(self.cache())
            .arg("-q")
            .args(extra)
            .env_remove("INGOT_ALLOW_OLDER");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// The pool file and its SHA-256 of the package whose pool path contains `needle`.
    fn pool(&self, needle: &str) -> (PathBuf, String) {
        let (_, path, sha) = self
            .archive
            .pool
            .iter()
            .find(|(_, p, _)| p.contains(needle))
            .unwrap_or_else(|| panic!("no pool file like {needle}"));
        (self.archive.root.join(path), sha.clone())
    }

    /// Rewrite the plain `main` index with `edit`, then re-list and re-sign it, as a
    /// compromised archive signer (or one publishing a confused index) would.
    fn resign_index(&self, edit: impl Fn(String) -> String) {
        let dists = self.archive.root.join("dists").join(&self.archive.suite);
        let index = dists.join("main/binary-amd64/Packages");
        let old = fs::read(&index).unwrap();
        let new = edit(String::from_utf8(old.clone()).unwrap());
        fs::write(&index, &new).unwrap();
        let line = |b: &[u8]| format!(" {} {:>16} ", hex::encode(Sha256::digest(b)), b.len());
        let release = self
            .archive
            .release_text
            .replace(&line(&old), &line(new.as_bytes()));
        assert_ne!(release, self.archive.release_text, "the index is listed");
        fs::write(dists.join("InRelease"), self.key.sign_cleartext(&release)).unwrap();
    }
}

/// Exit code 1 and exactly one `error:` line, containing every needle.
fn assert_refused(o: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "must be refused: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "error must name {needle:?}: {}",
            errors[0]
        );
    }
}

fn plain_index() -> FixtureOptions {
    FixtureOptions {
        index_compressions: vec![String::new()],
        ..FixtureOptions::default()
    }
}

// ---- pockets and replays -------------------------------------------------------------------

#[test]
fn the_proposed_pocket_served_as_the_release_pocket_is_refused() {
    // What Ubuntu's noble-proposed InRelease says: Suite noble-proposed, Codename noble.
    let w = world(
        "noble",
        FixtureOptions {
            suite_field: Some("noble-proposed".into()),
            codename: Some("noble".into()),
            ..FixtureOptions::default()
        },
    );
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/noble/InRelease", "noble-proposed"]);
}

#[test]
fn the_updates_pocket_served_as_the_security_pocket_is_refused() {
    let w = world(
        "noble-security",
        FixtureOptions {
            suite_field: Some("noble-updates".into()),
            codename: Some("noble".into()),
            ..FixtureOptions::default()
        },
    );
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/noble-security/InRelease", "noble-updates"]);
}

/// The same mirror serves `noble-security` again, validly signed but a month older (a replay).
fn republish_a_month_older(w: &World, now: i64) {
    FixtureArchive::build(
        &w.archive.root,
        "noble-security",
        &w.debs,
        &w.key,
        &FixtureOptions {
            date: Some(now - 86400 * 30),
            ..FixtureOptions::default()
        },
    );
}

/// A world whose `noble-security` was signed an hour ago.
fn an_hour_old_security_pocket(now: i64) -> World {
    world(
        "noble-security",
        FixtureOptions {
            date: Some(now - 3600),
            ..FixtureOptions::default()
        },
    )
}

#[test]
fn an_older_signed_release_is_refused_unless_allow_older() {
    let now = unix_now();
    let w = an_hour_old_security_pocket(now);
    let mirror = w.archive.file_url();
    let o = w.run("resolve", &mirror, &[], &[]);
    assert!(o.status.success(), "{o:?}");
    let state = w.cache().join("release-dates.json");
    let recorded = fs::read_to_string(&state).unwrap();
    assert!(recorded.contains(&(now - 3600).to_string()), "{recorded}");

    // The same mirror now serves an older, validly signed release (a replay).
    republish_a_month_older(&w, now);
    let o = w.run("resolve", &mirror, &[], &[]);
    assert_refused(&o, &["dists/noble-security/InRelease", "--allow-older"]);
    assert_eq!(fs::read_to_string(&state).unwrap(), recorded, "state kept");
    // Deliberately accepted, by flag or environment; the newest Date stays recorded.
    let o = w.run("resolve", &mirror, &["--allow-older"], &[]);
    assert!(o.status.success(), "{o:?}");
    let o = w.run("resolve", &mirror, &[], &[("INGOT_ALLOW_OLDER", "1")]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(fs::read_to_string(&state).unwrap(), recorded, "state kept");
}

/// A replay is refused by every verb that reads today's archive — `resolve`, `fetch`, `build`,
/// `lock` and `outdated` (the nightly rebuild trigger: "could not check", exit 3, never
/// "nothing to rebuild") — each in one line naming the InRelease; `--allow-older` lets each
/// through. (A locked build and `mirror` read the lock's own InReleases, not today's.)
#[test]
fn a_replayed_release_is_refused_by_every_verb_that_reads_the_archive() {
    let now = unix_now();
    let w = an_hour_old_security_pocket(now);
    let mirror = w.archive.file_url();
    // Today's release is seen, and locked (the lock is `outdated`'s baseline).
    let o = w.run("lock", &mirror, &[], &[]);
    assert!(o.status.success(), "{o:?}");
    let lock = fs::read_to_string(w.recipe.join("ingot.lock")).unwrap();
    // The same mirror now serves an older, validly signed release whose libthing is newer:
    // believed, it would say "rebuild due"; a replay of an older one would say "up to date".
    republish_a_month_older(&w, now);
    let out = w.dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    for (verb, extra, code) in [
        ("resolve", vec![], 1),
        ("fetch", vec![], 1),
        ("build", vec!["--out", out_arg], 1),
        ("lock", vec![], 1),
        ("outdated", vec!["--out", out_arg], 3),
    ] {
        let o = w.run(verb, &mirror, &extra, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{verb}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{verb}: one error line: {stderr}");
        for needle in [
            "dists/noble-security/InRelease",
            "replayed",
            "--allow-older",
        ] {
            assert!(
                errors[0].contains(needle),
                "{verb}: {needle:?} in {}",
                errors[0]
            );
        }
        if verb == "lock" {
            let now = fs::read_to_string(w.recipe.join("ingot.lock")).unwrap();
            assert_eq!(now, lock, "a refused lock rewrote ingot.lock");
        }
        let o = w.run(verb, &mirror, &extra, &[("INGOT_ALLOW_OLDER", "1")]);
        if verb != "build" {
            assert!(o.status.success(), "{verb} --allow-older: {o:?}");
        }
    }
    assert!(
        !out.exists()
            || fs::read_dir(&out)
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().contains(".tar") })
    );
}

// ---- signatures ----------------------------------------------------------------------------

#[test]
fn a_signature_by_an_unknown_key_is_refused() {
    let stranger = FixtureKey::generate("stranger");
    let w = world_trusting("stable", FixtureOptions::default(), Some(&stranger));
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/stable/InRelease", "unknown key"]);
}

/// An archive signed by `key`, which the recipe trusts, must be refused with `why`.
fn assert_signer_refused(key: &FixtureKey, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let debs = debs(&dir.path().join("debs"));
    let archive = FixtureArchive::build(
        &dir.path().join("mirror"),
        "stable",
        &debs,
        key,
        &FixtureOptions::default(),
    );
    let w = world("stable", FixtureOptions::default());
    key.write_keyring(&w.recipe.join("trusted.gpg"));
    let o = w.run("resolve", &archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/stable/InRelease", why]);
}

#[test]
fn a_signature_by_an_expired_key_is_refused() {
    let created = (unix_now() - 86400 * 400) as u32;
    let expired = FixtureKey::generate_expiring("expired", created, 86400);
    assert_signer_refused(&expired, "expired");
}

#[test]
fn a_signature_by_a_revoked_key_is_refused() {
    assert_signer_refused(&FixtureKey::generate_revoked("revoked"), "revoked");
}

#[test]
fn a_valid_signature_over_altered_text_is_refused() {
    let w = world(
        "stable",
        FixtureOptions {
            tamper_signed_text: true,
            ..FixtureOptions::default()
        },
    );
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/stable/InRelease"]);
}

#[test]
fn a_stripped_signature_is_refused() {
    let w = world(
        "stable",
        FixtureOptions {
            signed: false,
            ..FixtureOptions::default()
        },
    );
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/stable/InRelease", "signature"]);
}

#[test]
fn a_release_gpg_that_does_not_match_release_is_refused() {
    let w = world(
        "stable",
        FixtureOptions {
            inrelease: false,
            ..FixtureOptions::default()
        },
    );
    // A genuine signature by the trusted key, over other text.
    let dists = w.archive.root.join("dists/stable");
    fs::write(
        dists.join("Release.gpg"),
        w.key.sign_detached(b"Suite: stable\nDate: yesterday\n"),
    )
    .unwrap();
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["dists/stable/Release"]);
}

// ---- indexes and packages ------------------------------------------------------------------

#[test]
fn an_index_whose_size_or_hash_differs_from_the_release_is_refused() {
    let w = world(
        "stable",
        FixtureOptions {
            tamper_indexes: true,
            ..FixtureOptions::default()
        },
    );
    let o = w.run("resolve", &w.archive.file_url(), &[], &[]);
    assert_refused(
        &o,
        &["dists/stable/main/binary-amd64/Packages", "SHA-256/size"],
    );
}

#[test]
fn a_truncated_deb_is_refused_and_never_cached() {
    let w = world("stable", FixtureOptions::default());
    let (deb, sha) = w.pool("libthing_2.1");
    let bytes = fs::read(&deb).unwrap();
    fs::write(&deb, &bytes[..bytes.len() / 2]).unwrap();
    let o = w.run("fetch", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["libthing_2.1", "libthing"]);
    assert!(!w.cache().join("sha256").join(sha).exists());
    assert_eq!(fs::read_dir(w.cache().join("partial")).unwrap().count(), 0);
}

#[test]
fn a_deb_whose_control_names_another_package_or_version_is_refused() {
    let w = world("stable", plain_index());
    // The index lists libthing 2.1 with the hash of a real libthing 6.6 .deb.
    let (deb, sha) = w.pool("libthing_2.1");
    let other = DebSpec::new("libthing", "6.6").build(&w.dir.path().join("other"));
    let other_bytes = fs::read(&other).unwrap();
    let other_sha = hex::encode(Sha256::digest(&other_bytes));
    let old_size = fs::metadata(&deb).unwrap().len();
    fs::write(&deb, &other_bytes).unwrap();
    w.resign_index(|text| {
        text.replace(&sha, &other_sha).replace(
            &format!("Size: {old_size}\n"),
            &format!("Size: {}\n", other_bytes.len()),
        )
    });
    let o = w.run("fetch", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &["libthing_2.1", "libthing 6.6", "libthing 2.1"]);
    assert!(!w.cache().join("sha256").join(other_sha).exists());
}

#[test]
fn a_corrupted_or_planted_cache_entry_is_fetched_again_never_used() {
    let w = world("stable", FixtureOptions::default());
    let mirror = w.archive.file_url();
    assert!(w.run("fetch", &mirror, &[], &[]).status.success());
    let (pool, sha) = w.pool("libthing_2.1");
    let entry = w.cache().join("sha256").join(&sha);
    fs::write(&entry, b"corrupted").unwrap();
    let (_, base_sha) = w.pool("base_1.0");
    let base_entry = w.cache().join("sha256").join(&base_sha);
    // A symlink where a cache file should be (to a copy with the right bytes, even).
    let outside = w.dir.path().join("outside.deb");
    fs::copy(&base_entry, &outside).unwrap();
    fs::remove_file(&base_entry).unwrap();
    std::os::unix::fs::symlink(&outside, &base_entry).unwrap();

    let o = w.run("fetch", &mirror, &["--json"], &[]);
    assert!(o.status.success(), "{o:?}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["downloaded"], 2, "{summary}");
    assert_eq!(fs::read(&entry).unwrap(), fs::read(&pool).unwrap());
    assert!(!fs::symlink_metadata(&base_entry).unwrap().is_symlink());
}

#[test]
fn a_cache_writable_by_others_is_refused() {
    let w = world("stable", FixtureOptions::default());
    fs::create_dir_all(w.cache()).unwrap();
    fs::set_permissions(w.cache(), fs::Permissions::from_mode(0o777)).unwrap();
    let o = w.run("fetch", &w.archive.file_url(), &[], &[]);
    assert_refused(
        &o,
        &[w.cache().to_str().unwrap(), "0777", "group or others"],
    );
    assert!(
        !w.cache().join("sha256").exists(),
        "nothing written into it"
    );
}

#[test]
fn a_cache_owned_by_another_user_is_refused() {
    let w = world("stable", FixtureOptions::default());
    fs::create_dir_all(w.cache()).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(
        me, 0,
        "this test chowns a directory to another user: run it as root"
    );
    std::os::unix::fs::chown(w.cache(), Some(54321), Some(54321)).unwrap();
    let o = w.run("fetch", &w.archive.file_url(), &[], &[]);
    assert_refused(&o, &[w.cache().to_str().unwrap(), "uid 54321"]);
}

// ---- the network ---------------------------------------------------------------------------

/// `ingot fetch` through a server with `fault` on the libthing .deb: refused naming the URL,
/// nothing in the cache for it, no partial left.
/// Fetch through a server that applies `fault` to one `.deb`: refused naming it and
/// `needles`, after exactly `requests` requests for it (the first and the retries), leaving
/// nothing in the cache.
fn fetch_through(fault: Fault, needles: &[&str], requests: usize) {
    let w = world("stable", FixtureOptions::default());
    let server = faulty_server(&w.archive.root, "libthing_2.1", fault);
    let (_, sha) = w.pool("libthing_2.1");
    let o = w.run("fetch", &server.url, &[], &[]);
    let mut all = vec!["libthing_2.1"];
    all.extend_from_slice(needles);
    assert_refused(&o, &all);
    assert_eq!(
        server.faults(),
        requests,
        "requests for the faulty .deb (1 + the transport's 4 retries for a transient fault)"
    );
    assert!(!w.cache().join("sha256").join(sha).exists());
    assert_eq!(fs::read_dir(w.cache().join("partial")).unwrap().count(), 0);
}

#[test]
fn a_connection_dropped_mid_download_is_refused_and_leaves_nothing() {
    fetch_through(Fault::Drop, &[], 5);
}

#[test]
fn a_404_for_a_deb_is_refused_without_retrying() {
    fetch_through(Fault::Status(404), &["not found"], 1);
}

#[test]
fn a_500_for_a_deb_is_refused_after_retries() {
    fetch_through(Fault::Status(500), &["500"], 5);
}

#[test]
fn a_stalling_server_is_an_error_naming_the_url() {
    let w = world("stable", FixtureOptions::default());
    let server = faulty_server(&w.archive.root, "InRelease", Fault::Stall);
    let transport = ingot::net::Transport::new()
        .with_retries(0, Duration::from_millis(1))
        .with_timeout(Duration::from_secs(2));
    let keyring = ingot::archive::keyring::Keyring::load(&w.recipe.join("trusted.gpg")).unwrap();
    let source = ingot::recipe::SuiteSource {
        suite: "stable".into(),
        mirror: server.url.clone(),
    };
    let opts = ingot::archive::ArchiveOptions {
        allow_expired: false,
        now: unix_now(),
    };
    let err = ingot::archive::verify_release(&transport, &keyring, &source, opts).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}/dists/stable/InRelease", server.url)),
        "{err}"
    );
    // And the same archive over a well-behaved server verifies (the stall was the cause).
    let (http, _guard) = serve_http(&w.archive.root);
    let good = ingot::recipe::SuiteSource {
        suite: "stable".into(),
        mirror: http,
    };
    ingot::archive::verify_release(&transport, &keyring, &good, opts).unwrap();
}
