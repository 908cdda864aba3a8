//! The ES256 (ECDSA P-256) keys that sign access tokens and webhooks, and the JWKS that publishes
//! their public halves. The current key signs; retired keys only verify.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use std::collections::HashMap;
use std::path::Path;

/// Failures loading or creating keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot read key file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("key file {path} holds no PKCS#8 P-256 private key: {reason}")]
    Invalid { path: String, reason: String },
    #[error("key generation failed")]
    Generate,
}

/// One P-256 key pair with its key ID.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl SigningKey {
    /// Parse a PKCS#8 PEM private key.
    pub fn from_pem(pem: &[u8], label: &str) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::Invalid { path: label.to_owned(), reason };
        let der = match rustls_pemfile::private_key(&mut &*pem) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => der,
            Ok(Some(_)) => return Err(invalid("not PKCS#8 (convert with `openssl pkcs8 -topk8 -nocrypt`)".into())),
            Ok(None) => return Err(invalid("no PEM private key block".into())),
            Err(e) => return Err(invalid(e.to_string())),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
            .map_err(|e| invalid(e.to_string()))?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(Self { pair, kid })
    }

    /// Read a PKCS#8 PEM file.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path)
            .map_err(|e| KeyError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// A new random key as PKCS#8 PEM text.
    pub fn generate_pem() -> Result<String, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| KeyError::Generate)?;
        Ok(pem_encode("PRIVATE KEY", doc.as_ref()))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Uncompressed SEC1 public point (0x04 || x || y).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// A compact JWS (`header.payload.signature`) over `claims`.
    pub fn sign_jwt(&self, claims: &serde_json::Value) -> Result<String, KeyError> {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let mut out = String::with_capacity(512);
        out.push_str(&B64URL.encode(header.to_string()));
        out.push('.');
        out.push_str(&B64URL.encode(claims.to_string()));
        let sig = self.pair.sign(&SystemRandom::new(), out.as_bytes()).map_err(|_| KeyError::Generate)?;
        out.push('.');
        out.push_str(&B64URL.encode(sig.as_ref()));
        Ok(out)
    }
}

/// The current signing key plus the public keys that verify (current and retired).
pub struct KeyRing {
    current: SigningKey,
    verifying: HashMap<String, Vec<u8>>,
    jwks: String,
}

impl KeyRing {
    pub fn new(current: SigningKey, retired: Vec<SigningKey>) -> Self {
        let mut verifying = HashMap::new();
        let mut jwk_list = Vec::new();
        for key in std::iter::once(&current).chain(retired.iter()) {
            if verifying.insert(key.kid.clone(), key.public_key().to_vec()).is_none() {
                jwk_list.push(jwk(key));
            }
        }
        let jwks = serde_json::to_string(&Jwks { keys: jwk_list }).expect("a JWKS of strings serializes");
        Self { current, verifying, jwks }
    }

    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// Verify an ES256 signature made by the key `kid`. Returns `false` for unknown keys too.
    pub fn verify(&self, kid: &str, message: &[u8], signature: &[u8]) -> Option<bool> {
        let public = self.verifying.get(kid)?;
        Some(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).verify(message, signature).is_ok())
    }
}

/// The JWKS document (RFC 7517): the keys that verify access tokens.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// One P-256 public key.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `EC`.
    kty: &'static str,
    /// `P-256`.
    crv: &'static str,
    /// `ES256`.
    alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    use_: &'static str,
    /// The `kid` in a token's header.
    kid: String,
    /// base64url of the point's x coordinate.
    x: String,
    /// base64url of the point's y coordinate.
    y: String,
}

fn jwk(key: &SigningKey) -> Jwk {
    let point = key.public_key();
    // An uncompressed P-256 point is 65 bytes: 0x04, 32 bytes of x, 32 bytes of y.
    let (x, y) = point[1..].split_at(32);
    Jwk {
        kty: "EC",
        crv: "P-256",
        alg: "ES256",
        use_: "sig",
        kid: key.kid.clone(),
        x: B64URL.encode(x),
        y: B64URL.encode(y),
    }
}

fn key_id(public: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, public);
    B64URL.encode(&hash.as_ref()[..12])
}

/// PEM-encode DER bytes with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 output is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_signs() {
        let pem = SigningKey::generate_pem().expect("generate");
        let key = SigningKey::from_pem(pem.as_bytes(), "test").expect("parse");
        let kid = key.kid().to_owned();
        let ring = KeyRing::new(key, vec![]);
        let jwt = ring.current().sign_jwt(&serde_json::json!({"a": 1})).expect("sign");
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let sig = B64URL.decode(sig).expect("b64");
        assert_eq!(ring.verify(&kid, input.as_bytes(), &sig), Some(true));
        assert_eq!(ring.verify(&kid, b"other", &sig), Some(false));
        assert_eq!(ring.verify("nope", input.as_bytes(), &sig), None);
        let jwks: serde_json::Value = serde_json::from_str(ring.jwks_json()).expect("json");
        assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    }

    #[test]
    fn rejects_garbage_pem() {
        assert!(SigningKey::from_pem(b"not a key", "x").is_err());
        let pem = pem_encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert!(SigningKey::from_pem(pem.as_bytes(), "x").is_err());
    }
}
