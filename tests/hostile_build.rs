//! Faults around a whole build: hostile recipes, an output directory that cannot be written or
//! fills up, signals at each stage, and concurrent `--next` builds. Each test runs the real
//! `ingot` binary on a hermetic signed archive of real `.deb`s (the mini distribution of
//! `support/minidistro.rs`) and fails if a build was accepted that should not be, if the
//! reported error is not the real one, or if anything is left behind: a mount, a staging
//! tree, a file under a final name, or a cache entry that no longer matches its hash.
//!
//! Builds need root (CI) or a subordinate id range; where neither is there, the tests that
//! build fail with that reason.

#[path = "support/mini_recipe.rs"]
mod mini_recipe;
#[path = "support/minidistro.rs"]
mod minidistro;
mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::FixtureOptions;

const INGOT: &str = env!("CARGO_BIN_EXE_ingot");

/// The contract's minimum (the mini recipe's script), then `extra` (a slow step, for the
/// signal tests).
fn provision(extra: &str) -> String {
    format!("{}{extra}\n", mini_recipe::PROVISION)
}

struct Fixture {
    _recipe: mini_recipe::MiniRecipe,
    dir: PathBuf,
    recipe: PathBuf,
    mirror: String,
    cache: PathBuf,
}

fn fixture(provision_script: &str) -> Fixture {
    fixture_with(provision_script, &[])
}

/// The mini distribution's recipe (`support/mini_recipe.rs`) with `provision_script`, plus a
/// package `mini-slow` with these maintainer scripts (name, body) when any are given.
fn fixture_with(provision_script: &str, slow_scripts: &[(&str, &str)]) -> Fixture {
    if slow_scripts.is_empty() {
        return fixture_with_packages(provision_script, Vec::new());
    }
    let mut slow = support::DebSpec::new("mini-slow", "1.0").arch(&minidistro::host_arch());
    for (name, body) in slow_scripts {
        slow = slow.script(name, body);
    }
    fixture_with_packages(provision_script, vec![slow])
}

/// The mini recipe with `provision_script` and these packages added and included.
fn fixture_with_packages(provision_script: &str, extra: Vec<support::DebSpec>) -> Fixture {
    let scratch = tempfile::tempdir().unwrap();
    let names: Vec<String> = extra.iter().map(|d| d.name.clone()).collect();
    let include: Vec<&str> = names.iter().map(String::as_str).collect();
    let debs: Vec<PathBuf> = extra.iter().map(|d| d.build(scratch.path())).collect();
    let m = mini_recipe::mini_recipe(&debs, &include, FixtureOptions::default());
    fs::write(m.recipe.join("provision.sh"), provision_script).unwrap();
    Fixture {
        dir: m.dir.clone(),
        recipe: m.recipe.clone(),
        mirror: format!("file://{}", m.mirror.display()),
        cache: m.dir.join("cache"),
        _recipe: m,
    }
}

/// `len` bytes that no compressor shrinks (a SHA-256 chain), so exporting them takes time.
fn incompressible(len: usize) -> Vec<u8> {
    use sha2::Digest;
    let mut out = Vec::with_capacity(len + 32);
    let mut block = sha2::Sha256::digest(b"ingot hostile export");
    while out.len() < len {
        out.extend_from_slice(&block);
        block = sha2::Sha256::digest(block);
    }
    out.truncate(len);
    out
}

fn require_build_privileges() {
    support::privilege::require_build_privileges(INGOT);
}

fn build_command(f: &Fixture, out: &Path) -> Command {
    let mut c = Command::new(INGOT);
    c.arg("build")
        .arg(&f.recipe)
        .args(["--mirror", &f.mirror, "--cache-dir"])
        .arg(&f.cache)
        .arg("--out")
        .arg(out)
        .arg("--next")
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Where a failed build keeps its log (the one thing it may leave in the output directory).
const FAILED_LOGS: &str = "failed-builds";

/// `dir` holds nothing but build logs.
fn only_logs(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|d| {
        d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .all(|n| n.ends_with(".log"))
    })
}

