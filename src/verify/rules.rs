//! The rules that look at the whole image after the scan: layout, cleanup invariants, accounts,
//! sshd, init and release files. Paths are resolved through the archive's own symlinks
//! (`sbin → usr/sbin`), never through the host's.

use super::scan::{Content, Image, Kind, Node, abs};
use super::{HISTORY_FILES, INSTANCE_SECRETS, Rule, Violation, sshd};
use crate::golden;

fn push(out: &mut Vec<Violation>, rule: Rule, path: &str, detail: impl Into<String>) {
    out.push(Violation {
        rule,
        path: abs(path),
        detail: detail.into(),
    });
}

/// Run every whole-image rule.
pub(super) fn check_image(image: &Image, out: &mut Vec<Violation>) {
    root_layout(image, out);
    cleanup_invariants(image, out);
    accounts(image, out);
    sshd::check(image, out);
    init(image, out);
    release_files(image, out);
}

fn root_layout(image: &Image, out: &mut Vec<Violation>) {
    let mut top: Vec<&str> = image
        .nodes
        .keys()
        .filter(|p| !p.is_empty())
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    top.sort_unstable();
    top.dedup();
    let missing: Vec<&str> = ["bin", "etc", "usr", "var"]
        .into_iter()
        .filter(|d| !top.contains(d))
        .collect();
    if missing.is_empty() {
        return;
    }
    let hint = match top.as_slice() {
        [single] => format!(
            "; everything is under a leading directory `{single}/`: the root filesystem must be at the archive root"
        ),
        _ => String::new(),
    };
    out.push(Violation {
        rule: Rule::RootLayout,
        path: "/".into(),
        detail: format!("no top-level {} in the archive{hint}", missing.join(", ")),
    });
}

