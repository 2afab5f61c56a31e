//! A throw-away OpenPGP signing key for fixture archives.

use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SignedSecretSubKey, SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{KeyFlags, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, Tag, Timestamp};

/// An Ed25519 key pair that signs fixture releases.
///
/// The key uses the "legacy" EdDSA encoding (algorithm 22) so that GnuPG 2.2 (Debian 12's
/// `gpgv`, which apt and mmdebstrap call) accepts it too; generation takes milliseconds.
#[derive(Clone)]
pub struct FixtureKey {
    secret: SignedSecretKey,
    public: SignedPublicKey,
    /// Sign with the first secret subkey instead of the primary (as Debian's archive keys do).
    subkey_signs: bool,
}

impl FixtureKey {
    /// A new key with the user id `name <fixture@ingot.invalid>`.
    pub fn generate(name: &str) -> FixtureKey {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(format!("{name} <fixture@ingot.invalid>"))
            .build()
            .expect("fixture key parameters");
        let secret = params
            .generate(rand::thread_rng())
            .expect("generate fixture key");
        let public = SignedPublicKey::from(secret.clone());
        FixtureKey {
            secret,
            public,
            subkey_signs: false,
        }
    }

    /// A certify-only primary key with an Ed25519 signing subkey that makes every signature,
    /// the way Debian's archive keys sign `InRelease`.
    pub fn generate_with_signing_subkey(name: &str) -> FixtureKey {
        let subkey = SubkeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_sign(true)
            .build()
            .expect("fixture subkey parameters");
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .primary_user_id(format!("{name} <fixture@ingot.invalid>"))
            .subkey(subkey)
            .build()
            .expect("fixture key parameters");
        let secret = params
            .generate(rand::thread_rng())
            .expect("generate fixture key");
        let public = SignedPublicKey::from(secret.clone());
        FixtureKey {
            secret,
            public,
            subkey_signs: true,
        }
    }

    /// Uppercase hex fingerprint of the key that makes signatures (the subkey's for a key from
    /// [`FixtureKey::generate_with_signing_subkey`]).
    pub fn signing_fingerprint(&self) -> String {
        match self.secret.secret_subkeys.first() {
            Some(sub) if self.subkey_signs => {
                hex::encode_upper(sub.key.public_key().fingerprint().as_bytes())
            }
            _ => self.fingerprint(),
        }
    }

