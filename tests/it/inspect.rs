//! `bakery inspect` reads images back: bakery's own, and images made by the real mksquashfs.

use std::path::Path;
use std::process::Command;

use crate::support;
use support::fixtures::{Upstream, default_cni_version, mirror_args};
use support::{Server, bakery, run};

fn build_kubernetes(home: &Path) -> std::path::PathBuf {
    let server = Server::start();
    Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let mut command = bakery(home);
    command.arg("--cache-dir").arg(home.join("cache")).args(mirror_args(&server));
    command.args(["create", "kubernetes", "v1.32.0", "x86-64", "-o"]).arg(home.join("out"));
    run(&mut command).expect_code(0);
    home.join("out/kubernetes-v1.32.0-x86-64.raw")
}

/// A SquashFS image of `files` (path, content) made by the real mksquashfs.
fn mksquashfs(dir: &Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    for (path, content) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let image = dir.join(name);
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&image)
        .args(["-all-root", "-noappend", "-quiet", "-no-progress"])
        .status()
        .expect("mksquashfs (squashfs-tools) is installed");
    assert!(status.success());
    image
}

#[test]
fn inspect_shows_release_manifest_and_files_of_a_built_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_kubernetes(dir.path());
    let json = run(bakery(dir.path()).arg("inspect").arg(&image).arg("--json")).expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let release = &report["extension_release"];
    assert_eq!(release["path"], "/usr/lib/extension-release.d/extension-release.kubernetes");
    assert_eq!(release["fields"]["ARCHITECTURE"], "x86-64");
    assert_eq!(release["fields"]["SYSEXT_VERSION_ID"], "v1.32.0");
    assert_eq!(release["relaxed"], true);
    assert_eq!(report["manifest"]["extension"], "kubernetes");
    assert_eq!(report["compression"], "gzip");
    assert_eq!(report["findings"], serde_json::json!([]));
    let kubelet = report["files"].as_array().unwrap().iter().find(|f| f["path"] == "/usr/bin/kubelet").unwrap().clone();
    assert_eq!(kubelet["type"], "file");
    assert_eq!(kubelet["mode"], 0o755);
    assert_eq!(kubelet["size"], 3 * 128 * 1024 + 5000);

    let text = run(bakery(dir.path()).arg("inspect").arg(&image)).expect_code(0);
    assert!(text.stdout.contains(
        "release:   /usr/lib/extension-release.d/extension-release.kubernetes (user.extension-release.strict=false)"
    ));
    assert!(text.stdout.contains("-rwxr-xr-x      398216  /usr/bin/kubelet"), "{}", text.stdout);
    assert!(text.stdout.contains("findings:  none"));
}

#[test]
fn inspect_reports_what_systemd_sysext_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let image =
        mksquashfs(dir.path(), "broken.raw", &[("etc/passwd", "root:x:0:0\n"), ("usr/bin/tool", "#!/bin/sh\n")]);
    let failed = run(bakery(dir.path()).arg("inspect").arg(&image)).expect_code(2);
    assert!(failed.stdout.contains("error: /etc/passwd: outside /usr and /opt"), "{}", failed.stdout);
    assert!(failed.stdout.contains("no extension-release file"), "{}", failed.stdout);
    assert!(failed.stderr.contains("is invalid (2 error findings)"), "{}", failed.stderr);
}

#[test]
fn inspect_checks_the_release_against_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let release = "ID=_any\nARCHITECTURE=arm64\nSYSEXT_VERSION_ID=v2.0.0\n";
    let image = mksquashfs(
        dir.path(),
        "demo-v1.0.0-x86-64.raw",
        &[("usr/lib/extension-release.d/extension-release.demo", release), ("usr/bin/demo", "x")],
    );
    let failed = run(bakery(dir.path()).arg("inspect").arg(&image).arg("--json")).expect_code(2);
    let report: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    let messages: Vec<String> =
        report["findings"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap().to_string()).collect();
    assert!(
        messages.iter().any(|m| m.contains("ARCHITECTURE=arm64, but the image is named for x86-64")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("SYSEXT_VERSION_ID=v2.0.0, but the image is named for v1.0.0")),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.contains("merges only when named demo.raw")), "{messages:?}");

    // The same image named demo.raw is fine apart from the architecture mismatch not applying.
    let plain = dir.path().join("demo.raw");
    std::fs::copy(&image, &plain).unwrap();
    run(bakery(dir.path()).arg("inspect").arg(&plain)).expect_code(0);
}

#[test]
fn inspect_refuses_files_that_are_neither_squashfs_nor_erofs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.raw");
    std::fs::write(&file, vec![b'x'; 4096]).unwrap();
    let failed = run(bakery(dir.path()).arg("inspect").arg(&file)).expect_code(2);
    assert!(failed.stderr.contains("neither a SquashFS nor an EROFS image"), "{}", failed.stderr);
    let missing = run(bakery(dir.path()).arg("inspect").arg(dir.path().join("absent.raw"))).expect_code(1);
    assert!(missing.stderr.contains("absent.raw"), "{}", missing.stderr);
}

#[test]
fn inspect_reports_a_file_name_that_names_another_extension_or_version() {
    let dir = tempfile::tempdir().unwrap();
    let image = build_kubernetes(dir.path());
    for (name, needle) in [
        (
            "crio-v1.32.0-x86-64.raw",
            "names another image: this is kubernetes v1.32.0 x86-64, named kubernetes-v1.32.0-x86-64.raw",
        ),
        ("kubernetes-v1.33.0-x86-64.raw", "SYSEXT_VERSION_ID=v1.32.0, but the image is named for v1.33.0"),
    ] {
        let renamed = dir.path().join(name);
        std::fs::copy(&image, &renamed).unwrap();
        let failed = run(bakery(dir.path()).arg("inspect").arg(&renamed)).expect_code(2);
        assert!(failed.stdout.contains(needle), "{name}: {}", failed.stdout);
        assert!(!failed.stdout.contains("findings:  none"), "{}", failed.stdout);
        assert_eq!(failed.stderr.matches("error:").count(), 1, "{}", failed.stderr);
        assert!(failed.stderr.contains(&format!("{name} is invalid (1 error finding)")), "{}", failed.stderr);
    }
}
