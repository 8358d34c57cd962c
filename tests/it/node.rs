//! `bakery node` on a real systemd: the host's systemd booted in a container (support::container),
//! bakery's binary and the test's images bound in, a demo extension whose service prints its
//! version. These tests need root (namespaces, loop devices); elsewhere they say why they skip.

use std::path::PathBuf;

use crate::support;
use support::Run;
use support::container::{Container, Systemd};
use support::demo::Demo;

/// The host side: the demo extension's recipe, upstream and images.
struct Host {
    demo: Demo,
}

impl std::ops::Deref for Host {
    type Target = Demo;

    fn deref(&self) -> &Demo {
        &self.demo
    }
}

impl Host {
    fn new() -> Self {
        Host { demo: Demo::new() }
    }

    fn with_health_rule() -> Self {
        Host { demo: Demo::with_health_rule() }
    }

    fn boot(&self, systemd: Systemd) -> Node {
        let (container, exe) = Container::with_bakery(systemd, &self.shared(), true);
        container.write("/etc/bakery/node.toml", b"health_window = 3\n");
        Node { container, exe }
    }
}

struct Node {
    container: Container,
    exe: PathBuf,
}

impl Node {
    fn bakery(&self, args: &[&str]) -> Run {
        let mut all = vec![self.exe.to_str().unwrap()];
        all.extend(args);
        self.container.run(&all)
    }

    /// Copies an image from /srv/bakery to /opt/extensions/demo and links it as demo.raw.
    fn stage_and_link(&self, image: &str) {
        let run = self.container.sh(&format!(
            "mkdir -p /opt/extensions/demo /etc/extensions && cp /srv/bakery/{image} /opt/extensions/demo/ && \
             ln -sfn /opt/extensions/demo/{image} /etc/extensions/.demo.tmp && mv -T /etc/extensions/.demo.tmp /etc/extensions/demo.raw"
        ));
        run.expect_code(0);
    }

    fn link(&self) -> String {
        self.container.run(&["readlink", "-f", "/etc/extensions/demo.raw"]).stdout.trim().to_string()
    }

    fn records(&self) -> serde_json::Value {
        serde_json::from_str(&self.container.read("/var/lib/bakery/versions.json")).expect("the records always parse")
    }

    fn demo_state(&self) -> (String, String) {
        let active = self.container.run(&["systemctl", "is-active", "demo.service"]).stdout.trim().to_string();
        (active, self.container.read("/run/demo.version").trim().to_string())
    }
}

fn refresh_activates_upgrades_and_rolls_back_a_failing_version(systemd: Systemd) {
    let host = Host::new();
    let v1 = host.build("v1.0.0", "x86-64", false);
    let v2 = host.build("v2.0.0", "x86-64", false);
    let v3 = host.build("v3.0.0", "x86-64", true);
    let node = host.boot(systemd);

    node.stage_and_link(&v1);
    let first = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(first.stdout.contains("demo: Activated: v1.0.0 active; restarted demo.service"), "{first:?}");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    let records = node.records();
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v1.0.0");
    assert_eq!(records["extensions"]["demo"]["active"]["image"], format!("/opt/extensions/demo/{v1}"));
    assert_eq!(records["extensions"]["demo"]["active"]["artifacts"]["demo"].as_str().unwrap().len(), 64);

    node.stage_and_link(&v2);
    node.bakery(&["node", "refresh"]).expect_code(0);
    assert_eq!(node.demo_state(), ("active".into(), "v2.0.0".into()), "restarted on the new version");
    let records = node.records();
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v2.0.0");
    assert_eq!(records["extensions"]["demo"]["previous"]["version"], "v1.0.0");

    node.stage_and_link(&v3);
    let failed = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(failed.stderr.contains("demo.service"), "the message names the unit: {failed:?}");
    assert!(failed.stderr.contains("rolled back to v2.0.0"), "{failed:?}");
    assert_eq!(node.link(), format!("/opt/extensions/demo/{v2}"), "back on v2");
    assert_eq!(node.demo_state(), ("active".into(), "v2.0.0".into()));
    let records = node.records();
    let demo = &records["extensions"]["demo"];
    assert_eq!(demo["active"]["version"], "v2.0.0");
    assert_eq!(demo["last_good"]["version"], "v2.0.0");
    assert_eq!(demo["last_result"]["outcome"], "rolled-back");
    assert!(demo["last_result"]["message"].as_str().unwrap().contains("demo.service"));

    // Refreshing again changes nothing.
    let again = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(again.stdout.contains("demo: Unchanged: v2.0.0 active"), "{again:?}");
    let status = node.bakery(&["node", "status", "--json"]).expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["extensions"][0]["linked_version"], "v2.0.0");
    assert_eq!(status["extensions"][0]["merged"], true);
    assert_eq!(status["extensions"][0]["staged_newer"], serde_json::json!([format!("/opt/extensions/demo/{v3}")]));
    assert!(status["extensions"][0]["units"][0]["state"].as_str().unwrap().starts_with("active/running"), "{status}");

    // An explicit rollback goes to the previous version.
    node.bakery(&["node", "rollback", "demo"]).expect_code(0);
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    assert_eq!(node.records()["extensions"]["demo"]["active"]["version"], "v1.0.0");
}

