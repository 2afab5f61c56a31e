//! The single streaming pass over the tar: an inventory of every entry (kind, mode, owner,
//! link target), the contents of the few small files the rules read, and the checks that need
//! each entry's bytes or header (private keys, owners, device nodes, world-writable modes,
//! authorized_keys, hostile paths). Nothing is written to disk.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;

use memchr::memmem;
use tar::EntryType;

use super::{Compression, Rule, VerifyError, Violation};

/// Regular files under `etc/` up to this size are kept in memory (passwd, shadow, sshd
/// configuration, os-release, …).
const KEEP_LIMIT: u64 = 256 * 1024;
/// Files the rules always read (each still at most [`KEEP_LIMIT`]).
const KEEP_ALWAYS: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/gshadow",
    "etc/group",
    "etc/hostname",
    "etc/machine-id",
    "etc/os-release",
    "etc/lsb-release",
    "etc/debian_version",
    "etc/resolv.conf",
    "usr/lib/os-release",
    "var/lib/dbus/machine-id",
];
/// The most bytes kept in total for other files under `etc/`: 2 000 files of 256 KiB (an
/// 86 KB `.tar.xz`) must not take `verify` to half a gigabyte.
const KEEP_TOTAL: u64 = 16 * 1024 * 1024;
/// The highest id an unprivileged LXC container (`u 0 100000 65536`) can map.
const MAX_ID: u64 = 65535;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link to this target (as written in the archive).
    Symlink(String),
    /// A hard link to this archive path (normalised).
    HardLink(String),
    /// A character or block device.
    Device,
    /// A FIFO or anything else.
    Other,
}

/// One entry of the image.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// What it is.
    pub kind: Kind,
    /// Permission bits, with setuid/setgid/sticky.
    pub mode: u32,
}

/// Everything the rules need from one pass over the tarball.
#[derive(Debug, Default)]
pub(super) struct Image {
    /// Number of tar entries.
    pub entries: u64,
    /// Every entry by normalised path (`etc/passwd`: no `./`, no leading or trailing `/`).
    pub nodes: BTreeMap<String, Node>,
    /// Contents of the small files the rules read, by normalised path.
    pub contents: HashMap<String, Vec<u8>>,
    /// Violations found while streaming.
    pub violations: Vec<Violation>,
    /// Total bytes in `contents`.
    kept_bytes: u64,
    /// Every path a hard link points to (normalised): redefining one is a violation.
    link_targets: std::collections::HashSet<String>,
    /// The first [`HEAD_BYTES`] of every regular file in a `bin`/`sbin` directory (the ELF
    /// header of `/bin/sh`, wherever its symlinks lead).
    pub heads: HashMap<String, Vec<u8>>,
}

/// How much of each program's start [`Image::heads`] keeps: an ELF header's `e_machine`.
pub(super) const HEAD_BYTES: usize = 20;

fn is_program_dir(path: &str) -> bool {
    ["bin/", "sbin/", "usr/bin/", "usr/sbin/"]
        .iter()
        .any(|d| path.strip_prefix(d).is_some_and(|rest| !rest.contains('/')))
}

/// Copies the first [`HEAD_BYTES`] read when asked to.
struct HeadCapture<'r, R> {
    inner: &'r mut R,
    head: Option<Vec<u8>>,
}

impl<R: Read> Read for HeadCapture<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(head) = &mut self.head {
            let want = HEAD_BYTES.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..want]);
        }
        Ok(n)
    }
}

/// The path as the image sees it: `/etc/passwd`.
pub(super) fn abs(path: &str) -> String {
    format!("/{path}")
}

