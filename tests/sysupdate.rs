//! bakery's releases against the real systemd-sysupdate of systemd 257 (Debian trixie's
//! `/usr/lib/systemd/systemd-sysupdate`), run on the 257 test node against a release served on
//! 127.0.0.1. Debian 12's systemd 252 ships no systemd-sysupdate, so these tests run on the 257
//! node only (elsewhere they say why they skip; in CI a skip is a failure).

mod support;

use std::path::PathBuf;

use support::container::{Bind, Container, Systemd};
use support::demo::Demo;
use support::gpg::{EMAIL, Keyring};
use support::{Run, bakery, run};

const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

/// The host side: the demo extension's images, a signing key, the release served at
/// `http://127.0.0.1:PORT/ext`.
struct World {
    demo: Demo,
    keyring: Keyring,
}

impl World {
    fn new(versions: &[&str]) -> World {
        let world = World { demo: Demo::new(), keyring: Keyring::new() };
        for version in versions {
            world.demo.build(version, "x86-64", false);
        }
        world
    }

    fn base_url(&self) -> String {
        format!("{}/ext", self.demo.server.url())
    }

    /// `bakery release` of what is built, signed or not, with `suffix` transfer files, served.
    fn release(&self, signed: bool, suffix: &str, extra: &[&str]) {
        let mut release = bakery(self.demo.dir.path());
        release.env("GNUPGHOME", self.keyring.path());
        let base = self.base_url();
        release.arg("release").arg(self.demo.shared()).args(["--base-url", &base, "--transfer-suffix", suffix]);
        release.args(if signed { ["--sign-key", EMAIL] } else { ["--allow-unsigned", "--pre"] }).args(extra);
        run(&mut release).expect_code(0);
        self.serve();
    }

    /// Serves the release directory as it is now.
    fn serve(&self) {
        self.demo.server.serve_dir("/ext", &self.demo.shared());
    }

    fn build(&self, version: &str, crashing: bool) -> String {
        self.demo.build(version, "x86-64", crashing)
    }

    fn boot(&self) -> Node {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
        let dir = exe.parent().unwrap().display().to_string();
        let container = Container::boot_on(
            Systemd::V257,
            &[
                Bind { host: exe.parent().unwrap().to_path_buf(), container: dir, writable: false },
                Bind { host: self.demo.shared(), container: "/srv/bakery".into(), writable: false },
            ],
        );
        container.write("/etc/bakery/node.toml", b"health_window = 3\n");
        Node { container, exe }
    }
}

struct Node {
    container: Container,
    exe: PathBuf,
}

/// What an update left on the node: each image with its mode, and the link's text.
#[derive(Debug, PartialEq, Eq)]
struct Installed {
    images: Vec<String>,
    link: String,
}

impl Node {
    fn sysupdate(&self, args: &str) -> Run {
        self.container.sh(&format!("{SYSUPDATE} --no-pager {args}"))
    }

    fn bakery(&self, args: &[&str]) -> Run {
        let mut all = vec![self.exe.to_str().unwrap()];
        all.extend(args);
        self.container.run(&all)
    }

    /// Installs files from the release directory: `(file, where)`.
    fn install(&self, files: &[(&str, &str)]) {
        for (file, to) in files {
            self.container.sh(&format!("mkdir -p \"$(dirname {to})\" && cp /srv/bakery/{file} {to}")).expect_code(0);
        }
    }

    /// Sets up the node as `bakery butane` does: the release key (of a signed release),
    /// /etc/extensions, a transfer.
    fn provision(&self, transfer: &str) {
        let key = "/srv/bakery/import-pubring.gpg";
        self.container.sh(&format!("[ ! -f {key} ] || cp {key} /etc/systemd/import-pubring.gpg")).expect_code(0);
        self.install(&[(transfer, &format!("/etc/sysupdate.demo.d/{transfer}"))]);
        self.container.sh("mkdir -p /etc/extensions").expect_code(0);
    }

