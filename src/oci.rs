//! OCI image layout archives (`<image>-v<N>.oci.tar`): writing one beside the tarball, and
//! finding the rootfs layer in one for `verify`.
//!
//! The archive is what Proxmox VE 9.1's `pct create` and `skopeo`'s `oci-archive:` transport
//! read: a plain tar holding `oci-layout`, `index.json` and `blobs/sha256/…`, with exactly one
//! layer — the same compressed rootfs stream as the tarball, byte for byte — an image config
//! and a manifest. It is deterministic: names sorted bytewise, every mtime the build epoch,
//! owners 0, modes fixed, JSON with sorted keys and no whitespace.
//!
//! This module does not compress, publish or decide names: the build hands it the compressed
//! layer (the claim's temp file), its SHA-256 and the *uncompressed* stream's SHA-256 (the
//! `diff_id`, hashed while the stream was compressed by [`DiffIdReader`]), and the artifact
//! module publishes what it writes without ever replacing a file.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::epoch::BuildEpoch;
use crate::export::compress::Compression;

/// `oci-layout`'s content (image layout version 1.0.0).
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Media types of the image index, manifest and config.
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The annotation that names the image in an index (`skopeo … oci-archive:FILE:REF`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// JSON blobs larger than this are not read into memory when an archive is opened.
const MAX_JSON_BLOB: u64 = 4 * 1024 * 1024;

/// Everything that can go wrong writing or reading an OCI archive.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The compression has no OCI layer media type.
    #[error(
        "--oci: an OCI layer cannot be {compression}-compressed: use --compression gzip, zstd \
         or none"
    )]
    UnsupportedCompression {
        /// The compression asked for.
        compression: Compression,
    },
    /// The Debian architecture has no OCI (Go) name we know.
    #[error(
        "--oci: no OCI architecture for the Debian architecture {architecture:?} (known: amd64, \
         arm64, armhf, armel, i386, ppc64el, s390x, riscv64, mips64el, loong64)"
    )]
    UnknownArchitecture {
        /// The recipe's architecture.
        architecture: String,
    },
    /// Reading the layer or writing the archive failed.
    #[error("{path}: {source}")]
    Io {
        /// The file read or written.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The layer changed between hashing and archiving.
    #[error(
        "{path}: the layer's SHA-256 is {actual}, expected {expected} (changed while archived?)"
    )]
    LayerChanged {
        /// The layer file.
        path: PathBuf,
        /// The digest the build computed.
        expected: String,
        /// The digest of the bytes archived.
        actual: String,
    },
    /// The archive is not a usable OCI image layout.
    #[error("{path}: not a usable OCI image archive: {detail}")]
    Layout {
        /// The archive.
        path: PathBuf,
        /// What is wrong, and what was expected.
        detail: String,
    },
}

/// The OCI layer media type for a compression.
pub fn layer_media_type(compression: Compression) -> Result<&'static str, OciError> {
    match compression {
        Compression::Gzip => Ok("application/vnd.oci.image.layer.v1.tar+gzip"),
        Compression::Zstd => Ok("application/vnd.oci.image.layer.v1.tar+zstd"),
        Compression::None => Ok("application/vnd.oci.image.layer.v1.tar"),
        Compression::Xz => Err(OciError::UnsupportedCompression { compression }),
    }
}

/// The OCI platform (`architecture`, `variant`) of a Debian architecture, as Go names them.
pub fn platform(debian_arch: &str) -> Result<(&'static str, Option<&'static str>), OciError> {
    Ok(match debian_arch {
        "amd64" => ("amd64", None),
        "arm64" => ("arm64", Some("v8")),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "i386" => ("386", None),
        "ppc64el" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "mips64el" => ("mips64le", None),
        "loong64" => ("loong64", None),
        other => {
            return Err(OciError::UnknownArchitecture {
                architecture: other.to_string(),
            });
        }
    })
}

/// Checks before a build starts that an OCI archive can be made (exit 2 if not).
pub fn check_possible(compression: Compression, debian_arch: &str) -> Result<(), OciError> {
    layer_media_type(compression)?;
    platform(debian_arch).map(drop)
}

