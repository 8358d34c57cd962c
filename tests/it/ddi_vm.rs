//! Signed DDIs merged by a real systemd with dm-verity active. The test machines have no
//! device-mapper (no /dev/mapper/control), so this test boots a virtual machine: Debian trixie's
//! cloud kernel (6.12, dm-verity with root-hash signatures) and systemd 257 under QEMU, in
//! software emulation (the CPUs here offer no VT-x), from the image scripts/trixie-vm builds
//! (`BAKERY_TEST_TRIXIE_VM`). A second disk carries the images, the suite's bakery and a script
//! that systemd runs at boot (`systemd.run=`) before powering off; the script writes what it saw
//! to that disk, which the test reads back with debugfs. A boot takes about a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::support::ddi::{change_byte, keypair, p256_keypair, partition_offsets, sfdisk};
use crate::support::demo::Demo;
use crate::support::{run, skip};

/// Where `scripts/test` (and so CI) puts the VM of scripts/trixie-vm.
const VM_VAR: &str = "BAKERY_TEST_TRIXIE_VM";

/// The policy the issue asked for, and the one bakery passes (`sysext::SIGNED_ONLY`).
const ISSUE_POLICY: &str = "root=verity+signed+absent";
const SIGNED_ONLY: &str = "root=signed+absent:usr=signed+absent";

