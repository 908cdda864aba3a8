//! TLS material: a generated local CA and server certificate for first starts, loading PEM files,
//! and rustls configs for the HTTPS listener, the QUIC endpoint and Switchboard's own clients.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// TLS set-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no usable {what}")]
    Invalid { path: String, what: &'static str },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// PEM texts of a freshly generated CA and a server certificate it signed.
pub struct GeneratedTls {
    /// The local CA certificate: what clients trust.
    pub ca_pem: String,
    /// The server certificate followed by the CA certificate.
    pub chain_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

/// Generate a local CA (its key is discarded after use) and a server certificate for
/// `localhost`, `127.0.0.1`, `::1` and `extra_names`, valid for five years.
pub fn generate(extra_names: &[String]) -> Result<GeneratedTls, TlsError> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Switchboard local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = now - Duration::days(1);
    ca_params.not_after = now + Duration::days(5 * 365);
    let ca_key = KeyPair::generate()?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "Switchboard server");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(5 * 365 - 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(GeneratedTls {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", cert.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    })
}

/// Load a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Invalid { path: path.display().to_string(), what: "PEM certificate" });
    }
    Ok(certs)
}

/// Load a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Invalid { path: path.display().to_string(), what: "PEM private key" })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { path: path.display().to_string(), reason: e.to_string() })
}

/// The process-wide crypto provider (aws-lc-rs, shared with QUIC and WebRTC).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server config for `certs`/`key` offering the given ALPN protocols.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A rustls client config that trusts exactly the CA certificates in `ca_pem`.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    let roots = roots(ca_pem)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A root store holding the certificates in `ca_pem`.
pub fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &*ca_pem).filter_map(Result::ok) {
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Invalid { path: "CA PEM".to_owned(), what: "CA certificate" });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    #[test]
    fn generated_chain_is_accepted_by_a_client_trusting_the_ca() {
        let g = generate(&["sfu.test".to_owned()]).expect("generate");
        let dir = tempfile::tempdir().expect("tmp");
        let (chain, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&chain, &g.chain_pem).expect("write");
        std::fs::write(&key, &g.key_pem).expect("write");
        let certs = load_certs(&chain).expect("certs");
        assert_eq!(certs.len(), 2);
        server_config(certs.clone(), load_key(&key).expect("key"), &[b"h2"]).expect("server config");

        client_config(g.ca_pem.as_bytes(), &[]).expect("client config");
        let roots = Arc::new(roots(g.ca_pem.as_bytes()).expect("roots"));
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider()).build().expect("verifier");
        for name in ["localhost", "127.0.0.1", "::1", "sfu.test"] {
            let server_name = rustls::pki_types::ServerName::try_from(name).expect("name").to_owned();
            verifier
                .verify_server_cert(&certs[0], &certs[1..], &server_name, &[], rustls::pki_types::UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("example.com").expect("name");
        assert!(
            verifier
                .verify_server_cert(&certs[0], &certs[1..], &other, &[], rustls::pki_types::UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn missing_or_garbage_files_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("x.pem");
        assert!(load_certs(&p).is_err());
        std::fs::write(&p, "garbage").expect("write");
        assert!(load_certs(&p).is_err());
        assert!(load_key(&p).is_err());
    }
}
