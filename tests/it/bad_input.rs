//! Bad input exits 2 with a message that says what is wrong, and makes no download.

use std::path::Path;

use crate::support;
use support::fixtures::{default_cni_version, mirror_args, payload, sha256_hex, tgz, tgz_with_symlink};
use support::{Run, Server, bakery, run};

fn create(home: &Path, server: &Server, extra: &[&str], args: &[&str]) -> Run {
    let mut command = bakery(home);
    command.arg("--cache-dir").arg(home.join("cache")).args(mirror_args(server)).args(extra);
    command.arg("create").args(args).arg("--output").arg(home.join("out"));
    run(&mut command)
}

/// Runs `args` and checks exit code 2, every `needles` in stderr, no request and no output.
fn refused(extra: &[&str], args: &[&str], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let failed = create(dir.path(), &server, extra, args).expect_code(2);
    for needle in needles {
        assert!(failed.stderr.contains(needle), "{args:?}: missing {needle:?} in\n{}", failed.stderr);
    }
    assert_eq!(failed.stderr.matches("error:").count(), 1, "the error is printed once: {}", failed.stderr);
    assert_eq!(server.total_hits(), 0, "{args:?} made requests");
    assert!(!dir.path().join("out").join("SHA256SUMS").exists());
}

#[test]
fn unknown_extension_lists_the_known_ones() {
    refused(&[], &["kubernetis", "v1.32.0", "x86-64"], &["unknown extension \"kubernetis\"", "kubernetes"]);
}

#[test]
fn unknown_arch_lists_the_valid_ones() {
    refused(&[], &["kubernetes", "v1.32.0", "riscv64"], &["riscv64", "x86-64", "arm64"]);
}

#[test]
fn malformed_versions_are_refused() {
    for version in ["v1.32.x", "newest", "v1.32.0~rc1", "v1.32.0/../../x", "1.32.0.0"] {
        refused(&[], &["kubernetes", version, "x86-64"], &["malformed version", version]);
    }
}

#[test]
fn unknown_options_and_bad_compression_are_refused() {
    refused(&[], &["kubernetes", "v1.32.0", "x86-64", "--set", "cni=v1"], &["unknown option \"cni\"", "cni_version"]);
    refused(&[], &["kubernetes", "v1.32.0", "x86-64", "--compression", "brotli"], &["brotli", "gzip"]);
    refused(&[], &["kubernetes", "v1.32.0", "x86-64", "--mirror", "dl.k8s.io"], &["invalid mirror"]);
}

/// Writes `extensions/<name>/recipe.yaml` (and templates) into `dir`.
fn recipe_dir(dir: &Path, name: &str, recipe: &str, templates: &[(&str, &str)]) -> String {
    let folder = dir.join("extensions").join(name);
    std::fs::create_dir_all(folder.join("templates")).unwrap();
    std::fs::write(folder.join("recipe.yaml"), recipe).unwrap();
    for (file, text) in templates {
        std::fs::write(folder.join("templates").join(file), text).unwrap();
    }
    dir.join("extensions").display().to_string()
}

#[test]
fn a_recipe_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = "name: demo\ndescription: d\nartifacts:\n  - name: x\n    url: [unclosed\n";
    let extensions = recipe_dir(dir.path(), "demo", recipe, &[]);
    let file = format!("{extensions}/demo/recipe.yaml:");
    refused(&["--extensions-dir", &extensions], &["demo", "1.0.0", "x86-64"], &[&file]);
    let failed = {
        let server = Server::start();
        create(dir.path(), &server, &["--extensions-dir", &extensions], &["demo", "1.0.0", "x86-64"])
    };
    let line = failed.stderr.split(&file).nth(1).unwrap_or_default();
    assert!(line.starts_with('5') || line.starts_with('6'), "the line of the error: {}", failed.stderr);

    let unknown_key = "name: demo\ndescription: d\nartifcats: []\n";
    let extensions = recipe_dir(dir.path(), "demo", unknown_key, &[]);
    refused(&["--extensions-dir", &extensions], &["demo", "1.0.0", "x86-64"], &["recipe.yaml:3:", "artifcats"]);
}

