//! Merging: `io.systemd.sysext.Refresh` over varlink where the host offers it (systemd ≥ 256),
//! else the `systemd-sysext refresh` command (systemd 252 on Debian 12). With `--root` the
//! command gets `--root=`, since varlink only speaks for the running system.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// systemd-sysext's varlink socket.
pub const VARLINK_SOCKET: &str = "run/systemd/io.systemd.sysext";

/// Unmerges and merges again what is linked under `root`.
pub fn refresh(root: &Path) -> Result<()> {
    let socket = root.join(VARLINK_SOCKET);
    if root == Path::new("/") && socket.exists() {
        return varlink_refresh(&socket);
    }
    let mut command = Command::new("systemd-sysext");
    if root != Path::new("/") {
        command.arg(format!("--root={}", root.display()));
    }
    let output = command.arg("refresh").output().context("running systemd-sysext refresh")?;
    if !output.status.success() {
        bail!("systemd-sysext refresh failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
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
    fn varlink_errors_are_reported() {
        let (_dir, path, _server) =
            serve_once(r#"{"error":"io.systemd.sysext.AlreadyMerged","parameters":{"hierarchy":"/usr"}}"#);
        let err = varlink_refresh(&path).unwrap_err().to_string();
        assert!(err.contains("AlreadyMerged") && err.contains("/usr"), "{err}");
    }
}
