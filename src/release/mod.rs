//! `bakery release DIR`: a directory of images becomes a release that any static web server can
//! serve to systemd-sysupdate: `SHA256SUMS` over every valid image (and its signature),
//! `index.json`, transfer files and the public key nodes verify with. Every file is written
//! atomically, only when its content changes, under the directory's lock; `SHA256SUMS` and then
//! its signature come last. No order of two renames keeps the pair verifying in between (nodes
//! fetch both by fixed names), so the signature is the commit point: every run checks that
//! `SHA256SUMS.gpg` verifies the current `SHA256SUMS` and re-signs when it does not, which
//! repairs a run killed between the two renames (and a `create` that added a line since).

pub mod certs;
pub mod index;
pub mod transfers;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::bad_input;
use crate::image::inspect::{self, DdiInfo, Trust};
use crate::model::sums::Sha256Sums;
use crate::pipeline::publish::{self, SUMS_FILE};
use crate::pipeline::validate;
use crate::pipeline::versions::looks_prerelease_any;
use crate::sysupdate::transfer::Suffix;
use crate::util::{atomic, failpoint, gpg};
use index::{Index, IndexedImage};

/// The detached signature of `SHA256SUMS`.
pub const SIGNATURE_FILE: &str = "SHA256SUMS.gpg";
/// The public key, to install on nodes as `/etc/systemd/import-pubring.gpg`.
pub const PUBLIC_KEY_FILE: &str = "import-pubring.gpg";
pub const INDEX_FILE: &str = "index.json";

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where the release is served (`Source Path=` of the transfer files).
    pub base_url: Option<String>,
    pub sign_key: Option<String>,
    pub allow_unsigned: bool,
    pub suffix: Suffix,
    /// Invalid images are fatal instead of skipped.
    pub strict: bool,
    /// The directory is a pre-release channel.
    pub pre: bool,
    pub instances_max: u32,
    /// The PEM certificate that verifies the DDIs' signatures, published as `<ext>.crt`.
    pub verity_cert: Option<PathBuf>,
}

/// What a release run found and wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Released {
    pub images: Vec<IndexedImage>,
    pub skipped: Vec<Skipped>,
    /// Files whose content changed.
    pub written: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// An absolute http(s) URL without a trailing `/`.
pub fn base_url(url: &str) -> Result<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default()).unwrap_or_default();
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(bad_input(format!(
            "--base-url {url:?} is not an absolute http(s) URL, e.g. https://example.org/ext"
        )));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Indexes, signs and describes the images in `dir`.
