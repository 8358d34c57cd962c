//! The verity signature: a detached PKCS#7 SignedData over the root hash's hex string, as
//! systemd-repart makes it with `PKCS7_sign(.., PKCS7_DETACHED|PKCS7_BINARY|PKCS7_NOATTR)`: no
//! signed attributes, the signer's certificate included, RSA PKCS#1 v1.5 with sha256 or ECDSA
//! P-256 with sha256 and RFC 6979 nonces (either way the same bytes for the same key and hash),
//! which systemd's userspace check accepts (and the kernel's dm-verity `root_hash_sig` for a
//! key in its keyring).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::referenced::OwnedToRef;
use der::{DecodePem, Encode};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::error::bad_input;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A signing key: RSA (PKCS#1 v1.5) or ECDSA on P-256 (RFC 6979 nonces, so the signature is
/// the same for the same key and content too).
#[derive(Clone)]
enum Key {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

/// A private key and the certificate of its public key, checked to belong together.
#[derive(Clone)]
pub struct Signer {
    key: Key,
    cert: Certificate,
    cert_der: Vec<u8>,
    pub key_path: PathBuf,
    pub cert_path: PathBuf,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key", &self.key_path).field("cert", &self.cert_path).finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) and a PEM
    /// certificate; usage errors name the file at fault.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self> {
        let read = |path: &Path, what: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| bad_input(format!("reading the signing {what} {}: {e}", path.display())))
        };
        let key_pem = read(key_path, "key")?;
        let cert_pem = read(cert_path, "certificate")?;
        let key = parse_key(&key_pem).map_err(|e| bad_input(format!("{}: {e}", key_path.display())))?;
        let cert = Certificate::from_pem(cert_pem.as_bytes())
            .map_err(|e| bad_input(format!("{}: not a PEM X.509 certificate: {e}", cert_path.display())))?;
        let spki = cert.tbs_certificate.subject_public_key_info.owned_to_ref();
        let matches = match &key {
            Key::Rsa(key) => {
                RsaPublicKey::try_from(spki).map_err(|e| {
                    bad_input(format!("{}: the certificate's key is not an RSA key: {e}", cert_path.display()))
                })? == key.to_public_key()
            }
            Key::P256(key) => {
                use p256::pkcs8::DecodePublicKey;
                let der = spki.to_der().context("encoding the certificate's key")?;
                p256::ecdsa::VerifyingKey::from_public_key_der(&der).map_err(|e| {
                    bad_input(format!("{}: the certificate's key is not a P-256 key: {e}", cert_path.display()))
                })? == *key.verifying_key()
            }
        };
        if !matches {
            return Err(bad_input(format!(
                "{} does not match {}: the certificate is for another key",
                key_path.display(),
                cert_path.display()
            )));
        }
        let cert_der = cert.to_der().context("encoding the certificate")?;
        Ok(Self { key, cert, cert_der, key_path: key_path.to_path_buf(), cert_path: cert_path.to_path_buf() })
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate's subject (`CN=...`).
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// sha256 of the DER certificate, lowercase hex (`certificateFingerprint`).
    pub fn fingerprint(&self) -> String {
        super::verity::hex(&Sha256::digest(&self.cert_der))
    }

    /// The DER PKCS#7 ContentInfo signing `content` (detached: the content is not included).
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>> {
        let (signature, signature_algorithm) = match &self.key {
            Key::Rsa(key) => (
                SigningKey::<Sha256>::new((**key).clone()).sign(content).to_vec(),
                AlgorithmIdentifierOwned { oid: RSA_ENCRYPTION, parameters: Some(der::asn1::Null.into()) },
            ),
            Key::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(content);
                (signature.to_der().to_vec(), AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None })
            }
        };
        let sha256 = AlgorithmIdentifierOwned { oid: ID_SHA256, parameters: None };
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: self.cert.tbs_certificate.issuer.clone(),
                serial_number: self.cert.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: None,
            signature_algorithm,
            signature: OctetString::new(signature)?,
            unsigned_attrs: None,
        };
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![sha256])?,
            encap_content_info: EncapsulatedContentInfo { econtent_type: ID_DATA, econtent: None },
            certificates: Some(CertificateSet(SetOfVec::try_from(vec![CertificateChoices::Certificate(
                self.cert.clone(),
            )])?)),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer])?),
        };
        let info = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&signed)? };
        Ok(info.to_der()?)
    }
}

fn parse_key(pem: &str) -> Result<Key> {
    let label = pem.lines().find_map(|l| l.strip_prefix("-----BEGIN ")).and_then(|l| l.strip_suffix("-----"));
    match label {
        Some("PRIVATE KEY") => {
            if let Ok(rsa) = RsaPrivateKey::from_pkcs8_pem(pem) {
                return Ok(Key::Rsa(Box::new(rsa)));
            }
            p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                .map(Key::P256)
                .map_err(|e| anyhow!("neither an RSA nor a P-256 private key (those sign DDIs): {e}"))
        }
        Some("RSA PRIVATE KEY") => RsaPrivateKey::from_pkcs1_pem(pem)
            .map(|k| Key::Rsa(Box::new(k)))
            .map_err(|e| anyhow!("not an RSA private key: {e}")),
        Some("EC PRIVATE KEY") => {
            let (_, der) = der::pem::decode_vec(pem.as_bytes()).map_err(|e| anyhow!("not PEM: {e}"))?;
            let key = p256::SecretKey::from_sec1_der(&der)
                .map_err(|e| anyhow!("not a P-256 private key (only the P-256 curve signs DDIs): {e}"))?;
            Ok(Key::P256(key.into()))
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            Err(anyhow!("the key is encrypted; bakery needs it unencrypted (openssl pkey -in KEY -out PLAIN)"))
        }
        Some(other) => Err(anyhow!("a PEM {other:?}, not an RSA or P-256 private key")),
        None => Err(anyhow!("not a PEM private key")),
    }
}
