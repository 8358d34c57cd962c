//! The CI container image: scripts/build-image builds the Containerfile with the real buildah
//! (vfs storage, FROM scratch, nothing pulled) into an OCI archive, the real skopeo reads its
//! manifest and config, and the real podman runs it: `bakery --version`, gpg, a shell script, and a whole
//! `create` + `release --sign-key` inside the image with a key the image's own gpg and gpg-agent
//! made, checked on the host with sha256sum and gpgv and in the image with its gpgv.
//!
//! podman on this kind of VM (cgroup v1 with a v2 hierarchy beside it, no CAP_SYS_RESOURCE):
//! crun refuses hybrid cgroups, so runc; podman's default rlimits (nofile and nproc 1048576)
//! are above what root may set here, so explicit ones; `--network none` (or `host`) keeps CNI
//! bridges and firewall rules off the host. Storage, run, tmp, runc state and network config
//! directories are the test's, the container cgroups go under a parent of the test's that it
//! removes, and /var/lib is read-only in podman's private mount namespace so the blob-info cache
//! stays in memory: the test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support;
use support::fixtures::{Upstream, default_cni_version, mirror_args, sha256_hex};
use support::gpg::{EMAIL, UID};
use support::{Run, Server, root_or_skip, run};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the test drives and the Debian package holding it; CI installs them all.
const TOOLS: &[(&str, &str)] = &[
    ("buildah", "buildah"),
    ("skopeo", "skopeo"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("gpgv", "gpgv"),
    ("busybox", "busybox-static"),
];

fn require_tools() {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(program, _)| Command::new(program).arg("--version").output().is_err())
        .map(|(_, package)| *package)
        .collect();
    assert!(missing.is_empty(), "missing Debian packages {missing:?}: apt-get install -y {}", missing.join(" "));
}

/// `skopeo inspect [ARGS] oci-archive:ARCHIVE` as JSON.
fn skopeo_inspect(args: &[&str], archive: &Path) -> serde_json::Value {
    let out = run(Command::new("skopeo").arg("inspect").args(args).arg(format!("oci-archive:{}", archive.display())))
        .expect_code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("skopeo inspect {args:?}: {e}\n{}", out.stdout))
}

/// podman with its storage, run and tmp directories and a runc wrapper in a temporary directory.
struct Podman {
    state: tempfile::TempDir,
    cgroup_parent: String,
}

