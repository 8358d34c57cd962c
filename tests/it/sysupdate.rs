//! bakery's releases against the real systemd-sysupdate of systemd 257 (Debian trixie's
//! `/usr/lib/systemd/systemd-sysupdate`), run on the 257 test node against a release served on
//! 127.0.0.1. Debian 12's systemd 252 ships no systemd-sysupdate, so these tests run on the 257
//! node only (elsewhere they say why they skip; in CI a skip is a failure). Also `bakery node
//! update --root` with hostile and unsupported transfer files, on a temporary root.

use std::path::PathBuf;

use crate::support;
use support::container::{Container, Systemd};
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
        let (container, exe) = Container::with_bakery(Systemd::V257, &self.demo.shared(), false);
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

/// The real sysupdate's `InstancesMax=` cleanup deletes the image bakery rolled back to (it
/// knows nothing of rollbacks); the next bad update still rolls back to it, from the copy bakery
/// keeps, instead of unlinking the extension.
#[test]
fn a_rollback_image_removed_by_instances_max_is_still_there_to_roll_back_to() {
    if !Systemd::V257.available("a_rollback_image_removed_by_instances_max_is_still_there_to_roll_back_to") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    world.release(true, "transfer", &["--instances-max", "2"]);
    let node = world.boot();
    node.provision("demo.transfer");
    let update_and_refresh = |expect: i32| {
        node.sysupdate("-C demo update").expect_code(0);
        node.bakery(&["node", "refresh"]).expect_code(expect)
    };
    update_and_refresh(0);
    let version = || node.container.read("/run/demo.version").trim().to_string();
    assert_eq!(version(), "v1.0.0");

    world.build("v1.1.0", true);
    world.release(true, "transfer", &["--instances-max", "2"]);
    let first = update_and_refresh(1);
    assert!(first.stderr.contains("rolled back to v1.0.0"), "{first:?}");
    let active = || node.container.run(&["systemctl", "is-active", "demo.service"]).stdout.trim().to_string();
    assert_eq!(active(), "active", "running again after the rollback, whatever the bad version's restarts used up");

    // v1.2.0 is bad too; sysupdate makes room for it by deleting v1.0.0, the oldest
    world.build("v1.2.0", true);
    world.release(true, "transfer", &["--instances-max", "2"]);
    node.sysupdate("-C demo update").expect_code(0);
    assert_eq!(node.installed().images, [format!("{} 644", image("v1.1.0")), format!("{} 644", image("v1.2.0"))]);
    let second = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(second.stderr.contains("rolled back to v1.0.0"), "{second:?}");
    assert_eq!(node.installed().link, format!("../../opt/extensions/demo/{}", image("v1.0.0")));
    assert_eq!(version(), "v1.0.0");
    assert_eq!(active(), "active");
}

/// Decodes an Ignition `data:` URL (`data:,percent-encoded` or `data:;base64,...`).
fn data_url(url: &str) -> Vec<u8> {
    use base64::Engine;
    let (meta, data) = url.strip_prefix("data:").and_then(|u| u.split_once(',')).expect("a data URL");
    if meta.ends_with(";base64") {
        return base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    }
    let mut out = Vec::new();
    let mut bytes = data.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}

