//! The static binary (scripts/build-static) in an empty root holding nothing but itself and
//! /etc/resolv.conf: no shared libraries, no NSS modules, no CA certificate directory. It resolves
//! a name through the resolver in resolv.conf (a tiny DNS server of the test's on 127.0.0.1:53),
//! talks HTTP to the test server and builds an image the real unsquashfs reads.

use std::path::PathBuf;
use std::process::Command;

use crate::support;
use support::dns::Dns;
use support::fixtures::{Upstream, default_cni_version, kubernetes_markers};
use support::{Server, root_or_skip, run};

/// The suite's bakery when scripts/test built it static, else one built by scripts/build-static.
fn static_binary() -> PathBuf {
    if let Some(exe) = support::built_static() {
        return exe;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let built = run(Command::new(root.join("scripts/build-static")).arg("--dev").current_dir(&root)).expect_code(0);
    let (digest, path) = built.stdout.trim().split_once("  ").expect("build-static prints <sha256>  <path>");
    assert_eq!(digest.len(), 64, "{}", built.stdout);
    root.join(path)
}

#[test]
fn the_static_binary_works_in_an_empty_root() {
    if !root_or_skip("the_static_binary_works_in_an_empty_root (chroot)") {
        return;
    }
    let Some(_dns) = Dns::start(&["mirror.test"]) else {
        support::skip("the_static_binary_works_in_an_empty_root", "127.0.0.1:53 is taken");
        return;
    };
    let binary = static_binary();
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(ldd.contains("not a dynamic executable") || ldd.contains("statically linked"), "{ldd}");

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    std::fs::copy(&binary, root.path().join("bakery")).unwrap();

    let server = Server::start();
    kubernetes_markers(&server, &["v1.32.3", "v1.31.7"], "v1.33.0-rc.1");
    Upstream::kubernetes(&server, "v1.32.3", "amd64", &default_cni_version());
    let mirror = |host: &str| format!("https://{host}=http://mirror.test:{}/{host}", server.port);
    let chrooted = |args: &[&str]| {
        let mut command = Command::new("/usr/sbin/chroot");
        command.env_clear().arg(root.path()).arg("/bakery").args(["--cache-dir", "/cache"]);
        command.args(["--mirror", &mirror("dl.k8s.io"), "--mirror", &mirror("github.com")]).args(args);
        run(&mut command)
    };
    chrooted(&["--version"]).expect_code(0);
    let listed = chrooted(&["list", "kubernetes", "--latest"]).expect_code(0);
    assert_eq!(listed.stdout, "v1.32.3\nv1.31.7\n");
    chrooted(&["create", "kubernetes", "latest", "x86-64", "-o", "/out"]).expect_code(0);
    let image = root.path().join("out/kubernetes-v1.32.3-x86-64.raw");
    let listing = support::list_image(&image);
    assert!(listing.iter().any(|l| l.path == "/usr/bin/kubelet"), "{listing:?}");
}
