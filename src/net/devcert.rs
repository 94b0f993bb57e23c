//! Self-signed development certificates (`pubq dev-cert`), made with rcgen:
//! an ECDSA P-256 key and a leaf certificate for the given DNS names and IP
//! addresses, valid for server authentication. The certificate is its own
//! issuer, so clients trust it by adding that one file as a CA
//! (`--ca-cert`, `curl --cacert`). For development only: there is no CA to
//! revoke it, and anyone holding the key can impersonate those names.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

/// Names a development certificate covers unless told otherwise.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("a certificate needs at least one name")]
    NoNames,
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A generated certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct DevCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the DER certificate, `AB:CD:...`.
    pub fingerprint: String,
    pub not_after: OffsetDateTime,
}

/// A self-signed certificate for `names` (DNS names or IP addresses; the
/// first is also the subject's common name), valid from an hour ago (clock
/// skew) for `valid_for`, with a random serial number.
pub fn generate(names: &[String], valid_for: time::Duration) -> Result<DevCert, DevCertError> {
    let first = names.first().ok_or(DevCertError::NoNames)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut serial: [u8; 16] = rand::random();
    // A positive INTEGER with no leading zero byte.
    serial[0] = (serial[0] & 0x7f) | 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    // A subject of its own: a client that trusts several of these (an old
    // and a new one around a reload) looks its issuer up by subject, and two
    // certificates with one subject would be mistaken for each other.
    let tag: String = serial[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    dn.push(DnType::OrganizationName, "pubq development certificate");
    dn.push(DnType::OrganizationalUnitName, format!("dev-cert {tag}"));
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + valid_for;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok(DevCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        fingerprint: super::tls::fingerprint(cert.der()),
        not_after: params.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_certificates_for_one_name_differ() {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = generate(&names, time::Duration::days(30)).expect("generate");
        let b = generate(&names, time::Duration::days(30)).expect("generate");
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(generate(&[], time::Duration::days(1)).is_err());
    }
}
