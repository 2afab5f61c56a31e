//! `verify --proxmox`: what Proxmox VE's container setup (pve-container's `PVE::LXC::Setup`)
//! reads from a template after extracting it, and the files it then writes, checked on the
//! same single scan as the golden-image contract.
//!
//! Proxmox identifies the distribution by `/etc/os-release` `ID` (on Ubuntu also
//! `/etc/lsb-release`, with a list of releases it knows: 12.04–26.10; an unknown one from 17
//! on only warns), the architecture by `/bin/sh`'s ELF header, cgroup v2 support by the
//! `libsystemd-shared-<N>.so` that `/sbin/init` links (read here from the tree's file names,
//! as `objdump -p` would name it), then writes `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf`; it extracts with `--exclude ./dev/*`.

use super::rules::{get, key_values};
use super::scan::{Content, Image, Kind};
use super::{Rule, Violation};

/// Ubuntu releases pve-container 6 (Proxmox VE 9.1) knows.
const KNOWN_UBUNTU: &[&str] = &[
    "12.04", "12.10", "13.04", "13.10", "14.04", "14.10", "15.04", "15.10", "16.04", "16.10",
    "17.04", "17.10", "18.04", "18.10", "19.04", "19.10", "20.04", "20.10", "21.04", "21.10",
    "22.04", "22.10", "23.04", "23.10", "24.04", "24.10", "25.04", "25.10", "26.04", "26.10",
];
/// The first systemd with the unified (cgroup v2) hierarchy Proxmox requires.
const SYSTEMD_CGROUP_V2: u32 = 232;

fn push(out: &mut Vec<Violation>, rule: Rule, path: &str, detail: impl Into<String>) {
    out.push(Violation {
        rule,
        path: format!("/{path}"),
        detail: detail.into(),
    });
}

/// The Debian architecture of this host (what a Proxmox node on it runs).
pub(super) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => other,
    }
}

/// The Debian name of an OCI (Go) architecture.
pub(super) fn debian_architecture(oci: &str) -> Option<&'static str> {
    Some(match oci {
        "amd64" => "amd64",
        "arm64" => "arm64",
        "arm" => "armhf",
        "386" => "i386",
        "ppc64le" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "loong64" => "loong64",
        _ => return None,
    })
}

/// (ELF class, `e_machine`) of a Debian architecture.
fn elf_machine(arch: &str) -> Option<(u8, u16)> {
    Some(match arch {
        "amd64" => (2, 62),
        "i386" => (1, 3),
        "arm64" => (2, 183),
        "armhf" | "armel" => (1, 40),
        "riscv64" => (2, 243),
        "ppc64el" => (2, 21),
        "s390x" => (2, 22),
        "mips64el" => (2, 8),
        "loong64" => (2, 258),
        _ => return None,
    })
}

/// The checks; `arch` is the Debian architecture `/bin/sh` must have.
pub(super) fn check(image: &Image, arch: &str, out: &mut Vec<Violation>) {
    release(image, out);
    shell_architecture(image, arch, out);
    systemd(image, out);
    written_files(image, out);
    for (path, _) in image.below("dev") {
        push(
            out,
            Rule::ProxmoxDev,
            path,
            "entry under /dev: Proxmox extracts with --exclude ./dev/* and provides /dev itself",
        );
    }
}

fn release(image: &Image, out: &mut Vec<Violation>) {
    let os = match image.content("etc/os-release") {
        Content::Missing => image.content("usr/lib/os-release"),
        other => other,
    };
    let Content::Text(os) = os else {
        push(
            out,
            Rule::ProxmoxRelease,
            "etc/os-release",
            "no /etc/os-release: Proxmox cannot tell which distribution to set up",
        );
        return;
    };
    let os = key_values(&os);
    let Some(id) = get(&os, "ID") else {
        push(
            out,
            Rule::ProxmoxRelease,
            "etc/os-release",
            "no ID=: Proxmox cannot tell which distribution to set up",
        );
        return;
    };
    if id != "ubuntu" {
        return;
    }
    let lsb = match image.content("etc/lsb-release") {
        Content::Text(t) => key_values(&t),
        _ => Vec::new(),
    };
    match (get(&lsb, "DISTRIB_ID"), get(&lsb, "DISTRIB_RELEASE")) {
        (Some("Ubuntu"), Some(release)) => {
            let major = release
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            if !KNOWN_UBUNTU.contains(&release) && major.is_none_or(|m| m < 17) {
                push(
                    out,
                    Rule::ProxmoxRelease,
                    "etc/lsb-release",
                    format!(
                        "DISTRIB_RELEASE={release}: Proxmox refuses an unknown Ubuntu release before 17"
                    ),
                );
            }
        }
        _ => push(
            out,
            Rule::ProxmoxRelease,
            "etc/lsb-release",
            "ID=ubuntu but no DISTRIB_ID=Ubuntu and DISTRIB_RELEASE: Proxmox reads the Ubuntu release from /etc/lsb-release",
        ),
    }
}