fn invalid_images_are_refused_and_the_merged_state_is_untouched(systemd: Systemd) {
    let host = Host::new();
    let good = host.build("v1.0.0", "x86-64", false);
    let foreign = host.build("v2.0.0", "arm64", false);
    let node = host.boot(systemd);
    node.stage_and_link(&good);
    node.bakery(&["node", "refresh"]).expect_code(0);

    node.stage_and_link(&foreign);
    // reported as a failure (the node is not on what was linked), once: the link is put back
    let refused = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(refused.stdout.contains("refused") && refused.stdout.contains("ARCHITECTURE=arm64"), "{refused:?}");
    // on stderr the reason once (a warning), then one error line naming what was not activated
    assert_eq!(refused.stderr.matches("ARCHITECTURE=arm64").count(), 1, "{refused:?}");
    assert!(refused.stderr.ends_with("error: not activated: demo (refused)\n"), "{refused:?}");
    assert_eq!(refused.stderr.matches("error:").count(), 1, "{refused:?}");
    assert_eq!(node.link(), format!("/opt/extensions/demo/{good}"), "the link is put back");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    let merged = node.container.run(&["systemd-sysext", "list"]).stdout;
    assert!(merged.contains("demo"), "{merged}");
    node.bakery(&["node", "refresh"]).expect_code(0);

    // A file that is not an image at all, linked under another name.
    node.container.sh("head -c 8192 /dev/urandom > /opt/extensions/demo/junk.raw && ln -sfn /opt/extensions/demo/junk.raw /etc/extensions/junk.raw").expect_code(0);
    let refused = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(
        refused.stdout.contains("junk: Refused") && refused.stdout.contains("neither a SquashFS nor an EROFS image"),
        "{refused:?}"
    );
    assert!(node.container.run(&["test", "-e", "/etc/extensions/junk.raw"]).code != 0, "set aside");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    assert_eq!(node.records()["extensions"]["junk"]["last_result"]["outcome"], "refused");
    node.bakery(&["node", "refresh"]).expect_code(0);
}

fn node_update_stages_the_newest_match_from_a_served_release(systemd: Systemd) {
    let host = Host::new();
    for version in ["v1.0.0", "v1.0.1", "v1.1.0"] {
        host.build(version, "x86-64", false);
    }
    host.build("v1.0.2", "arm64", false);
    host.release();
    let node = host.boot(systemd);
    // the minor-pinned transfer bakery butane installs, with the node following v1.0 patches
    let transfer = std::fs::read(host.shared().join("demo-v1.0.conf")).unwrap();
    node.container.write("/etc/sysupdate.demo.d/demo.conf", &transfer);
    let mirror = host.release_mirror();
    let updated = node.bakery(&["--mirror", &mirror, "node", "update", "--activate"]).expect_code(0);
    assert!(updated.stdout.contains("demo: staged /opt/extensions/demo/demo-v1.0.1-x86-64.raw"), "{updated:?}");
    assert!(updated.stdout.contains("demo: Activated: v1.0.1 active"), "{updated:?}");
    assert_eq!(node.link(), "/opt/extensions/demo/demo-v1.0.1-x86-64.raw");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.1".into()));
    let again = node.bakery(&["--mirror", &mirror, "node", "update"]).expect_code(0);
    assert!(again.stdout.contains("is already staged"), "{again:?}");
}