/// The path as GNU tar interprets it, by component: empty and `.` components dropped (so
/// `./etc//ssh/./sshd_config/` is `etc/ssh/sshd_config`), absolute and `..` paths reported.
/// The root itself is the empty string. Every place that interprets a tar path (entry names,
/// hard-link targets) goes through here, so that no spelling reaches a rule un-normalised.
pub(crate) fn normalise(raw: &str, violations: &mut Vec<Violation>) -> String {
    if raw.starts_with('/') {
        violations.push(Violation {
            rule: Rule::RootLayout,
            path: raw.to_string(),
            detail: "absolute path in the archive: entries must be relative to the root".into(),
        });
    }
    let mut out = String::with_capacity(raw.len());
    let mut dotdot = false;
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            _ => {
                dotdot |= c == "..";
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(c);
            }
        }
    }
    if dotdot {
        violations.push(Violation {
            rule: Rule::RootLayout,
            path: raw.to_string(),
            detail: "`..` in an archive path: it would escape the root on extraction".into(),
        });
    }
    out
}

/// Read the whole tar stream once.
pub(super) fn scan(
    name: &Path,
    compression: Compression,
    mut stream: Box<dyn Read + '_>,
) -> Result<Image, VerifyError> {
    let mut image = Image::default();
    let mut last = String::from("-");
    let corrupt = |entries: u64, last: &str, source: io::Error| VerifyError::Corrupt {
        path: name.to_path_buf(),
        compression,
        entries,
        last: last.to_string(),
        source,
    };
    let mut key_scanner = KeyScanner::new();
    {
        let mut archive = tar::Archive::new(&mut stream);
        let entries = archive
            .entries()
            .map_err(|e| corrupt(image.entries, &last, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(image.entries, &last, e))?;
            image.entries += 1;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalise(&raw, &mut image.violations);
            last = raw;
            inspect_entry(&mut image, &path, &mut entry, &mut key_scanner)
                .map_err(|e| corrupt(image.entries, &last, e))?;
        }
    }
    // Read to the end so that the compressed stream's own checksum (gzip CRC, xz/zstd
    // checks) is verified too.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| corrupt(image.entries, &last, e))?;
    Ok(image)
}

fn inspect_entry(
    image: &mut Image,
    path: &str,
    entry: &mut tar::Entry<'_, impl Read>,
    keys: &mut KeyScanner,
) -> io::Result<()> {
    let header = entry.header();
    let entry_type = header.entry_type();
    let mode = header.mode()? & 0o7777;
    let (mut uid, mut gid) = (header.uid()?, header.gid()?);
    let link = entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let size = entry.size();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let value = ext.value().ok().and_then(|v| v.trim().parse::<u64>().ok());
            match (ext.key().ok(), value) {
                (Some("uid"), Some(v)) => uid = v,
                (Some("gid"), Some(v)) => gid = v,
                _ => {}
            }
        }
    }
    let shown = abs(path);
    if uid > MAX_ID || gid > MAX_ID {
        image.violations.push(Violation {
            rule: Rule::Owners,
            path: shown.clone(),
            detail: format!(
                "owner {uid}:{gid} is outside 0..=65535: the build leaked a host id mapping"
            ),
        });
    }
    let kind = match entry_type {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File(size),
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
        EntryType::Link => {
            Kind::HardLink(normalise(&link.unwrap_or_default(), &mut image.violations))
        }
        EntryType::Char | EntryType::Block => Kind::Device,
        _ => Kind::Other,
    };
    if kind == Kind::Device {
        image.violations.push(Violation {
            rule: Rule::DeviceNodes,
            path: shown.clone(),
            detail: "device node: LXC and Proxmox provide /dev, images ship none".into(),
        });
    }
    let world_writable = mode & 0o002 != 0;
    match kind {
        Kind::File(_) if world_writable => image.violations.push(Violation {
            rule: Rule::WorldWritable,
            path: shown.clone(),
            detail: format!("world-writable file (mode {mode:04o})"),
        }),
        Kind::Dir if world_writable && mode & 0o1000 == 0 => image.violations.push(Violation {
            rule: Rule::WorldWritable,
            path: shown.clone(),
            detail: format!("world-writable directory without the sticky bit (mode {mode:04o})"),
        }),
        _ => {}
    }
    let file_name = path.rsplit('/').next().unwrap_or(path);
    if file_name == "authorized_keys" || file_name == "authorized_keys2" {
        image.violations.push(Violation {
            rule: Rule::AuthorizedKeys,
            path: shown.clone(),
            detail: "authorized_keys in the image: keys are injected per instance at deploy time"
                .into(),
        });
    }
    if let Kind::File(size) = kind {
        let keep = size <= KEEP_LIMIT && image.should_keep(path, size);
        let mut kept = Vec::new();
        let mut capture = HeadCapture {
            inner: entry,
            head: is_program_dir(path).then(Vec::new),
        };
        let found = keys.scan(&mut capture, size, keep.then_some(&mut kept))?;
        match capture.head {
            Some(head) => image.heads.insert(path.to_string(), head),
            None => image.heads.remove(path),
        };
        if let Some(offset) = found {
            image.violations.push(Violation {
                rule: Rule::PrivateKeys,
                path: shown.clone(),
                detail: format!("private key at byte {offset}: no secret belongs in an image"),
            });
        }
        if keep {
            image.kept_bytes += kept.len() as u64;
            if let Some(old) = image.contents.insert(path.to_string(), kept) {
                image.kept_bytes -= old.len() as u64;
            }
        } else if let Some(old) = image.contents.remove(path) {
            // A redefinition that is not kept must not leave the old bytes to be judged.
            image.kept_bytes -= old.len() as u64;
        }
    }
    if let Kind::HardLink(target) = &kind {
        image.link_targets.insert(target.clone());
    }
    if let Some(old) = image.nodes.insert(path.to_string(), Node { kind, mode }) {
        let both_dirs =
            old.kind == Kind::Dir && image.nodes.get(path).map(|n| &n.kind) == Some(&Kind::Dir);
        if image.link_targets.contains(path) {
            image.violations.push(Violation {
                rule: Rule::RootLayout,
                path: shown,
                detail: "redefined after a hard link to it: the link keeps the first content on extraction, the rules would see the last".into(),
            });
        } else if !both_dirs {
            image.violations.push(Violation {
                rule: Rule::RootLayout,
                path: shown,
                detail: "more than one entry for this path: extraction keeps the last, so the archive is ambiguous".into(),
            });
        }
    }
    Ok(())
}

