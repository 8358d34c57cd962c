//! `bakery node bootstrap`: components from a local directory, an HTTP repository served on
//! 127.0.0.1 and ZIP archives, planned and applied on a temporary root; the shipped kubeadm
//! worker components rendered and parsed; and on a real systemd in a container, a release of
//! test components installed, re-run (nothing changes), upgraded (only what changed), and a
//! failing script resumed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support;
use base64::Engine;
use serde_json::Value;
use support::container::{Bind, Container, Systemd};
use support::demo::{Demo, RELEASE_URL};
use support::fixtures::sha256_hex;
use support::{Run, Server, bakery, run};

/// Test components: a service, its templated configuration, a bystander service, a component that
/// a later release drops, a component whose script fails until /etc/allow-fails exists, and the
/// demo extension.
fn write_components(dir: &Path) {
    let files: &[(&str, &str)] = &[
        (
            "releases.yaml",
            r#"releases:
  r1:
    components:
      - { name: greeter, version: "1" }
      - { name: greeter-config, version: "~1" }
      - { name: bystander, version: "1" }
      - { name: extra, version: "1" }
      - { name: control-only, version: "1", tags: [control-plane] }
  r2:
    components:
      - { name: greeter, version: "1" }
      - { name: greeter-config, version: "~2" }
      - { name: bystander, version: "1" }
  r3:
    components:
      - { name: greeter, version: "1" }
      - { name: greeter-config, version: "~2" }
      - { name: bystander, version: "1" }
      - { name: early, version: "1" }
      - { name: fails, version: "1" }
      - { name: after, version: "1" }
  r4:
    components:
      - { name: demo-ext, version: "v1.0.0" }
"#,
        ),
        (
            "greeter/component.yaml",
            r#"name: greeter
description: a service that prints its greeting
versions:
  "*":
    install:
      - file: { source: greeter.service, dest: /etc/systemd/system/greeter.service }
      - service: { name: greeter.service, enabled: true, state: started }
    uninstall:
      - service: { name: greeter.service, enabled: false, state: stopped }
      - absent: { path: /etc/systemd/system/greeter.service }
"#,
        ),
        (
            "greeter/greeter.service",
            "[Unit]\nDescription=greeter\n\n[Service]\nExecStartPre=-/bin/sh -c 'cat /etc/greeter/greeting > /run/greeter.out'\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n",
        ),
        (
            "greeter-config/component.yaml",
            r#"name: greeter-config
versions:
  "*":
    install:
      - template: { source: greeting, dest: "/etc/greeter/greeting", mode: "0640" }
      - service: { name: greeter.service, state: restarted }
    uninstall:
      - absent: { path: /etc/greeter, recursive: true }
"#,
        ),
        (
            "greeter-config/greeting",
            "{{ metadata.greeting }}, {{ dig('node', 'name', 'node', metadata) | quote }} from {{ release }} ({{ version }}, revision {{ revision }})\n",
        ),
        (
            "bystander/component.yaml",
            r#"name: bystander
versions:
  "*":
    install:
      - file: { source: bystander.service, dest: /etc/systemd/system/bystander.service }
      - service: { name: bystander.service, state: started }
"#,
        ),
        ("bystander/bystander.service", "[Service]\nExecStart=/bin/sleep infinity\n"),
        (
            "extra/component.yaml",
            r#"name: extra
versions:
  "*":
    install:
      - file: { source: extra.conf, dest: /etc/extra.conf }
    uninstall:
      - absent: { path: /etc/extra.conf }
      - script: { run: "echo uninstalled {{ component }} > /run/extra-uninstalled" }
"#,
        ),
        ("extra/extra.conf", "extra\n"),
        (
            "control-only/component.yaml",
            "name: control-only\nversions:\n  \"*\":\n    install: [{ file: { source: c, dest: /etc/control-only } }]\n",
        ),
        ("control-only/c", "c\n"),
        (
            "early/component.yaml",
            "name: early\nversions:\n  \"*\":\n    install: [{ file: { source: e, dest: /etc/early } }]\n",
        ),
        ("early/e", "early\n"),
        (
            "fails/component.yaml",
            "name: fails\nversions:\n  \"*\":\n    install: [{ script: { run: \"echo trying; test -f /etc/allow-fails || { echo not allowed >&2; exit 3; }\", timeout: 10 } }]\n",
        ),
        (
            "after/component.yaml",
            "name: after\nversions:\n  \"*\":\n    install: [{ file: { source: a, dest: /etc/after } }]\n",
        ),
        ("after/a", "after\n"),
        (
            "demo-ext/component.yaml",
            "name: demo-ext\nversions:\n  \"*\":\n    install: [{ extension: { name: demo, version: \"{{ version }}\" } }]\n",
        ),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// A node root with os-release and metadata, and the test components beside it.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let root = Root { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(root.root().join("etc/bakery")).unwrap();
        std::fs::write(root.root().join("etc/os-release"), "ID=debian\n").unwrap();
        std::fs::write(
            root.root().join("etc/bakery/metadata.json"),
            r#"{"greeting": "hello", "node": {"name": "n1"}}"#,
        )
        .unwrap();
        write_components(&root.components());
        root
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn components(&self) -> PathBuf {
        self.dir.path().join("components")
    }

    fn bootstrap(&self, args: &[&str]) -> Run {
        let mut command = bakery(self.dir.path());
        command.args(args.iter().take_while(|a| **a != "--").copied());
        command.arg("node").arg("--root").arg(self.root()).arg("bootstrap");
        command.args(args.iter().skip_while(|a| **a != "--").skip(1).copied());
        run(&mut command)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root().join(path.trim_start_matches('/'))).unwrap()
    }

    fn records(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.root().join("var/lib/bakery/versions.json")).unwrap()).unwrap()
    }
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    for (name, data) in entries {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap();
    out.into_inner()
}