pub fn release(dir: &Path, options: &Options) -> Result<Released> {
    let base_url = options.base_url.as_deref().map(base_url).transpose()?;
    match (&options.sign_key, options.allow_unsigned) {
        (Some(key), _) => gpg::require_secret_key(key)?,
        (None, true) => {
            tracing::warn!("publishing without a signature: transfer files say Verify=no, so nodes trust the transport")
        }
        (None, false) => {
            return Err(bad_input(
                "nodes check SHA256SUMS.gpg (Verify=yes): pass --sign-key KEY, or --allow-unsigned to publish Verify=no",
            ));
        }
    }
    if !dir.is_dir() {
        return Err(bad_input(format!("{} is not a directory", dir.display())));
    }
    let given = options.verity_cert.as_deref().map(certs::load).transpose()?;
    let lock = publish::lock(dir)?;
    failpoint::pause("release:locked");
    publish::recover::recover(&lock, None)?;

    // The certificates an earlier release published, unless --verity-cert replaces them all.
    let published = if given.is_some() { Default::default() } else { certs::published(dir)? };
    // The DDIs' signatures are checked against the certificates this release publishes; without
    // any, against this machine's verity.d (an unknown signer is then only a warning).
    let candidates: Vec<PathBuf> = match &given {
        Some(given) => vec![given.file.clone()],
        None => published.values().map(|c| c.file.clone()).collect(),
    };
    let trust = if candidates.is_empty() { Trust::Root(PathBuf::from("/")) } else { Trust::Files(candidates) };
    let mut released = Released::default();
    let mut ddis = Vec::new();
    for (file, path) in raw_files(dir)? {
        match check_image(&file, &path, options.pre, &trust) {
            Ok((image, ddi)) => {
                ddis.push(ddi);
                released.images.push(image);
            }
            Err(reason) => released.skipped.push(Skipped { file, reason }),
        }
    }
    // Each invalid image is named once: in the error when the release fails, else in a warning.
    let list: Vec<String> = released.skipped.iter().map(|s| format!("{}: {}", s.file, s.reason)).collect();
    if options.strict && !released.skipped.is_empty() {
        return Err(bad_input(format!("invalid images in {} (--strict):\n  {}", dir.display(), list.join("\n  "))));
    }
    if released.images.is_empty() {
        // Signing an empty SHA256SUMS would tell every node that nothing is published.
        let found =
            if list.is_empty() { " (no *.raw files)".to_string() } else { format!(":\n  {}", list.join("\n  ")) };
        return Err(bad_input(format!("no valid image in {}: nothing to release{found}", dir.display())));
    }
    for skipped in &list {
        tracing::warn!("skipping {skipped}");
    }

    let mut sums = Sha256Sums::default();
    for image in &released.images {
        sums.insert(&image.file, image.sha256).map_err(|e| bad_input(format!("image name {e}")))?;
    }
    let index = Index::new(&released.images);
    let verify = options.sign_key.is_some();
    let mut files: Vec<(String, Vec<u8>)> = vec![(INDEX_FILE.to_string(), index.to_json().into_bytes())];
    for (name, pem) in certs::for_release(dir, &released.images, &ddis, given.as_ref(), &published)? {
        sums.insert(&name, crate::model::Sha256::of(&pem)).map_err(|e| bad_input(format!("certificate name {e}")))?;
        files.push((name, pem));
    }
    if let Some(base_url) = &base_url {
        for (name, text) in transfers::for_release(&index, base_url, verify, options.instances_max, options.suffix)? {
            files.push((name, text.into_bytes()));
        }
        remove_other_suffix(dir, &files, options.suffix)?;
    } else {
        tracing::info!("no --base-url: no transfer files written");
    }
    let public = options.sign_key.as_deref().map(gpg::export_public_key).transpose()?;
    if let Some(public) = &public {
        files.insert(0, (PUBLIC_KEY_FILE.to_string(), public.clone()));
    }
    for (name, bytes) in files {
        let path = dir.join(&name);
        if write_if_changed(&path, &bytes)? {
            released.written.push(path);
        }
    }
    write_sums_and_signature(dir, &sums.render(), options.sign_key.as_deref().zip(public.as_deref()), &mut released)?;
    Ok(released)
}