impl Node {
    /// Does what Ignition does with the config `bakery butane --ignition` wrote (after the real
    /// ignition-validate accepted it): directories, files (data URLs decoded; downloads taken
    /// from the release directory and checked against `verification.hash`), links, units and
    /// drop-ins, enabled units.
    fn apply_ignition(&self, json: &str, release: &std::path::Path) {
        support::ignition::assert_validates(json);
        let config: serde_json::Value = serde_json::from_str(json).unwrap();
        let storage = &config["storage"];
        for dir in storage["directories"].as_array().into_iter().flatten() {
            self.container.run(&["mkdir", "-p", dir["path"].as_str().unwrap()]).expect_code(0);
        }
        for file in storage["files"].as_array().into_iter().flatten() {
            let path = file["path"].as_str().unwrap();
            let source = file["contents"]["source"].as_str().unwrap();
            if source.starts_with("data:") {
                self.container.write(path, &data_url(source));
            } else {
                // the release's images, or bakery itself (bound into the node at its host path)
                let name = source.rsplit('/').next().unwrap();
                let host = if name == "bakery" { self.exe.clone() } else { release.join(name) };
                let bytes = std::fs::read(&host).unwrap_or_else(|e| panic!("{source}: {e}"));
                let hash = file["contents"]["verification"]["hash"].as_str().unwrap();
                assert_eq!(hash, format!("sha256-{}", support::fixtures::sha256_hex(&bytes)), "{path}");
                let copy = format!("mkdir -p \"$(dirname {path})\" && cp {} {path}", host.display());
                let copy = if name == "bakery" {
                    copy
                } else {
                    format!("mkdir -p \"$(dirname {path})\" && cp /srv/bakery/{name} {path}")
                };
                self.container.sh(&copy).expect_code(0);
            }
            let mode = format!("{:o}", file["mode"].as_u64().unwrap());
            self.container.run(&["chmod", &mode, path]).expect_code(0);
        }
        for link in storage["links"].as_array().into_iter().flatten() {
            let (path, target) = (link["path"].as_str().unwrap(), link["target"].as_str().unwrap());
            self.container.run(&["ln", "-sfn", target, path]).expect_code(0);
        }
        for unit in config["systemd"]["units"].as_array().into_iter().flatten() {
            let name = unit["name"].as_str().unwrap();
            if let Some(contents) = unit["contents"].as_str() {
                self.container.write(&format!("/etc/systemd/system/{name}"), contents.as_bytes());
            }
            for dropin in unit["dropins"].as_array().into_iter().flatten() {
                let path = format!("/etc/systemd/system/{name}.d/{}", dropin["name"].as_str().unwrap());
                self.container.write(&path, dropin["contents"].as_str().unwrap().as_bytes());
            }
            if unit["enabled"].as_bool() == Some(true) {
                self.container.run(&["systemctl", "enable", name]).expect_code(0);
            }
        }
        self.container.run(&["systemctl", "daemon-reload"]).expect_code(0);
    }
}

/// The node `bakery butane` provisions, end to end on systemd 257: the Ignition config (checked
/// by the real ignition-validate) applied, bakery at /opt/bin/bakery, the first image activated;
/// then a new patch release is installed by the real `systemd-sysupdate.service` (its drop-in
/// runs the extension's component, with the release's key where 257 looks for it) and activated
/// by `bakery-refresh.service`, which that drop-in starts. A test-only drop-in clears the unit's
/// `ConditionVirtualization=!container`.
#[test]
fn the_butane_unit_chain_installs_and_activates_an_update() {
    if !Systemd::V257.available("the_butane_unit_chain_installs_and_activates_an_update") {
        return;
    }
    let world = World::new(&["v1.0.0"]);
    world.release(true, "transfer", &[]);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
    let digest = support::fixtures::sha256_hex(&std::fs::read(&exe).unwrap());
    let mut butane = bakery(world.demo.dir.path());
    butane.arg("--extensions-dir").arg(world.demo.dir.path().join("extensions"));
    butane.args(["butane", "demo", "v1.0.0", "x86-64", "--base-url", &world.base_url(), "--ignition"]);
    butane.args(["--transfer-suffix", "transfer", "--bakery-url", "https://bin.example/bakery"]);
    butane.args(["--bakery-sha256", &digest, "--dir"]).arg(world.demo.shared());
    let json = run(&mut butane).expect_code(0).stdout;
    let node = world.boot();
    node.container.sh("rm -rf /etc/extensions").expect_code(0);
    node.apply_ignition(&json, &world.demo.shared());
    node.container.write(
        "/etc/systemd/system/systemd-sysupdate.service.d/00-test-container.conf",
        b"[Unit]\nConditionVirtualization=\n",
    );
    node.container.run(&["systemctl", "daemon-reload"]).expect_code(0);
    let key = std::fs::read(world.demo.shared().join("import-pubring.gpg")).unwrap();
    let installed = node.container.run(&["sha256sum", "/etc/systemd/import-pubring.gpg"]).stdout;
    assert!(installed.starts_with(&support::fixtures::sha256_hex(&key)), "the release's key: {installed}");

    // the first boot: systemd-sysext merges what Ignition linked, bakery activates it
    node.container.run(&["systemctl", "start", "bakery-refresh.service"]).expect_code(0);
    assert_eq!(node.container.read("/run/demo.version").trim(), "v1.0.0");
    // a test-only drop-in reports the end of bakery-refresh.service's next run through a FIFO
    node.container.write(
        "/etc/systemd/system/bakery-refresh.service.d/99-test-done.conf",
        b"[Service]\nExecStopPost=/bin/sh -c 'echo \"$SERVICE_RESULT\" > /run/bakery-refresh.done'\n",
    );
    node.container.sh("mkfifo /run/bakery-refresh.done && systemctl daemon-reload").expect_code(0);

    world.build("v1.0.1", false);
    world.release(true, "transfer", &[]);
    node.container.run(&["systemctl", "start", "systemd-sysupdate.service"]).expect_code(0);
    assert_eq!(
        node.installed().link,
        format!("../../opt/extensions/demo/{}", image("v1.0.1")),
        "sysupdate installed it"
    );
    // bakery-refresh.service was queued (--no-block) by the drop-in: wait for that run to end
    let done = node.container.run(&["timeout", "60", "cat", "/run/bakery-refresh.done"]);
    let journal = || node.container.sh("journalctl --no-pager -n 40").stdout;
    assert_eq!(done.stdout.trim(), "success", "bakery-refresh.service: {done:?}\n{}", journal());
    assert_eq!(node.container.read("/run/demo.version").trim(), "v1.0.1", "activated by bakery-refresh.service");
    let records: serde_json::Value =
        serde_json::from_str(&node.container.read("/var/lib/bakery/versions.json")).unwrap();
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v1.0.1");
}

