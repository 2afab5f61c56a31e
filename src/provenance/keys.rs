//! Signing keys for provenance: Ed25519 private keys in PKCS#8 PEM (`-----BEGIN PRIVATE
//! KEY-----`, what `openssl genpkey -algorithm ed25519` writes) and public keys in SPKI PEM
//! (`-----BEGIN PUBLIC KEY-----`, what `openssl pkey -pubout` writes). A key's id is the hex
//! SHA-256 of its SPKI DER: `openssl pkey -pubin -in KEY.pub -outform DER | sha256sum`.
//!
//! The private key never leaves this module: [`SignKey`]'s `Debug` shows only the file and
//! the key id, and errors name the file, never its content.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// A key file larger than this is not a PEM key.
const MAX_KEY_FILE: u64 = 64 << 10;

/// Why a key cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read (or written).
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a key of the expected kind.
    #[error("{}: not {expected}", path.display())]
    Parse {
        /// The key file.
        path: PathBuf,
        /// What was expected.
        expected: &'static str,
    },
    /// `ingot key generate` never replaces a file.
    #[error("{}: already exists (a key is never overwritten; choose another --out)", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The system's random source failed.
    #[error("cannot generate a key: the system's random source failed ({0})")]
    Random(String),
}

const PRIVATE_EXPECTED: &str =
    "an Ed25519 private key in PKCS#8 PEM (as `openssl genpkey -algorithm ed25519` writes)";
const PUBLIC_EXPECTED: &str =
    "an Ed25519 public key in SPKI PEM (as `openssl pkey -pubout` or `ingot key generate` writes)";

fn read_small(path: &Path) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

/// An Ed25519 private key for signing provenance.
pub struct SignKey {
    key: SigningKey,
    keyid: String,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignKey")
            .field("path", &self.path)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl SignKey {
    /// Read a PKCS#8 PEM private key (refused, naming the file, if it is anything else).
    pub fn load(path: &Path) -> Result<SignKey, KeyError> {
        let text = read_small(path)?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyError::Parse {
            path: path.to_path_buf(),
            expected: PRIVATE_EXPECTED,
        })?;
        Ok(SignKey::from_key(key, Some(path.to_path_buf())))
    }

    /// A new random key.
    pub fn generate() -> Result<SignKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SignKey::from_key(key, None))
    }

    fn from_key(key: SigningKey, path: Option<PathBuf>) -> SignKey {
        let keyid = PublicKey::from_key(key.verifying_key()).keyid;
        SignKey { key, keyid, path }
    }

    /// The key id: hex SHA-256 of the public key's SPKI DER.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_key(self.key.verifying_key())
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// Write the key pair: `out` (PKCS#8 PEM, mode 0600) and `out.pub` (SPKI PEM), neither
    /// over an existing file. Returns the public key's path.
    pub fn write_pair(&self, out: &Path) -> Result<PathBuf, KeyError> {
        let public_path = PathBuf::from(format!("{}.pub", out.display()));
        for p in [out, public_path.as_path()] {
            if p.symlink_metadata().is_ok() {
                return Err(KeyError::Exists {
                    path: p.to_path_buf(),
                });
            }
        }
        // PKCS#8 v1 (no public key inside), byte for byte what OpenSSL writes.
        let pair = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        let private_pem = pair
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Parse {
                path: out.to_path_buf(),
                expected: PRIVATE_EXPECTED,
            })?;
        let public_pem = self.public().to_pem();
        write_new(out, private_pem.as_bytes(), 0o600)?;
        if let Err(e) = write_new(&public_path, public_pem.as_bytes(), 0o644) {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
        Ok(public_path)
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(source)
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// An Ed25519 public key for checking provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    keyid: String,
}

impl PublicKey {
    /// Read an SPKI PEM public key (refused, naming the file, if it is anything else).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read_small(path)?;
        let key = VerifyingKey::from_public_key_pem(&text).map_err(|_| KeyError::Parse {
            path: path.to_path_buf(),
            expected: PUBLIC_EXPECTED,
        })?;
        Ok(PublicKey::from_key(key))
    }

    fn from_key(key: VerifyingKey) -> PublicKey {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        PublicKey {
            key,
            keyid: hex::encode(Sha256::digest(&der)),
        }
    }

    /// Hex SHA-256 of the SPKI DER.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// SPKI PEM.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Whether `signature` is this key's (strict Ed25519 verification) of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("signing.pem");
        let key = SignKey::generate().unwrap();
        let public_path = key.write_pair(&out).unwrap();
        let mode = std::fs::metadata(&out).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        let loaded = SignKey::load(&out).unwrap();
        assert_eq!(loaded.keyid(), key.keyid());
        let public = PublicKey::load(&public_path).unwrap();
        assert_eq!(public.keyid(), key.keyid());
        assert!(public.verify(b"m", &loaded.sign(b"m")));
        assert!(!public.verify(b"n", &loaded.sign(b"m")));
        assert!(!format!("{loaded:?}").contains("BEGIN"));
        assert!(matches!(key.write_pair(&out), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn a_public_key_is_not_a_private_key_and_garbage_is_neither() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let public_path = SignKey::generate().unwrap().write_pair(&out).unwrap();
        let err = SignKey::load(&public_path).unwrap_err().to_string();
        assert!(err.contains("k.pub") && err.contains("PKCS#8"), "{err}");
        let err = PublicKey::load(&out).unwrap_err().to_string();
        assert!(err.contains("SPKI"), "{err}");
        assert!(matches!(
            SignKey::load(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
