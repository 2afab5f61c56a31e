//! Same bytes next year, with no network: `ingot lock`, `ingot mirror` and
//! `ingot build --locked` on a hermetic signed archive of real `.deb`s.
//!
//! Needs root (builds run in namespaces; `unshare -n` makes the network-less namespace) and
//! `faketime` for the clock in the future.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mini_recipe::{
    INGOT, MiniRecipe, arg, assert_ok, ingot, mini_recipe, require_build_privileges, sha256,
};
use support::{FixtureOptions, serve_http, unix_now};

/// An archive whose `InRelease` expires in a week: only the lock can build from it next year.
fn expiring_fixture() -> MiniRecipe {
    mini_recipe(
        &[],
        &[],
        FixtureOptions {
            valid_until: Some(unix_now() + 7 * 86_400),
            ..FixtureOptions::default()
        },
    )
}

fn lock(f: &MiniRecipe, mirror: &str) {
    let o = ingot(&["lock", arg(&f.recipe), "--mirror", mirror]);
    assert_ok(&o);
    assert_eq!(
        mini_recipe::stdout_path(&o),
        f.recipe.join("ingot.lock"),
        "ingot lock prints the lock's path"
    );
}

fn locked_build(f: &MiniRecipe, mirror: Option<&str>, cache: &Path, out: &Path) -> Output {
    let mut args = vec![
        "build",
        arg(&f.recipe),
        "--locked",
        "--cache-dir",
        arg(cache),
        "--out",
        arg(out),
    ];
    if let Some(m) = mirror {
        args.extend(["--mirror", m]);
    }
    ingot(&args)
}

fn mirror_dir(f: &MiniRecipe, cache: &Path) -> PathBuf {
    let dir = f.dir.join("offline-mirror");
    let o = ingot(&[
        "mirror",
        arg(&f.recipe),
        "--to",
        arg(&dir),
        "--cache-dir",
        arg(cache),
    ]);
    assert_ok(&o);
    dir
}

/// The one error line of a refused run (stderr has nothing else with `--quiet`).
fn refusal(o: &Output) -> String {
    assert!(!o.status.success(), "must be refused: {o:?}");
    assert_eq!(o.status.code(), Some(1), "a refused build exits 1: {o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn offline_locked_build_from_an_ingot_mirror_matches_the_online_locked_build() {
    support::privilege::require_root("unshare -n, for a build with no network at all");
    let f = expiring_fixture();
    let (http, _server) = serve_http(&f.mirror);
    lock(&f, &http);

    let online = locked_build(&f, None, &f.dir.join("cache-online"), &f.dir.join("out-a"));
    assert_ok(&online);
    let online = mini_recipe::stdout_path(&online);

    let mirror = mirror_dir(&f, &f.dir.join("cache-mirror"));
    // The mirror holds only the signed InRelease, the index as served, and the locked .debs.
    let inrelease = fs::read(mirror.join("dists/mini/InRelease")).unwrap();
    assert_eq!(
        inrelease,
        fs::read(f.archive.dists_file("InRelease")).unwrap()
    );
    let index = format!("main/binary-{}/Packages.xz", minidistro::host_arch());
    assert_eq!(
        fs::read(mirror.join("dists/mini").join(&index)).unwrap(),
        fs::read(f.archive.dists_file(&index)).unwrap(),
        "the index is copied whole and unmodified"
    );
    let debs = walk(&mirror.join("pool"));
    let lock_text = fs::read_to_string(f.recipe.join("ingot.lock")).unwrap();
    assert_eq!(debs.len(), lock_text.matches("[[package]]").count());
    assert!(debs.len() < f.archive.pool.len(), "only the needed .debs");

    // No network at all, an empty cache: the mirror is enough, and the bytes are the same.
    let empty_cache = f.dir.join("cache-offline");
    let out = f.dir.join("out-b");
    let offline = Command::new("unshare")
        .args(["-n", INGOT, "build", arg(&f.recipe), "--locked", "--quiet"])
        .args(["--mirror", &format!("file://{}", mirror.display())])
        .args(["--cache-dir", arg(&empty_cache), "--out", arg(&out)])
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert_ok(&offline);
    let offline = mini_recipe::stdout_path(&offline);
    assert_eq!(sha256(&offline), sha256(&online));

    // Any plain HTTP server in front of the mirror directory serves it just as well.
    let (mirror_http, _mirror_server) = serve_http(&mirror);
    let served = locked_build(
        &f,
        Some(&mirror_http),
        &f.dir.join("cache-served"),
        &f.dir.join("out-c"),
    );
    assert_ok(&served);
    assert_eq!(sha256(&mini_recipe::stdout_path(&served)), sha256(&online));

    // The HTTP archive is unreachable from that namespace: the mirror really was the source.
    let cut_off = Command::new("unshare")
        .args(["-n", INGOT, "build", arg(&f.recipe), "--locked", "--quiet"])
        .args([
            "--mirror",
            &http,
            "--cache-dir",
            arg(&f.dir.join("cache-x")),
        ])
        .args(["--out", arg(&f.dir.join("out-x"))])
        .output()
        .unwrap();
    assert!(!cut_off.status.success(), "{cut_off:?}");
}

#[test]
fn the_same_lock_gives_the_same_bytes_whatever_the_day_tz_umask_and_directory() {
    require_build_privileges();
    let faketime = Command::new("sh")
        .args(["-c", "command -v faketime"])
        .output()
        .unwrap();
    assert!(
        faketime.status.success(),
        "faketime is needed for the clock in the future (apt-get install -y faketime)"
    );
    let f = expiring_fixture();
    lock(&f, &f.archive.file_url());

    let a = locked_build(&f, None, &f.dir.join("cache-a"), &f.dir.join("out-a"));
    assert_ok(&a);
    let a = mini_recipe::stdout_path(&a);

    // 400 days on, the InRelease has long expired: an unlocked build is refused ...
    let cwd = f.dir.join("elsewhere");
    fs::create_dir_all(&cwd).unwrap();
    let late = |extra: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 077 && exec faketime -f '+400d' '{INGOT}' build '{}' --quiet --cache-dir '{}' --out out {extra}",
                f.recipe.display(),
                f.dir.join("cache-b").display()
            ))
            .current_dir(&cwd)
            .env("TZ", "Pacific/Kiritimati")
            .env_remove("SOURCE_DATE_EPOCH")
            .env("INGOT_MIRROR", f.archive.file_url())
            .output()
            .unwrap()
    };
    let unlocked = late("");
    assert!(
        String::from_utf8_lossy(&unlocked.stderr).contains("expired"),
        "the clock really is in the future: {unlocked:?}"
    );
    // ... and the locked one, with another TZ, umask and directory, gives the same bytes.
    let b = late("--locked");
    assert_ok(&b);
    let b = cwd.join(mini_recipe::stdout_path(&b));
    assert_eq!(sha256(&a), sha256(&b));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{}.manifest.json", b.display())).unwrap())
            .unwrap();
    assert_eq!(manifest["epoch_source"], "lock");
    assert_eq!(manifest["build_epoch"], f.archive.date);
}

