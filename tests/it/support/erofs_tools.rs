//! The real erofs-utils 1.8 (`mkfs.erofs`, `fsck.erofs`, `dump.erofs`) from the Debian trixie
//! root (`BAKERY_TEST_TRIXIE_ROOT`), run on this host through the root's own dynamic loader
//! and libraries: no chroot, no mount.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::container::TRIXIE_ROOT_VAR;

/// The trixie root holding erofs-utils.
pub struct ErofsTools {
    root: PathBuf,
}

impl ErofsTools {
    /// The tools, or `None` after saying why `test` skips (a failure in CI).
    pub fn find(test: &str) -> Option<Self> {
        let Some(root) = std::env::var_os(TRIXIE_ROOT_VAR).map(PathBuf::from) else {
            super::skip(test, &format!("{TRIXIE_ROOT_VAR} is not set (scripts/test builds the trixie root)"));
            return None;
        };
        if !root.join("usr/bin/fsck.erofs").exists() || !root.join("lib64/ld-linux-x86-64.so.2").exists() {
            super::skip(test, &format!("{} has no erofs-utils for x86-64", root.display()));
            return None;
        }
        Some(Self { root })
    }

    /// `tool` (`mkfs.erofs`, `fsck.erofs`, `dump.erofs`) as a command, arguments to follow.
    pub fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.root.join("lib64/ld-linux-x86-64.so.2"));
        let libs = format!(
            "{}:{}",
            self.root.join("lib/x86_64-linux-gnu").display(),
            self.root.join("usr/lib/x86_64-linux-gnu").display()
        );
        command.arg("--library-path").arg(libs).arg(self.root.join("usr/bin").join(tool));
        command
    }

    /// `mkfs.erofs` with root-owned entries, time 0 and a fixed UUID, plus `options`.
    pub fn mkfs(&self, tree: &Path, image: &Path, options: &[&str]) {
        let out = self
            .command("mkfs.erofs")
            .args(["--all-root", "-T", "0", "-U", "6b1c9e4e-8f2a-4c55-9d3e-0e6f8a1b2c3d", "--quiet"])
            .args(options)
            .arg(image)
            .arg(tree)
            .output()
            .expect("running mkfs.erofs");
        assert!(out.status.success(), "mkfs.erofs {options:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `fsck.erofs --extract=into image`, the way hostile images are read: memory and time
    /// limited. Returns whether it succeeded, and its stderr.
    pub fn extract(&self, image: &Path, into: &Path) -> (bool, String) {
        let fsck = self.command("fsck.erofs");
        let mut command = Command::new("prlimit");
        command.args(["--as=1073741824", "--"]).arg("timeout").args(["-s", "KILL", "30"]).arg(fsck.get_program());
        command.args(fsck.get_args()).arg(format!("--extract={}", into.display())).arg(image);
        let out = command.output().expect("running fsck.erofs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
