//! Trusted OpenPGP keyrings and the one question the archive stage asks of them: did a key of
//! this keyring make this signature over these bytes, and is that key valid now?
//!
//! The policy mirrors what apt gets from `gpgv`: a signature counts only if its issuer is a
//! primary key or a signing-capable subkey of the keyring, that key (and its primary) is neither
//! revoked nor expired, the hash is not a broken one (MD5, SHA-1, RIPEMD-160), and the signature
//! is a data signature (binary or text). A cryptographically bad signature by a known key is a
//! hard failure even if another signature is good (it means the text was altered). Signatures by
//! unknown keys are ignored when another signature is good, as apt does for archives signed
//! by several keys at once.
//!
//! This module never downloads anything and never looks at the signed text beyond hashing it.

use std::io::Read;
use std::path::{Path, PathBuf};

use pgp::armor::Dearmor;
use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Packet, PacketParser, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

use super::ArchiveError;

/// The public keys of one or more keyring files, in the order they were read.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// Where the keys came from (for messages).
    origin: PathBuf,
    keys: Vec<SignedPublicKey>,
}

/// A signature that verified: who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodSignature {
    /// Fingerprint of the primary key (uppercase hex), as `keyrings/README.md` lists them.
    pub primary: String,
    /// Fingerprint of the key that made the signature (the primary or one of its subkeys).
    pub signer: String,
}

impl Keyring {
    /// Read a keyring file: binary OpenPGP (several concatenated public keys, as
    /// `/usr/share/keyrings/*.gpg`) or one ASCII-armored block.
    pub fn load(path: &Path) -> Result<Keyring, ArchiveError> {
        let bytes = std::fs::read(path).map_err(|e| ArchiveError::Keyring {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Keyring::from_bytes(&bytes, path)
    }

    /// Parse keyring bytes; `origin` names them in errors.
    ///
    /// GnuPG-written keyrings (Ubuntu's among them) carry local Trust packets after user ids and
    /// signatures; rPGP's key parser stops at them and would drop every self-signature, so
    /// they are removed here, as OpenPGP says a reader should ignore them.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Keyring, ArchiveError> {
        let err = |message: String| ArchiveError::Keyring {
            path: origin.to_path_buf(),
            message,
        };
        let armored = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
        let source: Box<dyn Read + '_> = if armored {
            Box::new(Dearmor::new(std::io::BufReader::new(bytes)))
        } else {
            Box::new(bytes)
        };
        let mut packets = Vec::new();
        for packet in PacketParser::new(std::io::BufReader::new(source)) {
            match packet {
                Ok(Packet::Trust(_) | Packet::Marker(_) | Packet::Padding(_)) => {}
                Ok(p) => packets.push(Ok(p)),
                // Packets of versions or algorithms rPGP does not know are safe to skip: a key
                // made of them cannot verify anything.
                Err(pgp::errors::Error::Unsupported { .. }) => {}
                Err(e) => return Err(err(e.to_string())),
            }
        }
        let mut keys = Vec::new();
        for (i, key) in SignedPublicKey::from_packets(packets.into_iter().peekable()).enumerate() {
            keys.push(key.map_err(|e| err(format!("key {}: {e}", i + 1)))?);
        }
        if keys.is_empty() {
            return Err(err("no public keys found".to_string()));
        }
        Ok(Keyring {
            origin: origin.to_path_buf(),
            keys,
        })
    }