/// Writes `SHA256SUMS` when it changed and then its signature by `signer` (key, public key),
/// or re-signs an unchanged one whose signature does not verify it; unsigned, a stale
/// signature is removed first.
fn write_sums_and_signature(
    dir: &Path,
    sums_text: &str,
    signer: Option<(&str, &[u8])>,
    released: &mut Released,
) -> Result<()> {
    let sums_path = dir.join(SUMS_FILE);
    let signature_path = dir.join(SIGNATURE_FILE);
    let sums_changed = std::fs::read(&sums_path).ok().as_deref() != Some(sums_text.as_bytes());
    match signer {
        Some((key, _)) if sums_changed => {
            let mut tmp = atomic::temp_beside(&sums_path)?;
            tmp.write_all(sums_text.as_bytes()).with_context(|| format!("writing {}", tmp.path().display()))?;
            let data = tmp.path().to_path_buf();
            sign_into(key, &data, &signature_path, Some((tmp, &sums_path)), released)
        }
        Some((key, public)) => {
            if signature_path.is_file() && signature_still_valid(public, dir)? {
                return Ok(());
            }
            if signature_path.exists() {
                tracing::info!(
                    "{} does not verify {}: signing it again",
                    signature_path.display(),
                    sums_path.display()
                );
            }
            sign_into(key, &sums_path, &signature_path, None, released)
        }
        None if sums_changed => {
            if signature_path.exists() {
                std::fs::remove_file(&signature_path).context("removing the stale SHA256SUMS.gpg")?;
                released.written.push(signature_path);
            }
            atomic::write_atomic(&sums_path, sums_text.as_bytes())?;
            released.written.push(sums_path);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Signs `data` into `signature`: with `sums` (the new `SHA256SUMS` as a temporary file and its
/// final path) the new file is renamed first, then its signature.
fn sign_into(
    key: &str,
    data: &Path,
    signature: &Path,
    sums: Option<(tempfile::NamedTempFile, &Path)>,
    released: &mut Released,
) -> Result<()> {
    let mut signature_tmp = atomic::temp_beside(signature)?;
    let bytes = gpg::sign_detached(key, data)?;
    signature_tmp.write_all(&bytes).with_context(|| format!("writing {}", signature_tmp.path().display()))?;
    failpoint::pause("release:pair-staged");
    if let Some((tmp, path)) = sums {
        atomic::persist(tmp, path)?;
        released.written.push(path.to_path_buf());
        failpoint::pause("release:sums-renamed");
    }
    atomic::persist(signature_tmp, signature)?;
    released.written.push(signature.to_path_buf());
    failpoint::pause("release:signed");
    Ok(())
}

/// `(file name, path)` of every regular `*.raw` file, sorted.
fn raw_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.ends_with(".raw") && !name.starts_with('.') && entry.file_type()?.is_file() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// A valid, versioned image, or why it is not one.
fn check_image(file: &str, path: &Path, pre: bool, trust: &Trust) -> Result<(IndexedImage, Option<DdiInfo>), String> {
    // the caller names the file already: keep only what is wrong with it
    let prefix = format!("{}: ", path.display());
    let inspection = inspect::inspect_with(path, file, trust).map_err(|e| {
        let why = crate::error::describe(&e);
        why.strip_prefix(&prefix).map(str::to_string).unwrap_or(why)
    })?;
    let errors: Vec<String> = validate::errors(&inspection.findings).iter().map(|f| f.describe()).collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let identity = inspection
        .identity
        .ok_or_else(|| "the name is not <ext>-<version>-<arch>.raw for its extension-release".to_string())?;
    if looks_prerelease_any(&identity.version) && !pre {
        return Err(format!(
            "{} is a pre-release, which systemd orders above its final (v1.0.0-rc.1 > v1.0.0); publish it in a --pre directory",
            identity.version
        ));
    }
    let (sha256, size) = publish::hash_file(path).map_err(|e| crate::error::describe(&e))?;
    let image = IndexedImage {
        file: file.to_string(),
        extension: identity.extension,
        version: identity.version,
        arch: identity.arch,
        sha256,
        size,
        manifest: inspection.manifest.map(index::ManifestSummary::from),
    };
    Ok((image, inspection.ddi))
}

/// Whether the existing `SHA256SUMS.gpg` still verifies `SHA256SUMS` with `public_key`.
fn signature_still_valid(public_key: &[u8], dir: &Path) -> Result<bool> {
    let keyring = tempfile::NamedTempFile::new().context("creating a temporary keyring")?;
    std::fs::write(keyring.path(), public_key)?;
    Ok(gpg::verify_detached(keyring.path(), &dir.join(SUMS_FILE), &dir.join(SIGNATURE_FILE)).is_ok())
}

/// Writes transfer files into `dir` (those that changed) and removes their counterparts with the
/// other suffix, so a directory never holds both. Returns the paths written.
pub fn write_transfers(dir: &Path, files: &[(String, String)], suffix: Suffix) -> Result<Vec<PathBuf>> {
    let _lock = publish::lock(dir)?;
    let bytes: Vec<(String, Vec<u8>)> = files.iter().map(|(n, t)| (n.clone(), t.clone().into_bytes())).collect();
    remove_other_suffix(dir, &bytes, suffix)?;
    let mut written = Vec::new();
    for (name, content) in bytes {
        let path = dir.join(name);
        if write_if_changed(&path, &content)? {
            written.push(path);
        }
    }
    Ok(written)
}

/// Removes transfer files this release would write with the other suffix (never both).
fn remove_other_suffix(dir: &Path, files: &[(String, Vec<u8>)], suffix: Suffix) -> Result<()> {
    let (ours, theirs) = (format!(".{}", suffix.extension()), format!(".{}", suffix.other().extension()));
    for (name, _) in files.iter().filter(|(n, _)| n.ends_with(&ours)) {
        let other = dir.join(format!("{}{theirs}", name.trim_end_matches(&ours)));
        if other.is_file() {
            std::fs::remove_file(&other).with_context(|| format!("removing {}", other.display()))?;
        }
    }
    Ok(())
}

/// Writes `bytes` atomically unless the file already holds them; true when it wrote.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    atomic::write_atomic(path, bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_absolute() {
        assert_eq!(base_url("https://example.org/ext/").unwrap(), "https://example.org/ext");
        for bad in ["example.org/ext", "/srv/ext", "https://", "ftp://x/y", "https://a b"] {
            assert_eq!(crate::error::exit_code(&base_url(bad).unwrap_err()), 2, "{bad}");
        }
    }
}
