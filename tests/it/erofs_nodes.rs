//! EROFS images on real nodes (support::container: systemd 252 from the host, 257 from the
//! trixie root): the kubernetes image built `--format erofs` is mounted by the host kernel's
//! EROFS driver and merged by the real systemd-sysext under its plain and its versioned name, and
//! `bakery node refresh` activates it; a node moves from a SquashFS image to an EROFS one and
//! back. These tests need root (namespaces, loop devices); elsewhere they say why they skip.

use crate::support;
use support::container::{Container, Systemd};
use support::demo::Demo;
use support::fixtures::{Upstream, default_cni_version, mirror_args, sha256_hex};
use support::{Server, bakery, run};

const IMAGE: &str = "kubernetes-v1.32.0-x86-64.raw";

/// A shell test that the kernel's EROFS driver has `image` mounted: the loop device systemd-sysext
/// attached to it has an instance in /sys/fs/erofs (the overlay keeps the mount, detached, alive).
fn erofs_mounted(image: &str) -> String {
    format!(
        "loop=$(losetup -n -O NAME -j {image} | head -n 1) && test -n \"$loop\" && \
         test -d /sys/fs/erofs/$(basename \"$loop\") && echo erofs-mounted"
    )
}

fn kubernetes_as_erofs_merges_under_both_names_and_node_refresh_activates_it(systemd: Systemd) {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start();
    let upstream = Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let shared = home.path().join("shared");
    let mut create = bakery(home.path());
    create.arg("--cache-dir").arg(home.path().join("cache")).args(mirror_args(&server));
    create.args(["create", "kubernetes", "v1.32.0", "x86-64", "--format", "erofs", "-o"]).arg(&shared);
    run(&mut create).expect_code(0);
    let inspected = run(bakery(home.path()).arg("inspect").arg("--json").arg(shared.join(IMAGE))).expect_code(0);
    let inspected: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(inspected["format"], "erofs", "{inspected}");
    let kubelet = sha256_hex(&upstream.installed["usr/bin/kubelet"]);

    let (node, exe) = Container::with_bakery(systemd, &shared, true);
    for name in ["kubernetes.raw", IMAGE] {
        let merged = node.sh(&format!(
            "mkdir -p /var/lib/extensions && cp /srv/bakery/{IMAGE} /var/lib/extensions/{name} && systemd-sysext merge >&2 && \
             {}; sha256sum /usr/bin/kubelet; \
             cat /usr/lib/extension-release.d/extension-release.kubernetes; \
             systemd-sysext unmerge >&2 && rm /var/lib/extensions/{name}",
            erofs_mounted(&format!("/var/lib/extensions/{name}"))
        ));
        let merged = merged.expect_code(0);
        assert!(merged.stdout.starts_with("erofs-mounted\n"), "the kernel's EROFS driver has {name}: {merged:?}");
        assert!(merged.stdout.contains(&kubelet), "{name}: kubelet's bytes: {merged:?}");
        assert!(merged.stdout.contains("SYSEXT_VERSION_ID=v1.32.0"), "{name}: {merged:?}");
    }

    let staged = node.sh(&format!(
        "mkdir -p /opt/extensions/kubernetes /etc/extensions && cp /srv/bakery/{IMAGE} /opt/extensions/kubernetes/ && \
         ln -sfn /opt/extensions/kubernetes/{IMAGE} /etc/extensions/kubernetes.raw"
    ));
    staged.expect_code(0);
    let refreshed = node.run(&[exe.to_str().unwrap(), "node", "refresh"]).expect_code(0);
    assert!(refreshed.stdout.contains("kubernetes: Activated: v1.32.0 active"), "{refreshed:?}");
    let after = node.sh(&format!("sha256sum /usr/bin/kubelet; {}", erofs_mounted("/etc/extensions/kubernetes.raw")));
    let after = after.expect_code(0);
    assert!(after.stdout.contains(&kubelet) && after.stdout.contains("erofs-mounted"), "{after:?}");
    let records: serde_json::Value = serde_json::from_str(&node.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["extensions"]["kubernetes"]["active"]["version"], "v1.32.0");
}

/// A node on a SquashFS image moves to an EROFS one through `node update` from a served release
/// and back through `node rollback`: the format is the builder's choice, not the node's.
fn a_node_moves_from_squashfs_to_erofs_and_back(systemd: Systemd) {
    let demo = Demo::new();
    let v1 = demo.build_as("v1.0.0", "squashfs");
    let v2 = demo.build_as("v1.0.1", "erofs");
    demo.release();
    let (node, exe) = Container::with_bakery(systemd, &demo.shared(), true);
    let bakery = |args: &[&str]| {
        let mut all = vec![exe.to_str().unwrap()];
        all.extend(args);
        node.run(&all)
    };
    let demo_version = || node.read("/run/demo.version").trim().to_string();
    node.write("/etc/bakery/node.toml", b"health_window = 3\n");
    node.sh(&format!(
        "mkdir -p /opt/extensions/demo /etc/extensions && cp /srv/bakery/{v1} /opt/extensions/demo/ && \
         ln -sfn /opt/extensions/demo/{v1} /etc/extensions/demo.raw"
    ))
    .expect_code(0);
    bakery(&["node", "refresh"]).expect_code(0);
    assert_eq!(demo_version(), "v1.0.0");

    let transfer = std::fs::read(demo.shared().join("demo-v1.0.conf")).unwrap();
    node.write("/etc/sysupdate.demo.d/demo.conf", &transfer);
    let mirror = demo.release_mirror();
    let updated = bakery(&["--mirror", &mirror, "node", "update", "--activate"]).expect_code(0);
    assert!(updated.stdout.contains(&format!("demo: staged /opt/extensions/demo/{v2}")), "{updated:?}");
    assert!(updated.stdout.contains("demo: Activated: v1.0.1 active"), "{updated:?}");
    assert_eq!(demo_version(), "v1.0.1");
    let mounted = node.sh(&erofs_mounted("/etc/extensions/demo.raw")).expect_code(0);
    assert_eq!(mounted.stdout, "erofs-mounted\n", "v1.0.1 is merged from EROFS");

    bakery(&["node", "rollback", "demo"]).expect_code(0);
    assert_eq!(demo_version(), "v1.0.0");
    let status = bakery(&["node", "status", "--json"]).expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["extensions"][0]["linked_version"], "v1.0.0");
}

on_both_systemds!(
    kubernetes_as_erofs_merges_under_both_names_and_node_refresh_activates_it,
    a_node_moves_from_squashfs_to_erofs_and_back,
);