fn a_refresh_killed_part_way_converges_on_the_next_run(systemd: Systemd) {
    let host = Host::new();
    let v1 = host.build("v1.0.0", "x86-64", false);
    let v2 = host.build("v2.0.0", "x86-64", false);
    let node = host.boot(systemd);
    node.stage_and_link(&v1);
    node.bakery(&["node", "refresh"]).expect_code(0);
    node.stage_and_link(&v2);

    // Kill bakery with SIGKILL during the health wait: once it says it restarted the unit.
    let mut child = node
        .container
        .command(&[node.exe.to_str().unwrap(), "node", "refresh"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "bakery ended before restarting demo.service: {seen}");
        seen.push_str(&line);
        if line.contains("restarting demo.service") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL to nsenter, which takes bakery with it (pdeathsig)
    child.wait().unwrap();

    assert_eq!(node.link(), format!("/opt/extensions/demo/{v2}"), "the link is never missing");
    assert_eq!(
        node.records()["extensions"]["demo"]["active"]["version"],
        "v1.0.0",
        "not recorded before it was healthy"
    );
    let lock_free = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(lock_free.stdout.contains("demo: Activated: v2.0.0 active (was v1.0.0)"), "{lock_free:?}");
    assert_eq!(node.demo_state(), ("active".into(), "v2.0.0".into()));
    assert_eq!(node.records()["extensions"]["demo"]["active"]["version"], "v2.0.0");
}

fn doctor_checks_the_node_and_names_a_fix_for_what_fails(systemd: Systemd) {
    let host = Host::new();
    host.build("v1.0.0", "x86-64", false);
    host.release();
    let node = host.boot(systemd);
    node.container.write("/etc/sysupdate.demo.d/demo.conf", &std::fs::read(host.shared().join("demo.conf")).unwrap());
    let mirror = host.release_mirror();

    let healthy = node.bakery(&["--mirror", &mirror, "doctor", "--json"]).expect_code(0);
    let checks: serde_json::Value = serde_json::from_str(&healthy.stdout).unwrap();
    let status = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["check"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let expected = match systemd {
        Systemd::V252 => "warn", // no systemd-sysupdate, varlink or .transfer files
        Systemd::V257 => "ok",
    };
    assert_eq!(status("systemd"), [expected], "{checks}");
    assert_eq!(status("kernel"), ["ok"]);
    // a fresh node has no /etc/extensions: systemd-sysupdate could not make its link there
    assert_eq!(status("extensions"), ["warn"], "{checks}");
    assert_eq!(status("dbus"), ["ok"], "{checks}");
    assert_eq!(status("clock"), ["ok"]);
    assert_eq!(status("release"), ["ok"], "{checks}");
    assert_eq!(status("signatures"), ["ok"], "a Verify=no transfer has nothing to verify: {checks}");
    assert_eq!(status("signed images"), ["ok"], "require_signed is off: {checks}");

    // require_signed without a certificate refuses every image: a failure naming the fix; with
    // one it holds, enforced by systemd itself from 254.
    node.container.write("/etc/bakery/node.toml", b"health_window = 3\nrequire_signed = true\n");
    let unsigned = node.bakery(&["--mirror", &mirror, "doctor"]).expect_code(1);
    assert!(unsigned.stdout.contains("FAIL  signed images"), "{unsigned:?}");
    assert!(
        unsigned.stdout.contains("fix: install the release's <ext>.crt as /etc/verity.d/<ext>.crt"),
        "{unsigned:?}"
    );
    let keys = tempfile::tempdir().unwrap();
    let (_, cert) = support::ddi::keypair(keys.path(), "release-key");
    node.container.write("/etc/verity.d/release-key.crt", &std::fs::read(&cert).unwrap());
    let signed = node.bakery(&["--mirror", &mirror, "doctor", "--json"]).expect_code(0);
    let checks: serde_json::Value = serde_json::from_str(&signed.stdout).unwrap();
    let check = checks.as_array().unwrap().iter().find(|c| c["check"] == "signed images").unwrap();
    assert!(check["detail"].as_str().unwrap().contains("CN=release-key (/etc/verity.d/release-key.crt)"), "{check}");
    let expected = match systemd {
        Systemd::V252 => "warn", // no image policies
        Systemd::V257 => "ok",
    };
    assert_eq!(check["status"], expected, "{check}");
    node.container.write("/etc/bakery/node.toml", b"health_window = 3\n");

    // An unreachable release fails, with a fix naming the transfer file.
    let transfer = String::from_utf8(std::fs::read(host.shared().join("demo.conf")).unwrap()).unwrap();
    node.container.write(
        "/etc/sysupdate.other.d/other.conf",
        transfer.replace("https://release.example/ext", "https://gone.example/ext").replace("demo", "other").as_bytes(),
    );
    let sick = node
        .bakery(&["--mirror", &mirror, "--mirror", "https://gone.example=http://127.0.0.1:9", "doctor"])
        .expect_code(1);
    assert!(
        sick.stdout.contains("FAIL  release")
            && sick.stdout.contains("fix: check the URL in /etc/sysupdate.other.d/other.conf"),
        "{sick:?}"
    );
    assert!(sick.stderr.contains("failed checks: release"), "{sick:?}");
}

/// kubelet's first activation: it crash-loops until `kubeadm join` writes its config, which its
/// health rule says (`unless_missing`), so the first refresh of a fresh node activates it; once
/// the config exists the rule applies, and a version that crashes even then is rolled back.
fn a_kubelet_waiting_for_its_config_activates_and_its_rule_applies_once_configured(systemd: Systemd) {
    let host = Host::with_health_rule();
    let v1 = host.build_waiting_for_config("v1.0.0");
    let v2 = host.build_waiting_for_config("v2.0.0");
    let v3 = host.build("v3.0.0", "x86-64", true);
    let node = host.boot(systemd);

    node.stage_and_link(&v1);
    let first = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(first.stdout.contains("demo: Activated: v1.0.0 active"), "{first:?}");
    assert!(first.stdout.contains("not counted: /var/lib/kubelet/config.yaml does not exist yet"), "{first:?}");
    assert_eq!(node.link(), format!("/opt/extensions/demo/{v1}"), "linked, not set aside");
    assert_eq!(node.records()["extensions"]["demo"]["last_good"]["version"], "v1.0.0");

    // kubeadm join wrote the config: from now on demo.service must stay up
    node.container.sh("mkdir -p /var/lib/kubelet && touch /var/lib/kubelet/config.yaml").expect_code(0);
    node.stage_and_link(&v2);
    node.bakery(&["node", "refresh"]).expect_code(0);
    assert_eq!(node.demo_state(), ("active".into(), "v2.0.0".into()));
    node.stage_and_link(&v3);
    let failed = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(failed.stderr.contains("rolled back to v2.0.0"), "{failed:?}");
    assert_eq!(node.demo_state(), ("active".into(), "v2.0.0".into()));
}

/// Without a rule: a first activation whose unit fails is reported failed but stays linked
/// (there is nothing to go back to, and unlinking helps no one), and a later update of a unit
/// that was not up before it either is not turned into a rollback.
fn a_first_activation_never_unlinks_and_a_unit_down_before_is_not_a_rollback(systemd: Systemd) {
    let host = Host::new();
    let v1 = host.build_waiting_for_config("v1.0.0");
    let v2 = host.build_waiting_for_config("v2.0.0");
    let node = host.boot(systemd);

    node.stage_and_link(&v1);
    let first = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(first.stderr.contains("stays linked"), "{first:?}");
    assert_eq!(node.link(), format!("/opt/extensions/demo/{v1}"), "never unlinked");
    assert_eq!(node.records()["extensions"]["demo"]["last_result"]["outcome"], "failed");
    assert!(node.container.run(&["systemd-sysext", "list"]).stdout.contains("demo"), "still merged");

    node.stage_and_link(&v2);
    let second = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(second.stdout.contains("demo: Activated: v2.0.0 active"), "{second:?}");
    assert!(second.stdout.contains("was not up before the update either"), "{second:?}");
    assert_eq!(node.link(), format!("/opt/extensions/demo/{v2}"));
}

/// A step failing part way (here a restart unit that does not exist) is recorded as a failure,
/// not lost because the run stopped early.
fn a_failure_part_way_is_recorded(systemd: Systemd) {
    let host = Host::new();
    let v1 = host.build("v1.0.0", "x86-64", false);
    let node = host.boot(systemd);
    node.container.write(
        "/etc/bakery/node.toml",
        b"health_window = 3\n[extensions.demo]\nrestart_units = [\"no-such-unit.service\"]\n",
    );
    node.stage_and_link(&v1);
    let failed = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(failed.stderr.contains("no-such-unit.service"), "{failed:?}");
    let result = &node.records()["extensions"]["demo"]["last_result"];
    assert_eq!(result["outcome"], "failed", "{result}");
    assert!(result["message"].as_str().unwrap().contains("no-such-unit.service"), "{result}");
}

/// Zeroes the superblock's `bytes_used` (offset 40, 8 bytes) of `bytes`: the kernel will not
/// mount such an image, and bakery's reader refuses it.
fn unmountable(bytes: &mut [u8]) {
    bytes[40..48].fill(0);
}

impl Node {
    /// Copies an image from /srv/bakery to /opt/extensions/other and links it as other.raw.
    fn link_other(&self, image: &str) {
        let run = self.container.sh(&format!(
            "mkdir -p /opt/extensions/other && cp /srv/bakery/{image} /opt/extensions/other/{image} && \
             ln -sfn /opt/extensions/other/{image} /etc/extensions/other.raw"
        ));
        run.expect_code(0);
    }

    fn other_link(&self) -> Option<String> {
        let run = self.container.run(&["readlink", "-e", "/etc/extensions/other.raw"]);
        (run.code == 0).then(|| run.stdout.trim().to_string())
    }

    /// The extensions systemd-sysext has merged.
    fn merged(&self) -> String {
        self.container.sh("cat /usr/.systemd-sysext/extensions 2>/dev/null; true").stdout
    }

    /// `bakery node refresh`, paused after it checked the images and before systemd-sysext
    /// merges them, while `meanwhile` runs: the window sysupdate (or a disk) can rewrite an
    /// image in. Waits on bakery's stderr and a FIFO, never on time.
    fn refresh_changing(&self, fifo_dir: &std::path::Path, meanwhile: impl FnOnce()) -> Run {
        use std::io::{BufRead, Read, Write};
        let fifo = fifo_dir.join("resume");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success(), "mkfifo {}", fifo.display());
        let mut child = self
            .container
            .command(&[self.exe.to_str().unwrap(), "node", "refresh"])
            .env("BAKERY_FAILPOINT", "refresh:checked")
            .env("BAKERY_FAILPOINT_RESUME", "/srv/bakery/resume")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0, "bakery ended before its failpoint: {seen}");
            seen.push_str(&line);
            if line.contains("failpoint refresh:checked reached") {
                break;
            }
        }
        meanwhile();
        // read and write: the open never blocks, and the line waits in the FIFO until bakery
        // reads it; held open until bakery ends so it is not discarded before then
        let mut resume = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        resume.write_all(b"go\n").unwrap();
        stderr.read_to_string(&mut seen).unwrap();
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let code = child.wait().unwrap().code().unwrap_or(-1);
        drop(resume);
        std::fs::remove_file(&fifo).unwrap();
        Run { code, stdout, stderr: seen }
    }
}

