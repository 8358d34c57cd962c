//! The verity certificates of a release: `<ext>.crt` (PEM) beside the images, for nodes to
//! install as `/etc/verity.d/<ext>.crt` (`bakery butane` does). One is published for each
//! extension that has a DDI, and only when it verifies every DDI of that extension: a node
//! that requires signatures would refuse the others. `--verity-cert` sets it for every such
//! extension; without it, a `<ext>.crt` an earlier release wrote is checked and listed again, so
//! `SHA256SUMS` (and its signature) keeps covering it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use x509_cert::der::EncodePem;
use x509_cert::der::pem::LineEnding;

use super::index::IndexedImage;
use crate::ddi::read::sig;
use crate::error::bad_input;
use crate::image::inspect::DdiInfo;

/// A certificate file as loaded: its certificates' fingerprints and their PEM, re-encoded so
/// that nothing but certificates is ever published.
#[derive(Clone, Debug)]
pub struct CertFile {
    pub file: PathBuf,
    pub fingerprints: Vec<String>,
    pub pem: Vec<u8>,
}

/// Loads the PEM certificate(s) in `file`; a file that holds none is bad input.
pub fn load(file: &Path) -> Result<CertFile> {
    let trusted = sig::load_pem(file).map_err(|e| bad_input(format!("verity certificate {e:#}")))?;
    let mut pem = String::new();
    for t in &trusted {
        pem.push_str(&t.cert.to_pem(LineEnding::LF).map_err(|e| bad_input(format!("{}: {e}", file.display())))?);
    }
    Ok(CertFile {
        file: file.to_path_buf(),
        fingerprints: trusted.iter().map(sig::Trusted::fingerprint).collect(),
        pem: pem.into_bytes(),
    })
}

/// The `<name>.crt` files in `dir`, by name, loaded: one that is not a certificate is named
/// here rather than failing every DDI's check.
pub fn published(dir: &Path) -> Result<BTreeMap<String, CertFile>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if let Some(ext) = name.strip_suffix(".crt").filter(|e| !e.is_empty() && !e.starts_with('.'))
            && entry.file_type()?.is_file()
        {
            out.insert(ext.to_string(), load(&entry.path())?);
        }
    }
    Ok(out)
}

/// `(file name, PEM)` of each extension's certificate: `given`, else the one `dir` has. Every
/// DDI of the extension (`ddis[i]` belongs to `images[i]`) must be signed by it; a plain image
/// beside them is only warned about.
pub fn for_release(
    dir: &Path,
    images: &[IndexedImage],
    ddis: &[Option<DdiInfo>],
    given: Option<&CertFile>,
    published: &BTreeMap<String, CertFile>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut by_extension: BTreeMap<&str, Vec<(&IndexedImage, &Option<DdiInfo>)>> = BTreeMap::new();
    for (image, ddi) in images.iter().zip(ddis) {
        by_extension.entry(&image.extension).or_default().push((image, ddi));
    }
    let mut out = Vec::new();
    for (extension, images) in by_extension {
        if images.iter().all(|(_, ddi)| ddi.is_none()) {
            continue;
        }
        let Some(cert) = given.or(published.get(extension)).cloned() else { continue };
        for (image, ddi) in &images {
            let path = dir.join(&image.file);
            let Some(ddi) = ddi else {
                tracing::warn!(
                    "{} is not a DDI: nodes that require signed images (require_signed = true) refuse it",
                    path.display()
                );
                continue;
            };
            let why = match &ddi.signature {
                None => "it has no signature partition".to_string(),
                Some(s) => match &s.signer {
                    Some(signer) if cert.fingerprints.contains(&signer.fingerprint) => continue,
                    Some(signer) => format!("it is signed by {} ({})", signer.subject, signer.certificate),
                    None => "it is signed by another key".to_string(),
                },
            };
            return Err(bad_input(format!(
                "{} does not verify the signature of {}: {why}; nodes would refuse it",
                cert.file.display(),
                path.display()
            )));
        }
        out.push((format!("{extension}.crt"), cert.pem));
    }
    Ok(out)
}