/// Hashes the uncompressed tar stream on its way to the compressor: the layer's `diff_id`
/// without a second pass over the image.
pub struct DiffIdReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> DiffIdReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DiffIdReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The SHA-256 (hex) of everything read so far.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What the image's config, manifest and index say.
#[derive(Debug, Clone)]
pub struct OciImage<'a> {
    /// The compressed layer: the tarball's bytes.
    pub layer_path: &'a Path,
    /// SHA-256 (hex) of the layer file.
    pub layer_sha256: &'a str,
    /// Its size in bytes.
    pub layer_size: u64,
    /// Its compression.
    pub compression: Compression,
    /// SHA-256 (hex) of the uncompressed tar.
    pub diff_id: &'a str,
    /// The recipe's Debian architecture.
    pub debian_arch: &'a str,
    /// `created` and every mtime in the archive.
    pub epoch: BuildEpoch,
    /// The index's `org.opencontainers.image.ref.name` (a tag, e.g. `v3`).
    pub ref_name: &'a str,
    /// `org.opencontainers.image.version`.
    pub version: &'a str,
    /// `org.opencontainers.image.revision`.
    pub revision: &'a str,
    /// `org.opencontainers.image.source`.
    pub source: &'a str,
}

/// The digests of what [`write_archive`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciDigests {
    /// `sha256:…` of the manifest (what a registry names the image by).
    pub manifest: String,
    /// `sha256:…` of the config.
    pub config: String,
}

fn compact(value: &Value) -> Vec<u8> {
    // serde_json's map is a BTreeMap (no `preserve_order`): keys come out sorted.
    serde_json::to_vec(value).unwrap_or_default()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The bytes of an image's config, manifest and index.
type Documents = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The image config, manifest and index of `image`, as the bytes written.
fn documents(image: &OciImage) -> Result<Documents, OciError> {
    let media_type = layer_media_type(image.compression)?;
    let (architecture, variant) = platform(image.debian_arch)?;
    let created = crate::sbom::rfc3339_utc(image.epoch.0);
    let labels = json!({
        "org.opencontainers.image.version": image.version,
        "org.opencontainers.image.revision": image.revision,
        "org.opencontainers.image.source": image.source,
    });
    let mut config = json!({
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": ["/sbin/init"],
            "Labels": labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": [format!("sha256:{}", image.diff_id)],
        },
        "history": [{"created": created, "created_by": "ingot build"}],
    });
    let mut platform_json = json!({"architecture": architecture, "os": "linux"});
    if let Some(variant) = variant {
        config["variant"] = json!(variant);
        platform_json["variant"] = json!(variant);
    }
    let config = compact(&config);
    let manifest = compact(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{}", sha256_hex(&config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": media_type,
            "digest": format!("sha256:{}", image.layer_sha256),
            "size": image.layer_size,
        }],
        "annotations": labels,
    }));
    let index = compact(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": format!("sha256:{}", sha256_hex(&manifest)),
            "size": manifest.len(),
            "platform": platform_json,
            "annotations": {REF_NAME_ANNOTATION: image.ref_name},
        }],
    }));
    Ok((config, manifest, index))
}

