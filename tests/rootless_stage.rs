//! The rootless stage, end to end through the real `ingot __stage` child: user namespace id
//! mapping, the chroot environment, provision/cleanup scripts, teardown on failure and on
//! signals, and `doctor`.
//!
//! Hermetic: the root is seeded with a static busybox (`apt-get install busybox-static`) and a
//! spec with zero packages, so the scripts have a `/bin/sh`. Runs as real root (root's own
//! subordinate range, never host uid 0) and as an ordinary user with a subordinate range (e.g. `tuser` in /etc/subuid).

#[path = "support/busybox.rs"]
mod busybox;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ingot::epoch::BuildEpoch;
use ingot::progress::Silent;
use ingot::stage::{StageBinary, StageError, StageOutput, StageSpec};

const HELPER_ENV: &str = "INGOT_TEST_STAGE_SPEC";

fn ingot() -> StageBinary {
    StageBinary::at(env!("CARGO_BIN_EXE_ingot"))
}

/// A tiny tree with `/bin/sh` (busybox) and an Ubuntu-style resolv.conf symlink.
fn seed(dir: &Path) -> PathBuf {
    let seed = busybox::seed(
        dir,
        &[
            "sh", "cat", "chown", "echo", "grep", "ls", "sleep", "stat", "test", "touch", "wc",
            "id", "mount", "rm", "mkdir",
        ],
    );
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        seed.join("etc/resolv.conf"),
    )
    .unwrap();
    std::fs::write(seed.join("srv/owned"), b"x").unwrap();
    seed
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn spec(dir: &Path, output: StageOutput) -> StageSpec {
    StageSpec {
        seed: Some(seed(dir)),
        ..StageSpec::new(dir.join("staging"), output, BuildEpoch(1_700_000_000))
    }
}

fn run(spec: &StageSpec) -> Result<(), StageError> {
    ingot().run(
        spec,
        &mut |r| std::io::copy(r, &mut std::io::sink()).map(drop),
        &Silent,
    )
}

/// Host ids that image ids 101/102 land on: the subordinate range (real root's own, too).
fn host_ids_of(uid: u32, gid: u32) -> (u32, u32) {
    ingot::stage::idmap::plan_for_caller()
        .unwrap()
        .host_ids_of(uid, gid)
}

