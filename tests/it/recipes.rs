//! Every built-in recipe, built from a model of its upstream's release (support::upstreams,
//! served on 127.0.0.1 through --mirror): it builds, passes `inspect`, holds exactly the served
//! binaries plus its rendered files (compared with golden files under tests/golden/recipes/),
//! and merges with the real systemd-sysext.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support;
use support::fixtures::{Upstream, default_cni_version, mirror_args};
use support::golden::assert_golden;
use support::upstreams::{self, Installed};
use support::{Server, bakery, extract, fake_root, root_or_skip, run, sysext_merged};

fn option_default(extension: &str, option: &str) -> String {
    let catalog = bakery::recipe::Catalog::builtin();
    catalog.get(extension).unwrap().recipe().unwrap().options[option].default.clone()
}

/// Builds `extension version arch` from what `serve` put on the server and checks it all.
fn check_recipe(extension: &str, version: &str, arch: &str, serve: impl FnOnce(&Server) -> Installed) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let installed = serve(&server);
    let mut command = bakery(dir.path());
    command.arg("--cache-dir").arg(dir.path().join("cache")).args(mirror_args(&server));
    command.args(["--mirror", &server.mirror_for("https://get.helm.sh")]);
    command.args(["create", extension, version, arch, "-o"]).arg(dir.path().join("out"));
    run(&mut command).expect_code(0);
    let image = dir.path().join("out").join(format!("{extension}-{version}-{arch}.raw"));

    let inspected = run(bakery(dir.path()).arg("inspect").arg(&image).arg("--json")).expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]), "{extension}: {}", inspected.stdout);
    assert_eq!(report["extension_release"]["fields"]["SYSEXT_VERSION_ID"], version);

    let tree = dir.path().join("tree");
    extract(&image, &tree);
    let mut files = BTreeSet::new();
    collect_files(&tree, &tree, &mut files);
    for (path, served) in &installed {
        assert!(std::fs::read(tree.join(path)).unwrap() == *served, "{extension}: {path} differs from upstream's");
    }
    let manifest = format!("usr/lib/bakery/{extension}.json");
    assert!(files.contains(&manifest), "{extension}: no manifest");
    for path in files.iter().filter(|p| !installed.contains_key(*p) && **p != manifest) {
        let text = std::fs::read_to_string(tree.join(path)).unwrap();
        if path.ends_with(".toml") {
            toml::from_str::<toml::Table>(&text).unwrap_or_else(|e| panic!("{extension}: {path} is not TOML: {e}"));
        }
        assert_golden(&format!("recipes/{extension}-{version}/{path}"), &text);
    }

    if !root_or_skip(&format!("{extension} merge")) {
        return;
    }
    let root_dir = tempfile::tempdir().unwrap();
    let root = fake_root(root_dir.path(), "ID=debian\nVERSION_ID=12\n");
    std::fs::copy(&image, root.join("var/lib/extensions").join(image.file_name().unwrap())).unwrap();
    let host = if cfg!(target_arch = "x86_64") { "x86-64" } else { "arm64" };
    if arch != host {
        // systemd-sysext refuses an image for another architecture: that is ARCHITECTURE= working.
        let refused = sysext_merged(&root, "test ! -e \"$ROOT/usr/.systemd-sysext\" && echo not-merged");
        assert!(refused.stdout.contains("not-merged") && refused.stderr.contains("incompatible"), "{refused:?}");
        return;
    }
    let checks: Vec<String> = files.iter().map(|p| format!("test -f \"$ROOT/{p}\" || echo missing {p}")).collect();
    let merged = sysext_merged(&root, &format!("cat \"$ROOT/usr/.systemd-sysext/extensions\"; {}", checks.join("; ")));
    let merged = merged.expect_code(0);
    assert_eq!(merged.stdout.trim(), format!("{extension}-{version}-{arch}"), "{merged:?}");
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            collect_files(root, &path, out);
        } else {
            out.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

#[test]
fn containerd_2_with_runc() {
    let runc = option_default("containerd", "runc_version");
    check_recipe("containerd", "v2.3.4", "x86-64", |server| upstreams::containerd(server, "v2.3.4", "amd64", &runc));
}

#[test]
fn containerd_1_7_gets_a_version_2_config() {
    let runc = option_default("containerd", "runc_version");
    check_recipe("containerd", "v1.7.34", "arm64", |server| upstreams::containerd(server, "v1.7.34", "arm64", &runc));
}

#[test]
fn cni_plugins() {
    check_recipe("cni-plugins", "v1.9.1", "x86-64", |server| {
        upstreams::cni_plugins(server, "v1.9.1", "amd64", "usr/libexec/cni")
    });
}

#[test]
fn crictl() {
    check_recipe("crictl", "v1.36.0", "arm64", |server| upstreams::crictl(server, "v1.36.0", "arm64"));
}

#[test]
fn etcd() {
    check_recipe("etcd", "v3.6.14", "x86-64", |server| upstreams::etcd(server, "v3.6.14", "amd64"));
}

#[test]
fn helm() {
    check_recipe("helm", "v3.21.4", "x86-64", |server| upstreams::helm(server, "v3.21.4", "amd64"));
}

#[test]
fn kubernetes() {
    check_recipe("kubernetes", "v1.36.4", "x86-64", |server| {
        Upstream::kubernetes(server, "v1.36.4", "amd64", &default_cni_version()).installed
    });
}