    fn installed(&self) -> Installed {
        let images = self.container.sh("cd /opt/extensions/demo 2>/dev/null && stat -c '%n %a' *.raw").stdout;
        let link = self.container.run(&["readlink", "/etc/extensions/demo.raw"]).stdout.trim().to_string();
        Installed { images: images.lines().map(str::to_string).collect(), link }
    }

    /// The versions `systemd-sysupdate list` shows, newest first, with its INSTALLED mark.
    fn listed(&self, component: &str) -> Vec<(String, bool)> {
        let out = self.sysupdate(&format!("-C {component} --json=short list")).expect_code(0).stdout;
        let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let all = json["all"].as_array().unwrap_or_else(|| panic!("no 'all' in {json}"));
        let installed: Vec<&str> =
            json["installed"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        all.iter().map(|v| v.as_str().unwrap().to_string()).map(|v| (v.clone(), installed.contains(&&*v))).collect()
    }
}

fn image(version: &str) -> String {
    format!("demo-{version}-x86-64.raw")
}

/// `list`, `check-new`, `update` and `vacuum` of the real sysupdate against a signed release
/// with `.transfer` and with `.conf` files: the newest image installed 0644, the link relative,
/// `InstancesMax=3` holding over later updates, vacuum down to `--instances-max`, and the
/// minor-pinned transfer following only its minor.
#[test]
fn the_real_sysupdate_follows_a_signed_release_with_transfer_and_conf_files() {
    if !Systemd::V257.available("the_real_sysupdate_follows_a_signed_release_with_transfer_and_conf_files") {
        return;
    }
    for suffix in ["transfer", "conf"] {
        let world = World::new(&["v1.0.0", "v1.0.1", "v1.1.0"]);
        world.release(true, suffix, &[]);
        let node = world.boot();
        node.provision(&format!("demo.{suffix}"));

        let listed = node.listed("demo");
        let all: Vec<&str> = listed.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(all, ["v1.1.0", "v1.0.1", "v1.0.0"], "{suffix}");
        assert!(listed.iter().all(|(_, installed)| !installed));
        let new = node.sysupdate("-C demo check-new").expect_code(0);
        assert!(new.stdout.contains("v1.1.0"), "{suffix}: {new:?}");
        let updated = node.sysupdate("-C demo update").expect_code(0);
        if suffix == "transfer" {
            assert!(!updated.stderr.contains("should have the '.transfer' extension"), "{updated:?}");
        } else {
            assert!(updated.stderr.contains("should have the '.transfer' extension"), "257 warns: {updated:?}");
        }
        assert_eq!(
            node.installed(),
            Installed {
                images: vec![format!("{} 644", image("v1.1.0"))],
                link: format!("../../opt/extensions/demo/{}", image("v1.1.0")),
            },
            "{suffix}"
        );
        let merged = node.container.sh("systemd-sysext refresh && systemd-sysext list && cat /usr/bin/demo").stdout;
        assert!(merged.contains("echo v1.1.0"), "{suffix}: the image merges through the link: {merged}");
        let none = node.sysupdate("-C demo check-new");
        assert!(!none.stdout.contains('v'), "{suffix}: nothing newer: {none:?}");

        // InstancesMax=3 over three more releases: the oldest goes, the link follows
        for version in ["v1.2.0", "v1.3.0", "v1.4.0"] {
            world.build(version, false);
            world.release(true, suffix, &[]);
            node.sysupdate("-C demo update").expect_code(0);
        }
        let kept: Vec<String> = ["v1.2.0", "v1.3.0", "v1.4.0"].iter().map(|v| format!("{} 644", image(v))).collect();
        assert_eq!(node.installed().images, kept, "{suffix}: InstancesMax=3 holds");
        let vacuumed = node.sysupdate("-C demo vacuum --instances-max=2").expect_code(0);
        assert!(vacuumed.stderr.contains(&image("v1.2.0")), "{vacuumed:?}");
        assert_eq!(node.installed().images.len(), 2, "{suffix}");

        // the minor-pinned transfer follows v1.0 patches only (sysupdate shows the patch alone)
        let pinned = world.boot();
        pinned.provision(&format!("demo-v1.0.{suffix}"));
        let versions: Vec<String> = pinned.listed("demo").into_iter().map(|(v, _)| v).collect();
        assert_eq!(versions, ["1", "0"], "{suffix}");
        pinned.sysupdate("-C demo update").expect_code(0);
        assert_eq!(pinned.installed().link, format!("../../opt/extensions/demo/{}", image("v1.0.1")), "{suffix}");
    }
}

/// A tampered `SHA256SUMS`, a tampered image and a missing signature are refused by the real
/// sysupdate and by `bakery node update` alike, with nothing installed; an unsigned release
/// (`Verify=no`) over plain http is taken by sysupdate, and by bakery only through a mirror.
#[test]
fn tampered_and_unsigned_releases_are_refused_by_both() {
    if !Systemd::V257.available("tampered_and_unsigned_releases_are_refused_by_both") {
        return;
    }
    let world = World::new(&["v1.0.0", "v1.0.1"]);
    world.release(true, "transfer", &[]);
    let node = world.boot();
    node.provision("demo.transfer");
    let sums = std::fs::read_to_string(world.demo.shared().join("SHA256SUMS")).unwrap();
    let server = &world.demo.server;

    // SHA256SUMS changed after signing: the digest of v1.0.1 swapped for v1.0.0's
    let lines: Vec<&str> = sums.lines().collect();
    let forged = format!("{}  {}\n{}\n", lines[0].split_whitespace().next().unwrap(), image("v1.0.1"), lines[0]);
    server.put("/ext/SHA256SUMS", forged);
    let refused = node.sysupdate("-C demo update");
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("BAD signature"), "{refused:?}");
    let ours = node.bakery(&["node", "update", "demo"]).expect_code(1);
    assert!(ours.stderr.contains("BAD signature"), "{ours:?}");
    assert_eq!(node.installed().images, Vec::<String>::new(), "nothing installed");
    world.serve();