fn host_mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().to_string();
    let mut found = Vec::new();
    for file in ["/proc/self/mountinfo", "/proc/1/mountinfo"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            found.extend(
                text.lines()
                    .filter(|l| l.contains(&needle))
                    .map(String::from),
            );
        }
    }
    found
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ids_map_and_chroot_environment_is_set_up_and_torn_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let mut s = spec(dir.path(), StageOutput::Dir(out.clone()));
    // The provision network's resolv.conf is bound only for a recipe that asks for the
    // network (served by pasta or slirp4netns, whichever is installed).
    s.provision_network = true;
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        "set -e\n\
         chown 101:102 /srv/owned\n\
         id -u > /srv/uid\n\
         ls /proc | grep -c '^[0-9]' > /srv/pids\n\
         test -c /dev/null && echo chardev > /srv/devnull\n\
         echo discard > /dev/null\n\
         test -L /dev/ptmx && echo ptmx > /srv/ptmx\n\
         cat /etc/resolv.conf > /srv/resolv-during\n\
         echo hello from provision\n\
         touch /run/daemon.pid\n\
         rc=0; /usr/sbin/policy-rc.d || rc=$?; echo $rc > /srv/policy\n",
    ));
    s.cleanup.push(write_script(
        dir.path(),
        "cleanup.sh",
        "if cat /etc/resolv.conf >/dev/null 2>&1; then echo bound; else echo unbound; fi > /srv/resolv-cleanup\n",
    ));
    run(&s).unwrap();

    // Ownership: 101/102 inside are subordinate ids outside (also as real root).
    let meta = std::fs::symlink_metadata(out.join("srv/owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), host_ids_of(101, 102));
    // The root of the tree is the image's root: the caller, or real root's range (never host
    // uid 0).
    let root_meta = std::fs::metadata(&out).unwrap();
    let image_root = ingot::stage::idmap::plan_for_caller()
        .unwrap()
        .host_ids_of_image_root();
    assert_eq!((root_meta.uid(), root_meta.gid()), image_root);
    if nix::unistd::geteuid().is_root() {
        assert_ne!(
            root_meta.uid(),
            0,
            "a real-root build's image root is host root"
        );
    }
    assert_eq!(root_meta.mode() & 0o7777, 0o755);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("srv/uid").trim(), "0");
    // A fresh /proc of the build's own pid namespace: a handful of pids, not the host's.
    let pids: u32 = read("srv/pids").trim().parse().unwrap();
    assert!(
        (1..10).contains(&pids),
        "{pids} pids visible in the chroot's /proc"
    );
    assert_eq!(read("srv/devnull").trim(), "chardev");
    assert_eq!(read("srv/ptmx").trim(), "ptmx");
    assert_eq!(read("srv/policy").trim(), "101");
    assert_eq!(
        read("srv/resolv-during"),
        ingot::stage::usernet::resolv_conf()
    );
    assert_eq!(read("srv/resolv-cleanup").trim(), "unbound");

    // Teardown: the image's own resolv.conf symlink is back, dev/ and run/ are empty, no
    // policy-rc.d, no script copies, no mounts.
    assert_eq!(
        std::fs::read_link(out.join("etc/resolv.conf")).unwrap(),
        PathBuf::from("../run/systemd/resolve/stub-resolv.conf")
    );
    assert!(out.join("dev").is_dir());
    assert_eq!(entries(&out.join("dev")), Vec::<String>::new());
    assert_eq!(entries(&out.join("run")), Vec::<String>::new());
    assert!(!out.join("usr/sbin/policy-rc.d").exists());
    assert!(
        !out.join("usr").exists(),
        "usr/ was only created for policy-rc.d"
    );
    assert!(
        !out.join("proc").exists(),
        "proc/ was only created as a mount point"
    );
    assert_eq!(entries(&out.join("tmp")), Vec::<String>::new());
    assert!(host_mounts_mentioning(dir.path()).is_empty());
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());

    // Files of subordinate ids: removed from inside a namespace.
    ingot().remove_tree(&out).unwrap();
    assert!(!out.exists());
}

#[test]
fn tar_output_carries_the_image_owners() {
    tar_output_carries_the_image_owners_staged_on(None);
}

#[test]
fn a_tmpfs_staged_tar_output_carries_the_image_owners() {
    tar_output_carries_the_image_owners_staged_on(Some(64 << 20));
}

fn tar_output_carries_the_image_owners_staged_on(staging_tmpfs: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), StageOutput::Tar);
    s.staging_tmpfs = staging_tmpfs;
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        "chown 101:102 /srv/owned\n",
    ));
    let mut bytes = Vec::new();
    ingot()
        .run(&s, &mut |r| r.read_to_end(&mut bytes).map(drop), &Silent)
        .unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut found = None;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "srv/owned" {
            let h = entry.header();
            found = Some((h.uid().unwrap(), h.gid().unwrap()));
        }
    }
    // Written inside the namespace: the image's own ids, whoever ran the build.
    assert_eq!(found, Some((101, 102)));
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());
}

#[test]
fn failing_provision_script_fails_the_stage_with_its_name_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree");
    let mut s = spec(dir.path(), StageOutput::Dir(out.clone()));
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        "echo about to fail\necho boom >&2\nexit 3\n",
    ));
    s.cleanup.push(write_script(
        dir.path(),
        "cleanup.sh",
        "touch /srv/cleanup-ran\n",
    ));
    let err = run(&s).unwrap_err().to_string();
    assert!(
        err.contains("provision script provision.sh exited with status 3"),
        "{err}"
    );
    assert!(err.contains("boom"), "{err}");
    assert!(!out.exists());
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());
    assert!(host_mounts_mentioning(dir.path()).is_empty());
}