    /// A key created at `created` (seconds since the epoch) whose newest self-signature says it
    /// expires `lifetime` seconds later: with `created + lifetime` in the past, an expired key.
    pub fn generate_expiring(name: &str, created: u32, lifetime: u32) -> FixtureKey {
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .created_at(Timestamp::from_secs(created))
            .primary_user_id(format!("{name} <fixture@ingot.invalid>"))
            .build()
            .expect("fixture key parameters");
        let mut secret = params
            .generate(rand::thread_rng())
            .expect("generate fixture key");
        let pk = secret.primary_key.public_key().clone();
        let mut config = SignatureConfig::v4(
            SignatureType::CertPositive,
            pk.algorithm(),
            HashAlgorithm::Sha256,
        );
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
                created + 1,
            )))
            .expect("subpacket"),
            Subpacket::regular(SubpacketData::KeyExpirationTime(
                std::time::Duration::from_secs(u64::from(lifetime))
                    .try_into()
                    .expect("lifetime fits"),
            ))
            .expect("subpacket"),
            Subpacket::regular(SubpacketData::KeyFlags({
                let mut flags = KeyFlags::default();
                flags.set_sign(true);
                flags.set_certify(true);
                flags
            }))
            .expect("subpacket"),
            Subpacket::regular(SubpacketData::IssuerFingerprint(pk.fingerprint()))
                .expect("subpacket"),
        ];
        let user = &mut secret.details.users[0];
        let sig = config
            .sign_certification(
                &secret.primary_key,
                &pk,
                &Password::empty(),
                Tag::UserId,
                &user.id,
            )
            .expect("expiring self-signature");
        // Replace the generator's self-signature (dated now, without expiry) with this one.
        user.signatures = vec![sig];
        let public = SignedPublicKey::from(secret.clone());
        FixtureKey {
            secret,
            public,
            subkey_signs: false,
        }
    }

    /// A key whose primary carries a valid key-revocation signature (type 0x20) made by
    /// itself: it still signs, but no verifier may accept what it signs.
    pub fn generate_revoked(name: &str) -> FixtureKey {
        let mut key = FixtureKey::generate(name);
        let pk = key.secret.primary_key.public_key().clone();
        let mut config = SignatureConfig::v4(
            SignatureType::KeyRevocation,
            pk.algorithm(),
            HashAlgorithm::Sha256,
        );
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now()))
                .expect("subpacket"),
            Subpacket::regular(SubpacketData::IssuerFingerprint(pk.fingerprint()))
                .expect("subpacket"),
        ];
        let revocation = config
            .sign_key(&key.secret.primary_key, &Password::empty(), &pk)
            .expect("key revocation signature");
        key.secret.details.revocation_signatures.push(revocation);
        key.public = SignedPublicKey::from(key.secret.clone());
        key
    }

    /// Uppercase hex fingerprint of the primary key.
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.public.primary_key.fingerprint().as_bytes())
    }

    /// The public key as binary OpenPGP, as in `/usr/share/keyrings/*.gpg`.
    pub fn public_bytes(&self) -> Vec<u8> {
        self.public.to_bytes().expect("serialise public key")
    }

    /// The public key, ASCII-armored.
    pub fn public_armored(&self) -> String {
        self.public
            .to_armored_string(ArmorOptions::default())
            .expect("armor public key")
    }

    /// Write the public key as a binary keyring file at `path` (parents created); returns it.
    pub fn write_keyring(&self, path: &Path) -> PathBuf {
        write(path, &self.public_bytes());
        path.to_path_buf()
    }

    /// Write a binary keyring holding the public keys of all `keys`, concatenated.
    pub fn write_keyring_of(keys: &[&FixtureKey], path: &Path) -> PathBuf {
        let bytes: Vec<u8> = keys.iter().flat_map(|k| k.public_bytes()).collect();
        write(path, &bytes);
        path.to_path_buf()
    }

    /// `text` as an OpenPGP cleartext-signed message (the `InRelease` format).
    pub fn sign_cleartext(&self, text: &str) -> String {
        let msg = match self.signing_subkey() {
            Some(sub) => {
                CleartextSignedMessage::sign(rand::thread_rng(), text, &sub.key, &Password::empty())
            }
            None => CleartextSignedMessage::sign(
                rand::thread_rng(),
                text,
                &self.secret.primary_key,
                &Password::empty(),
            ),
        }
        .expect("cleartext-sign");
        msg.to_armored_string(ArmorOptions::default())
            .expect("armor cleartext message")
    }

    /// An ASCII-armored detached binary signature over `data` (the `Release.gpg` format).
    pub fn sign_detached(&self, data: &[u8]) -> Vec<u8> {
        let sig = match self.signing_subkey() {
            Some(sub) => DetachedSignature::sign_binary_data(
                rand::thread_rng(),
                &sub.key,
                &Password::empty(),
                HashAlgorithm::Sha256,
                data,
            ),
            None => DetachedSignature::sign_binary_data(
                rand::thread_rng(),
                &self.secret.primary_key,
                &Password::empty(),
                HashAlgorithm::Sha256,
                data,
            ),
        }
        .expect("detached-sign");
        sig.to_armored_bytes(ArmorOptions::default())
            .expect("armor detached signature")
    }
}

impl FixtureKey {
    fn signing_subkey(&self) -> Option<&SignedSecretSubKey> {
        self.secret
            .secret_subkeys
            .first()
            .filter(|_| self.subkey_signs)
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create keyring directory");
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