impl Image {
    /// Whether a regular file's bytes are kept for the rules: the few files they always read,
    /// then anything else under `etc/` (sshd's drop-ins, or whatever an `Include` names) while
    /// the total stays
    /// under [`KEEP_TOTAL`]. A file that was not kept is reported as not inspectable by the
    /// rule that needs it (fail closed), never assumed clean.
    fn should_keep(&self, path: &str, size: u64) -> bool {
        if KEEP_ALWAYS.contains(&path) {
            return true;
        }
        path.starts_with("etc/") && self.kept_bytes.saturating_add(size) <= KEEP_TOTAL
    }
}

/// Finds PEM (`-----BEGIN … PRIVATE KEY-----`) and OpenSSH private keys in a stream by their
/// structure, with a bounded window: the marker must start a line and be followed by a base64
/// body (wrapped at any width), so that programs that merely contain the marker string
/// (ssh-keygen, libcrypto) do not match.
struct KeyScanner {
    finder: memmem::Finder<'static>,
    window: Vec<u8>,
}

const NEEDLE: &[u8] = b"PRIVATE KEY-----";
const BEGIN: &[u8] = b"-----BEGIN ";
/// How far before the needle the `-----BEGIN ` may start (`ENCRYPTED `, `OPENSSH `, …).
const LOOKBACK: usize = 64;
/// How far after the needle the body is looked for (a few RFC 1421 header lines, then
/// [`MIN_BODY`] base64 characters even when wrapped at one column).
const LOOKAHEAD: usize = 2048;
/// Base64 characters that make a body: the smallest private key (Ed25519 in PKCS#8, 48 bytes)
/// takes 64.
const MIN_BODY: usize = 40;
const CHUNK: usize = 256 * 1024;

impl KeyScanner {
    fn new() -> Self {
        KeyScanner {
            finder: memmem::Finder::new(NEEDLE),
            window: Vec::with_capacity(CHUNK + LOOKBACK + LOOKAHEAD),
        }
    }