fn cleanup_invariants(image: &Image, out: &mut Vec<Violation>) {
    for (path, _) in image.below(golden::HOST_KEY_DIR) {
        if path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(golden::HOST_KEY_PREFIX))
        {
            push(
                out,
                Rule::HostKeys,
                path,
                "SSH host key in the image: every clone would share it; keys are generated at first boot",
            );
        }
    }

    match image.lookup(golden::MACHINE_ID) {
        None => push(
            out,
            Rule::MachineId,
            "etc/machine-id",
            "missing: must exist and be empty so that systemd generates an id at first boot",
        ),
        Some((
            _,
            Node {
                kind: Kind::File(0),
                ..
            },
        )) => {}
        Some((
            resolved,
            Node {
                kind: Kind::File(n),
                ..
            },
        )) => push(
            out,
            Rule::MachineId,
            "etc/machine-id",
            format!(
                "holds an id ({n} bytes in /{resolved}): every clone would share it; must be empty"
            ),
        ),
        Some((resolved, _)) => push(
            out,
            Rule::MachineId,
            "etc/machine-id",
            format!("resolves to /{resolved}, which is not a regular file: must be an empty file"),
        ),
    }

    match image.nodes.get(golden::DBUS_MACHINE_ID) {
        None => {}
        Some(_)
            if image.resolve(golden::DBUS_MACHINE_ID).as_deref() == Some(golden::MACHINE_ID) => {}
        Some(node) => push(
            out,
            Rule::DbusMachineId,
            "var/lib/dbus/machine-id",
            match &node.kind {
                Kind::Symlink(t) => {
                    format!("symlink to {t}: must be absent or a symlink to /etc/machine-id")
                }
                _ => {
                    "a file of its own: must be absent or a symlink to /etc/machine-id".to_string()
                }
            },
        ),
    }

    for secret in INSTANCE_SECRETS {
        if image.nodes.contains_key(*secret) {
            push(
                out,
                Rule::InstanceSecrets,
                secret,
                "per-instance secret from the build: every clone would share it",
            );
        }
    }

    for (path, node) in image.below(golden::APT_LISTS) {
        if node.kind != Kind::Dir
            && *path != format!("{}/{}", golden::APT_LISTS, golden::APT_LISTS_LOCK)
        {
            push(
                out,
                Rule::AptLists,
                path,
                "apt package list in the image: stale on day one; run `apt-get update` at deploy time",
            );
        }
    }
    for (path, node) in image.below(golden::APT_CACHE) {
        let rel = &path[golden::APT_CACHE.len() + 1..];
        let bin_cache = !rel.contains('/') && rel.ends_with(".bin");
        let deb = rel.starts_with("archives/") && path.ends_with(".deb");
        if node.kind != Kind::Dir && (bin_cache || deb) {
            push(
                out,
                Rule::AptCache,
                path,
                if deb {
                    "downloaded .deb left in apt's cache"
                } else {
                    "apt binary cache (pkgcache/srcpkgcache) left in the image"
                },
            );
        }
    }

    for &(dir, want) in golden::SCRATCH_DIRS {
        match image.nodes.get(dir) {
            None => push(
                out,
                Rule::TmpDirs,
                dir,
                format!("missing: must be an empty directory with mode {want:04o}"),
            ),
            Some(Node {
                kind: Kind::Dir,
                mode,
            }) => {
                if *mode != want {
                    push(
                        out,
                        Rule::TmpDirs,
                        dir,
                        format!("mode {mode:04o}, expected {want:04o}"),
                    );
                }
                let inside: Vec<&String> = image.below(dir).map(|(p, _)| p).collect();
                if let Some(first) = inside.first() {
                    push(
                        out,
                        Rule::TmpDirs,
                        dir,
                        format!("not empty: {} entries (first /{first})", inside.len()),
                    );
                }
            }
            Some(_) => push(
                out,
                Rule::TmpDirs,
                dir,
                format!("not a directory: must be an empty directory with mode {want:04o}"),
            ),
        }
    }

    for (path, node) in image.below(golden::LOG_DIR) {
        if let Kind::File(n) = node.kind
            && n > 0
        {
            push(
                out,
                Rule::Logs,
                path,
                format!("log with {n} bytes from the build: must be removed or truncated"),
            );
        }
    }

    match image.content(golden::HOSTNAME) {
        Content::Text(t) if !golden::NEUTRAL_HOSTNAMES.contains(&t.trim()) => push(
            out,
            Rule::Hostname,
            "etc/hostname",
            format!(
                "`{}`: a build host's name; must be absent or `localhost`",
                t.trim()
            ),
        ),
        Content::NotAFile(r) | Content::NotKept(r) => push(
            out,
            Rule::Hostname,
            "etc/hostname",
            format!("resolves to /{r}, not a small regular file"),
        ),
        _ => {}
    }

    resolv_conf(image, out);

    if image.lookup(golden::POLICY_RC_D).is_some() {
        push(
            out,
            Rule::PolicyRcD,
            "usr/sbin/policy-rc.d",
            "left over from the build: services would never start when packages are installed later",
        );
    }

    for path in image.nodes.keys() {
        let parts: Vec<&str> = path.split('/').collect();
        let in_home = matches!(parts.as_slice(), ["root", _] | ["home", _, _]);
        if in_home && parts.last().is_some_and(|n| HISTORY_FILES.contains(n)) {
            push(out, Rule::ShellHistory, path, "history file from the build");
        }
    }
    if image.nodes.contains_key(golden::ROOT_SSH) {
        push(
            out,
            Rule::RootSsh,
            "root/.ssh",
            "present: root's SSH directory is created by the deploy tool, not shipped",
        );
    }
}