/// An image bakery's reader refuses (here the kernel could not mount it either: `bytes_used`
/// zeroed) staged beside a good extension: refused before the merge, linked back to its last
/// good image (or set aside, on a first activation), recorded and reported (exit 1, naming the
/// image), and the good extension is merged. The next refresh succeeds.
fn an_image_the_reader_refuses_is_put_back_and_the_others_merge(systemd: Systemd) {
    let host = Host::new();
    let demo = host.build("v1.0.0", "x86-64", false);
    let other_v1 = host.build_other("v1.0.0");
    let other_v2 = host.build_other("v2.0.0");
    let bad = |image: &str| {
        let bad = format!("bad-{image}");
        let mut bytes = std::fs::read(host.shared().join(image)).unwrap();
        unmountable(&mut bytes);
        std::fs::write(host.shared().join(&bad), bytes).unwrap();
        bad
    };
    let bad_v1 = bad(&other_v1);
    let bad_v2 = bad(&other_v2);
    let node = host.boot(systemd);

    node.stage_and_link(&demo);
    node.link_other(&bad_v1);
    let first = node.bakery(&["node", "refresh"]).expect_code(1);
    let said = format!("other: refused /opt/extensions/other/{bad_v1}");
    assert!(first.stderr.contains(&said) && first.stderr.contains("bytes_used"), "{first:?}");
    assert!(first.stderr.contains("set aside"), "{first:?}");
    assert!(first.stdout.contains("demo: Activated: v1.0.0 active"), "{first:?}");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    assert!(node.merged().contains("demo") && !node.merged().contains("other"), "{}", node.merged());
    assert_eq!(node.other_link(), None, "set aside");
    let records = node.records();
    assert_eq!(records["extensions"]["other"]["last_result"]["outcome"], "refused", "{records}");
    assert!(records["extensions"]["other"]["last_result"]["message"].as_str().unwrap().contains(&bad_v1));
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v1.0.0");
    node.bakery(&["node", "refresh"]).expect_code(0);

    // a good image, then a bad one: linked back to the good one
    node.link_other(&other_v1);
    node.bakery(&["node", "refresh"]).expect_code(0);
    node.link_other(&bad_v2);
    let back = node.bakery(&["node", "refresh"]).expect_code(1);
    assert!(back.stderr.contains(&format!("other: refused /opt/extensions/other/{bad_v2}")), "{back:?}");
    assert!(back.stderr.contains("linked back to v1.0.0"), "{back:?}");
    assert_eq!(node.other_link(), Some(format!("/opt/extensions/other/{other_v1}")));
    assert!(node.merged().contains("demo") && node.merged().contains("other"), "{}", node.merged());
    assert_eq!(node.container.run(&["other"]).stdout.trim(), "other v1.0.0");
    let records = node.records();
    assert_eq!(records["extensions"]["other"]["last_result"]["outcome"], "refused", "{records}");
    assert_eq!(records["extensions"]["other"]["active"]["version"], "v1.0.0");
    let again = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(again.stdout.contains("other: Unchanged: v1.0.0 active"), "{again:?}");
}