/// Every file of `dir` as (relative path, bytes).
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            out.push((rel, std::fs::read(entry.path()).unwrap()));
        }
    }
    out
}

#[test]
fn a_local_repository_installs_upgrades_and_removes_under_a_root() {
    let root = Root::new();
    let repo = root.components();
    let repo = repo.to_str().unwrap();
    let first = root.bootstrap(&["--", "--release", "r1", "--components", repo]).expect_code(0);
    assert!(first.stderr.contains("greeter-config r1~1: install"), "{first:?}");
    assert_eq!(root.read("/etc/greeter/greeting"), "hello, \"n1\" from r1 (r1~1, revision 1)\n");
    let mode = std::fs::metadata(root.root().join("etc/greeter/greeting")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o7777, 0o640);
    let wants = std::fs::read_link(root.root().join("etc/systemd/system/multi-user.target.wants/greeter.service"));
    assert_eq!(wants.unwrap(), Path::new("/etc/systemd/system/greeter.service"), "enabled as systemctl --root does");
    assert!(!root.root().join("etc/control-only").exists(), "tagged for another role");
    let records = root.records();
    assert_eq!(records["components"]["greeter-config"]["version"], "r1~1");
    assert_eq!(records["release"]["version"], "r1");
    assert_eq!(records["release"]["role"], "worker");

    let again = root.bootstrap(&["--", "--release", "r1", "--components", repo]).expect_code(0);
    assert!(again.stdout.contains("release r1: nothing to do"), "{again:?}");

    let second =
        root.bootstrap(&["--", "--release", "r2", "--components", repo, "--set", "greeting=hi"]).expect_code(0);
    assert!(second.stderr.contains("extra 1: remove") && second.stderr.contains("upgrade from r1~1"), "{second:?}");
    assert_eq!(root.read("/etc/greeter/greeting"), "hi, \"n1\" from r2 (r2~2, revision 2)\n");
    assert!(!root.root().join("etc/extra.conf").exists(), "uninstalled");
    let records = root.records();
    assert_eq!(records["components"].get("extra"), None);
    assert_eq!(records["components"]["greeter-config"]["version"], "r2~2");

    let status = run(bakery(root.dir.path()).arg("node").arg("--root").arg(root.root()).args(["--json", "status"]));
    let status: Value = serde_json::from_str(&status.expect_code(0).stdout).unwrap();
    let listed: Vec<&str> =
        status["components"].as_array().unwrap().iter().map(|c| c["component"].as_str().unwrap()).collect();
    assert_eq!(listed, ["greeter", "greeter-config", "bystander"]);
    assert_eq!(status["release"]["version"], "r2");
}

