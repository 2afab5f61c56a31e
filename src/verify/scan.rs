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
/// Files outside `etc/` that the rules read.
const KEEP_EXTRA: &[&str] = &["usr/lib/os-release", "var/lib/dbus/machine-id"];
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
}

/// The path as the image sees it: `/etc/passwd`.
pub(super) fn abs(path: &str) -> String {
    format!("/{path}")
}

/// Strip `./` and `/` prefixes and trailing `/`; report absolute and `..` paths.
fn normalise(raw: &str, violations: &mut Vec<Violation>) -> String {
    let mut p = raw;
    if p.starts_with('/') {
        violations.push(Violation {
            rule: Rule::RootLayout,
            path: raw.to_string(),
            detail: "absolute path in the archive: entries must be relative to the root".into(),
        });
    }
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p.split('/').any(|c| c == "..") {
        violations.push(Violation {
            rule: Rule::RootLayout,
            path: raw.to_string(),
            detail: "`..` in an archive path: it would escape the root on extraction".into(),
        });
    }
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
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
            let mut ignored = Vec::new();
            Kind::HardLink(normalise(&link.unwrap_or_default(), &mut ignored))
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
        let keep = (path.starts_with("etc/") && size <= KEEP_LIMIT) || KEEP_EXTRA.contains(&path);
        let mut kept = Vec::new();
        if let Some(offset) = keys.scan(entry, size, keep.then_some(&mut kept))? {
            image.violations.push(Violation {
                rule: Rule::PrivateKeys,
                path: shown.clone(),
                detail: format!("private key at byte {offset}: no secret belongs in an image"),
            });
        }
        if keep {
            image.contents.insert(path.to_string(), kept);
        }
    }
    image.nodes.insert(path.to_string(), Node { kind, mode });
    Ok(())
}

/// Finds PEM (`-----BEGIN … PRIVATE KEY-----`) and OpenSSH private keys in a stream, with a
/// bounded window: the marker must start a line and be followed by a base64 body, so that
/// programs that merely contain the marker string (ssh-keygen, libcrypto) do not match.
struct KeyScanner {
    finder: memmem::Finder<'static>,
    window: Vec<u8>,
}

const NEEDLE: &[u8] = b"PRIVATE KEY-----";
const BEGIN: &[u8] = b"-----BEGIN ";
/// How far before the needle the `-----BEGIN ` may start (`ENCRYPTED `, `OPENSSH `, …).
const LOOKBACK: usize = 64;
/// How far after the needle the body is looked for (a few RFC 1421 header lines).
const LOOKAHEAD: usize = 1024;
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
    let mut lines = rest.split(|&b| b == b'\n').skip(1); // the rest of the BEGIN line
    for _ in 0..8 {
        let line = lines.next()?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) and the blank line after them.
        if line.is_empty() || line.contains(&b':') {
            continue;
        }
        let body = line.len() >= 32
            && line
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        return body.then_some(line_start);
    }
    None
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