#[test]
fn keep_staging_keeps_the_failed_tree() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let mut s = spec(dir.path(), StageOutput::Tar);
    s.keep_staging = Some(kept.clone());
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        "touch /srv/partial\nexit 7\n",
    ));
    let err = run(&s).unwrap_err().to_string();
    assert!(err.contains("exited with status 7"), "{err}");
    assert!(kept.join("srv/partial").exists());
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());
    assert!(host_mounts_mentioning(dir.path()).is_empty());
    ingot().remove_tree(&kept).unwrap();
}

#[test]
fn a_daemon_left_by_a_script_neither_hangs_nor_outlives_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), StageOutput::Tar);
    let token = format!("{}", 300_000 + std::process::id());
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        &format!("sleep {token} &\necho left a daemon\n"),
    ));
    s.cleanup
        .push(write_script(dir.path(), "cleanup.sh", "echo cleanup ran\n"));
    let started = Instant::now();
    run(&s).unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(proc_with_cmdline_token(&token), Vec::<String>::new());
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());
}

#[test]
fn resolv_conf_file_or_absence_is_restored() {
    for original in [Some("nameserver 192.0.2.1\n"), None] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tree");
        let mut s = spec(dir.path(), StageOutput::Dir(out.clone()));
        let seed = s.seed.clone().unwrap();
        std::fs::remove_file(seed.join("etc/resolv.conf")).unwrap();
        if let Some(text) = original {
            std::fs::write(seed.join("etc/resolv.conf"), text).unwrap();
        }
        s.provision_network = true;
        s.provision.push(write_script(
            dir.path(),
            "provision.sh",
            "cat /etc/resolv.conf > /srv/during\n",
        ));
        // Cleanup scripts run after the bind is undone and before the cleanup invariants
        // (which may neutralise resolv.conf themselves): record what the image has then.
        s.cleanup.push(write_script(
            dir.path(),
            "cleanup.sh",
            "if test -e /etc/resolv.conf; then cat /etc/resolv.conf; else echo absent; fi > /srv/after\n",
        ));
        run(&s).unwrap();
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        assert_eq!(read("srv/during"), ingot::stage::usernet::resolv_conf());
        assert_eq!(read("srv/after"), original.unwrap_or("absent\n"));
        ingot().remove_tree(&out).unwrap();
    }
}

#[test]
fn missing_shell_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), StageOutput::Tar);
    s.seed = None;
    s.provision
        .push(write_script(dir.path(), "provision.sh", "true\n"));
    let err = run(&s).unwrap_err().to_string();
    assert!(err.contains("no /bin/sh"), "{err}");
    assert_eq!(entries(&dir.path().join("staging")), Vec::<String>::new());
}

/// Run by the signal tests in a separate process (this test binary, re-executed): the
/// parent that gets killed.
#[test]
#[ignore = "helper process for the signal tests"]
fn helper_run_stage_from_env() {
    let Some(path) = std::env::var_os(HELPER_ENV) else {
        panic!("a helper process, not a test: {HELPER_ENV} is not set");
    };
    let spec: StageSpec = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let result = run(&spec);
    eprintln!("helper: run_stage returned {result:?}");
}

fn proc_with_cmdline_token(token: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(token) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn kill_parent_mid_run(signal: nix::sys::signal::Signal) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), StageOutput::Tar);
    // A unique sleep so we can tell whether the build's processes outlive it.
    // Distinct per signal: both signal tests run in parallel in one test process.
    let token = format!("{}{}", 1000 + signal as i32, std::process::id());
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        &format!("touch /srv/started\nsleep {token}\n"),
    ));
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&s).unwrap()).unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_run_stage_from_env",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, &spec_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let staging = dir.path().join("staging");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = entries(&staging)
            .iter()
            .any(|e| staging.join(e).join("root/srv/started").exists());
        if started && !proc_with_cmdline_token(&token).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the provision script never started"
        );
        assert!(
            helper.try_wait().unwrap().is_none(),
            "the helper ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(helper.id() as i32), signal).unwrap();
    helper.wait().unwrap();
    // The namespaced child cleans up after the parent is gone (SIGKILL) or before the parent
    // returns (SIGTERM); give it a moment either way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while (!entries(&staging).is_empty() || !proc_with_cmdline_token(&token).is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        entries(&staging),
        Vec::<String>::new(),
        "staging left behind"
    );
    assert_eq!(proc_with_cmdline_token(&token), Vec::<String>::new());
    assert!(host_mounts_mentioning(dir.path()).is_empty());
}

