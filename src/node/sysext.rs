//! Merging: `io.systemd.sysext.Refresh` over varlink where the host offers it (systemd ≥ 256),
//! else the `systemd-sysext refresh` command (systemd 252 on Debian 12). With `--root` the
//! command gets `--root=`, since varlink only speaks for the running system. A merge that must
//! enforce an image policy ([`SIGNED_ONLY`]) always runs the command: in systemd 257,
//! `io.systemd.sysext.Refresh` takes only `class`, `force`, `noReload` and `noexec`
//! (`varlinkctl introspect /usr/bin/systemd-sysext io.systemd.sysext`), no image policy.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// systemd-sysext's varlink socket.
pub const VARLINK_SOCKET: &str = "run/systemd/io.systemd.sysext";

/// The image policy (systemd.image-policy(7)) a merge passes when the node config says
/// `require_signed = true`: a root or /usr partition must be Verity-protected with a PKCS#7
/// signature of its root hash, or absent. Policy flags are alternatives, so
/// `verity+signed+absent` would still admit a DDI whose signature is not used: only `signed`
/// requires it. A plain SquashFS or EROFS file counts as an unprotected root, so systemd
/// refuses it too. The Verity and signature partitions' rules follow from these.
pub const SIGNED_ONLY: &str = "root=signed+absent:usr=signed+absent";

/// The first systemd whose `systemd-sysext` takes `--image-policy=`.
pub const IMAGE_POLICY_SINCE: u32 = 254;

/// The policy to merge with: [`SIGNED_ONLY`] under `require_signed`, when the `systemd-sysext`
/// that runs (the one on `PATH`, with or without `--root`) knows `--image-policy=`.
///
/// systemd 252 (Debian 12) has no image policies. There bakery's own check is the only guard:
/// `observe::check` verifies the hash tree and the signature against the node root's
/// `verity.d` and refuses what is not signed by a trusted key, just before the merge; systemd
/// then sets up Verity with the root hash but does not require a signature.
pub fn merge_policy(require_signed: bool) -> Option<&'static str> {
    if !require_signed {
        return None;
    }
    let version = version();
    let policy = policy_for(require_signed, version);
    if policy.is_none() {
        tracing::debug!(
            "systemd-sysext {} takes no --image-policy= (since {IMAGE_POLICY_SINCE}): bakery's own signature check guards the merge",
            version.map(|v| v.to_string()).unwrap_or_else(|| "of an unknown version".into())
        );
    }
    policy
}

/// [`merge_policy`] for a known `systemd-sysext` version.
pub fn policy_for(require_signed: bool, version: Option<u32>) -> Option<&'static str> {
    (require_signed && version.is_some_and(|v| v >= IMAGE_POLICY_SINCE)).then_some(SIGNED_ONLY)
}

