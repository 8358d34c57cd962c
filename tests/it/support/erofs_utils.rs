//! erofs-utils 1.8 (`fsck.erofs`, `dump.erofs`, `mkfs.erofs`) from the Debian trixie root,
//! run on this host without a chroot through the root's own dynamic loader.

use std::path::PathBuf;
use std::process::Command;

use super::container::TRIXIE_ROOT_VAR;

/// The trixie root, or `None` after saying why the test skips (a failure in CI).
pub fn root_or_skip(test: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os(TRIXIE_ROOT_VAR).map(PathBuf::from) else {
        super::skip(test, &format!("{TRIXIE_ROOT_VAR} is not set (scripts/test builds the trixie root and sets it)"));
        return None;
    };
    if !root.join("usr/bin/fsck.erofs").exists() {
        super::skip(test, &format!("{} has no erofs-utils (usr/bin/fsck.erofs)", root.display()));
        return None;
    }
    Some(root)
}

/// `tool` (`fsck.erofs`, `dump.erofs`, `mkfs.erofs`) from `root`, through its loader.
pub fn command(root: &std::path::Path, tool: &str) -> Command {
    let mut command = Command::new(root.join("lib64/ld-linux-x86-64.so.2"));
    let libs = format!("{0}/lib/x86_64-linux-gnu:{0}/usr/lib/x86_64-linux-gnu", root.display());
    command.arg("--library-path").arg(libs).arg(root.join("usr/bin").join(tool));
    command
}