/// An image that changes between bakery's check and the merge (sysupdate or a failing disk
/// rewriting it; here `bytes_used` zeroed while refresh waits at its failpoint): the kernel
/// refuses it, so the merge fails, and the changed extensions are added back one at a time;
/// the bad one is set aside (a first activation) or linked back to its last good image,
/// recorded and reported as failed, and the others are merged. The next refresh succeeds.
fn an_image_rewritten_after_its_check_is_found_by_merging_one_at_a_time(systemd: Systemd) {
    let host = Host::new();
    let demo = host.build("v1.0.0", "x86-64", false);
    let other_v1 = host.build_other("v1.0.0");
    let other_v2 = host.build_other("v2.0.0");
    let node = host.boot(systemd);
    // in place, as a disk or a writer that does not rename would: the file bakery checked
    let rewrite = |image: &str| {
        let zero =
            format!("dd if=/dev/zero of=/opt/extensions/other/{image} bs=1 seek=40 count=8 conv=notrunc status=none");
        node.container.sh(&zero).expect_code(0);
    };

    node.stage_and_link(&demo);
    node.link_other(&other_v1);
    let first = node.refresh_changing(&host.shared(), || rewrite(&other_v1));
    assert_eq!(first.code, 1, "{first:?}");
    let said = format!("other: systemd-sysext could not merge /opt/extensions/other/{other_v1}");
    assert!(first.stderr.contains(&said) && first.stderr.contains("set aside"), "{first:?}");
    assert_eq!(first.stderr.matches(&said).count(), 1, "said once: {first:?}");
    assert_eq!(first.stderr.matches("error:").count(), 1, "{first:?}");
    assert!(first.stdout.contains("demo: Activated: v1.0.0 active"), "{first:?}");
    assert_eq!(node.demo_state(), ("active".into(), "v1.0.0".into()));
    assert!(node.merged().contains("demo") && !node.merged().contains("other"), "{}", node.merged());
    assert_eq!(node.other_link(), None, "set aside");
    let records = node.records();
    assert_eq!(records["extensions"]["other"]["last_result"]["outcome"], "failed", "{records}");
    assert_eq!(records["extensions"]["demo"]["active"]["version"], "v1.0.0");
    node.bakery(&["node", "refresh"]).expect_code(0);

    // a good image, then one rewritten after its check: linked back to the good one
    node.link_other(&other_v1);
    node.bakery(&["node", "refresh"]).expect_code(0);
    node.link_other(&other_v2);
    let back = node.refresh_changing(&host.shared(), || rewrite(&other_v2));
    assert_eq!(back.code, 1, "{back:?}");
    assert!(back.stderr.contains(&format!("could not merge /opt/extensions/other/{other_v2}")), "{back:?}");
    assert!(back.stderr.contains("linked back to v1.0.0"), "{back:?}");
    assert_eq!(node.other_link(), Some(format!("/opt/extensions/other/{other_v1}")));
    assert!(node.merged().contains("demo") && node.merged().contains("other"), "{}", node.merged());
    assert_eq!(node.container.run(&["other"]).stdout.trim(), "other v1.0.0");
    let records = node.records();
    assert_eq!(records["extensions"]["other"]["last_result"]["outcome"], "failed", "{records}");
    assert_eq!(records["extensions"]["other"]["active"]["version"], "v1.0.0");
    let again = node.bakery(&["node", "refresh"]).expect_code(0);
    assert!(again.stdout.contains("other: Unchanged: v1.0.0 active"), "{again:?}");
}