fn resolv_conf(image: &Image, out: &mut Vec<Violation>) {
    let Some(node) = image.nodes.get(golden::RESOLV_CONF) else {
        return;
    };
    if let Kind::Symlink(target) = &node.kind {
        // The distribution's choice (systemd-resolved's stub, resolvconf's file) lives in /run.
        if image
            .resolve(golden::RESOLV_CONF)
            .is_some_and(|r| r.starts_with("run/"))
        {
            return;
        }
        if image.lookup(golden::RESOLV_CONF).is_none() {
            push(
                out,
                Rule::ResolvConf,
                "etc/resolv.conf",
                format!("dangling symlink to {target} outside /run"),
            );
            return;
        }
    }
    match image.content(golden::RESOLV_CONF) {
        Content::Text(text) => {
            for line in text.lines().map(str::trim) {
                let mut words = line.split_whitespace();
                let leak = match (words.next(), words.next()) {
                    (Some("nameserver"), Some(addr)) => addr != "127.0.0.53",
                    (Some("search" | "domain"), Some(_)) => true,
                    _ => false,
                };
                if leak {
                    push(
                        out,
                        Rule::ResolvConf,
                        "etc/resolv.conf",
                        format!(
                            "`{line}`: a build host's resolver; keep the distribution's symlink (../run/systemd/resolve/stub-resolv.conf) or no resolver"
                        ),
                    );
                }
            }
        }
        Content::NotAFile(r) | Content::NotKept(r) => push(
            out,
            Rule::ResolvConf,
            "etc/resolv.conf",
            format!("resolves to /{r}, not a small regular file"),
        ),
        _ => {}
    }
}

fn accounts(image: &Image, out: &mut Vec<Violation>) {
    match image.content("etc/passwd") {
        Content::Text(text) => {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let fields: Vec<&str> = line.split(':').collect();
                let uid = fields.get(2).and_then(|u| u.parse::<u64>().ok());
                match (fields[0], uid) {
                    (_, None) => push(
                        out,
                        Rule::Users,
                        "etc/passwd",
                        format!("line {}: malformed entry `{line}`", n + 1),
                    ),
                    ("nobody", Some(65534)) => {}
                    (name, Some(uid)) if uid >= 1000 => push(
                        out,
                        Rule::Users,
                        "etc/passwd",
                        format!(
                            "line {}: user `{name}` has uid {uid}: the image must not create users (only system accounts below 1000 and nobody)",
                            n + 1
                        ),
                    ),
                    _ => {}
                }
            }
        }
        other => push(out, Rule::Users, "etc/passwd", unreadable(other)),
    }
    for (file, required) in [("etc/shadow", true), ("etc/gshadow", false)] {
        match image.content(file) {
            Content::Text(text) => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let mut fields = line.split(':');
                    let name = fields.next().unwrap_or_default();
                    let hash = fields.next().unwrap_or_default();
                    let locked = hash.starts_with('!') || hash.starts_with('*');
                    let empty_ok = file == "etc/gshadow";
                    if !(locked || hash.is_empty() && empty_ok) {
                        let what = if hash.is_empty() {
                            "an empty password (login without one)"
                        } else {
                            "a password hash"
                        };
                        push(
                            out,
                            Rule::Passwords,
                            file,
                            format!(
                                "line {}: `{name}` has {what}: only locked forms (`*`, `!`, `!*`, `!<hash>`) belong in an image",
                                n + 1
                            ),
                        );
                    }
                }
            }
            Content::Missing if !required => {}
            other => push(out, Rule::Passwords, file, unreadable(other)),
        }
    }
}

fn unreadable(content: Content) -> String {
    match content {
        Content::Missing => "missing".into(),
        Content::NotAFile(r) => format!("resolves to /{r}, which is not a regular file"),
        Content::NotKept(r) => format!("resolves to /{r}, too big or outside /etc to inspect"),
        Content::Text(_) => "unreadable".into(),
    }
}