#[test]
fn a_template_error_names_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = "name: demo\ndescription: d\ntemplates:\n  - { source: unit.service, path: usr/lib/systemd/system/demo.service }\n";
    let extensions = recipe_dir(dir.path(), "demo", recipe, &[("unit.service", "[Unit]\nDescription={{ nope }}\n")]);
    refused(
        &["--extensions-dir", &extensions],
        &["demo", "1.0.0", "x86-64"],
        &["templates/unit.service:2", "undefined"],
    );
}

#[test]
fn recipe_paths_that_escape_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let escaping_install = "name: demo\ndescription: d\nartifacts:\n  - name: x\n    url: https://dl.k8s.io/x\n    checksum: { url: \"{{ url }}.sha256\", format: digest }\n    install: { path: ../../etc/cron.d/x }\n";
    let extensions = recipe_dir(dir.path(), "demo", escaping_install, &[]);
    refused(
        &["--extensions-dir", &extensions],
        &["demo", "1.0.0", "x86-64"],
        &["install.path", "escapes the image root"],
    );

    let escaping_source =
        "name: demo\ndescription: d\ntemplates:\n  - { source: ../../../../etc/passwd, path: usr/lib/x }\n";
    let extensions = recipe_dir(dir.path(), "demo", escaping_source, &[]);
    refused(&["--extensions-dir", &extensions], &["demo", "1.0.0", "x86-64"], &["escapes the recipe folder"]);

    let outside_usr = "name: demo\ndescription: d\ntemplates:\n  - { source: a.conf, path: etc/demo.conf }\n";
    let extensions = recipe_dir(dir.path(), "demo", outside_usr, &[("a.conf", "x\n")]);
    refused(
        &["--extensions-dir", &extensions],
        &["demo", "1.0.0", "x86-64"],
        &["/etc/demo.conf", "outside /usr and /opt"],
    );
}

#[test]
fn plain_http_is_refused_unless_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = "name: demo\ndescription: d\nartifacts:\n  - name: x\n    url: http://insecure.example/x\n    checksum: { sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n    install: { path: usr/bin/x }\n";
    let extensions = recipe_dir(dir.path(), "demo", recipe, &[]);
    refused(
        &["--extensions-dir", &extensions],
        &["demo", "1.0.0", "x86-64"],
        &["refusing plain http URL http://insecure.example/x"],
    );
}

/// Serves the Kubernetes binaries and a CNI archive with `archive` as its content.
fn serve_with_cni_archive(server: &Server, archive: Vec<u8>) {
    let version = "v1.32.0";
    for name in ["kubelet", "kubeadm", "kubectl"] {
        let bytes = payload(name, 1000);
        let path = format!("/dl.k8s.io/release/{version}/bin/linux/amd64/{name}");
        server.put(&format!("{path}.sha256"), sha256_hex(&bytes));
        server.put(&path, bytes);
    }
    let cni = default_cni_version();
    let file = format!("cni-plugins-linux-amd64-{cni}.tgz");
    let path = format!("/github.com/containernetworking/plugins/releases/download/{cni}/{file}");
    server.put(&format!("{path}.sha256"), format!("{}  {file}\n", sha256_hex(&archive)));
    server.put(&path, archive);
}

#[test]
fn archive_entries_that_escape_are_refused() {
    for (archive, needle) in [
        (
            tgz(&[("./bridge", b"elf", 0o755), ("../../etc/evil", b"x", 0o644)]),
            "archive entry \"../../etc/evil\" escapes the tree",
        ),
        (tgz(&[("/etc/evil", b"x", 0o644)]), "archive entry \"/etc/evil\" escapes the tree"),
        (
            tgz_with_symlink("./bridge", "./evil", "/etc/shadow"),
            "symlink to \"/etc/shadow\" points outside /usr and /opt",
        ),
        (tgz_with_symlink("./bridge", "./up", "../../../../../etc"), "escapes the image root"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start();
        serve_with_cni_archive(&server, archive);
        let failed = create(dir.path(), &server, &[], &["kubernetes", "v1.32.0", "x86-64"]).expect_code(2);
        assert!(failed.stderr.contains(needle), "missing {needle:?} in\n{}", failed.stderr);
        assert_eq!(support::dir_names(&dir.path().join("out")), Vec::<String>::new());
    }
}