on_both_systemds!(
    an_image_the_reader_refuses_is_put_back_and_the_others_merge,
    an_image_rewritten_after_its_check_is_found_by_merging_one_at_a_time,
    a_kubelet_waiting_for_its_config_activates_and_its_rule_applies_once_configured,
    a_first_activation_never_unlinks_and_a_unit_down_before_is_not_a_rollback,
    a_failure_part_way_is_recorded,
    refresh_activates_upgrades_and_rolls_back_a_failing_version,
    invalid_images_are_refused_and_the_merged_state_is_untouched,
    node_update_stages_the_newest_match_from_a_served_release,
    a_refresh_killed_part_way_converges_on_the_next_run,
    doctor_checks_the_node_and_names_a_fix_for_what_fails,
);

// Unprivileged: `--root` at a directory the test makes, no systemd, no D-Bus, no network.

/// `bakery node ARGS --root ROOT` with D-Bus pointed at a socket that does not exist.
fn node_at(root: &std::path::Path, args: &[&str]) -> Run {
    let home = root.parent().unwrap();
    let mut command = support::bakery(home);
    command.env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}/no-bus", home.display()));
    support::run(command.arg("node").args(args).arg("--root").arg(root))
}

/// This machine's architecture as systemd names it.
fn machine_arch() -> &'static str {
    if std::env::consts::ARCH == "aarch64" { "arm64" } else { "x86-64" }
}