/// Nothing left behind by a failed build: no staging tree, no mount under the fixture, no
/// file under a final name or temp name in `out`, and every cache entry matches its name.
fn assert_nothing_left(f: &Fixture, out: &Path) {
    let staging = f.cache.join("staging");
    let left: Vec<_> = fs::read_dir(&staging)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = f.dir.to_string_lossy();
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(dir.as_ref()) && !l.contains(&*out.to_string_lossy()))
        .collect();
    assert!(ours.is_empty(), "mounts left behind: {ours:?}");
    let published: Vec<_> = fs::read_dir(out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(".mini-rootfs.lock") && n != "lost+found")
                .filter(|n| n != FAILED_LOGS || !only_logs(&out.join(FAILED_LOGS)))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        published.is_empty(),
        "files left in the output: {published:?}"
    );
    if let Ok(entries) = fs::read_dir(f.cache.join("sha256")) {
        for e in entries {
            let e = e.unwrap();
            let (sha, _) = ingot::fetch::hash_file(&e.path()).unwrap();
            assert_eq!(
                sha,
                e.file_name().to_string_lossy(),
                "cache entry corrupted"
            );
        }
    }
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- recipes -------------------------------------------------------------------------------

/// `ingot resolve` on a recipe edited by `edit`: exit 2, one line naming recipe.toml and
/// every needle.
fn assert_recipe_refused(edit: impl Fn(&Path, String) -> String, needles: &[&str]) {
    let f = fixture(&provision(""));
    let toml = f.recipe.join("recipe.toml");
    let text = edit(&f.recipe, fs::read_to_string(&toml).unwrap());
    fs::write(&toml, text).unwrap();
    let o = Command::new(INGOT)
        .arg("resolve")
        .arg(&f.recipe)
        .args(["--cache-dir"])
        .arg(&f.cache)
        .arg("-q")
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("recipe.toml"), "{err}");
    for n in needles {
        assert!(err.contains(n), "must name {n:?}: {err}");
    }
}

#[test]
fn a_recipe_with_an_unknown_key_is_refused() {
    assert_recipe_refused(
        |_, t| t.replace("[packages]\n", "[packages]\npackges = [\"x\"]\n"),
        &["packges"],
    );
}

#[test]
fn a_recipe_with_a_wrong_type_is_refused() {
    assert_recipe_refused(
        |_, t| t.replace("suites = [\"mini\"]", "suites = \"mini\""),
        &["suites"],
    );
}

#[test]
fn a_recipe_naming_a_missing_script_is_refused() {
    assert_recipe_refused(
        |_, t| t.replace("\"provision.sh\"", "\"provison.sh\""),
        &["provison.sh"],
    );
}

#[test]
fn a_script_path_escaping_the_recipe_folder_is_refused() {
    assert_recipe_refused(
        |_, t| t.replace("\"provision.sh\"", "\"../mirror/dists/mini/Release\""),
        &["provision.scripts", "inside the recipe folder"],
    );
    assert_recipe_refused(
        |_, t| t.replace("\"provision.sh\"", "\"/etc/passwd\""),
        &["/etc/passwd", "inside the recipe folder"],
    );
    assert_recipe_refused(
        |dir, t| {
            std::os::unix::fs::symlink("/etc/passwd", dir.join("innocent.sh")).unwrap();
            t.replace("\"provision.sh\"", "\"innocent.sh\"")
        },
        &["innocent.sh", "outside the recipe folder"],
    );
}

// ---- output --------------------------------------------------------------------------------

