//! Where two image tarballs differ, entry by entry: the first differing entries with the
//! field that differs (content, mode, owner, mtime, xattr, type, link target), or entries only
//! one side has. Both are read as streams (any compression `verify` reads); only a small
//! summary of each entry (its content's SHA-256, not the content) is kept.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::verify::VerifyError;

/// How many differences are listed (all are counted).
pub const MAX_LISTED: usize = 20;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDifference {
    /// The entry's path in the tar.
    pub path: String,
    /// `content`, `mode`, `owner`, `mtime`, `xattr`, `type`, `link`, `missing`, `extra` or
    /// `order`.
    pub field: &'static str,
    /// What the original tarball has.
    pub original: String,
    /// What the rebuild has.
    pub rebuilt: String,
}

/// The comparison of two tarballs.
#[derive(Debug, Clone, Serialize)]
pub struct TarDiff {
    /// Entries of the original.
    pub original_entries: usize,
    /// Entries of the rebuild.
    pub rebuilt_entries: usize,
    /// How many differences in all.
    pub count: usize,
    /// The first [`MAX_LISTED`], in the original's entry order.
    pub first: Vec<EntryDifference>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    kind: String,
    content: String,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    xattrs: BTreeMap<String, String>,
    link: String,
}

fn summarise(path: &Path) -> Result<Vec<(String, Summary)>, VerifyError> {
    let io = |source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    };
    let (_, stream) = crate::verify::open_tar_stream(path)?;
    let mut archive = tar::Archive::new(stream);
    let mut out = Vec::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut xattrs = BTreeMap::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                if let Ok(key) = ext.key()
                    && let Some(attr) = key.strip_prefix("SCHILY.xattr.")
                {
                    xattrs.insert(attr.to_string(), hex::encode(ext.value_bytes()));
                }
            }
        }
        let header = entry.header();
        let kind = format!("{:?}", header.entry_type());
        let mode = header.mode().map_err(io)?;
        let owner = (header.uid().map_err(io)?, header.gid().map_err(io)?);
        let mtime = header.mtime().map_err(io)?;
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 64 << 10];
        loop {
            let n = entry.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let content = format!("sha256 {}", hex::encode(hasher.finalize()));
        out.push((
            name,
            Summary {
                kind,
                content,
                mode,
                owner,
                mtime,
                xattrs,
                link,
            },
        ));
    }
    Ok(out)
}

/// Compare `original` with `rebuilt`.
pub fn compare(original: &Path, rebuilt: &Path) -> Result<TarDiff, VerifyError> {
    let a = summarise(original)?;
    let b = summarise(rebuilt)?;
    let b_by_path: BTreeMap<&str, &Summary> = b.iter().map(|(p, s)| (p.as_str(), s)).collect();
    let a_paths: std::collections::BTreeSet<&str> = a.iter().map(|(p, _)| p.as_str()).collect();
    let mut found = Found::default();
    for (path, ours) in &a {
        let Some(theirs) = b_by_path.get(path.as_str()) else {
            found.note(EntryDifference {
                path: path.clone(),
                field: "missing",
                original: ours.kind.clone(),
                rebuilt: "absent".into(),
            });
            continue;
        };
        let fields: [(&'static str, String, String); 7] = [
            ("type", ours.kind.clone(), theirs.kind.clone()),
            ("content", ours.content.clone(), theirs.content.clone()),
            (
                "mode",
                format!("{:o}", ours.mode),
                format!("{:o}", theirs.mode),
            ),
            (
                "owner",
                format!("{}:{}", ours.owner.0, ours.owner.1),
                format!("{}:{}", theirs.owner.0, theirs.owner.1),
            ),
            ("mtime", ours.mtime.to_string(), theirs.mtime.to_string()),
            (
                "xattr",
                format!("{:?}", ours.xattrs),
                format!("{:?}", theirs.xattrs),
            ),
            ("link", ours.link.clone(), theirs.link.clone()),
        ];
        for (field, original, rebuilt) in fields {
            if original != rebuilt {
                found.note(EntryDifference {
                    path: path.clone(),
                    field,
                    original,
                    rebuilt,
                });
            }
        }
    }
    for (path, theirs) in &b {
        if !a_paths.contains(path.as_str()) {
            found.note(EntryDifference {
                path: path.clone(),
                field: "extra",
                original: "absent".into(),
                rebuilt: theirs.kind.clone(),
            });
        }
    }
    if found.count == 0 {
        // Same entries, same fields: the order, or the bytes of the headers or the stream.
        let order_a: Vec<&str> = a.iter().map(|(p, _)| p.as_str()).collect();
        let order_b: Vec<&str> = b.iter().map(|(p, _)| p.as_str()).collect();
        if let Some(i) = (0..order_a.len().min(order_b.len())).find(|&i| order_a[i] != order_b[i]) {
            found.note(EntryDifference {
                path: order_a[i].to_string(),
                field: "order",
                original: format!("entry {i}"),
                rebuilt: format!("entry {i} is {}", order_b[i]),
            });
        }
    }
    Ok(TarDiff {
        original_entries: a.len(),
        rebuilt_entries: b.len(),
        count: found.count,
        first: found.first,
    })
}

#[derive(Default)]
struct Found {
    count: usize,
    first: Vec<EntryDifference>,
}

impl Found {
    fn note(&mut self, d: EntryDifference) {
        self.count += 1;
        if self.first.len() < MAX_LISTED {
            self.first.push(d);
        }
    }
}