/// Hashes what is read, to check the layer is the one the manifest names.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes the OCI archive of `image` to `out`. The layer file is read once more here (its
/// bytes must be inside the archive), and checked against `layer_sha256` on the way.
pub fn write_archive(out: &mut dyn Write, image: &OciImage) -> Result<OciDigests, OciError> {
    let (config, manifest, index) = documents(image)?;
    let out_error = |source| OciError::Io {
        path: PathBuf::from("<oci archive>"),
        source,
    };
    let layer_error = |source| OciError::Io {
        path: image.layer_path.to_path_buf(),
        source,
    };
    let mtime = u64::try_from(image.epoch.0).unwrap_or(0);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let config_hex = sha256_hex(&config);
    let manifest_hex = sha256_hex(&manifest);
    // Bytewise-sorted names; the layer is streamed from its file, the rest is in memory.
    enum Blob<'b> {
        Bytes(&'b [u8]),
        Layer,
    }
    let mut blobs: Vec<(String, Blob)> = vec![
        (config_hex.clone(), Blob::Bytes(&config)),
        (manifest_hex.clone(), Blob::Bytes(&manifest)),
        (image.layer_sha256.to_string(), Blob::Layer),
    ];
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);

    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(out_error)?;
    }
    for (hex, blob) in blobs {
        let name = format!("blobs/sha256/{hex}");
        match blob {
            Blob::Bytes(bytes) => {
                let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
                tar.append_data(&mut h, &name, bytes).map_err(out_error)?;
            }
            Blob::Layer => {
                let file = std::fs::File::open(image.layer_path).map_err(layer_error)?;
                let size = file.metadata().map_err(layer_error)?.len();
                if size != image.layer_size {
                    return Err(OciError::LayerChanged {
                        path: image.layer_path.to_path_buf(),
                        expected: image.layer_sha256.to_string(),
                        actual: format!("(size {size}, expected {})", image.layer_size),
                    });
                }
                let mut reader = HashingReader {
                    inner: io::BufReader::with_capacity(1 << 20, file),
                    hasher: Sha256::new(),
                };
                let mut h = header(tar::EntryType::Regular, 0o644, size);
                tar.append_data(&mut h, &name, &mut reader)
                    .map_err(out_error)?;
                let actual = hex::encode(reader.hasher.finalize());
                if actual != image.layer_sha256 {
                    return Err(OciError::LayerChanged {
                        path: image.layer_path.to_path_buf(),
                        expected: image.layer_sha256.to_string(),
                        actual,
                    });
                }
            }
        }
    }
    for (name, bytes) in [("index.json", &index[..]), ("oci-layout", OCI_LAYOUT)] {
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        tar.append_data(&mut h, name, bytes).map_err(out_error)?;
    }
    tar.into_inner()
        .and_then(|w| w.flush())
        .map_err(out_error)?;
    Ok(OciDigests {
        manifest: format!("sha256:{manifest_hex}"),
        config: format!("sha256:{config_hex}"),
    })
}

/// The single rootfs layer of an OCI archive, located for reading.
#[derive(Debug, Clone)]
pub struct LayerLocation {
    /// Offset of the layer's bytes in the archive.
    pub offset: u64,
    /// Its size.
    pub size: u64,
    /// Its digest (hex, without `sha256:`).
    pub sha256: String,
    /// Its media type.
    pub media_type: String,
    /// The config's `diff_ids[0]` (hex).
    pub diff_id: String,
    /// The config's `architecture`.
    pub architecture: String,
    /// The manifest's bytes, as stored (what a registry receives).
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// The config's bytes.
    pub config: Vec<u8>,
}

/// True if `path` is a tar whose first entries look like an OCI layout (any of `oci-layout`,
/// `index.json`, `blobs/`); the magic of a compressed file is never a tar.
pub fn looks_like_oci_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(file);
    let Ok(entries) = archive.entries_with_seek() else {
        return false;
    };
    for entry in entries.take(8) {
        let Ok(entry) = entry else { return false };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./");
        if name == "oci-layout" || name == "index.json" || name.starts_with("blobs/") {
            return true;
        }
    }
    false
}