/// The version of the `systemd-sysext` on `PATH`, from its `--version` (`systemd 257 (257.13-1)`).
pub fn version() -> Option<u32> {
    let output = Command::new("systemd-sysext").arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_version(text: &str) -> Option<u32> {
    let digits: String = text.strip_prefix("systemd ")?.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Unmerges and merges again what is linked under `root`, with systemd enforcing `policy`.
pub fn refresh(root: &Path, policy: Option<&str>) -> Result<()> {
    let socket = root.join(VARLINK_SOCKET);
    if use_varlink(root, policy, socket.exists()) {
        return varlink_refresh(&socket);
    }
    let args = command_args(root, policy);
    let output = Command::new("systemd-sysext").args(&args).output().context("running systemd-sysext refresh")?;
    if !output.status.success() {
        bail!("systemd-sysext {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Whether a refresh goes over varlink: for the running system, when its socket is there, and
/// without an image policy, which `io.systemd.sysext.Refresh` does not take.
fn use_varlink(root: &Path, policy: Option<&str>, socket_exists: bool) -> bool {
    policy.is_none() && root == Path::new("/") && socket_exists
}

/// The arguments of `systemd-sysext` for a refresh of `root` under `policy`.
pub fn command_args(root: &Path, policy: Option<&str>) -> Vec<String> {
    let mut args = Vec::new();
    if root != Path::new("/") {
        args.push(format!("--root={}", root.display()));
    }
    if let Some(policy) = policy {
        args.push(format!("--image-policy={policy}"));
    }
    args.push("refresh".into());
    args
}

/// One varlink call: a JSON object ending in a NUL byte, answered the same way.
pub fn varlink_call(socket: &Path, method: &str, parameters: serde_json::Value) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut request = serde_json::to_vec(&serde_json::json!({ "method": method, "parameters": parameters }))?;
    request.push(0);
    stream.write_all(&request)?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let n = stream.read(&mut byte)?;
        if n == 0 {
            bail!("{} closed the connection before answering {method}", socket.display());
        }
        reply.extend_from_slice(&byte[..n]);
        if let Some(end) = reply.iter().position(|b| *b == 0) {
            reply.truncate(end);
            break;
        }
    }
    serde_json::from_slice(&reply).with_context(|| format!("parsing the answer to {method}"))
}

fn varlink_refresh(socket: &Path) -> Result<()> {
    let reply = varlink_call(socket, "io.systemd.sysext.Refresh", serde_json::json!({}))?;
    match reply.get("error").and_then(|e| e.as_str()) {
        None | Some("io.systemd.sysext.NoImagesFound") => Ok(()),
        Some(error) => Err(anyhow!("io.systemd.sysext.Refresh failed: {error} {}", reply["parameters"])),
    }
}

/// The extensions merged into `root`'s `/usr` and `/opt`, by image name.
pub fn merged(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = ["usr", "opt"]
        .iter()
        .filter_map(|h| std::fs::read_to_string(root.join(h).join(".systemd-sysext/extensions")).ok())
        .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A faithful stand-in for systemd-sysext's varlink socket (systemd 252 has none): reads one
    /// NUL-terminated request and answers like io.systemd.sysext does.
    fn serve_once(answer: &'static str) -> (tempfile::TempDir, std::path::PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.systemd.sysext");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).unwrap() == 1 && byte[0] != 0 {
                request.push(byte[0]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            stream.write_all(&[0]).unwrap();
            String::from_utf8(request).unwrap()
        });
        (dir, path, handle)
    }

    #[test]
    fn varlink_refresh_sends_the_method_and_accepts_no_images() {
        let (_dir, path, server) = serve_once(r#"{"error":"io.systemd.sysext.NoImagesFound","parameters":{}}"#);
        varlink_refresh(&path).unwrap();
        let request: serde_json::Value = serde_json::from_str(&server.join().unwrap()).unwrap();
        assert_eq!(request, serde_json::json!({"method": "io.systemd.sysext.Refresh", "parameters": {}}));
    }

    #[test]
    fn a_policy_is_passed_on_the_command_line_from_systemd_254() {
        assert_eq!(policy_for(true, Some(257)), Some("root=signed+absent:usr=signed+absent"));
        assert_eq!(policy_for(true, Some(254)), Some(SIGNED_ONLY));
        assert_eq!(policy_for(true, Some(253)), None, "no --image-policy= before 254");
        assert_eq!(policy_for(true, Some(252)), None);
        assert_eq!(policy_for(true, None), None);
        assert_eq!(policy_for(false, Some(257)), None);
        assert_eq!(command_args(Path::new("/"), None), ["refresh"]);
        assert_eq!(
            command_args(Path::new("/"), Some(SIGNED_ONLY)),
            ["--image-policy=root=signed+absent:usr=signed+absent", "refresh"]
        );
        assert_eq!(
            command_args(Path::new("/srv/node"), Some(SIGNED_ONLY)),
            ["--root=/srv/node", "--image-policy=root=signed+absent:usr=signed+absent", "refresh"]
        );
        assert_eq!(parse_version("systemd 257 (257.13-1~deb13u1)\n+PAM +AUDIT\n"), Some(257));
        assert_eq!(parse_version("systemd 252 (252.39-1~deb12u2)\n"), Some(252));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn only_a_merge_without_a_policy_goes_over_varlink() {
        assert!(use_varlink(Path::new("/"), None, true));
        assert!(!use_varlink(Path::new("/"), Some(SIGNED_ONLY), true), "Refresh takes no image policy");
        assert!(!use_varlink(Path::new("/"), None, false), "no socket (systemd 252)");
        assert!(!use_varlink(Path::new("/srv/node"), None, true), "varlink speaks for the running system only");
    }

    #[test]
    fn varlink_errors_are_reported() {
        let (_dir, path, _server) =
            serve_once(r#"{"error":"io.systemd.sysext.AlreadyMerged","parameters":{"hierarchy":"/usr"}}"#);
        let err = varlink_refresh(&path).unwrap_err().to_string();
        assert!(err.contains("AlreadyMerged") && err.contains("/usr"), "{err}");
    }
}