/// `node update --root` with transfer files of its own: paths that climb out of the root and
/// settings bakery would misread are refused, naming the file, the line and the value; links on
/// the way (the staging and the link directory) resolve inside the root. Nothing is written
/// outside it.
#[test]
fn node_update_under_a_root_stays_inside_it_and_refuses_bad_transfers() {
    let demo = Demo::new();
    demo.build("v1.0.0", "x86-64", false);
    demo.release();
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    std::fs::create_dir_all(root.join("etc/sysupdate.d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    let file = root.join("etc/sysupdate.d/demo.transfer");
    let transfer = |settings: &[(&str, &str)]| {
        let mut text = format!(
            "[Transfer]\nVerify=no\n\n[Source]\nType=url-file\nPath={}\nMatchPattern=demo-@v-%a.raw\n\n\
             [Target]\nType=regular-file\nPath=/opt/extensions/demo\nMatchPattern=demo-@v-%a.raw\n\
             CurrentSymlink=/etc/extensions/demo.raw\nInstancesMax=3\n",
            support::demo::RELEASE_URL
        );
        for (key, value) in settings {
            let at = text.rfind(&format!("\n{key}=")).unwrap() + 1;
            let end = at + text[at..].find('\n').unwrap();
            text.replace_range(at..end, &format!("{key}={value}"));
        }
        std::fs::write(&file, &text).unwrap();
        let line = |key: &str, value: &str| text.lines().position(|l| l == format!("{key}={value}")).unwrap() + 1;
        settings.iter().map(|(k, v)| line(k, v)).collect::<Vec<_>>()
    };
    let update = || {
        let mut command = bakery(demo.dir.path());
        command.args(["--mirror", &demo.release_mirror(), "node", "--root"]).arg(&root).args(["update", "demo"]);
        run(&mut command)
    };
    let up = format!("{}{}", "/..".repeat(root.components().count()), outside.display());
    for (key, value) in [
        ("Path", up.as_str()),
        ("CurrentSymlink", &format!("{up}/demo.raw")),
        ("Path", "opt/extensions/demo"),
        ("Type", "tar"),
        ("InstancesMax", "-1"),
    ] {
        let line = transfer(&[(key, value)])[0];
        let refused = update().expect_code(2);
        let said = format!("{}: line {line}: [", file.display());
        assert!(refused.stderr.contains(&said) && refused.stderr.contains(&format!("{key}={value}: ")), "{refused:?}");
    }

    // the staging directory a link to the host's directory, the link directory one that climbs
    std::os::unix::fs::symlink(&outside, root.join("opt")).unwrap();
    std::os::unix::fs::symlink(format!("{up}/links"), root.join("etc/extensions")).unwrap();
    transfer(&[]);
    update().expect_code(0);
    let escaped: Vec<_> = walkdir::WalkDir::new(&outside).min_depth(1).into_iter().collect();
    assert!(escaped.is_empty(), "written outside the root: {escaped:?}");
    let inside = root.join(outside.strip_prefix("/").unwrap());
    assert!(inside.join("extensions/demo").join(image("v1.0.0")).is_file());
    let link = std::fs::read_link(inside.join("links/demo.raw")).unwrap();
    assert_eq!(
        inside.join("links").join(&link).canonicalize().unwrap(),
        inside.join("extensions/demo").join(image("v1.0.0")).canonicalize().unwrap()
    );
}

/// A release whose `SHA256SUMS` vouches for an image bakery's reader refuses (a device node in
/// it) or finds errors in (a file outside /usr and /opt): the digest checks out, yet
/// `node update` refuses it naming the URL and what is wrong, and installs nothing; once the
/// release serves a sound image, the update goes through.
#[test]
fn node_update_refuses_a_download_the_strict_reader_refuses() {
    let demo = Demo::new();
    demo.build("v1.0.0", "x86-64", false);
    let served = demo.build("v1.0.1", "x86-64", false);
    demo.release();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/sysupdate.d")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    let transfer = std::fs::read_to_string(demo.shared().join("demo.conf")).unwrap();
    std::fs::write(root.join("etc/sysupdate.d/demo.conf"), transfer).unwrap();
    let update = || {
        let mut command = bakery(demo.dir.path());
        command.args(["--mirror", &demo.release_mirror(), "node", "--root"]).arg(&root).args(["update", "demo"]);
        run(&mut command)
    };
    // the sound image, unpacked, packed again by mksquashfs with something added
    let tree = dir.path().join("tree");
    run(support::unsquashfs().arg("-q").arg("-d").arg(&tree).arg(demo.shared().join(&served))).expect_code(0);
    let repack = |name: &str, options: &[&str]| {
        let image = dir.path().join(name);
        let mut mksquashfs = std::process::Command::new("mksquashfs");
        mksquashfs.arg(&tree).arg(&image).args(["-all-root", "-noappend", "-quiet", "-no-progress"]).args(options);
        run(&mut mksquashfs).expect_code(0);
        std::fs::read(image).unwrap()
    };
    let device = repack("device.raw", &["-p", "usr/bin/tty c 666 root root 5 0"]);
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/motd"), "outside /usr\n").unwrap();
    let outside = repack("outside.raw", &[]);
    let sums = std::fs::read_to_string(demo.shared().join("SHA256SUMS")).unwrap();
    let good = sums.lines().find(|l| l.ends_with(&served)).unwrap().split_whitespace().next().unwrap().to_string();

    let staged = root.join("opt/extensions/demo");
    for (bytes, message) in [(&device, "a device node"), (&outside, "etc/motd")] {
        let sha256 = support::fixtures::sha256_hex(bytes);
        demo.server.put(&format!("/release.example/ext/{served}"), bytes.clone());
        demo.server.put("/release.example/ext/SHA256SUMS", sums.replace(&good, &sha256));
        let refused = update().expect_code(2);
        let url = format!("/release.example/ext/{served}");
        assert!(refused.stderr.contains("refusing ") && refused.stderr.contains(&url), "{refused:?}");
        assert!(refused.stderr.contains(message), "{refused:?}");
        let left: Vec<_> = std::fs::read_dir(&staged).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "nothing installed, no temporary file: {left:?}");
        assert!(std::fs::symlink_metadata(root.join("etc/extensions/demo.raw")).is_err(), "nothing linked");
    }

    demo.release();
    update().expect_code(0);
    assert!(staged.join(&served).is_file());
}
