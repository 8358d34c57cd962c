//! The real gnupg for signatures: `gpg` signs and exports keys on the build side, `gpgv` checks
//! a detached signature against a keyring on the node side (what systemd-sysupdate does with
//! `/etc/systemd/import-pubring.gpg`), or `gpg --verify` where only gpg is installed (Debian
//! trixie's minimal systems, Flatcar). `GNUPGHOME` is honoured as gpg honours it when signing.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, anyhow};

use crate::error::bad_input;

fn run(mut command: Command, what: &str) -> Result<Output> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("{what}: {program} is not installed (Debian package gnupg / gpgv)")
        } else {
            anyhow!(e).context(format!("{what}: running {program}"))
        }
    })?;
    Ok(output)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ")
}

/// Fails with bad input when the secret key `key` is not in the keyring.
pub fn require_secret_key(key: &str) -> Result<()> {
    let mut command = Command::new("gpg");
    command.args(["--batch", "--list-secret-keys", "--with-colons", "--", key]);
    let output = run(command, "looking up the signing key")?;
    if !output.status.success() || !String::from_utf8_lossy(&output.stdout).contains("sec:") {
        let home = std::env::var("GNUPGHOME").unwrap_or_else(|_| "~/.gnupg".to_string());
        return Err(bad_input(format!("no secret key {key:?} in the gpg keyring ({home}): {}", stderr(&output))));
    }
    Ok(())
}

/// A detached binary signature of `data` by `key` (what `SHA256SUMS.gpg` holds).
pub fn sign_detached(key: &str, data: &Path) -> Result<Vec<u8>> {
    let mut command = Command::new("gpg");
    command.args(["--batch", "--yes", "--no-tty", "--local-user", key, "--detach-sign", "--output", "-"]).arg(data);
    let output = run(command, "signing")?;
    if !output.status.success() || output.stdout.is_empty() {
        return Err(anyhow!("gpg could not sign {} with {key}: {}", data.display(), stderr(&output)));
    }
    Ok(output.stdout)
}

/// The public key `key` in binary form, usable as a keyring by gpgv and systemd-sysupdate.
pub fn export_public_key(key: &str) -> Result<Vec<u8>> {
    let mut command = Command::new("gpg");
    command.args(["--batch", "--export", "--", key]);
    let output = run(command, "exporting the public key")?;
    if !output.status.success() || output.stdout.is_empty() {
        return Err(anyhow!("gpg could not export the public key {key}: {}", stderr(&output)));
    }
    Ok(output.stdout)
}

/// Checks `signature` over `data` with the keys in `keyring`, with gpgv or else gpg (as
/// systemd-pull does: no options file, no default keyring, every key of the keyring trusted, a
/// throwaway home so the caller's is never read or written); the error says why not.
pub fn verify_detached(keyring: &Path, data: &Path, signature: &Path) -> Result<()> {
    let keyring = std::path::absolute(keyring).with_context(|| format!("resolving {}", keyring.display()))?;
    let mut command = Command::new("gpgv");
    command.arg("--keyring").arg(&keyring).arg(signature).arg(data);
    let output = match command.output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let home = tempfile::Builder::new()
                .prefix("bakery-gpg")
                .tempdir()
                .context("creating a home directory for gpg --verify")?;
            let mut command = Command::new("gpg");
            command
                .args(["--no-options", "--no-default-keyring", "--no-auto-key-locate", "--no-auto-check-trustdb"])
                .args(["--batch", "--no-tty", "--trust-model=always", "--homedir"])
                .arg(home.path())
                .arg("--keyring")
                .arg(&keyring)
                .arg("--verify")
                .arg(signature)
                .arg(data);
            let output = run(command, "verifying a signature (neither gpgv nor gpg is installed)")?;
            let _ = Command::new("gpgconf").arg("--homedir").arg(home.path()).args(["--kill", "all"]).output();
            output
        }
        other => other.map_err(|e| anyhow!(e).context("verifying a signature: running gpgv"))?,
    };
    if !output.status.success() {
        return Err(anyhow!(
            "the signature {} does not verify with {}: {}",
            signature.display(),
            keyring.display(),
            stderr(&output)
        ))
        .context(format!("verifying {}", data.display()));
    }
    Ok(())
}
