//! The signature partition's PKCS#7 (CMS SignedData, detached, over the root hash string),
//! checked against the PEM certificates of the node's `verity.d` directories, the way systemd's
//! userspace fallback does: the signer must be one of those certificates, and its key must
//! verify the signature. Like systemd (PKCS7_NOVERIFY), no chain or validity period is checked.
//!
//! Crates: RustCrypto `cms` (SignedData), `x509-cert` (PEM certificates), `rsa` and `p256`
//! (the two key types systemd-repart and openssl make by default), `sha2`; all pure Rust with
//! default features off, so the static binary needs no OpenSSL.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");

/// Where systemd looks for verity certificates, below the node's root (CONF_PATHS("verity.d")).
pub const CERT_DIRS: [&str; 4] = ["etc/verity.d", "run/verity.d", "usr/local/lib/verity.d", "usr/lib/verity.d"];

/// A trusted certificate and the file it came from.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub file: PathBuf,
    pub cert: Certificate,
}

impl Trusted {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }
}

pub fn fingerprint(cert: &Certificate) -> String {
    let der = cert.to_der().expect("a decoded certificate encodes");
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `*.crt` certificates in `root`'s verity.d directories, in systemd's order.
pub fn trusted(root: &Path) -> Result<Vec<Trusted>> {
    let mut out = Vec::new();
    for dir in CERT_DIRS {
        let dir = root.join(dir);
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for file in files {
            out.extend(load_pem(&file)?);
        }
    }
    Ok(out)
}

/// The certificates of a PEM file.
pub fn load_pem(file: &Path) -> Result<Vec<Trusted>> {
    let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let certs = Certificate::load_pem_chain(&pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", file.display()))?;
    ensure!(!certs.is_empty(), "{}: no certificate", file.display());
    Ok(certs.into_iter().map(|cert| Trusted { file: file.to_path_buf(), cert }).collect())
}

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The PKCS#7 is malformed, or the key of the certificate it names does not verify it.
    Invalid(String),
    /// None of the trusted certificates is the signer.
    UnknownSigner(String),
}

/// Verifies the DER PKCS#7 `der` over `content` against `trusted`; returns the signer.
pub fn verify<'a>(der: &[u8], content: &[u8], trusted: &'a [Trusted]) -> Result<&'a Trusted, Rejection> {
    let signed = parse(der, content).map_err(|e| Rejection::Invalid(format!("{e:#}")))?;
    for info in signed.signer_infos.0.iter() {
        if let Some(candidate) = trusted.iter().find(|t| names(&info.sid, &t.cert)) {
            return match check(info, content, &candidate.cert) {
                Ok(()) if embeds_another(&signed, &info.sid, &candidate.cert) => Err(Rejection::Invalid(format!(
                    "the PKCS#7 carries a certificate for its signer that differs from {} ({})",
                    candidate.file.display(),
                    candidate.subject()
                ))),
                Ok(()) => Ok(candidate),
                Err(e) => Err(Rejection::Invalid(format!(
                    "the signature does not verify with {} ({}): {e:#}",
                    candidate.file.display(),
                    candidate.subject()
                ))),
            };
        }
    }
    let signer = signed
        .signer_infos
        .0
        .iter()
        .map(|i| match &i.sid {
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber { issuer, serial_number }) => {
                format!("issuer {issuer}, serial {serial_number}")
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => format!("key id {}", hex(ski.0.as_bytes())),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let dirs = CERT_DIRS.map(|d| format!("/{d}")).join(", ");
    Err(Rejection::UnknownSigner(if trusted.is_empty() {
        format!("signed by {signer}, and no certificate is installed in {dirs}")
    } else {
        format!("signed by {signer}, which is none of the {} certificates in {dirs}", trusted.len())
    }))
}

fn parse(der: &[u8], content: &[u8]) -> Result<SignedData> {
    let info = ContentInfo::from_der(der).context("not a DER PKCS#7 ContentInfo")?;
    ensure!(info.content_type == SIGNED_DATA, "PKCS#7 content type {}, not signedData", info.content_type);
    let signed: SignedData = info.content.decode_as().context("not a PKCS#7 SignedData")?;
    ensure!(signed.encap_content_info.econtent_type == DATA, "the signed content is not of type data");
    if let Some(inner) = &signed.encap_content_info.econtent {
        let inner = OctetString::from_der(&inner.to_der()?).context("the embedded content is not an octet string")?;
        ensure!(inner.as_bytes() == content, "the PKCS#7 embeds content other than the root hash");
    }
    ensure!(!signed.signer_infos.0.is_empty(), "the PKCS#7 has no signer");
    Ok(signed)
}

/// Whether `signed` carries a certificate that names the signer `sid` but is not `trusted`: its
/// bytes were changed (the key that verified is the trusted one, but the PKCS#7 is not as signed).
fn embeds_another(signed: &SignedData, sid: &SignerIdentifier, trusted: &Certificate) -> bool {
    signed.certificates.iter().flat_map(|set| set.0.iter()).any(|choice| match choice {
        cms::cert::CertificateChoices::Certificate(cert) => names(sid, cert) && cert != trusted,
        _ => false,
    })
}

fn names(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => id.issuer == tbs.issuer && id.serial_number == tbs.serial_number,
        SignerIdentifier::SubjectKeyIdentifier(ski) => tbs.extensions.iter().flatten().any(|ext| {
            ext.extn_id == SUBJECT_KEY_ID
                && OctetString::from_der(ext.extn_value.as_bytes()).is_ok_and(|own| own.as_bytes() == ski.0.as_bytes())
        }),
    }
}

/// Checks one signer's signature with `cert`'s key: over the content's digest, or over the
/// signed attributes when there are any (whose message digest must be the content's).
fn check(info: &SignerInfo, content: &[u8], cert: &Certificate) -> Result<()> {
    ensure!(info.digest_alg.oid == SHA256, "digest algorithm {}, only sha256 is accepted", info.digest_alg.oid);
    let content_digest = Sha256::digest(content);
    let signed_digest = match &info.signed_attrs {
        None => content_digest,
        Some(attrs) => {
            let value = |oid| attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.get(0).cloned());
            let digest = value(MESSAGE_DIGEST).context("the signed attributes have no message digest")?;
            let digest =
                OctetString::from_der(&digest.to_der()?).context("the message digest is not an octet string")?;
            ensure!(digest.as_bytes() == content_digest.as_slice(), "the message digest is not the root hash's");
            let ctype = value(CONTENT_TYPE).context("the signed attributes have no content type")?;
            ensure!(ObjectIdentifier::from_der(&ctype.to_der()?).ok() == Some(DATA), "signed content type is not data");
            Sha256::digest(attrs.to_der()?)
        }
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key_der = spki.to_der()?;
    let signature = info.signature.as_bytes();
    let sig_alg = info.signature_algorithm.oid;
    if spki.algorithm.oid == RSA {
        ensure!(sig_alg == RSA || sig_alg == RSA_SHA256, "signature algorithm {sig_alg} for an RSA key");
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::RsaPublicKey::from_public_key_der(&key_der).context("the certificate's RSA key")?;
        key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &signed_digest, signature).context("RSA signature")?;
    } else if sig_alg == ECDSA_SHA256 {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&key_der).context("the certificate's P-256 key")?;
        let sig = p256::ecdsa::Signature::from_der(signature).context("the ECDSA signature's encoding")?;
        key.verify_prehash(&signed_digest, &sig).context("ECDSA signature")?;
    } else {
        bail!(
            "key algorithm {} with signature algorithm {sig_alg}: only RSA and ECDSA P-256 are accepted",
            spki.algorithm.oid
        );
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