/// What runs in the VM. Every case merges one image with one policy through systemd-sysext,
/// records the exit code, its first message, the verity devices (target and root hash, from
/// dmsetup) and, once merged, whether the whole verity device and /usr/bin/demo read back; then unmerges.
/// Then `bakery node refresh` (require_signed = true) activates the signed DDI and refuses a
/// tampered one. Every fact is a line `KEY<tab>VALUE` in /payload/facts.
const VM_SCRIPT: &str = r#"#!/bin/bash
exec >/payload/log 2>&1
set -x
fact() { printf '%s\t%s\n' "$1" "$2" >> /payload/facts; }
mkdir -p /etc/verity.d /run/extensions
for cert in /payload/trusted/*.pem; do cp "$cert" "/etc/verity.d/$(basename "$cert" .pem).crt"; done
verity_devices() { dmsetup table --target verity | awk '$4 == "verity" {print $4 ":" $13}'; }
merge_case() { # image policy
    local name="$1 $2"
    cp "/payload/$1" /run/extensions/demo.raw
    systemd-sysext merge --image-policy="$2" 2> /run/merge.err
    fact "$name merge" $?
    cat /run/merge.err >&2
    fact "$name error" "$(grep -v '^device-mapper: reload ioctl' /run/merge.err | head -1)"
    fact "$name table" "$(verity_devices)"
    local device; device=$(dmsetup ls --target verity | awk '/\(/ {print $1; exit}')
    if [ -n "$device" ]; then
        cat "/dev/mapper/$device" > /dev/null
        fact "$name device read" $?
    fi
    if [ -e /usr/bin/demo ]; then
        cat /usr/bin/demo > /dev/null
        fact "$name demo read" $?
    fi
    systemd-sysext unmerge
    rm -f /run/extensions/demo.raw
}
for image in CASES; do
    for policy in POLICIES; do merge_case "$image" "$policy"; done
done

# systemd.run= makes this service the default unit, so the boot reaches sysinit.target only:
# start the system bus that bakery talks to systemd over
systemctl start dbus.socket
mkdir -p /etc/bakery /opt/extensions/demo /etc/extensions
printf 'health_window = 1\nrequire_signed = true\n' > /etc/bakery/node.toml
stage() {
    cp "/payload/$1" /opt/extensions/demo/
    ln -sfn "/opt/extensions/demo/$1" /etc/extensions/demo.raw
}
refresh_case() { # name
    /payload/bakery node refresh > "/payload/$1.out" 2>&1
    fact "$1 rc" $?
    fact "$1 link" "$(readlink -f /etc/extensions/demo.raw)"
    fact "$1 service" "$(systemctl is-active demo.service)"
    fact "$1 version" "$(cat /run/demo.version)"
    fact "$1 table" "$(verity_devices)"
}
stage demo-v2.0.0-x86-64.raw
refresh_case signed
stage demo-v4.0.0-x86-64.raw
refresh_case tampered
fact done yes
sync
"#;

fn tool_or_skip(test: &str, tool: &str, package: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        skip(test, &format!("{tool} is missing (Debian package {package})"));
    }
    found
}

/// The VM's directory (vmlinuz, initrd.img, root.img), or why the test skips.
fn vm_or_skip(test: &str) -> Option<PathBuf> {
    if !crate::support::root_or_skip(test)
        || !tool_or_skip(test, "qemu-system-x86_64", "qemu-system-x86")
        || !tool_or_skip(test, "debugfs", "e2fsprogs")
    {
        return None;
    }
    let vm = std::env::var_os(VM_VAR).map(PathBuf::from);
    match vm {
        Some(vm) if vm.join("root.img").is_file() => Some(vm),
        _ => {
            skip(test, &format!("{VM_VAR} does not name a VM (scripts/test builds it with scripts/trixie-vm)"));
            None
        }
    }
}

/// The root hash a DDI's partition UUIDs carry (data: its first half, verity: its second).
fn root_hash(image: &Path) -> String {
    let parts = sfdisk(image);
    format!("{}{}", parts[0].uuid, parts[1].uuid).replace('-', "").to_lowercase()
}

/// Makes an ext4 image of `dir` (mkfs.ext4 -d), with room for what the VM writes.
fn ext4_of(dir: &Path, image: &Path) {
    let bytes: u64 = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    let size = format!("{}M", bytes / (1 << 20) + 64);
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "payload", "-d"]).arg(dir).arg(image).arg(size);
    run(&mut mkfs).expect_code(0);
}

/// Boots the VM with `payload` as its second disk and waits for it to power off; returns the
/// console log.
fn boot(vm: &Path, payload: &Path, work: &Path) -> String {
    let console = work.join("console.log");
    let append = "root=/dev/vda rw console=ttyS0 panic=-1 systemd.mount-extra=/dev/vdb:/payload:ext4 \
                  systemd.run=/payload/run.sh systemd.run_success_action=poweroff \
                  systemd.run_failure_action=poweroff";
    let started = Instant::now();
    let mut qemu = Command::new("timeout");
    // far above the minute a boot takes, so that only a hung VM reaches it
    qemu.args(["--kill-after=10", "900", "qemu-system-x86_64", "-accel", accelerator()]);
    qemu.args(["-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none", "-nic", "none", "-no-reboot"]);
    qemu.arg("-serial").arg(format!("file:{}", console.display()));
    qemu.arg("-kernel").arg(vm.join("vmlinuz")).arg("-initrd").arg(vm.join("initrd.img"));
    qemu.args(["-append", append]);
    qemu.arg("-drive").arg(format!("file={},if=virtio,format=raw,snapshot=on", vm.join("root.img").display()));
    qemu.arg("-drive").arg(format!("file={},if=virtio,format=raw", payload.display()));
    let out = run(&mut qemu);
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert_eq!(out.code, 0, "qemu: {out:?}\nconsole:\n{}", tail(&log));
    eprintln!("ddi_vm: the VM booted, ran its script and powered off in {:.1} s", started.elapsed().as_secs_f64());
    log
}

/// KVM where the CPU offers virtualization (vmx, svm) and /dev/kvm exists, else QEMU's software
/// emulation. The machines here have a /dev/kvm but no vmx: a guest started with KVM there
/// hangs before its first console line.
fn accelerator() -> &'static str {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let virtualization = flags.split_whitespace().any(|f| f == "vmx" || f == "svm");
    if virtualization && Path::new("/dev/kvm").exists() { "kvm" } else { "tcg" }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `cat PATH` out of the ext4 image, by debugfs.
fn debugfs_cat(image: &Path, path: &str) -> String {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image)).expect_code(0);
    out.stdout
}

/// A DDI built and signed by bakery, merged by systemd 257 with the kernel's dm-verity:
/// - Under the issue's policy (`root=verity+signed+absent`) and under bakery's
///   (`root=signed+absent:usr=signed+absent`), systemd-sysext merges it on a verity device with
///   its root hash, and the whole device and the extension's files read back. The certificate is
///   in /etc/verity.d only, not in the kernel's keyring, so the kernel's own signature check
///   fails and systemd verifies the PKCS#7 in userspace. A DDI signed with a P-256 key merges
///   the same way.
/// - The same DDI without its signature partition merges under the issue's policy (`verity` is
///   an alternative to `signed`) with no verity device at all, since without the signature
///   systemd has no root hash; bakery's policy refuses it, which is why bakery passes that one.
/// - A DDI signed by a key /etc/verity.d does not hold, a plain SquashFS image, a changed byte in
///   the signature and in the hash tree are refused by both policies.
/// - A changed byte in the data is refused by the kernel when systemd reads the block (dm-verity
///   checks blocks as they are read): the extension-release cannot be read (EIO), so nothing
///   merges.
/// - `bakery node refresh` under `require_signed = true` activates the signed DDI through
///   systemd-sysext's image policy (demo.service runs v2.0.0 from a verity device) and refuses a
///   DDI whose data was changed before merging it, linking the signed one back.
#[test]
fn systemd_257_with_dm_verity_merges_a_signed_ddi_and_refuses_every_tampered_one() {
    let test = "systemd_257_with_dm_verity_merges_a_signed_ddi_and_refuses_every_tampered_one";
    let Some(vm) = vm_or_skip(test) else { return };
    let demo = Demo::new();
    let (key, cert) = keypair(demo.dir.path(), "release-key");
    let (other_key, other_cert) = keypair(demo.dir.path(), "other-key");
    let signed = demo.shared().join(demo.build_ddi("v2.0.0", &key, &cert));
    let foreign = demo.shared().join(demo.build_ddi("v3.0.0", &other_key, &other_cert));
    let later = demo.shared().join(demo.build_ddi("v4.0.0", &key, &cert));
    let plain = demo.shared().join(demo.build("v1.0.0", "x86-64", false));
    let (ec_key, ec_cert) = p256_keypair(demo.dir.path(), "ec-key", false);
    let ecdsa = demo.shared().join(demo.build_ddi("v5.0.0", &ec_key, &ec_cert));

    let work = tempfile::tempdir().unwrap();
    let payload = work.path().join("payload");
    std::fs::create_dir(&payload).unwrap();
    let put = |from: &Path, name: &str| {
        std::fs::copy(from, payload.join(name)).unwrap();
        payload.join(name)
    };
    let [data, hash, sig] = partition_offsets(&signed);
    let hash_of_signed = root_hash(&signed);
    put(&signed, "demo-v2.0.0-x86-64.raw");
    put(&signed, "signed.raw");
    put(&foreign, "foreign.raw");
    put(&plain, "plain.raw");
    change_byte(&put(&signed, "data-changed.raw"), data + (hash - data) / 2);
    change_byte(&put(&signed, "hash-changed.raw"), hash + 4096 + 5);
    // The RSA signature value ends the PKCS#7, so its base64 ends 12 bytes after this, before
    // `","certificateFingerprint"`; the JSON starts `{"rootHash":"<64 hex>","signature":"`.
    // (A byte changed in the embedded certificate instead is merged by systemd 257: the kernel
    // cannot parse the PKCS#7, and systemd's userspace check verifies the signature with the
    // certificate from /etc/verity.d. bakery refuses that too, see ddi_node.rs.)
    let bytes = std::fs::read(&signed).unwrap();
    let json_end = sig as usize + bytes[sig as usize..].iter().position(|b| *b == 0).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes[sig as usize..json_end]).unwrap();
    let base64_end = sig + 92 + json["signature"].as_str().unwrap().len() as u64;
    change_byte(&put(&signed, "signature-changed.raw"), base64_end - 12);
    let unsigned = put(&signed, "verity-only.raw");
    run(Command::new("sfdisk").args(["-q", "--delete"]).arg(&unsigned).arg("3")).expect_code(0);
    assert_eq!(sfdisk(&unsigned).len(), 2);
    let [later_data, later_hash, _] = partition_offsets(&later);
    change_byte(&put(&later, "demo-v4.0.0-x86-64.raw"), later_data + (later_hash - later_data) / 2);
    put(&ecdsa, "ecdsa.raw");
    std::fs::create_dir(payload.join("trusted")).unwrap();
    put(&cert, "trusted/release-key.pem");
    put(&ec_cert, "trusted/ec-key.pem");
    put(Path::new(env!("CARGO_BIN_EXE_bakery")), "bakery");

    let cases = "signed.raw ecdsa.raw verity-only.raw foreign.raw plain.raw signature-changed.raw hash-changed.raw data-changed.raw";
    let script = VM_SCRIPT.replace("CASES", cases).replace("POLICIES", &format!("{ISSUE_POLICY} {SIGNED_ONLY}"));
    std::fs::write(payload.join("run.sh"), script).unwrap();
    for executable in ["run.sh", "bakery"] {
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(payload.join(executable), mode).unwrap();
    }
    let disk = work.path().join("payload.img");
    ext4_of(&payload, &disk);

    let console = boot(&vm, &disk, work.path());
    let log = debugfs_cat(&disk, "/log");
    let facts: BTreeMap<String, String> = debugfs_cat(&disk, "/facts")
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let context = format!("facts: {facts:#?}\nscript log:\n{}\nconsole:\n{}", tail(&log), tail(&console));
    assert_eq!(facts.get("done").map(String::as_str), Some("yes"), "the script ran to its end\n{context}");
    let fact = |image: &str, policy: &str, what: &str| -> String {
        facts.get(&format!("{image} {policy} {what}")).cloned().unwrap_or_else(|| "absent".into())
    };
    let verity_table = format!("verity:{hash_of_signed}");

    for policy in [ISSUE_POLICY, SIGNED_ONLY] {
        let signed = |what: &str| fact("signed.raw", policy, what);
        assert_eq!(signed("merge"), "0", "{policy}: the signed DDI merges\n{context}");
        assert_eq!(signed("table"), verity_table, "{policy}: on a verity device with its root hash\n{context}");
        assert_eq!(signed("device read"), "0", "{policy}\n{context}");
        assert_eq!(signed("demo read"), "0", "{policy}\n{context}");

        let ecdsa_table = format!("verity:{}", root_hash(&ecdsa));
        assert_eq!(fact("ecdsa.raw", policy, "merge"), "0", "{policy}: the P-256 signed DDI merges\n{context}");
        assert_eq!(fact("ecdsa.raw", policy, "table"), ecdsa_table, "{policy}\n{context}");
        assert_eq!(fact("ecdsa.raw", policy, "demo read"), "0", "{policy}\n{context}");

        for refused in ["foreign.raw", "plain.raw", "signature-changed.raw", "hash-changed.raw"] {
            assert_eq!(fact(refused, policy, "merge"), "1", "{refused} under {policy}\n{context}");
            assert_eq!(fact(refused, policy, "demo read"), "absent", "{refused}: nothing merged\n{context}");
        }

        // The demo's small files share one SquashFS fragment block, so reading its
        // extension-release reads the changed block, which dm-verity refuses.
        assert_eq!(fact("data-changed.raw", policy, "merge"), "1", "{policy}\n{context}");
        assert_eq!(
            fact("data-changed.raw", policy, "error"),
            "Failed to read metadata for image demo: Input/output error",
            "{policy}\n{context}"
        );
    }
    let kernel_says = "verity: Root hash verification failed (-ENOKEY)";
    assert!(console.contains(kernel_says) || log.contains("Required key not available"), "{context}");

    // Without a signature systemd has no root hash to set up verity with, and `verity` in the
    // policy still admits the image: it is merged straight from the loop device, its data
    // checked by nothing.
    assert_eq!(fact("verity-only.raw", ISSUE_POLICY, "merge"), "0", "`verity` admits it\n{context}");
    assert_eq!(fact("verity-only.raw", ISSUE_POLICY, "table"), "", "no verity device\n{context}");
    assert_eq!(fact("verity-only.raw", ISSUE_POLICY, "demo read"), "0", "{context}");
    assert_eq!(fact("verity-only.raw", SIGNED_ONLY, "merge"), "1", "`signed` alone does not\n{context}");
    assert_eq!(
        fact("verity-only.raw", SIGNED_ONLY, "error"),
        "/run/extensions/demo.raw: Image does not match image policy.",
        "{context}"
    );

    let refresh = |case: &str, what: &str| facts.get(&format!("{case} {what}")).cloned().unwrap_or_default();
    let out = |case: &str| debugfs_cat(&disk, &format!("/{case}.out"));
    assert_eq!(refresh("signed", "rc"), "0", "{}\n{context}", out("signed"));
    assert!(out("signed").contains("demo: Activated: v2.0.0 active"), "{}", out("signed"));
    assert_eq!(refresh("signed", "service"), "active", "{context}");
    assert_eq!(refresh("signed", "version"), "v2.0.0", "{context}");
    assert_eq!(refresh("signed", "table"), verity_table, "merged on a verity device\n{context}");
    assert_eq!(refresh("tampered", "rc"), "1", "{}\n{context}", out("tampered"));
    assert!(out("tampered").contains("demo: Refused"), "{}", out("tampered"));
    assert_eq!(refresh("tampered", "link"), "/opt/extensions/demo/demo-v2.0.0-x86-64.raw", "{context}");
    assert_eq!(refresh("tampered", "service"), "active", "{context}");
    assert_eq!(refresh("tampered", "version"), "v2.0.0", "{context}");
    assert_eq!(refresh("tampered", "table"), verity_table, "{context}");
}