impl Podman {
    fn new() -> Self {
        let state = tempfile::Builder::new().prefix("podman").tempdir().unwrap();
        // runc keeping its state here rather than in /run/runc (podman's cleanup, run by conmon,
        // drops --runtime-flag but keeps --runtime)
        let runc = state.path().join("runc");
        std::fs::write(
            &runc,
            format!("#!/bin/sh\nexec runc --root '{}' \"$@\"\n", state.path().join("runc-state").display()),
        )
        .unwrap();
        std::fs::set_permissions(&runc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Podman { state, cgroup_parent: format!("bakery-test-image-{}", std::process::id()) }
    }

    /// `podman ARGS` in a private mount namespace with /var/lib read-only.
    fn command(&self, args: &[&str]) -> Command {
        let state = self.state.path();
        let mut command = Command::new("unshare");
        command.args(["--mount", "--propagation", "private", "sh", "-c"]);
        command.arg(r#"mount --bind /var/lib /var/lib && mount -o remount,bind,ro /var/lib && exec "$@""#);
        command.args(["sh", "podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"]);
        command.args(["--events-backend", "file"]);
        for (flag, dir) in [
            ("--root", "root"),
            ("--runroot", "run"),
            ("--tmpdir", "tmp"),
            ("--runtime", "runc"),
            ("--network-config-dir", "cni"),
        ] {
            command.arg(flag).arg(state.join(dir));
        }
        command.env("TMPDIR", state).args(args);
        command
    }

    /// `podman run --rm OPTIONS IMAGE ARGS`, with no network unless OPTIONS name one; conmon stays
    /// in the test's cgroup (podman would leave an empty `<parent>/conmon` behind).
    fn run(&self, options: &[&str], image: &str, args: &[&str]) -> Run {
        let parent = format!("/{}", self.cgroup_parent);
        let mut command = self.command(&["run", "--rm", "--cgroups", "no-conmon"]);
        if !options.contains(&"--network") {
            command.args(["--network", "none"]);
        }
        command.args(["--cgroup-parent", &parent, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        run(command.args(options).arg(image).args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // the (empty) parent cgroup in each hierarchy, or in the one of cgroup v2
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.cgroup_parent)];
        if let Ok(entries) = std::fs::read_dir(root) {
            dirs.extend(entries.flatten().map(|e| e.path().join(&self.cgroup_parent)));
        }
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A bind mount `HOST:CONTAINER`.
fn volume(host: &Path, container: &str) -> String {
    format!("{}:{container}", host.display())
}

/// `scripts/build-image --binary BAKERY ARCHIVE` with the suite's bakery when it is static (else
/// `--dev`, which builds one), which prints the archive's sha256 and path.
fn build_image(archive: &Path) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(repo.join("scripts/build-image"));
    match support::built_static() {
        Some(exe) => command.arg("--binary").arg(exe),
        None => command.arg("--dev"),
    };
    let built = run(command.arg(archive).current_dir(&repo)).expect_code(0);
    let (digest, path) = built.stdout.trim().split_once("  ").expect("build-image prints <sha256>  <path>");
    assert_eq!(Path::new(path), archive, "{}", built.stdout);
    let bytes = std::fs::read(archive).unwrap();
    assert_eq!(digest, sha256_hex(&bytes), "the printed digest is the archive's");
    assert!(bytes.len() < 40 << 20, "the image is {} bytes: was the binary's debug info stripped?", bytes.len());
}

/// The manifest and config as skopeo reads them from the archive.
fn check_manifest_and_config(archive: &Path) {
    let image = skopeo_inspect(&[], archive);
    assert_eq!(image["Architecture"], "amd64", "{image:#}");
    assert_eq!(image["Os"], "linux", "{image:#}");
    assert_eq!(image["Layers"].as_array().map(Vec::len), Some(1), "FROM scratch and one COPY: {image:#}");
    let labels = &image["Labels"];
    for (label, value) in [
        ("title", "bakery"),
        ("version", VERSION),
        ("description", env!("CARGO_PKG_DESCRIPTION")),
        ("source", env!("CARGO_PKG_REPOSITORY")),
        ("licenses", env!("CARGO_PKG_LICENSE")),
    ] {
        assert_eq!(labels[format!("org.opencontainers.image.{label}")], value, "{label}: {labels:#}");
    }
    let config = skopeo_inspect(&["--config"], archive);
    let config = &config["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/bakery"]), "{config:#}");
    assert_eq!(config["WorkingDir"], "/work", "{config:#}");
    let env = config["Env"].as_array().unwrap();
    assert!(env.iter().any(|v| v == "HOME=/root"), "{config:#}");
}

/// In the image: a key made by its gpg and gpg-agent, `create` from the test's server on
/// 127.0.0.1 (host network) and `release --sign-key`, in /work (the WORKDIR, bound to `work`).
fn signed_release_in_image(podman: &Podman, image: &str, work: &Path) {
    let gnupg = work.join(".gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let work_volume = volume(work, "/work");
    let keyring = ["-v", &work_volume, "-e", "GNUPGHOME=/work/.gnupg"];

    let mut options = keyring.to_vec();
    options.extend(["--entrypoint", "/usr/bin/gpg"]);
    let mut key = vec!["--batch", "--pinentry-mode", "loopback", "--passphrase", ""];
    key.extend(["--quick-gen-key", UID, "ed25519", "sign", "never"]);
    podman.run(&options, image, &key).expect_code(0);

    let server = Server::start();
    Upstream::kubernetes(&server, "v1.32.3", "amd64", &default_cni_version());
    let mirrors = mirror_args(&server);
    let mut create: Vec<&str> = mirrors.iter().map(String::as_str).collect();
    create.extend(["--cache-dir", "/tmp/cache", "create", "kubernetes", "v1.32.3", "x86-64", "-o", "dist"]);
    podman.run(&["-v", &work_volume, "--network", "host"], image, &create).expect_code(0);

    let release = ["release", "dist", "--base-url", "https://example.org/ext", "--sign-key", EMAIL];
    podman.run(&keyring, image, &release).expect_code(0);
}

#[test]
fn the_ci_image_builds_with_buildah_and_runs_create_and_a_signed_release() {
    if !root_or_skip("the_ci_image_builds_with_buildah_and_runs_create_and_a_signed_release (buildah, podman)") {
        return;
    }
    require_tools();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("image.tar");
    build_image(&archive);
    check_manifest_and_config(&archive);

    let podman = Podman::new();
    let pulled = run(&mut podman.command(&["pull", "--quiet", &format!("oci-archive:{}", archive.display())]));
    let id = pulled.expect_code(0).stdout.trim().to_string();
    let names = run(&mut podman.command(&["images", "--format", "{{.Repository}}:{{.Tag}}"])).expect_code(0);
    assert_eq!(names.stdout, format!("localhost/bakery:{VERSION}\n"), "the archive names the image");

    let version = podman.run(&[], &id, &["--version"]).expect_code(0);
    assert_eq!(version.stdout, format!("bakery {VERSION}\n"));
    let gpg = podman.run(&["--entrypoint", "/usr/bin/gpg"], &id, &["--version"]).expect_code(0);
    assert!(gpg.stdout.starts_with("gpg (GnuPG) "), "{}", gpg.stdout);
    assert!(gpg.stdout.contains("\nHome: /root/.gnupg\n"), "GNUPGHOME defaults to root's: {}", gpg.stdout);

    // CI steps run scripts: /bin/sh and busybox's tools, with bakery and gpg on PATH
    let script = "echo ok | sha256sum && command -v bakery && command -v gpg";
    let shell = podman.run(&["--entrypoint", "/bin/sh"], &id, &["-c", script]).expect_code(0);
    assert_eq!(shell.stdout, format!("{}  -\n/usr/bin/bakery\n/usr/bin/gpg\n", sha256_hex(b"ok\n")));

    // a short path: gpg-agent's socket goes in GNUPGHOME
    let work = tempfile::Builder::new().prefix("image").tempdir_in("/tmp").unwrap();
    signed_release_in_image(&podman, &id, work.path());

    // the host's sha256sum and gpgv, then the image's gpgv
    let dist = work.path().join("dist");
    let listing = support::list_image(&dist.join("kubernetes-v1.32.3-x86-64.raw"));
    assert!(listing.iter().any(|l| l.path == "/usr/bin/kubelet"), "{listing:?}");
    let sums = run(Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&dist)).expect_code(0);
    assert_eq!(sums.stdout, "kubernetes-v1.32.3-x86-64.raw: OK\n");
    let mut gpgv = Command::new("gpgv");
    gpgv.arg("--keyring").arg(dist.join("import-pubring.gpg"));
    run(gpgv.arg(dist.join("SHA256SUMS.gpg")).arg(dist.join("SHA256SUMS"))).expect_code(0);
    let dist_volume = volume(&dist, "/dist:ro");
    let verify = ["--keyring", "/dist/import-pubring.gpg", "/dist/SHA256SUMS.gpg", "/dist/SHA256SUMS"];
    let checked = podman.run(&["-v", &dist_volume, "--entrypoint", "/usr/bin/gpgv"], &id, &verify).expect_code(0);
    assert!(checked.stderr.contains(&format!("Good signature from \"{UID}\"")), "{}", checked.stderr);
}