    // the image changed, SHA256SUMS and its signature intact
    server.put(&format!("/ext/{}", image("v1.0.1")), b"not the image that was signed".to_vec());
    let refused = node.sysupdate("-C demo update");
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("did not check out"), "{refused:?}");
    let ours = node.bakery(&["node", "update", "demo"]).expect_code(1);
    assert!(ours.stderr.contains("checksum mismatch"), "{ours:?}");
    assert_eq!(node.installed().images, Vec::<String>::new());
    world.serve();

    // no signature at all
    server.remove("/ext/SHA256SUMS.gpg");
    let refused = node.sysupdate("-C demo update");
    assert_ne!(refused.code, 0, "{refused:?}");
    let ours = node.bakery(&["node", "update", "demo"]).expect_code(1);
    assert!(ours.stderr.contains("SHA256SUMS.gpg"), "{ours:?}");
    assert_eq!(node.installed().images, Vec::<String>::new());

    // and with everything intact both install v1.0.1 (bakery verifies with gpg: trixie has no gpgv)
    world.serve();
    assert!(node.container.run(&["sh", "-c", "command -v gpgv"]).code != 0, "the node has gpg only");
    node.bakery(&["node", "update", "demo"]).expect_code(0);
    assert_eq!(node.installed().images, [format!("{} 644", image("v1.0.1"))]);

    // Verify=no over plain http: sysupdate takes it, bakery only through a mirror naming it
    let world = World::new(&["v2.0.0"]);
    world.release(false, "transfer", &[]);
    let node = world.boot();
    node.provision("demo.transfer");
    let ours = node.bakery(&["node", "update", "demo"]).expect_code(2);
    assert!(ours.stderr.contains("refusing plain http") && ours.stderr.contains("Verify=no"), "{ours:?}");
    assert_eq!(node.installed().images, Vec::<String>::new(), "nothing fetched");
    node.sysupdate("-C demo update").expect_code(0);
    assert_eq!(node.installed().images, [format!("{} 644", image("v2.0.0"))]);
    node.container.sh("rm -rf /opt/extensions/demo /etc/extensions/demo.raw").expect_code(0);
    let url = world.demo.server.url();
    let mirror = format!("{url}/ext={url}/ext");
    node.bakery(&["--mirror", &mirror, "node", "update", "demo"]).expect_code(0);
    assert_eq!(node.installed().images, [format!("{} 644", image("v2.0.0"))]);
}