    /// The file the keys were read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Fingerprints (uppercase hex) of every primary key.
    pub fn primary_fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| fingerprint_hex(&k.primary_key))
            .collect()
    }

    /// Fingerprints (uppercase hex) of every primary key and subkey.
    pub fn all_fingerprints(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in &self.keys {
            out.push(fingerprint_hex(&key.primary_key));
            out.extend(key.public_subkeys.iter().map(|s| fingerprint_hex(&s.key)));
        }
        out
    }

    /// Check `signatures` over `data` (the exact signed bytes) for the release at `url`, at
    /// time `now` (seconds since the epoch).
    ///
    /// Returns the first good signature; refuses with [`ArchiveError::BadSignature`] if a known
    /// key's signature does not verify, [`ArchiveError::UnknownKey`] if no signature comes from
    /// this keyring, [`ArchiveError::KeyNotValid`] if the only matching keys are expired, revoked
    /// or not allowed to sign, and [`ArchiveError::Unsigned`] if there is no signature at all.
    pub fn verify(
        &self,
        url: &str,
        signatures: &[Signature],
        data: &[u8],
        now: i64,
    ) -> Result<GoodSignature, ArchiveError> {
        if signatures.is_empty() {
            return Err(ArchiveError::Unsigned {
                url: url.to_string(),
            });
        }
        let mut unknown = Vec::new();
        let mut unusable = Vec::new();
        let mut good = None;
        for sig in signatures {
            let candidates = self.candidates(sig);
            if candidates.is_empty() {
                unknown.push(issuer_text(sig));
                continue;
            }
            if let Err(why) = check_data_signature(sig) {
                unusable.push(format!("signature by {}: {why}", issuer_text(sig)));
                continue;
            }
            for candidate in candidates {
                let signer = candidate.fingerprint();
                if let Err(why) = candidate.valid_at(now) {
                    unusable.push(format!("key {signer}: {why}"));
                    continue;
                }
                let verified = match candidate {
                    Candidate::Primary(k) => sig.verify(&k.primary_key, data),
                    Candidate::Subkey(_, s) => sig.verify(&s.key, data),
                };
                if let Err(e) = verified {
                    return Err(ArchiveError::BadSignature {
                        url: url.to_string(),
                        message: format!(
                            "BAD signature by key {signer} (the signed text was altered or the \
                             signature is corrupt): {e}"
                        ),
                    });
                }
                good.get_or_insert(GoodSignature {
                    primary: fingerprint_hex(&candidate.primary().primary_key),
                    signer,
                });
            }
        }
        if let Some(good) = good {
            return Ok(good);
        }
        if !unusable.is_empty() {
            return Err(ArchiveError::KeyNotValid {
                url: url.to_string(),
                message: unusable.join("; "),
            });
        }
        Err(ArchiveError::UnknownKey {
            url: url.to_string(),
            issuers: unknown.join(", "),
            keyring: self.origin.clone(),
        })
    }

    /// Every key component that claims to be the issuer of `sig`.
    fn candidates(&self, sig: &Signature) -> Vec<Candidate<'_>> {
        let ids: Vec<Vec<u8>> = sig
            .issuer_key_id()
            .iter()
            .map(|id| id.as_ref().to_vec())
            .collect();
        let fps: Vec<Vec<u8>> = sig
            .issuer_fingerprint()
            .iter()
            .map(|fp| fp.as_bytes().to_vec())
            .collect();
        let matches = |k: &dyn KeyDetails| {
            let fp = k.fingerprint();
            fps.iter().any(|f| f.as_slice() == fp.as_bytes())
                || ids
                    .iter()
                    .any(|id| id.as_slice() == k.legacy_key_id().as_ref())
        };
        let mut out = Vec::new();
        for key in &self.keys {
            if matches(&key.primary_key) {
                out.push(Candidate::Primary(key));
            }
            for sub in &key.public_subkeys {
                if matches(&sub.key) {
                    out.push(Candidate::Subkey(key, sub));
                }
            }
        }
        out
    }
}

/// A key component of the keyring that may have made a signature.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicKey, &'a SignedPublicSubKey),
}

impl<'a> Candidate<'a> {
    fn primary(self) -> &'a SignedPublicKey {
        match self {
            Candidate::Primary(k) | Candidate::Subkey(k, _) => k,
        }
    }

    fn fingerprint(self) -> String {
        match self {
            Candidate::Primary(k) => fingerprint_hex(&k.primary_key),
            Candidate::Subkey(_, s) => fingerprint_hex(&s.key),
        }
    }

    /// Whether this component may sign data at `now`: the primary is not revoked or expired,
    /// and a subkey is bound by a valid binding signature that allows signing and is neither
    /// revoked nor expired.
    fn valid_at(self, now: i64) -> Result<(), String> {
        let primary = self.primary();
        primary_valid_at(primary, now)?;
        let Candidate::Subkey(_, sub) = self else {
            return Ok(());
        };
        let pk = &primary.primary_key;
        let mut binding: Option<&Signature> = None;
        for sig in &sub.signatures {
            if sig.verify_subkey_binding(pk, &sub.key).is_err() {
                continue;
            }
            match sig.typ() {
                Some(SignatureType::SubkeyRevocation) => {
                    return Err("subkey is revoked".to_string());
                }
                Some(SignatureType::SubkeyBinding)
                    if binding.is_none_or(|b| created(sig) > created(b)) =>
                {
                    binding = Some(sig);
                }
                _ => {}
            }
        }
        let Some(binding) = binding else {
            return Err("subkey has no valid binding signature".to_string());
        };
        if !binding.key_flags().sign() {
            return Err("subkey is not allowed to sign (key flags)".to_string());
        }
        expiry_check(sub.key.created_at().as_secs(), binding, now)
    }
}