/// Finds the one layer of the first manifest in `path`'s `index.json` (as Proxmox takes the
/// first manifest of its architecture), without reading the layer itself.
pub fn locate_layer(path: &Path) -> Result<LayerLocation, OciError> {
    let layout = |detail: String| OciError::Layout {
        path: path.to_path_buf(),
        detail,
    };
    let io_error = |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut archive = tar::Archive::new(file);
    let mut small: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut blobs: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for entry in archive.entries_with_seek().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./").to_string();
        let size = entry.size();
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            blobs.insert(hex.to_string(), (entry.raw_file_position(), size));
        }
        if size <= MAX_JSON_BLOB && entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io_error)?;
            small.insert(name, bytes);
        }
    }
    if !small.contains_key("oci-layout") {
        return Err(layout("no oci-layout file".into()));
    }
    let json_of = |name: &str| -> Result<Value, OciError> {
        let bytes = small
            .get(name)
            .ok_or_else(|| layout(format!("{name} is missing")))?;
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let actual = sha256_hex(bytes);
            if actual != hex {
                return Err(layout(format!("{name} has SHA-256 {actual}")));
            }
        }
        serde_json::from_slice(bytes).map_err(|e| layout(format!("{name}: {e}")))
    };
    let blob_name = |digest: &Value, what: &str| -> Result<String, OciError> {
        digest
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| format!("blobs/sha256/{h}"))
            .ok_or_else(|| layout(format!("{what}: expected a sha256:<64 hex> digest")))
    };
    let index = json_of("index.json")?;
    let first = index["manifests"]
        .get(0)
        .ok_or_else(|| layout("index.json lists no manifest".into()))?;
    let manifest_name = blob_name(&first["digest"], "index.json manifests[0]")?;
    let manifest = json_of(&manifest_name)?;
    let config_name = blob_name(&manifest["config"]["digest"], "manifest config")?;
    let config = json_of(&config_name)?;
    let manifest_bytes = small.get(&manifest_name).cloned().unwrap_or_default();
    let config_bytes = small.get(&config_name).cloned().unwrap_or_default();
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| layout("the manifest has no layers".into()))?;
    let [layer] = layers.as_slice() else {
        return Err(layout(format!(
            "the manifest has {} layers, expected exactly one (the rootfs)",
            layers.len()
        )));
    };
    let layer_name = blob_name(&layer["digest"], "manifest layers[0]")?;
    let sha256 = layer_name["blobs/sha256/".len()..].to_string();
    let (offset, size) = *blobs
        .get(&sha256)
        .ok_or_else(|| layout(format!("{layer_name} is missing")))?;
    let diff_id = config["rootfs"]["diff_ids"][0]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .ok_or_else(|| layout("the config has no sha256 rootfs.diff_ids[0]".into()))?
        .to_string();
    Ok(LayerLocation {
        offset,
        size,
        sha256,
        media_type: layer["mediaType"].as_str().unwrap_or_default().to_string(),
        diff_id,
        architecture: config["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        manifest_media_type: manifest["mediaType"]
            .as_str()
            .unwrap_or(MANIFEST_MEDIA_TYPE)
            .to_string(),
        manifest: manifest_bytes,
        config: config_bytes,
    })
}

/// A reader of the layer's compressed bytes in the archive at `path`.
pub fn open_layer(path: &Path, layer: &LayerLocation) -> Result<io::Take<std::fs::File>, OciError> {
    let io_error = |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    file.seek(SeekFrom::Start(layer.offset)).map_err(io_error)?;
    Ok(file.take(layer.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_architectures_map_to_go_names() {
        assert_eq!(platform("amd64").ok(), Some(("amd64", None)));
        assert_eq!(platform("ppc64el").ok(), Some(("ppc64le", None)));
        assert_eq!(platform("armhf").ok(), Some(("arm", Some("v7"))));
        assert_eq!(platform("i386").ok(), Some(("386", None)));
        assert!(platform("hurd-i386").is_err());
        assert!(layer_media_type(Compression::Xz).is_err());
    }

    #[test]
    fn archive_is_deterministic_and_locatable() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        std::fs::write(&layer, b"not really gzip").unwrap();
        let layer_sha = sha256_hex(b"not really gzip");
        let image = OciImage {
            layer_path: &layer,
            layer_sha256: &layer_sha,
            layer_size: 15,
            compression: Compression::Gzip,
            diff_id: &"ab".repeat(32),
            debian_arch: "amd64",
            epoch: BuildEpoch(1_700_000_000),
            ref_name: "v1",
            version: "1",
            revision: "r",
            source: "s",
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        let digests = write_archive(&mut a, &image).unwrap();
        write_archive(&mut b, &image).unwrap();
        assert_eq!(a, b);
        let path = dir.path().join("x.oci.tar");
        std::fs::write(&path, &a).unwrap();
        assert!(looks_like_oci_archive(&path));
        let loc = locate_layer(&path).unwrap();
        assert_eq!(loc.sha256, layer_sha);
        assert_eq!(loc.diff_id, "ab".repeat(32));
        assert_eq!(loc.architecture, "amd64");
        let mut bytes = Vec::new();
        open_layer(&path, &loc)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, b"not really gzip");
        assert!(digests.manifest.starts_with("sha256:"));
        // A changed layer is refused, not archived.
        std::fs::write(&layer, b"not really gzix").unwrap();
        assert!(matches!(
            write_archive(&mut Vec::new(), &image),
            Err(OciError::LayerChanged { .. })
        ));
    }
}