/// `bakery node update` and the real sysupdate on one node, release after release, each in its
/// own copy of the node's state: the same version chosen, the same files (0644), the same
/// removals, the same relative link; both read only the `.transfer` file of a component that
/// also has a `.conf` (a minor-pinned one that would choose differently).
#[test]
fn bakery_node_update_agrees_with_the_real_sysupdate() {
    if !Systemd::V257.available("bakery_node_update_agrees_with_the_real_sysupdate") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    world.release(true, "conf", &[]);
    // the pinned .conf stays beside the .transfer written next
    let pinned = std::fs::read(world.demo.shared().join("demo-v1.0.conf")).unwrap();
    world.release(true, "transfer", &[]);
    let node = world.boot();
    node.provision("demo.transfer");
    node.container.write("/etc/sysupdate.demo.d/demo-v1.0.conf", &pinned);

    // Runs `command` with the node state of `side` (kept in /var/tmp/<side> in between).
    let with_state = |side: &str, command: &str| -> (Run, Installed) {
        node.container
            .sh(&format!(
                "rm -rf /opt/extensions/demo /etc/extensions/demo.raw; mkdir -p /var/tmp/{side}; \
                 if [ -d /var/tmp/{side}/demo ]; then mv /var/tmp/{side}/demo /opt/extensions/demo; fi; \
                 if [ -L /var/tmp/{side}/demo.raw ]; then mv /var/tmp/{side}/demo.raw /etc/extensions/; fi"
            ))
            .expect_code(0);
        let run = node.container.sh(command);
        let installed = node.installed();
        node.container
            .sh(&format!(
                "mkdir -p /opt/extensions/demo && mv /opt/extensions/demo /var/tmp/{side}/ && \
                 if [ -L /etc/extensions/demo.raw ]; then mv /etc/extensions/demo.raw /var/tmp/{side}/; fi"
            ))
            .expect_code(0);
        (run, installed)
    };
    let bakery = format!("{} node update demo", node.exe.display());
    let mut seen = Vec::new();
    for (step, version) in ["v1.0.1", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0"].into_iter().enumerate() {
        if step > 0 {
            world.build(version, false);
            world.release(true, "transfer", &[]);
        }
        let (theirs, sysupdate) = with_state("sysupdate", &format!("{SYSUPDATE} --no-pager -C demo update"));
        let (ours, bakery) = with_state("bakery", &bakery);
        assert_eq!(theirs.code, 0, "{theirs:?}");
        assert_eq!(ours.code, 0, "{ours:?}");
        assert_eq!(bakery, sysupdate, "after releasing {version}:\nsysupdate: {theirs:?}\nbakery: {ours:?}");
        seen.push(sysupdate.link.clone());
    }
    assert_eq!(seen[0], format!("../../opt/extensions/demo/{}", image("v1.0.0")), "the .transfer, not the pin");
    assert_eq!(seen[4], format!("../../opt/extensions/demo/{}", image("v1.4.0")));
    let (_, last) = with_state("bakery", "true");
    assert_eq!(last.images.len(), 3, "InstancesMax=3 removed the two oldest in both: {last:?}");
}