#[test]
fn bad_metadata_and_templates_fail_naming_the_key_and_change_nothing() {
    let root = Root::new();
    std::fs::write(root.root().join("etc/bakery/metadata.json"), "{}").unwrap();
    let repo = root.components();
    let failed = root.bootstrap(&["--", "--release", "r1", "--components", repo.to_str().unwrap()]).expect_code(2);
    assert!(
        failed.stderr.contains("greeter-config/greeting:1:") && failed.stderr.contains("metadata.greeting"),
        "{failed:?}"
    );
    assert!(!root.root().join("etc/systemd").exists(), "nothing was written: {:?}", tree(&root.root()));
    assert!(!root.root().join("var/lib/bakery/versions.json").exists());
    let unknown = root.bootstrap(&["--", "--release", "r9", "--components", repo.to_str().unwrap()]).expect_code(2);
    assert!(unknown.stderr.contains("release r9 is not in the release map"), "{unknown:?}");
    let broken = root.root().join("meta.yaml");
    std::fs::write(&broken, "greeting: [unclosed\n").unwrap();
    let bad = root.bootstrap(&["--", "--release", "r1", "--metadata", broken.to_str().unwrap(), "--dry-run"]);
    assert!(bad.expect_code(2).stderr.contains("meta.yaml"));
}

#[test]
fn metadata_comes_from_a_url_with_overrides() {
    let root = Root::new();
    let server = Server::start();
    server.put("/meta/node.yaml", "greeting: howdy\nnode:\n  name: from-url\n");
    let repo = root.components();
    let repo = repo.to_str().unwrap();
    // plain http to a loopback (or link-local) metadata service is allowed as it is
    let url = format!("{}/meta/node.yaml", server.url());
    let set = ["--", "--release", "r1", "--components", repo, "--metadata-url", &url, "--set", "node.name=override"];
    root.bootstrap(&set).expect_code(0);
    assert_eq!(root.read("/etc/greeter/greeting"), "howdy, \"override\" from r1 (r1~1, revision 1)\n");
    assert_eq!(server.hits("/meta/node.yaml"), 1);
    // elsewhere only https, or through a mirror
    let plain = ["--", "--release", "r1", "--components", repo, "--metadata-url", "http://metadata.example/node.yaml"];
    let refused = root.bootstrap(&plain).expect_code(2);
    assert!(refused.stderr.contains("refusing plain http URL http://metadata.example/node.yaml"), "{refused:?}");
}

#[test]
fn repositories_over_http_and_in_zips_are_verified_and_cannot_escape() {
    let root = Root::new();
    let server = Server::start();
    let files = tree(&root.components());
    let mut sums = String::new();
    for (path, bytes) in &files {
        server.put(&format!("/components.example/repo/{path}"), bytes.clone());
        sums.push_str(&format!("{}  {path}\n", sha256_hex(bytes)));
    }
    server.put("/components.example/repo/SHA256SUMS", sums.clone());
    let mirror = server.mirror_for("https://components.example");
    let http = ["--mirror", &mirror, "--", "--release", "r1", "--components", "https://components.example/repo"];
    root.bootstrap(&http).expect_code(0);
    assert_eq!(root.read("/etc/extra.conf"), "extra\n");

    // A file that does not match SHA256SUMS is refused before anything changes.
    server.put("/components.example/repo/extra/extra.conf", "tampered\n");
    let tampered = root.bootstrap(&[
        "--mirror",
        &mirror,
        "--",
        "--release",
        "r2",
        "--components",
        "https://components.example/repo",
    ]);
    let tampered = tampered.expect_code(1);
    assert!(
        tampered.stderr.contains("checksum mismatch") && tampered.stderr.contains("extra/extra.conf"),
        "{tampered:?}"
    );
    assert_eq!(root.records()["release"]["version"], "r1", "nothing changed");

    // A ZIP, local and by URL with its sha256 pinned.
    let entries: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
    let archive = zip(&entries);
    let local = root.dir.path().join("components.zip");
    std::fs::write(&local, &archive).unwrap();
    let plan =
        root.bootstrap(&["--", "--release", "r2", "--components", local.to_str().unwrap(), "--dry-run"]).expect_code(0);
    assert!(plan.stdout.contains("greeter-config r2~2: upgrade from r1~1"), "{plan:?}");
    server.put("/components.example/c.zip", archive.clone());
    let pinned = format!("https://components.example/c.zip#sha256={}", sha256_hex(&archive));
    root.bootstrap(&["--mirror", &mirror, "--", "--release", "r2", "--components", &pinned]).expect_code(0);
    assert_eq!(root.records()["release"]["version"], "r2");
    let wrong = format!("https://components.example/c.zip#sha256={}", sha256_hex(b"other"));
    let refused = root.bootstrap(&["--mirror", &mirror, "--", "--release", "r2", "--components", &wrong, "--dry-run"]);
    let refused = refused.expect_code(1);
    assert!(refused.stderr.contains("checksum mismatch"), "{refused:?}");

    // A crafted ZIP with a ../ entry is refused, naming the entry, and writes nothing.
    let evil = root.dir.path().join("evil.zip");
    std::fs::write(&evil, zip(&[("releases.yaml", b"releases: {}\n"), ("x/../../../etc/evil", b"owned\n")])).unwrap();
    let refused = root.bootstrap(&["--", "--release", "r2", "--components", evil.to_str().unwrap()]).expect_code(2);
    assert!(refused.stderr.contains("x/../../../etc/evil") && refused.stderr.contains("escapes"), "{refused:?}");
    assert!(!root.dir.path().join("etc/evil").exists() && !Path::new("/etc/evil").exists());
}