#[test]
fn a_tampered_mirror_or_a_changed_recipe_is_refused_naming_the_file() {
    let f = expiring_fixture();
    let (http, _server) = serve_http(&f.mirror);
    lock(&f, &http);
    let pristine = mirror_dir(&f, &f.dir.join("cache"));
    let copy = |name: &str| {
        let dir = f.dir.join(name);
        let o = Command::new("cp")
            .args(["-a", arg(&pristine), arg(&dir)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        dir
    };
    let build_from = |dir: &Path, cache: &str| {
        locked_build(
            &f,
            Some(&format!("file://{}", dir.display())),
            &f.dir.join(cache),
            &f.dir.join("out"),
        )
    };

    // A .deb with one byte changed (same size).
    let bad_deb = copy("bad-deb");
    let deb = walk(&bad_deb.join("pool"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("mini-hello"))
        .unwrap();
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&deb, bytes).unwrap();
    let err = refusal(&build_from(&bad_deb, "cache-1"));
    assert!(
        err.contains(&*deb.to_string_lossy()) && err.contains("SHA-256"),
        "{err}"
    );

    // A Packages index with a line appended.
    let bad_index = copy("bad-index");
    let index = bad_index.join("dists/mini").join(format!(
        "main/binary-{}/Packages.xz",
        minidistro::host_arch()
    ));
    let mut bytes = fs::read(&index).unwrap();
    bytes.push(b'\n');
    fs::write(&index, bytes).unwrap();
    let err = refusal(&build_from(&bad_index, "cache-2"));
    assert!(err.contains(&*index.to_string_lossy()), "{err}");

    // A locked .deb gone from the mirror: the hint names snapshot mirrors.
    let gone = copy("gone");
    fs::remove_file(gone.join(deb.strip_prefix(&bad_deb).unwrap())).unwrap();
    let err = refusal(&build_from(&gone, "cache-3"));
    assert!(
        err.contains("mini-hello") && err.contains("snapshot"),
        "{err}"
    );

    // The pristine mirror still verifies: `lock --check` agrees ...
    let check = ingot(&["lock", "--check", arg(&f.recipe)]);
    assert_ok(&check);
    // ... until a script changes: then the check and the build name it.
    let script = f.recipe.join("provision.sh");
    let mut text = fs::read_to_string(&script).unwrap();
    text.push_str("echo changed\n");
    fs::write(&script, text).unwrap();
    let check = ingot(&["lock", "--check", arg(&f.recipe)]);
    let err = refusal(&check);
    assert!(err.contains(&*script.to_string_lossy()), "{err}");
    let err = refusal(&build_from(&pristine, "cache-4"));
    assert!(
        err.contains(&*script.to_string_lossy()) && err.contains("ingot.lock"),
        "{err}"
    );

    // An edited lock (another version claimed for a package) does not verify either.
    let lock_path = f.recipe.join("ingot.lock");
    fs::write(&script, mini_recipe::PROVISION).unwrap();
    let text = fs::read_to_string(&lock_path).unwrap();
    fs::write(
        &lock_path,
        text.replacen("version = \"1.0-1\"", "version = \"9.9\"", 1),
    )
    .unwrap();
    let err = refusal(&build_from(&pristine, "cache-5"));
    assert!(err.contains(&*lock_path.to_string_lossy()), "{err}");
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