#[test]
fn node_commands_on_an_empty_root_say_why_there_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();

    let status = node_at(&root, &["status"]).expect_code(0);
    assert_eq!(
        status.stdout,
        "nothing to show: no links in /etc/extensions and /var/lib/extensions, no records in /var/lib/bakery/versions.json\n"
    );
    let refresh = node_at(&root, &["refresh"]).expect_code(0);
    assert_eq!(refresh.stdout, "nothing to do: no links in /etc/extensions and /var/lib/extensions\n");
    // no transfer files, no release to follow: nothing to download, nothing to ask systemd
    let update = node_at(&root, &["update"]).expect_code(0);
    assert!(update.stdout.starts_with("nothing to do: no url-file transfer in /etc/sysupdate.d, /run/sysupdate.d, /usr/local/lib/sysupdate.d, /usr/lib/sysupdate.d"), "{update:?}");
    assert!(
        update
            .stdout
            .ends_with(", and no [extensions.<ext>] in /etc/bakery/node.toml (or /etc/bakery/node.d/*.toml)\n"),
        "{update:?}"
    );
    assert_eq!(update.stderr, "", "{update:?}");

    std::fs::create_dir_all(root.join("etc/bakery")).unwrap();
    std::fs::write(root.join("etc/bakery/node.toml"), "[extensions.demo]\nfollow = \"latest\"\n").unwrap();
    let update = node_at(&root, &["update"]).expect_code(0);
    assert!(update.stdout.contains("sets [extensions] but no release_url to fetch them from"), "{update:?}");
}