/// A tmpfs of `size` mounted at `path` (unmounted on drop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a tmpfs as the output (needs root): {}",
            stderr_of(&o)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_unwritable_output_directory_is_refused_before_anything_is_fetched() {
    require_build_privileges();
    let f = fixture(&provision(""));
    let out = f.dir.join("ro-out");
    let _ro = Tmpfs::mount(&out, "ro,size=1m");
    let o = build_command(&f, &out).output().unwrap();
    let err = stderr_of(&o);
    // Bad input (the README's exit-code table), not a failed build.
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(&*out.to_string_lossy()) && last.contains("not writable"),
        "{err}"
    );
    assert!(
        !f.cache.join("sha256").exists(),
        "refused only after fetching: the check must come first"
    );
    assert_nothing_left(&f, &out);
}

#[test]
fn a_full_output_disk_is_reported_as_such_and_nothing_is_published() {
    require_build_privileges();
    let f = fixture(&provision(""));
    let out = f.dir.join("small-out");
    let _small = Tmpfs::mount(&out, "size=64k");
    let o = build_command(&f, &out).output().unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // The error line (the kept log's tail and path follow it).
    let last = err
        .lines()
        .find(|l| l.starts_with("ingot: error:"))
        .unwrap_or_default();
    assert!(
        last.contains("No space left on device") && last.contains(&*out.to_string_lossy()),
        "the error must be the full disk, naming the output: {last}"
    );
    assert!(!last.contains("interrupted"), "{last}");
    assert_nothing_left(&f, &out);
}

#[test]
fn two_next_builds_at_once_get_distinct_versions() {
    require_build_privileges();
    let f = fixture(&provision(""));
    let out = f.dir.join("out");
    // Warm the cache so that both builds race on publishing, not on downloads.
    let first = build_command(&f, &out).output().unwrap();
    assert!(first.status.success(), "{}", stderr_of(&first));
    let a = build_command(&f, &out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let b = build_command(&f, &out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        stderr_of(&a),
        stderr_of(&b)
    );
    let mut paths = vec![
        String::from_utf8_lossy(&a.stdout).trim().to_string(),
        String::from_utf8_lossy(&b.stdout).trim().to_string(),
    ];
    paths.sort();
    assert!(
        paths[0].ends_with("-v2.tar.gz") && paths[1].ends_with("-v3.tar.gz"),
        "{paths:?}"
    );
}

// ---- signals -------------------------------------------------------------------------------

/// Start a `--next` build of `f` into `out` and return it once its progress output shows
/// `marker` (with the lines seen).
fn start_until(f: &Fixture, out: &Path, marker: &str) -> (Child, Vec<String>) {
    start_until_with(marker, build_command(f, out))
}

/// [`start_until`] with the build command given.
fn start_until_with(marker: &str, command: Command) -> (Child, Vec<String>) {
    let (child, seen, lines) = spawn_until(marker, command);
    // Keep draining stderr so that the build never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, seen)
}

/// The rest of a build's stderr, line by line.
type StderrLines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Spawn `command` (verbose, output piped) and read its stderr until a line shows `marker`;
/// returns the child, the lines seen and the rest of its stderr, which the caller must read.
fn spawn_until(marker: &str, mut command: Command) -> (Child, Vec<String>, StderrLines) {
    require_build_privileges();
    // `--verbose`: the markers come from scripts and step starts, which only the streamed
    // build log shows.
    let mut child: Child = command
        .arg("--verbose")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        let hit = line.contains(marker);
        seen.push(line);
        if hit {
            break;
        }
    }
    if !seen.last().is_some_and(|l| l.contains(marker)) {
        let status = child.wait();
        panic!("the build never reached {marker:?} (it ended: {status:?}): {seen:#?}");
    }
    (child, seen, lines)
}

/// Start a build, wait until its progress output shows `marker`, send `signal`, and check
/// that it fails and leaves nothing behind.
fn interrupt_at(f: &Fixture, marker: &str, signal: nix::sys::signal::Signal) {
    let out = f.dir.join(format!("out-{signal}"));
    let (mut child, _) = start_until(f, &out, marker);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted build must fail");
    assert_nothing_left(f, &out);
}

