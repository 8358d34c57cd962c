//! Bad input exits 2 with a message that says what is wrong, and makes no download.

use std::path::Path;
use std::process::Command;

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

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn failed_downloads_name_each_url_the_cause_in_words_and_what_to_try() {
    let dir = tempfile::tempdir().unwrap();
    // An https rule for the plain-http mirror that serves the files, and a mirror nothing
    // listens on.
    let server = Server::start();
    support::fixtures::Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let https_to_plain = server.mirror_for("https://dl.k8s.io").replacen("=http://", "=https://", 1);
    let refused = format!("https://github.com=http://127.0.0.1:{}", closed_port());
    let mut command = bakery(dir.path());
    command.arg("--cache-dir").arg(dir.path().join("cache")).args(["--mirror", &https_to_plain, "--mirror", &refused]);
    command.args(["create", "kubernetes", "v1.32.0", "x86-64", "-o"]).arg(dir.path().join("out"));
    let failed = run(&mut command).expect_code(1);
    let error = &failed.stderr[failed.stderr.find("error:").expect("an error line")..];
    assert!(error.starts_with("error: 4 of 4 downloads failed:"), "{error}");
    for artifact in ["kubelet", "kubeadm", "kubectl"] {
        let line = error.lines().find(|l| l.contains(&format!("fetching {artifact}:"))).expect(artifact);
        assert!(line.contains(&format!("https://127.0.0.1:{}/dl.k8s.io/release/", server.port)), "{line}");
        assert!(line.ends_with("answered in plain http, not TLS (an https URL for a plain-http server)"), "{line}");
    }
    let cni = error.lines().find(|l| l.contains("fetching cni-plugins:")).unwrap();
    assert!(cni.ends_with("connection refused by 127.0.0.1"), "{cni}");
    assert!(
        error.contains("\ntry: a plain-http server needs an http:// URL: write the mirror's TO as http://"),
        "{error}"
    );
    assert!(error.contains("HTTPS_PROXY"), "{error}");
    for debug in ["InvalidContentType", "Query {", "os error", "client error (Connect)"] {
        assert!(!failed.stderr.contains(debug), "{debug:?} in\n{}", failed.stderr);
    }
    assert_eq!(failed.stderr.matches("error:").count(), 1, "{}", failed.stderr);
    assert_eq!(server.total_hits(), 0, "no HTTP request reached the mirror: {:?}", server.requested());
    assert!(!dir.path().join("out").exists(), "the missing output is created only for a built image");
}

#[test]
fn an_output_that_is_a_file_fails_before_any_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    std::fs::write(dir.path().join("out"), "a file").unwrap();
    let failed = create(dir.path(), &server, &[], &["kubernetes", "v1.32.0", "x86-64"]).expect_code(2);
    assert!(failed.stderr.contains("out: not a directory"), "{}", failed.stderr);
    assert_eq!(failed.stderr.matches("error:").count(), 1, "{}", failed.stderr);
    assert_eq!(server.total_hits(), 0);

    // Below a file, the missing directory cannot be created: also before any download.
    let mut command = bakery(dir.path());
    command.args(mirror_args(&server)).args(["create", "kubernetes", "v1.32.0", "x86-64", "-o"]);
    let failed = run(command.arg(dir.path().join("out/images"))).expect_code(2);
    assert!(failed.stderr.contains("out/images: a parent is not a directory"), "{}", failed.stderr);
    assert_eq!(server.total_hits(), 0);
}

/// Runs `command` with `dir` read-only: for root, whom file modes do not stop, through a
/// read-only bind mount in a private mount namespace (None, skipping `test`, where root may not
/// mount); for others with mode 0555.
fn run_with_read_only(test: &str, dir: &Path, command: &mut Command) -> Option<Run> {
    use std::os::unix::fs::PermissionsExt;
    if !support::is_root() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let done = run(command);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        return Some(done);
    }
    let mut wrapped = Command::new("unshare");
    wrapped.args(["-m", "--propagation", "private", "sh", "-c"]);
    wrapped.arg(r#"mount --bind "$RO" "$RO" && mount -o remount,bind,ro "$RO" && exec "$@""#).arg("sh");
    wrapped.arg(command.get_program()).args(command.get_args()).env_clear().env("RO", dir);
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    wrapped.current_dir(command.get_current_dir().unwrap_or(dir));
    let done = run(&mut wrapped);
    if done.stderr.starts_with("unshare:") || done.stderr.starts_with("mount:") {
        support::skip(test, &format!("cannot make a read-only bind mount: {}", done.stderr.trim()));
        return None;
    }
    Some(done)
}

#[test]
fn a_read_only_output_fails_before_any_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let why = if support::is_root() { "read-only file system" } else { "permission denied" };
    let inside = out.join("new/images");
    let cases = [
        (&out, format!("output {}: cannot write into it: {why}", out.display())),
        (&inside, format!("output {}: cannot create it in {}: {why}", inside.display(), out.display())),
    ];
    for (output, message) in cases {
        let mut command = bakery(dir.path());
        command.arg("--cache-dir").arg(dir.path().join("cache")).args(mirror_args(&server));
        command.args(["create", "kubernetes", "v1.32.0", "x86-64", "-o"]).arg(output);
        let test = "a_read_only_output_fails_before_any_download";
        let Some(failed) = run_with_read_only(test, &out, &mut command) else { return };
        let failed = failed.expect_code(2);
        assert!(failed.stderr.contains(&message), "{message:?} in\n{}", failed.stderr);
        assert_eq!(failed.stderr.matches("error:").count(), 1, "{}", failed.stderr);
        assert_eq!(server.total_hits(), 0, "{output:?}: {:?}", server.requested());
        assert_eq!(support::dir_names(&out), Vec::<String>::new());
    }
}

#[test]
fn a_mirror_rule_matching_no_url_is_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    std::fs::write(dir.path().join("out"), "a file").unwrap();
    let swapped = format!("{}/dl.k8s.io=https://dl.k8s.io", server.url());
    let failed = create(dir.path(), &server, &["--mirror", &swapped], &["kubernetes", "v1.32.0", "x86-64"]);
    let warning = failed.stderr.lines().find(|l| l.starts_with("warning: mirror rule")).unwrap_or_default();
    assert!(warning.contains(&format!("mirror rule {swapped} matches no URL of this build")), "{}", failed.stderr);
    assert!(warning.contains("FROM and TO look swapped"), "{warning}");
    assert_eq!(failed.stderr.matches("warning: mirror rule").count(), 1, "only the unused rule: {}", failed.stderr);
}