/// A `link` step, then steps through the link: the link is written as the step says, and what
/// goes through it resolves inside the root as it would on the booted node (an absolute target
/// from the root, `..` never above it), never into the host's directories.
#[test]
fn links_in_the_root_cannot_carry_writes_outside_it() {
    let root = Root::new();
    let outside = root.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let up = "../".repeat(root.root().components().count() + 2);
    let component = format!(
        r#"name: escape
versions:
  "*":
    install:
      - link: {{ path: /etc/abs, target: "{outside}" }}
      - file: {{ source: f, dest: /etc/abs/by-absolute }}
      - link: {{ path: /etc/rel, target: "{up}{outside_rel}" }}
      - template: {{ source: f, dest: /etc/rel/by-relative }}
      - directory: {{ path: /etc/abs/made }}
      - link: {{ path: /etc/abs/link, target: /etc/passwd-target }}
"#,
        outside = outside.display(),
        outside_rel = outside.strip_prefix("/").unwrap().display(),
    );
    let repo = root.dir.path().join("escape-repo");
    std::fs::create_dir_all(repo.join("escape")).unwrap();
    std::fs::write(
        repo.join("releases.yaml"),
        "releases:\n  e1:\n    components:\n      - { name: escape, version: \"1\" }\n",
    )
    .unwrap();
    std::fs::write(repo.join("escape/component.yaml"), component).unwrap();
    std::fs::write(repo.join("escape/f"), "contained\n").unwrap();
    root.bootstrap(&["--", "--release", "e1", "--components", repo.to_str().unwrap()]).expect_code(0);

    let escaped: Vec<String> = tree(&outside).into_iter().map(|(p, _)| p).collect();
    assert!(escaped.is_empty() && !outside.join("made").exists(), "written outside the root: {escaped:?}");
    let inside = root.root().join(outside.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(inside.join("by-absolute")).unwrap(), "contained\n");
    assert_eq!(std::fs::read_to_string(inside.join("by-relative")).unwrap(), "contained\n");
    assert!(inside.join("made").is_dir());
    assert_eq!(std::fs::read_link(root.root().join("etc/abs")).unwrap(), outside, "the link as the step says");
    assert_eq!(std::fs::read_link(inside.join("link")).unwrap(), Path::new("/etc/passwd-target"));
}

