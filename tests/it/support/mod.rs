//! Shared test support: a real HTTP server on 127.0.0.1 serving generated upstream trees, the
//! built `bakery` binary, and the real squashfs-tools and systemd-sysext.
#![allow(dead_code)]

pub mod container;
pub mod ddi;
pub mod demo;
pub mod dns;
pub mod erofs_tools;
pub mod fixtures;
pub mod golden;
pub mod gpg;
pub mod ignition;
pub mod kube_api;
pub mod process;
pub mod rng;
pub mod server;
pub mod upstreams;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use server::Server;

/// A `bakery` command with a clean environment: its own HOME and cache, no BAKERY_* variables.
pub fn bakery(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bakery"));
    command.env_clear();
    for keep in ["PATH", "TMPDIR", "LANG"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    command.env("HOME", home).env("RUST_BACKTRACE", "1").current_dir(home);
    command
}

/// The suite's own `bakery` when it is statically linked: scripts/test builds the suite with
/// `+crt-static` on x86-64, so the static-binary and container-image tests reuse it instead of
/// compiling everything a second time with scripts/build-static.
pub fn built_static() -> Option<PathBuf> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
    let ldd = Command::new("ldd").arg(&exe).output().ok()?;
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    (!text.contains("=>")).then_some(exe)
}

/// Runs a command, returning its output (stdout and stderr as text) and exit code.
pub fn run(command: &mut Command) -> Run {
    let output: Output = command.output().expect("running a command");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// `unsquashfs`, which tests must have (scripts/test installs squashfs-tools).
pub fn unsquashfs() -> Command {
    let found = Command::new("unsquashfs").arg("-v").output().is_ok();
    assert!(found, "unsquashfs not found: install squashfs-tools (scripts/test does)");
    Command::new("unsquashfs")
}

/// One `unsquashfs -lls` line: permissions, owner, size, path below the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub perms: String,
    pub owner: String,
    pub size: String,
    pub date: String,
    pub path: String,
}

/// The image's entries as the real `unsquashfs -lls` lists them.
pub fn list_image(image: &Path) -> Vec<Listed> {
    let out = run(unsquashfs().arg("-lls").arg("-n").arg(image)).expect_code(0);
    out.stdout
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches("squashfs-root").to_string();
            Listed {
                perms: fields[0].to_string(),
                owner: fields[1].to_string(),
                size: fields[2].to_string(),
                date: format!("{} {}", fields[3], fields[4]),
                path: if path.is_empty() { "/".into() } else { path },
            }
        })
        .collect()
}

/// Extracts an image with the real `unsquashfs` (xattrs included).
pub fn extract(image: &Path, into: &Path) {
    run(unsquashfs().arg("-n").arg("-d").arg(into).arg(image)).expect_code(0);
}

/// Says why `test` skips; in CI (`CI` set) a skip is a failure instead.
pub fn skip(test: &str, why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{test} cannot run in CI: {why}");
    eprintln!("skipping {test}: {why}");
}

/// Whether this process runs as root (its effective uid is 0).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Whether this process may use namespaces and loop devices (root), else why not.
pub fn root_or_skip(test: &str) -> bool {
    let root = is_root();
    if !root {
        skip(test, "needs root for mount namespaces and loop devices (CI runs it as root)");
    }
    root
}

/// Merges the images in `root/var/lib/extensions` with the real systemd-sysext in a private
/// mount namespace, runs `check` (sh, `$ROOT` set) while merged, unmerges, and returns what
/// `check` printed plus systemd-sysext's own output. The namespace is private towards the host
/// (nothing leaks onto a host whose mounts are shared) and shared inside, which systemd-sysext's
/// own mount namespace needs to hand the overlay back.
pub fn sysext_merged(root: &Path, check: &str) -> Run {
    let script = format!(
        "set -e; mount --make-rshared /; mount -t tmpfs tmpfs /run; \
         systemd-sysext --root=\"$ROOT\" merge >&2; {check}; systemd-sysext --root=\"$ROOT\" unmerge >&2"
    );
    run(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).env("ROOT", root))
}

/// A fake root with `usr/lib/os-release` for `systemd-sysext --root`.
pub fn fake_root(dir: &Path, os_release: &str) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/extensions")).unwrap();
    std::fs::write(root.join("usr/lib/os-release"), os_release).unwrap();
    root
}

/// Names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Serves each connection to `listener` on a thread of its own with `handle`, until `closing`
/// says so (checked as each connection arrives; the servers' Drop connects once to wake it).
pub fn accept_connections<S: Send + Sync + 'static>(
    listener: &std::net::TcpListener,
    shared: std::sync::Arc<S>,
    closing: fn(&S) -> bool,
    handle: fn(std::net::TcpStream, &S),
) {
    let accept = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in accept.incoming() {
            let Ok(stream) = stream else { break };
            if closing(&shared) {
                break;
            }
            // a response written in two parts (head, then body) must not wait for the peer's
            // delayed ACK (Nagle's algorithm: 40 ms on Linux each time)
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            std::thread::spawn(move || handle(stream, &shared));
        }
    });
}

/// Runs each node scenario `fn NAME(Systemd)` as two tests, `NAME::systemd_252` and
/// `NAME::systemd_257`, each skipping (failing in CI) when its node cannot boot here.
macro_rules! on_both_systemds {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::support::container::Systemd;

                #[test]
                fn systemd_252() {
                    if Systemd::V252.available(concat!(stringify!($name), "::systemd_252")) {
                        super::$name(Systemd::V252);
                    }
                }

                #[test]
                fn systemd_257() {
                    if Systemd::V257.available(concat!(stringify!($name), "::systemd_257")) {
                        super::$name(Systemd::V257);
                    }
                }
            }
        )*
    };
}

/// A self-signed RSA-2048 certificate `cert` for `subject` (`/CN=...`) and its unencrypted key
/// `key`, made by the real `openssl req -x509`.
pub fn self_signed(key: &Path, cert: &Path, subject: &str) {
    let mut openssl = Command::new("openssl");
    openssl.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", subject]);
    openssl.arg("-keyout").arg(key).arg("-out").arg(cert);
    run(&mut openssl).expect_code(0);
}