/// Revocation and expiry of a primary key, judged from its own (verified) self-signatures.
fn primary_valid_at(key: &SignedPublicKey, now: i64) -> Result<(), String> {
    let pk = &key.primary_key;
    for sig in &key.details.revocation_signatures {
        if sig.verify_key(pk).is_ok() {
            return Err("key is revoked".to_string());
        }
    }
    // The newest valid self-signature carries the current key expiration time.
    let mut self_sigs: Vec<&Signature> = key
        .details
        .direct_signatures
        .iter()
        .filter(|sig| sig.verify_key(pk).is_ok())
        .collect();
    for user in &key.details.users {
        self_sigs.extend(user.signatures.iter().filter(|sig| {
            !matches!(sig.typ(), Some(SignatureType::CertRevocation))
                && sig.verify_certification(pk, Tag::UserId, &user.id).is_ok()
        }));
    }
    let newest = self_sigs.into_iter().max_by_key(|sig| created(sig));
    match newest {
        Some(sig) => expiry_check(pk.created_at().as_secs(), sig, now),
        None => Err("key has no valid self-signature".to_string()),
    }
}

fn expiry_check(key_created: u32, self_sig: &Signature, now: i64) -> Result<(), String> {
    let Some(validity) = self_sig.key_expiration_time() else {
        return Ok(());
    };
    if validity.as_secs() == 0 {
        return Ok(());
    }
    let expires = i64::from(key_created) + validity.as_secs() as i64;
    if expires <= now {
        return Err(format!(
            "key expired at {expires} (seconds since the epoch)"
        ));
    }
    Ok(())
}

fn created(sig: &Signature) -> u32 {
    sig.created().map(|t| t.as_secs()).unwrap_or(0)
}

/// Only data signatures with a hash that is not broken are acceptable on a release file.
fn check_data_signature(sig: &Signature) -> Result<(), String> {
    match sig.typ() {
        Some(SignatureType::Binary) | Some(SignatureType::Text) => {}
        other => return Err(format!("not a data signature (type {other:?})")),
    }
    match sig.hash_alg() {
        Some(HashAlgorithm::Md5) | Some(HashAlgorithm::Sha1) | Some(HashAlgorithm::Ripemd160) => {
            Err(format!(
                "weak hash algorithm {:?} (apt refuses it too)",
                sig.hash_alg()
            ))
        }
        Some(_) => Ok(()),
        None => Err("unknown signature version".to_string()),
    }
}

/// Issuer key ids / fingerprints of a signature, for messages.
fn issuer_text(sig: &Signature) -> String {
    let mut parts: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|fp| format!("fingerprint {}", hex::encode_upper(fp.as_bytes())))
        .collect();
    parts.extend(
        sig.issuer_key_id()
            .iter()
            .map(|id| format!("key id {}", hex::encode_upper(id.as_ref()))),
    );
    if parts.is_empty() {
        "an unnamed issuer".to_string()
    } else {
        parts.join(" / ")
    }
}

/// Uppercase hex fingerprint of a key component.
pub fn fingerprint_hex(key: &impl KeyDetails) -> String {
    hex::encode_upper(key.fingerprint().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ubuntu's keyring is GnuPG-written, with Trust packets after each user id; without
    /// stripping them every key would lose its self-signature and be refused.
    #[test]
    fn gnupg_keyrings_keep_their_self_signatures() {
        for name in ["ubuntu-archive-keyring.gpg", "debian-archive-keyring.gpg"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("keyrings")
                .join(name);
            let keyring = Keyring::load(&path).unwrap();
            assert!(keyring.keys.len() >= 3, "{name}");
            for key in &keyring.keys {
                let fp = fingerprint_hex(&key.primary_key);
                assert!(
                    key.details.users.iter().any(|u| !u.signatures.is_empty()),
                    "{name}: {fp} lost its self-signatures"
                );
                // 2026-01-01: every key in these keyrings has a valid self-signature then.
                assert_eq!(primary_valid_at(key, 1_767_225_600), Ok(()), "{name}: {fp}");
            }
        }
    }

    #[test]
    fn armored_and_garbage_keyrings() {
        let origin = Path::new("test.asc");
        let err = Keyring::from_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n", origin)
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Keyring { .. }), "{err:?}");
        let err = Keyring::from_bytes(b"", origin).unwrap_err();
        assert!(err.to_string().contains("no public keys"), "{err}");
    }
}