#[test]
fn after_a_sigkilled_build_the_next_build_takes_the_right_number() {
    let fast = fixture(&provision(""));
    let slow = fixture(&provision("echo provision-started >&2\nsleep 30"));
    let out = fast.dir.join("shared-out");
    let v1 = build_command(&fast, &out).output().unwrap();
    assert!(v1.status.success(), "{}", stderr_of(&v1));
    // Killed outright while it holds a claim on v2 in the same directory.
    let (mut killed, _) = start_until(&slow, &out, "provision-started");
    killed.kill().unwrap();
    killed.wait().unwrap();
    let next = build_command(&fast, &out).output().unwrap();
    assert!(next.status.success(), "{}", stderr_of(&next));
    let path = String::from_utf8_lossy(&next.stdout).trim().to_string();
    assert!(path.ends_with("mini-rootfs-v2.tar.gz"), "{path}");
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".mini-rootfs.lock"))
        .filter(|n| n != FAILED_LOGS || !only_logs(&out.join(FAILED_LOGS)))
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("mini-rootfs-v1") || n.starts_with("mini-rootfs-v2")),
        "leftovers of the killed build: {names:?}"
    );
}

#[test]
fn sigterm_during_provision_leaves_nothing() {
    let f = fixture(&provision("echo provision-started >&2\nsleep 30"));
    interrupt_at(&f, "provision-started", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_provision_leaves_nothing() {
    let f = fixture(&provision("echo provision-started >&2\nsleep 30"));
    interrupt_at(&f, "provision-started", nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_during_unpack_leaves_nothing() {
    let f = fixture_with(
        &provision(""),
        &[("preinst", "#!/bin/sh\necho unpack-started >&2\nsleep 30\n")],
    );
    interrupt_at(&f, "unpack-started", nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_configure_leaves_nothing() {
    let f = fixture_with(
        &provision(""),
        &[(
            "postinst",
            "#!/bin/sh\necho configure-started >&2\nsleep 30\n",
        )],
    );
    interrupt_at(&f, "configure-started", nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_during_fetch_leaves_a_valid_cache() {
    let mut f = fixture(&provision(""));
    // The mirror stalls on every .deb: the build is inside its downloads when signalled.
    let server = support::faulty_server(&f.dir.join("mirror"), ".deb", support::Fault::Stall);
    f.mirror = server.url.clone();
    let out = f.dir.join("out-fetch");
    // The resolve step's line is the last one before the downloads begin.
    let (mut child, _) = start_until(&f, &out, "resolve: ");
    // Signalled once a download is under way (its partial file exists).
    while server.faults() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(!child.wait().unwrap().success());
    assert_nothing_left(&f, &out);
    // The killed run's partial downloads are swept by the next one.
    drop(server);
    f.mirror = format!("file://{}", f.dir.join("mirror").display());
    let o = Command::new(INGOT)
        .arg("fetch")
        .arg(&f.recipe)
        .args(["--mirror", &f.mirror, "--cache-dir"])
        .arg(&f.cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let partial: Vec<_> = fs::read_dir(f.cache.join("partial"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        partial.is_empty(),
        "partials of the killed run left: {partial:?}"
    );
}

/// Start a build whose image holds 64 MiB of incompressible data, and signal it once the
/// export has written its first bytes to the output's temp file (the stage is still
/// streaming: the data takes seconds to compress).
fn interrupt_during_export(signal: nix::sys::signal::Signal) {
    let f = fixture_with_packages(
        &provision("echo provision-done >&2"),
        vec![
            support::DebSpec::new("mini-big", "1.0")
                .arch(&minidistro::host_arch())
                .file("/var/lib/mini-big/noise", &incompressible(64 << 20), 0o644),
        ],
    );
    let out = f.dir.join(format!("out-export-{signal}"));
    let (mut child, _) = start_until(&f, &out, "provision-done");
    // The export is under way once the claim's temp file (`.mini-rootfs-v1….partial`) has
    // bytes in it.
    let writing = || {
        fs::read_dir(&out).ok().is_some_and(|d| {
            d.filter_map(Result::ok).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(".mini-rootfs-v")
                    && name.ends_with(".partial")
                    && !name.contains(".log.")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
    };
    while !writing() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before its export wrote anything"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "a build interrupted during export must fail"
    );
    assert_nothing_left(&f, &out);
}

#[test]
fn sigterm_during_export_leaves_nothing() {
    interrupt_during_export(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_export_leaves_nothing() {
    interrupt_during_export(nix::sys::signal::Signal::SIGINT);
}

// ---- signals after the stage: verify and publish ----------------------------------------------

/// Start a build that stops at `point` (`verify` or `publish`, the test pause of
/// `ingot::signal_hold`) and return it once it says so.
fn start_paused(f: &Fixture, out: &Path, point: &str) -> (Child, StderrLines) {
    let mut command = build_command(f, out);
    command.env(ingot::signal_hold::TEST_PAUSE_ENV, point);
    let (child, _, rest) = spawn_until(&format!("ingot: test pause at {point}"), command);
    (child, rest)
}

/// Send `signal` to the paused build and wait for it: its output, with the stderr lines that
/// came after the pause.
fn signal_paused(
    child: Child,
    rest: StderrLines,
    signal: nix::sys::signal::Signal,
) -> (Output, Vec<String>) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let stderr: Vec<String> = rest.map(Result::unwrap_or_default).collect();
    (child.wait_with_output().unwrap(), stderr)
}

/// Every name in `out` but the lock file and the kept logs of failed builds, sorted.
fn names_in(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".mini-rootfs.lock"))
        .filter(|n| n != FAILED_LOGS || !only_logs(&out.join(FAILED_LOGS)))
        .collect();
    names.sort();
    names
}

/// The complete set of version `n`: the image and all its sidecars, nothing else.
fn complete_set(n: u32) -> Vec<String> {
    let image = format!("mini-rootfs-v{n}.tar.gz");
    let mut set: Vec<String> = [
        "",
        ".log",
        ".manifest.json",
        ".provenance.json",
        ".sha256",
        ".spdx.json",
    ]
    .iter()
    .map(|s| format!("{image}{s}"))
    .collect();
    set.sort();
    set
}

/// `out` holds exactly the complete sets of `versions`, and each image matches its `.sha256`.
fn assert_complete_sets(out: &Path, versions: &[u32]) {
    let mut expected: Vec<String> = versions.iter().flat_map(|&n| complete_set(n)).collect();
    expected.sort();
    assert_eq!(
        names_in(out),
        expected,
        "the output must hold whole sets only"
    );
    for n in versions {
        let image = out.join(format!("mini-rootfs-v{n}.tar.gz"));
        let (sha, _) = ingot::fetch::hash_file(&image).unwrap();
        let line = fs::read_to_string(out.join(format!("mini-rootfs-v{n}.tar.gz.sha256"))).unwrap();
        assert_eq!(line, format!("{sha}  mini-rootfs-v{n}.tar.gz\n"));
    }
}

/// One more `--next` build into `out`: it must succeed and publish `expected`.
fn assert_next_build_publishes(f: &Fixture, out: &Path, expected: &str) {
    let next = build_command(f, out).output().unwrap();
    assert!(next.status.success(), "{}", stderr_of(&next));
    let path = String::from_utf8_lossy(&next.stdout).trim().to_string();
    assert!(path.ends_with(expected), "{path}, expected {expected}");
}

/// A signal while the image is being verified (the stage is over, nothing renamed yet): the
/// build is abandoned, its error names the signal and the image, nothing is left, and the
/// number is not used up.
fn signal_during_verify(signal: nix::sys::signal::Signal) {
    let f = fixture(&provision(""));
    let out = f.dir.join(format!("out-verify-{signal}"));
    let (child, rest) = start_paused(&f, &out, "verify");
    let (o, stderr) = signal_paused(child, rest, signal);
    assert_eq!(
        o.status.code(),
        Some(1),
        "an interrupted build fails: {o:?}"
    );
    assert!(o.stdout.is_empty(), "nothing published, no path printed");
    assert_nothing_left(&f, &out);
    let told = stderr
        .iter()
        .find(|l| l.starts_with("ingot: error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr:#?}"));
    assert!(
        told.contains(&format!("interrupted by {signal}"))
            && told.contains("mini-rootfs-v1.tar.gz")
            && told.contains("nothing was published"),
        "{told}"
    );
    // The kept log ends with the same line.
    let logs: Vec<PathBuf> = fs::read_dir(out.join(FAILED_LOGS))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = fs::read_to_string(&logs[0]).unwrap();
    let error = log
        .lines()
        .last()
        .filter(|l| l.starts_with("ingot: error: "))
        .unwrap_or_else(|| panic!("no error line in the kept log: {log}"));
    assert_eq!(error, told);
    assert_next_build_publishes(&f, &out, "mini-rootfs-v1.tar.gz");
    assert_complete_sets(&out, &[1]);
}

#[test]
fn sigterm_during_verify_publishes_nothing() {
    signal_during_verify(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_verify_publishes_nothing() {
    signal_during_verify(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sighup_during_verify_publishes_nothing() {
    signal_during_verify(nix::sys::signal::Signal::SIGHUP);
}

/// A signal in the middle of the publish (the `.sha256` is under its final name, the image
/// not yet): the publish is finished first, so the set is whole, and the build succeeds.
fn signal_during_publish(signal: nix::sys::signal::Signal) {
    let f = fixture(&provision(""));
    let out = f.dir.join(format!("out-publish-{signal}"));
    let (child, rest) = start_paused(&f, &out, "publish");
    assert_eq!(
        names_in(&out)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect::<Vec<_>>(),
        ["mini-rootfs-v1.tar.gz.sha256"],
        "paused after the first rename"
    );
    let (o, stderr) = signal_paused(child, rest, signal);
    assert!(
        o.status.success(),
        "the image was published: {o:?} {stderr:#?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains(&format!("{signal} arrived while publishing"))),
        "the held signal is reported: {stderr:#?}"
    );
    let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(path.ends_with("mini-rootfs-v1.tar.gz"), "{path}");
    assert_complete_sets(&out, &[1]);
    assert_next_build_publishes(&f, &out, "mini-rootfs-v2.tar.gz");
    assert_complete_sets(&out, &[1, 2]);
}

#[test]
fn sigterm_during_publish_finishes_the_whole_set() {
    signal_during_publish(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_during_publish_finishes_the_whole_set() {
    signal_during_publish(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigkill_during_publish_overwrites_nothing_and_the_next_build_skips_its_number() {
    let f = fixture(&provision(""));
    let out = f.dir.join("out-publish-kill");
    let (mut child, _) = start_paused(&f, &out, "publish");
    child.kill().unwrap();
    child.wait().unwrap();
    let orphan = out.join("mini-rootfs-v1.tar.gz.sha256");
    let orphan_bytes = fs::read(&orphan).unwrap();
    assert!(
        names_in(&out).iter().any(|n| n.ends_with(".partial")),
        "a kill leaves the claim's hidden temp file: {:?}",
        names_in(&out)
    );
    assert_next_build_publishes(&f, &out, "mini-rootfs-v2.tar.gz");
    assert_eq!(
        fs::read(&orphan).unwrap(),
        orphan_bytes,
        "never overwritten"
    );
    let mut expected = complete_set(2);
    expected.insert(0, "mini-rootfs-v1.tar.gz.sha256".to_string());
    assert_eq!(
        names_in(&out),
        expected,
        "the killed build's temp files are swept, its sidecar kept, v2 whole"
    );
}