fn shell_architecture(image: &Image, arch: &str, out: &mut Vec<Violation>) {
    let Some((resolved, node)) = image.lookup("bin/sh") else {
        push(
            out,
            Rule::ProxmoxArch,
            "bin/sh",
            "no /bin/sh: Proxmox reads its ELF header for the architecture",
        );
        return;
    };
    let head = match node.kind {
        Kind::File(_) => image.heads.get(&resolved),
        _ => None,
    };
    let Some(head) = head.filter(|h| h.len() >= 20 && h.starts_with(b"\x7fELF")) else {
        push(
            out,
            Rule::ProxmoxArch,
            "bin/sh",
            format!(
                "/{resolved} is not an ELF executable: Proxmox reads its header for the architecture"
            ),
        );
        return;
    };
    let class = head[4];
    let machine = if head[5] == 2 {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    match elf_machine(arch) {
        Some(want) if want == (class, machine) => {}
        Some((want_class, want_machine)) => push(
            out,
            Rule::ProxmoxArch,
            "bin/sh",
            format!(
                "/{resolved} is ELF class {class} machine {machine}, but the image is {arch} (class {want_class} machine {want_machine})"
            ),
        ),
        None => push(
            out,
            Rule::ProxmoxArch,
            "bin/sh",
            format!("architecture {arch:?} is not one Proxmox runs containers of"),
        ),
    }
}

fn systemd(image: &Image, out: &mut Vec<Violation>) {
    let Some(init) = image.resolve("sbin/init") else {
        return;
    };
    if init.rsplit('/').next().is_none_or(|n| n != "systemd") {
        return;
    }
    // libsystemd-shared-<N>.so (Ubuntu, Debian) or libsystemd-shared-<N>-<rel>.so (Fedora).
    let versions: Vec<u32> = image
        .nodes
        .keys()
        .filter(|p| p.starts_with("usr/lib/") || p.starts_with("lib/"))
        .filter_map(|p| p.rsplit('/').next()?.strip_prefix("libsystemd-shared-"))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    match versions.iter().max() {
        None => push(
            out,
            Rule::ProxmoxSystemd,
            "sbin/init",
            format!(
                "/{init} is systemd but no libsystemd-shared-<N>.so is in the image: Proxmox cannot tell its version (cgroup v2 needs {SYSTEMD_CGROUP_V2})"
            ),
        ),
        Some(&v) if v < SYSTEMD_CGROUP_V2 => push(
            out,
            Rule::ProxmoxSystemd,
            "sbin/init",
            format!(
                "systemd {v} is older than {SYSTEMD_CGROUP_V2}: no cgroup v2, which Proxmox VE 9 runs only"
            ),
        ),
        Some(_) => {}
    }
}

/// Whether the symlink target `target` of the link at `link` climbs above the root with `..`.
fn climbs_out(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth = link.split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn written_files(image: &Image, out: &mut Vec<Violation>) {
    for path in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        match image.nodes.get(path).map(|n| &n.kind) {
            Some(Kind::Symlink(target)) if climbs_out(path, target) => push(
                out,
                Rule::ProxmoxWrittenFiles,
                path,
                format!("symlink to {target:?} climbs out of the root: Proxmox writes this file"),
            ),
            Some(Kind::Symlink(_)) => match image.resolve(path) {
                None => push(
                    out,
                    Rule::ProxmoxWrittenFiles,
                    path,
                    "symlink loop: Proxmox writes this file",
                ),
                Some(resolved)
                    if image.nodes.get(&resolved).map(|n| &n.kind) == Some(&Kind::Dir) =>
                {
                    push(
                        out,
                        Rule::ProxmoxWrittenFiles,
                        path,
                        format!("resolves to the directory /{resolved}: Proxmox writes this file"),
                    )
                }
                // Dangling (into /run, say) is fine: Proxmox creates the target.
                Some(_) => {}
            },
            Some(Kind::Dir) => push(
                out,
                Rule::ProxmoxWrittenFiles,
                path,
                "a directory: Proxmox writes this file",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_that_climb_out_are_told_apart() {
        assert!(climbs_out("etc/hosts", "../../etc/hosts"));
        assert!(!climbs_out(
            "etc/resolv.conf",
            "../run/systemd/resolve/stub-resolv.conf"
        ));
        assert!(!climbs_out("etc/hosts", "/etc/hosts.real"));
        assert!(climbs_out("etc/hosts", "a/../../../x"));
    }
}