    /// Scan `reader` (`size` bytes expected) to its end; return the offset of the first
    /// private key. With `keep`, also copy every byte there.
    fn scan(
        &mut self,
        reader: &mut impl Read,
        size: u64,
        mut keep: Option<&mut Vec<u8>>,
    ) -> io::Result<Option<u64>> {
        self.window.clear();
        let mut remaining = size;
        let mut window_offset: u64 = 0; // offset of window[0] in the file
        let mut searched = 0; // hits starting before this index were handled
        let mut found = None;
        loop {
            let old_len = self.window.len();
            // Sized to what is left, so that small files do not pay for a full chunk.
            let want = CHUNK.min(
                usize::try_from(remaining)
                    .unwrap_or(CHUNK)
                    .saturating_add(1),
            );
            self.window.resize(old_len + want, 0);
            let n = read_some(reader, &mut self.window[old_len..])?;
            self.window.truncate(old_len + n);
            remaining = remaining.saturating_sub(n as u64);
            if let Some(k) = keep.as_deref_mut() {
                k.extend_from_slice(&self.window[old_len..]);
            }
            let eof = n == 0;
            if found.is_none() {
                let mut pos = searched;
                loop {
                    match self.finder.find(&self.window[pos..]) {
                        None => {
                            searched = self.window.len().saturating_sub(NEEDLE.len() - 1).max(pos);
                            break;
                        }
                        Some(i) => {
                            let hit = pos + i;
                            if !eof && self.window.len() < hit + NEEDLE.len() + LOOKAHEAD {
                                searched = hit;
                                break;
                            }
                            if let Some(start) =
                                private_key_at(&self.window, hit, window_offset == 0)
                            {
                                found = Some(window_offset + start as u64);
                                break;
                            }
                            pos = hit + 1;
                        }
                    }
                }
            }
            if eof {
                return Ok(found);
            }
            let drop = searched.saturating_sub(LOOKBACK);
            self.window.drain(..drop);
            window_offset += drop as u64;
            searched -= drop;
        }
    }
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Is the `PRIVATE KEY-----` at `hit` the end of a `-----BEGIN … PRIVATE KEY-----` line that
/// is followed by a base64 body? `file_start`: `buf[0]` is the file's first byte. Returns
/// where the BEGIN line starts.
fn private_key_at(buf: &[u8], hit: usize, file_start: bool) -> Option<usize> {
    let from = hit.saturating_sub(LOOKBACK);
    let line_start = match buf[from..hit].iter().rposition(|&b| b == b'\n') {
        Some(i) => from + i + 1,
        None if from == 0 && file_start => 0,
        None => return None,
    };
    let label = &buf[line_start..hit];
    let label = label.strip_prefix(BEGIN)?;
    if !label
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
    {
        return None;
    }
    let end = (hit + NEEDLE.len() + LOOKAHEAD).min(buf.len());
    let rest = &buf[hit + NEEDLE.len()..end];
    let body_start = rest.iter().position(|&b| b == b'\n')? + 1; // the rest of the BEGIN line
    // The body by structure: base64 characters on lines of any width (ssh-keygen and openssl
    // accept 16 columns as well as 64 or 70), after optional RFC 1421 headers
    // (`Proc-Type: 4,ENCRYPTED`) and blank lines, up to the END line.
    let mut body = 0usize;
    for line in rest[body_start..].split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || (body == 0 && line.contains(&b':')) {
            continue;
        }
        if line.starts_with(b"-----") {
            break;
        }
        if !line
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            break;
        }
        body += line.len();
        if body >= MIN_BODY {
            return Some(line_start);
        }
    }
    None
}

// Paths inside the image, resolved through the image's own symlinks (for the rules).

/// Symlink hops before a path is declared a loop (Linux's limit).
const MAX_HOPS: usize = 40;