fn init(image: &Image, out: &mut Vec<Violation>) {
    match image.lookup("sbin/init") {
        Some((
            _,
            Node {
                kind: Kind::File(_),
                mode,
            },
        )) if mode & 0o111 != 0 => {}
        Some((
            resolved,
            Node {
                kind: Kind::File(_),
                mode,
            },
        )) => push(
            out,
            Rule::Init,
            "sbin/init",
            format!("/{resolved} is not executable (mode {mode:04o})"),
        ),
        Some((resolved, _)) => push(
            out,
            Rule::Init,
            "sbin/init",
            format!("resolves to /{resolved}, which is not a regular file"),
        ),
        None => push(
            out,
            Rule::Init,
            "sbin/init",
            format!(
                "missing{}: the container cannot boot",
                match image.resolve("sbin/init") {
                    Some(r) if r != "sbin/init" =>
                        format!(" (resolves to /{r}, not in the archive)"),
                    _ => String::new(),
                }
            ),
        ),
    }
}

/// Debian: `etc/debian_version` is the release `os-release` names (`13.2` for `VERSION_ID=13`;
/// a testing image's `trixie/sid` has no `VERSION_ID` to compare).
fn debian_version(image: &Image, version: Option<&str>, out: &mut Vec<Violation>) {
    match image.content("etc/debian_version") {
        Content::Text(t) => {
            let t = t.trim();
            let matches = version.is_none_or(|v| {
                t == v || t.strip_prefix(v).is_some_and(|rest| rest.starts_with('.'))
            });
            if t.is_empty() || !matches {
                push(
                    out,
                    Rule::DebianVersion,
                    "etc/debian_version",
                    format!(
                        "says {t:?} but os-release says VERSION_ID={}",
                        version.unwrap_or("")
                    ),
                );
            }
        }
        other => push(
            out,
            Rule::DebianVersion,
            "etc/debian_version",
            format!("{} (Debian's base-files ships it)", unreadable(other)),
        ),
    }
}

/// `KEY=value` pairs of an os-release style file, unquoted.
pub(super) fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

pub(super) fn get<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn release_files(image: &Image, out: &mut Vec<Violation>) {
    // os-release(5): /etc/os-release, falling back to /usr/lib/os-release.
    let os = match image.content("etc/os-release") {
        Content::Missing => image.content("usr/lib/os-release"),
        other => other,
    };
    let os = match os {
        Content::Text(t) => key_values(&t),
        other => {
            push(out, Rule::OsRelease, "etc/os-release", unreadable(other));
            Vec::new()
        }
    };
    let (id, version) = (get(&os, "ID"), get(&os, "VERSION_ID"));
    if !os.is_empty() && (id.is_none() || version.is_none()) {
        push(
            out,
            Rule::OsRelease,
            "etc/os-release",
            "no ID or no VERSION_ID: the distribution and release must be identifiable",
        );
    }
    if id == Some("debian") {
        debian_version(image, version, out);
    }
    match image.content("etc/lsb-release") {
        Content::Missing if id != Some("ubuntu") => {}
        Content::Text(t) => {
            let lsb = key_values(&t);
            match (get(&lsb, "DISTRIB_ID"), get(&lsb, "DISTRIB_RELEASE")) {
                (Some(distrib), Some(_)) if id == Some("ubuntu") && distrib != "Ubuntu" => push(
                    out,
                    Rule::LsbRelease,
                    "etc/lsb-release",
                    format!(
                        "DISTRIB_ID={distrib} but os-release says ID=ubuntu (Proxmox's setup expects DISTRIB_ID=Ubuntu)"
                    ),
                ),
                (Some(_), Some(release)) => {
                    if let Some(v) = version
                        && v != release
                    {
                        push(
                            out,
                            Rule::LsbRelease,
                            "etc/lsb-release",
                            format!("DISTRIB_RELEASE={release} but os-release says VERSION_ID={v}"),
                        );
                    }
                }
                _ => push(
                    out,
                    Rule::LsbRelease,
                    "etc/lsb-release",
                    "no DISTRIB_ID or no DISTRIB_RELEASE",
                ),
            }
        }
        other => push(
            out,
            Rule::LsbRelease,
            "etc/lsb-release",
            format!("{} (Ubuntu's base-files ships it)", unreadable(other)),
        ),
    }
}