#[test]
fn a_root_that_is_not_a_directory_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let file = dir.path().join("file");
    std::fs::write(&file, "not a root").unwrap();
    let commands: [&[&str]; 6] = [
        &["status"],
        &["refresh"],
        &["update"],
        &["rollback", "demo"],
        &["update", "--activate"],
        &["bootstrap", "--release", "r1"],
    ];
    for args in commands {
        let failed = node_at(&missing, args).expect_code(2);
        assert!(
            failed.stderr.contains(&format!("--root {}: no such directory", missing.display())),
            "{args:?}: {failed:?}"
        );
        assert_eq!(failed.stderr.matches("error:").count(), 1, "{failed:?}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
        let failed = node_at(&file, args).expect_code(2);
        assert!(failed.stderr.contains(&format!("--root {}: not a directory", file.display())), "{args:?}: {failed:?}");
    }
    let mut doctor = support::bakery(dir.path());
    let failed = support::run(doctor.arg("doctor").arg("--root").arg(&missing)).expect_code(2);
    assert!(failed.stderr.contains("no such directory"), "{failed:?}");
    assert!(!missing.exists());
}

#[test]
fn status_shows_the_links_when_the_records_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let image = format!("/opt/extensions/demo/demo-v1.0.0-{}.raw", machine_arch());
    std::fs::create_dir_all(root.join("etc/extensions")).unwrap();
    std::os::unix::fs::symlink(&image, root.join("etc/extensions/demo.raw")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/bakery")).unwrap();
    std::fs::write(root.join("var/lib/bakery/versions.json"), "{ cut off").unwrap();

    let status = node_at(&root, &["status"]).expect_code(0);
    assert!(status.stdout.contains(&format!("demo: linked v1.0.0 ({image}), not merged, recorded -")), "{status:?}");
    let records = root.join("var/lib/bakery/versions.json");
    let unread = status.stdout.lines().find(|l| l.starts_with("could not read")).unwrap_or_default();
    assert!(unread.starts_with(&format!("could not read the records: parsing {}: ", records.display())), "{status:?}");
    assert!(!status.stdout.contains("nothing to show"), "{status:?}");

    let json = node_at(&root, &["status", "--json"]).expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["extensions"][0]["linked_version"], "v1.0.0");
    assert_eq!(json["not_read"][0]["what"], "the records", "{json}");

    // Nothing linked, the records unreadable: not "no records".
    std::fs::remove_file(root.join("etc/extensions/demo.raw")).unwrap();
    let status = node_at(&root, &["status"]).expect_code(0);
    assert!(
        status.stdout.starts_with("nothing to show: no links in /etc/extensions and /var/lib/extensions\n"),
        "{status:?}"
    );
    assert!(status.stdout.contains("could not read the records"), "{status:?}");
}

#[test]
fn refresh_names_the_os_release_paths_it_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc/extensions")).unwrap();
    std::os::unix::fs::symlink("/opt/extensions/demo/demo-v1.0.0-x86-64.raw", root.join("etc/extensions/demo.raw"))
        .unwrap();
    let failed = node_at(&root, &["refresh"]).expect_code(1);
    let (etc, usr) = (root.join("etc/os-release"), root.join("usr/lib/os-release"));
    let looked = format!("no os-release under {}: looked at {} and {}", root.display(), etc.display(), usr.display());
    assert!(failed.stderr.contains(&looked), "{failed:?}");
    assert_eq!(failed.stderr.matches("error:").count(), 1, "{failed:?}");
}

#[test]
fn status_without_dbus_says_it_could_not_read_unit_states() {
    // The host's own root, read only: whatever it has linked, status still answers.
    let dir = tempfile::tempdir().unwrap();
    let mut command = support::bakery(dir.path());
    command.env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}/no-bus", dir.path().display()));
    let status = support::run(command.args(["node", "status"])).expect_code(0);
    let unread = status.stdout.lines().find(|l| l.starts_with("could not read unit states: ")).unwrap_or_default();
    assert!(unread.contains("connecting to the D-Bus system bus"), "{status:?}");
}
