//! DSSE (Dead Simple Signing Envelope, <https://github.com/secure-systems-lab/dsse>): the JSON
//! envelope and its pre-authentication encoding (PAE), exactly as the spec defines them, so
//! that any DSSE verifier (in-toto, securesystemslib, sigstore, a few lines of Python) checks
//! what ingot signs.
//!
//! Not here: what the payload means (see [`super::statement`]) or where keys come from (see
//! [`super::keys`]).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};

use super::keys::{PublicKey, SignKey};

/// The DSSE `payloadType` of an in-toto Statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Standard base64 on the way out (with padding); on the way in the spec allows standard or
/// URL-safe, padded or not.
const ENCODE: GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DECODE_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const DECODE_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN in ASCII
/// decimal: the bytes that are signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Which key signed: the hex SHA-256 of its SPKI DER (see [`PublicKey::keyid`]).
    #[serde(default)]
    pub keyid: String,
    /// The Ed25519 signature over [`pae`], base64.
    pub sig: String,
}

/// A DSSE envelope, as written to `<artifact>.provenance.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload, base64.
    pub payload: String,
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures (empty when the build had no signing key).
    pub signatures: Vec<EnvelopeSignature>,
}

/// Why an envelope cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not base64 where base64 is required.
    #[error("{field} is not base64")]
    Base64 {
        /// `payload` or `signatures[].sig`.
        field: &'static str,
    },
    /// Another payload type than an in-toto Statement's.
    #[error("payloadType is {0:?}, expected {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    /// No signature at all.
    #[error("the envelope has no signature")]
    Unsigned,
    /// No signature verifies under the key.
    #[error("no signature verifies under the key {keyid} ({count} signature(s) checked)")]
    BadSignature {
        /// The key's id.
        keyid: String,
        /// How many signatures were tried.
        count: usize,
    },
}

fn decode(text: &str, field: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    DECODE_STANDARD
        .decode(text)
        .or_else(|_| DECODE_URL_SAFE.decode(text))
        .map_err(|_| EnvelopeError::Base64 { field })
}

impl Envelope {
    /// Wrap `payload`, signed with `key` when there is one.
    pub fn new(payload: &[u8], key: Option<&SignKey>) -> Envelope {
        let signatures = key
            .map(|k| EnvelopeSignature {
                keyid: k.keyid().to_string(),
                sig: ENCODE.encode(k.sign(&pae(PAYLOAD_TYPE, payload))),
            })
            .into_iter()
            .collect();
        Envelope {
            payload: ENCODE.encode(payload),
            payload_type: PAYLOAD_TYPE.to_string(),
            signatures,
        }
    }

    /// The decoded payload, without checking any signature.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode(&self.payload, "payload")
    }

    /// The payload, once a signature verifies under `key` (the keyid is a hint only, as the
    /// spec says: every signature is tried).
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>, EnvelopeError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(EnvelopeError::PayloadType(self.payload_type.clone()));
        }
        if self.signatures.is_empty() {
            return Err(EnvelopeError::Unsigned);
        }
        let payload = self.payload_bytes()?;
        let signed = pae(&self.payload_type, &payload);
        for s in &self.signatures {
            let sig = decode(&s.sig, "signatures[].sig")?;
            if key.verify(&signed, &sig) {
                return Ok(payload);
            }
        }
        Err(EnvelopeError::BadSignature {
            keyid: key.keyid().to_string(),
            count: self.signatures.len(),
        })
    }

    /// The envelope as written: pretty JSON ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specs_encoding() {
        // The DSSE spec's own test vector (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn a_signed_envelope_verifies_and_a_changed_one_does_not() {
        let key = SignKey::generate().unwrap();
        let public = key.public();
        let env = Envelope::new(b"{\"a\":1}", Some(&key));
        assert_eq!(env.verify(&public).unwrap(), b"{\"a\":1}");
        assert_eq!(env.signatures[0].keyid, public.keyid());

        let mut changed = env.clone();
        changed.payload = ENCODE.encode(b"{\"a\":2}");
        assert!(matches!(
            changed.verify(&public),
            Err(EnvelopeError::BadSignature { .. })
        ));
        let mut retyped = env.clone();
        retyped.payload_type = "text/plain".into();
        assert!(matches!(
            retyped.verify(&public),
            Err(EnvelopeError::PayloadType(_))
        ));
        let other = SignKey::generate().unwrap().public();
        assert!(matches!(
            env.verify(&other),
            Err(EnvelopeError::BadSignature { .. })
        ));
        let unsigned = Envelope::new(b"{}", None);
        assert_eq!(unsigned.verify(&public), Err(EnvelopeError::Unsigned));
    }
}