/// The shipped kubeadm worker components render from sample metadata into files that parse.
#[test]
fn the_shipped_worker_components_render_valid_configuration() {
    let root = Root::new();
    let metadata = root.dir.path().join("worker.json");
    std::fs::write(
        &metadata,
        r#"{"cluster": {"dns": "10.96.0.10"}, "node": {"name": "worker-1"},
            "join": {"endpoint": "10.0.0.10:6443", "token": "abcdef.0123456789abcdef", "ca_cert_hash": "sha256:0123"}}"#,
    )
    .unwrap();
    let plan = root.bootstrap(&["--", "--release", "v1.32.3", "--metadata", metadata.to_str().unwrap(), "--dry-run"]);
    let mut command = bakery(root.dir.path());
    command.arg("node").arg("--root").arg(root.root()).arg("--json").args(["bootstrap", "--release", "v1.32.3"]);
    let json = run(command.arg("--metadata").arg(&metadata).arg("--dry-run")).expect_code(0);
    plan.expect_code(0);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    let file = |dest: &str| -> String {
        let action = plan["components"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["actions"].as_array().unwrap())
            .find(|a| a["kind"] == "file" && a["dest"] == dest)
            .unwrap_or_else(|| panic!("no file {dest} in {plan:#}"));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(action["contents"].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    };
    let names: Vec<&str> = plan["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["kubernetes-networking", "containerd", "containerd-config", "kubernetes", "kubelet-config", "kubeadm-join"]
    );
    assert_eq!(
        plan["restarts"],
        serde_json::json!([
            "systemd-modules-load.service",
            "systemd-sysctl.service",
            "containerd.service",
            "kubelet.service"
        ])
    );

    let kubelet: Value = serde_saphyr::from_str(&file("/var/lib/kubelet/config.yaml")).unwrap();
    assert_eq!(kubelet["kind"], "KubeletConfiguration");
    assert_eq!(kubelet["cgroupDriver"], "systemd");
    assert_eq!(kubelet["clusterDNS"], serde_json::json!(["10.96.0.10"]));
    assert_eq!(kubelet["clusterDomain"], "cluster.local");
    assert_eq!(kubelet["containerRuntimeEndpoint"], "unix:///run/containerd/containerd.sock");

    let containerd: toml::Table = toml::from_str(&file("/etc/containerd/config.toml")).unwrap();
    assert_eq!(containerd["version"].as_integer(), Some(3));
    let runc = &containerd["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]["options"];
    assert_eq!(runc["SystemdCgroup"].as_bool(), Some(true));

    let join: Value = serde_saphyr::from_str(&file("/etc/kubernetes/kubeadm-join.yaml")).unwrap();
    assert_eq!(join["kind"], "JoinConfiguration");
    assert_eq!(join["discovery"]["bootstrapToken"]["apiServerEndpoint"], "10.0.0.10:6443");
    assert_eq!(join["nodeRegistration"]["name"], "worker-1");

    let networking = file("/etc/sysctl.d/90-kubernetes.conf");
    assert!(networking.lines().any(|l| l.replace(' ', "") == "net.ipv4.ip_forward=1"), "{networking}");
    assert!(file("/etc/modules-load.d/kubernetes.conf").lines().any(|l| l == "br_netfilter"));
}

/// On a real systemd: install, re-run, upgrade, a failing script and its resumption, an extension.
fn bootstrap_on_a_real_systemd_changes_only_what_changed(systemd: Systemd) {
    let demo = Demo::new();
    demo.build("v1.0.0", "x86-64", false);
    demo.release();
    write_components(&demo.shared().join("components"));
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
    let node = Container::boot_on(
        systemd,
        &[
            Bind { host: exe.parent().unwrap().to_path_buf(), container: "/srv/bin".into(), writable: false },
            Bind { host: demo.shared(), container: "/srv/bakery".into(), writable: true },
        ],
    );
    node.write("/etc/bakery/metadata.json", br#"{"greeting": "hello"}"#);
    node.write(
        "/etc/bakery/node.toml",
        format!("release_url = \"{RELEASE_URL}\"\nhealth_window = 2\ncomponents = [\"/srv/bakery/components\"]\n")
            .as_bytes(),
    );
    let mirror = demo.release_mirror();
    let bootstrap =
        |release: &str| node.run(&["/srv/bin/bakery", "--mirror", &mirror, "node", "bootstrap", "--release", release]);
    let started = |unit: &str| {
        node.run(&["systemctl", "show", "-P", "ActiveEnterTimestampMonotonic", unit]).stdout.trim().to_string()
    };
    let mtime = |path: &str| node.run(&["stat", "-c", "%Y.%y", path]).stdout.trim().to_string();

    bootstrap("r1").expect_code(0);
    assert_eq!(node.read("/etc/greeter/greeting"), "hello, \"node\" from r1 (r1~1, revision 1)\n");
    assert_eq!(node.run(&["systemctl", "is-enabled", "greeter.service"]).stdout.trim(), "enabled");
    assert_eq!(
        node.run(&["systemctl", "is-active", "greeter.service", "bystander.service"]).stdout,
        "active\nactive\n"
    );
    assert_eq!(
        node.read("/run/greeter.out"),
        "hello, \"node\" from r1 (r1~1, revision 1)\n",
        "restarted at the end, after its config was written"
    );
    let records: Value = serde_json::from_str(&node.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["components"]["greeter"]["version"], "1");
    assert_eq!(records["pending_restarts"], serde_json::json!([]));

    // The same release again: no writes, no restarts.
    let (greeter, bystander, greeting) =
        (started("greeter.service"), started("bystander.service"), mtime("/etc/greeter/greeting"));
    let recorded = mtime("/var/lib/bakery/versions.json");
    let again = bootstrap("r1").expect_code(0);
    assert!(again.stdout.contains("nothing to do"), "{again:?}");
    assert_eq!((started("greeter.service"), mtime("/etc/greeter/greeting")), (greeter.clone(), greeting.clone()));
    assert_eq!(mtime("/var/lib/bakery/versions.json"), recorded, "not even the records are written");

    // r2 changes greeter-config (restarting greeter) and drops extra (its uninstall runs).
    bootstrap("r2").expect_code(0);
    assert_eq!(node.read("/run/greeter.out"), "hello, \"node\" from r2 (r2~2, revision 2)\n");
    assert_ne!(started("greeter.service"), greeter, "greeter restarted");
    assert_eq!(started("bystander.service"), bystander, "the bystander was not");
    assert_eq!(node.read("/run/extra-uninstalled"), "uninstalled extra\n");
    assert!(node.run(&["test", "-e", "/etc/extra.conf"]).code != 0);

    // r3: a script fails after `early` completed; the run says so and the records say how far it got.
    let failed = bootstrap("r3");
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("fails 1") && failed.stderr.contains("exited 3"), "{failed:?}");
    let records: Value = serde_json::from_str(&node.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["components"]["early"]["version"], "1", "recorded as it completed");
    assert_eq!(records["components"].get("fails"), None);
    assert_eq!(records["components"].get("after"), None);
    assert_eq!(records["failure"]["component"], "fails");
    assert!(records["failure"]["output"].as_str().unwrap().contains("not allowed"), "{records:#}");
    assert_eq!(records["release"]["version"], "r2", "r3 is not complete");
    node.write("/etc/allow-fails", b"");
    let resumed = bootstrap("r3").expect_code(0);
    assert!(!resumed.stderr.contains("early 1: install"), "early is not redone: {resumed:?}");
    let records: Value = serde_json::from_str(&node.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["components"]["fails"]["scripts"][0]["output"], "trying\n");
    assert_eq!(records["components"]["after"]["version"], "1");
    assert_eq!(records["failure"], Value::Null);
    assert_eq!(records["release"]["version"], "r3");

    // r4: a sysext image through the node update path, merged, its service started.
    bootstrap("r4").expect_code(0);
    assert_eq!(
        node.run(&["readlink", "/etc/extensions/demo.raw"]).stdout.trim(),
        "../../opt/extensions/demo/demo-v1.0.0-x86-64.raw",
        "relative, as systemd-sysupdate links"
    );
    assert_eq!(node.read("/run/demo.version").trim(), "v1.0.0");
    let records: Value = serde_json::from_str(&node.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v1.0.0", "the refresh's records are kept");
    assert_eq!(records["components"]["demo-ext"]["version"], "v1.0.0");
    assert!(node.run(&["test", "-e", "/etc/systemd/system/greeter.service"]).code != 0, "r4 removed greeter");
    assert_eq!(node.run(&["systemctl", "is-active", "greeter.service"]).stdout.trim(), "inactive");
}

on_both_systemds!(bootstrap_on_a_real_systemd_changes_only_what_changed);
