//! A throwaway gpg signing key in a temporary GNUPGHOME, for the real gpg and gpgv.

use std::path::Path;
use std::process::Command;

pub const UID: &str = "bakery test <bakery-test@example.org>";
pub const EMAIL: &str = "bakery-test@example.org";

/// A GNUPGHOME holding one passphrase-less ed25519 signing key; its gpg-agent stops on drop.
pub struct Keyring {
    pub home: tempfile::TempDir,
}

impl Keyring {
    pub fn new() -> Self {
        // a short path: gpg-agent's socket path must fit in 108 bytes
        let home = tempfile::Builder::new().prefix("gpg").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let status = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--quick-gen-key", UID, "ed25519", "sign", "never"])
            .status()
            .expect("gpg (gnupg) is installed");
        assert!(status.success(), "generating a throwaway key");
        Keyring { home }
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
    }
}

/// A signed release directory as a node checks it: `sha256sum -c SHA256SUMS` passes for `files`
/// files, and the real `gpgv` verifies SHA256SUMS.gpg with the published import-pubring.gpg.
pub fn assert_release_verifies(dist: &Path, files: usize) {
    let check = Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(dist).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    assert_eq!(String::from_utf8_lossy(&check.stdout).matches(": OK").count(), files);
    assert_signature_verifies(dist);
}

/// The real `gpgv` verifies `dist`'s SHA256SUMS.gpg with the published import-pubring.gpg.
pub fn assert_signature_verifies(dist: &Path) {
    let gpgv = Command::new("gpgv")
        .arg("--keyring")
        .arg(dist.join("import-pubring.gpg"))
        .arg(dist.join("SHA256SUMS.gpg"))
        .arg(dist.join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(gpgv.status.success(), "gpgv: {}", String::from_utf8_lossy(&gpgv.stderr));
}