#[test]
fn sigterm_to_the_parent_leaves_no_staging_and_no_mount() {
    kill_parent_mid_run(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigkill_of_the_parent_takes_the_child_down_cleanly() {
    kill_parent_mid_run(nix::sys::signal::Signal::SIGKILL);
}

#[test]
fn doctor_reports_a_missing_subordinate_range_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let subuid = dir.path().join("subuid");
    let subgid = dir.path().join("subgid");
    std::fs::write(&subuid, "alice:100000:65536\n").unwrap();
    std::fs::write(&subgid, "alice:100000:65536\n").unwrap();
    let check = ingot::stage::doctor::subid_check("bob", 4242, &subuid, &subgid);
    assert!(!check.ok);
    assert!(
        check
            .message
            .contains("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 bob"),
        "{check}"
    );
    // Too small a range is no range.
    std::fs::write(&subuid, "bob:100000:1000\n").unwrap();
    assert!(!ingot::stage::doctor::subid_check("bob", 4242, &subuid, &subgid).ok);
    // Present in subuid but not in subgid: names subgid.
    std::fs::write(&subuid, "4242:100000:65536\n").unwrap();
    let check = ingot::stage::doctor::subid_check("bob", 4242, &subuid, &subgid);
    assert!(!check.ok && check.message.contains("subgid"), "{check}");
    std::fs::write(&subgid, "bob:300000:65536\n").unwrap();
    assert!(ingot::stage::doctor::subid_check("bob", 4242, &subuid, &subgid).ok);
}

#[test]
fn doctor_passes_on_this_host_including_the_trial() {
    let checks = ingot().doctor();
    for c in &checks {
        eprintln!("{c}");
    }
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert!(checks.iter().any(|c| c.name == "namespace trial"));
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may contain spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_killed_namespaced_child_is_cleaned_up_by_the_parent() {
    kill_the_namespaced_child(None, 200_000);
}

/// On a staging tmpfs nothing is left to clean up: the tree died with the namespace.
#[test]
fn a_killed_namespaced_child_leaves_nothing_of_a_tmpfs_staging() {
    kill_the_namespaced_child(Some(64 << 20), 400_000);
}

fn kill_the_namespaced_child(staging_tmpfs: Option<u64>, token_base: u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), StageOutput::Tar);
    s.staging_tmpfs = staging_tmpfs;
    let token = format!("{}", token_base + std::process::id());
    s.provision.push(write_script(
        dir.path(),
        "provision.sh",
        &format!("touch /srv/started\nsleep {token}\n"),
    ));
    let runner = std::thread::spawn(move || run(&s));
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(30);
    // sleep → sh → worker → supervisor (our child): SIGKILL the supervisor, so no cleanup
    // runs inside the namespace at all.
    let supervisor = loop {
        let found = proc_with_cmdline_token(&token)
            .into_iter()
            .find_map(|line| {
                let mut pid: u32 = line.split(':').next()?.parse().ok()?;
                for _ in 0..6 {
                    let ppid = parent_of(pid)?;
                    if ppid == me {
                        return Some(pid);
                    }
                    pid = ppid;
                }
                None
            });
        if let Some(pid) = found {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the provision script never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = runner.join().unwrap().unwrap_err().to_string();
    eprintln!("run_stage: {err}");
    assert!(!err.contains("could not be removed"), "{err}");
    // The tree holds files of the namespace's root: the parent removed it from inside a
    // fresh namespace.
    assert_eq!(
        entries(&dir.path().join("staging")),
        Vec::<String>::new(),
        "{err}"
    );
    assert_eq!(proc_with_cmdline_token(&token), Vec::<String>::new());
    assert!(host_mounts_mentioning(dir.path()).is_empty());
}