impl Image {
    /// Resolve `path` (normalised, relative to the root) through the archive's symlinks, in
    /// every component; hard links are followed for the last one. Missing components are
    /// kept as they are. `None` on a loop.
    pub(super) fn resolve(&self, path: &str) -> Option<String> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let here = done.join("/");
            let target = match self.nodes.get(&here).map(|n| &n.kind) {
                Some(Kind::Symlink(t)) => t.clone(),
                Some(Kind::HardLink(t)) if todo.is_empty() => format!("/{t}"),
                _ => continue,
            };
            hops += 1;
            if hops > MAX_HOPS {
                return None;
            }
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_string));
        }
        Some(done.join("/"))
    }

    /// The node at `path` after resolution, with its resolved path.
    pub(super) fn lookup(&self, path: &str) -> Option<(String, &Node)> {
        let resolved = self.resolve(path)?;
        let node = self.nodes.get(&resolved)?;
        Some((resolved, node))
    }

    /// The kept contents of the regular file at `path` (after resolution).
    pub(super) fn content(&self, path: &str) -> Content {
        match self.lookup(path) {
            None => Content::Missing,
            Some((resolved, node)) => match node.kind {
                Kind::File(_) => match self.contents.get(&resolved) {
                    Some(bytes) => Content::Text(String::from_utf8_lossy(bytes).into_owned()),
                    None => Content::NotKept(resolved),
                },
                _ => Content::NotAFile(resolved),
            },
        }
    }

    /// Every node strictly below directory `dir`.
    pub(super) fn below<'a>(
        &'a self,
        dir: &str,
    ) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
    }
}

/// A file's contents as the rules see them.
pub(super) enum Content {
    /// Not in the archive.
    Missing,
    /// Its text (lossy UTF-8).
    Text(String),
    /// Resolved to something that is not a regular file.
    NotAFile(String),
    /// A regular file whose bytes were not kept (too big, or outside `etc/`).
    NotKept(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(data: &[u8]) -> Option<u64> {
        KeyScanner::new()
            .scan(&mut &data[..], data.len() as u64, None)
            .unwrap()
    }

    const BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";

    #[test]
    fn finds_keys_and_ignores_marker_strings() {
        let key = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
        );
        assert_eq!(find(key.as_bytes()), Some(0));
        let pem = format!(
            "junk\n-----BEGIN RSA PRIVATE KEY-----\r\nProc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-128-CBC,00\r\n\r\n{BODY}\r\n"
        );
        assert_eq!(find(pem.as_bytes()), Some(5));
        // How ssh-keygen carries the marker: a C string, no body.
        assert_eq!(
            find(b"\0-----BEGIN OPENSSH PRIVATE KEY-----\n\0-----END OPENSSH"),
            None
        );
        assert_eq!(find(b"-----BEGIN CERTIFICATE-----\nMIIB"), None);
    }

    #[test]
    fn finds_keys_wrapped_at_any_width() {
        let flat: String = BODY.chars().chain(BODY.chars()).collect();
        for width in [1, 16, 64, 70] {
            let wrapped: Vec<String> = flat
                .as_bytes()
                .chunks(width)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let key = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
                wrapped.join("\n")
            );
            assert_eq!(find(key.as_bytes()), Some(0), "width {width}");
        }
        // Too short to be a key: a marker followed by a word.
        assert_eq!(
            find(b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"),
            None
        );
    }

    #[test]
    fn normalises_paths_by_component() {
        let mut v = Vec::new();
        for raw in [
            "etc//shadow",
            "./etc/./shadow",
            "etc/shadow/",
            ".//etc/shadow//",
        ] {
            assert_eq!(normalise(raw, &mut v), "etc/shadow", "{raw}");
        }
        assert!(v.is_empty());
        assert_eq!(normalise("./", &mut v), "");
        assert_eq!(normalise("etc/../../x", &mut v), "etc/../../x");
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn finds_a_key_across_chunk_boundaries() {
        for pad in [CHUNK - 30, CHUNK - 5, CHUNK + 3, 2 * CHUNK - 40] {
            let mut data = vec![b'x'; pad];
            data.push(b'\n');
            data.extend_from_slice(format!("-----BEGIN PRIVATE KEY-----\n{BODY}\n").as_bytes());
            data.extend(vec![b'y'; CHUNK]);
            assert_eq!(find(&data), Some(pad as u64 + 1), "pad {pad}");
        }
    }
}
