//! `bakery doctor`: what bakery depends on, checked on this host, each with a fix.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::config::NodeConfig;
use super::systemd::{Bus, Systemd};
use crate::error::describe;
use crate::model::Mirrors;
use crate::pipeline::http::Http;
use crate::sysupdate::update::KEYRING;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { check: name.to_string(), status, detail: detail.into(), fix: fix.into() }
}

/// `systemd 252 (252.38-1~deb12u1)` → 252.
pub fn parse_systemd_version(text: &str) -> Option<u32> {
    text.lines().next()?.strip_prefix("systemd ")?.split_whitespace().next()?.parse().ok()
}

/// What a systemd version means for sysext images: (feature, since, missing-means).
const FEATURES: [(&str, u32, &str); 6] = [
    ("systemd-sysext", 248, "system extension images cannot be merged at all"),
    ("Upholds= (services start by themselves)", 249, "units in images must be started by hand"),
    ("systemd-sysupdate", 251, "use `bakery node update` to stage images"),
    ("EXTENSION_RELOAD_MANAGER", 255, "`bakery node refresh` reloads systemd after merging"),
    ("varlink io.systemd.sysext", 256, "bakery runs the systemd-sysext command instead"),
    (".transfer suffix for transfer files", 257, "use `--transfer-suffix conf` (the default)"),
];

/// The systemd check from its version and whether sysupdate is installed.
pub fn systemd_check(version: Option<u32>, sysupdate_installed: bool) -> Check {
    let Some(version) = version else {
        return check(
            "systemd",
            Status::Fail,
            "systemd is not running or `systemctl --version` failed",
            "run bakery on a systemd host",
        );
    };
    let mut has = Vec::new();
    let mut lacks = Vec::new();
    for (feature, since, missing) in FEATURES {
        let present = version >= since && (feature != "systemd-sysupdate" || sysupdate_installed);
        if present {
            has.push(feature.to_string());
        } else {
            lacks.push(format!("{feature}: {missing}"));
        }
    }
    let detail = format!("systemd {version}; has {}", has.join(", "));
    if version < 248 {
        return check("systemd", Status::Fail, detail, "systemd 248 or newer is needed for system extensions");
    }
    let status = if lacks.is_empty() { Status::Ok } else { Status::Warn };
    check("systemd", status, detail, lacks.join("; "))
}

/// The kernel check from /proc/filesystems and the modules directory. `erofs_images` names the
/// linked images that are EROFS: then the kernel must have EROFS too.
pub fn kernel_check(filesystems: &str, module_exists: &dyn Fn(&str) -> bool, erofs_images: &[String]) -> Check {
    let listed = |fs: &str| filesystems.lines().any(|l| l.split_whitespace().last() == Some(fs));
    let mut missing_required = Vec::new();
    let mut notes = Vec::new();
    for (fs, module, required) in
        [("squashfs", "squashfs", true), ("overlay", "overlayfs", true), ("erofs", "erofs", !erofs_images.is_empty())]
    {
        if listed(fs) {
            notes.push(fs.to_string());
        } else if module_exists(module) {
            notes.push(format!("{fs} (module)"));
        } else if required {
            missing_required.push(fs);
        }
    }
    if missing_required.is_empty() {
        check("kernel", Status::Ok, format!("file systems: {}", notes.join(", ")), "")
    } else if missing_required == ["erofs"] {
        check(
            "kernel",
            Status::Fail,
            format!("missing erofs, and {} linked as EROFS", erofs_images.join(", ")),
            "use a kernel with CONFIG_EROFS_FS (5.13+ for lz4/lz4hc images), or build the images with --format squashfs",
        )
    } else {
        check(
            "kernel",
            Status::Fail,
            format!("missing {}", missing_required.join(", ")),
            "use a kernel with CONFIG_SQUASHFS, CONFIG_OVERLAY_FS and, for EROFS images, CONFIG_EROFS_FS (and load the modules)",
        )
    }
}

/// What signature checks on this node rely on.
#[derive(Clone, Debug, Default)]
pub struct Signatures {
    /// The transfer files that say `Verify=yes`.
    pub verifying: Vec<String>,
    pub gpgv: bool,
    pub gpg: bool,
    /// systemd-sysupdate is installed: it verifies with gpg (systemd-pull), not gpgv.
    pub sysupdate: bool,
    /// Each keyring used, as the node names it, with its size where it exists.
    pub keyrings: Vec<(String, Option<u64>)>,
}

/// Whether `Verify=yes` transfers can be verified: a verifier and a non-empty keyring.
pub fn signatures_check(s: &Signatures) -> Check {
    if s.verifying.is_empty() {
        return check("signatures", Status::Ok, "no transfer file says Verify=yes (nothing to verify)", "");
    }
    let mut status = Status::Ok;
    let (mut problems, mut fixes) = (Vec::new(), Vec::new());
    if !s.gpgv && !s.gpg {
        status = Status::Fail;
        problems.push("neither gpgv nor gpg is installed".to_string());
        fixes.push("install gpgv or gnupg (Debian: apt install gpgv)".to_string());
    } else if s.sysupdate && !s.gpg {
        status = Status::Warn;
        problems.push("systemd-sysupdate verifies with gpg, which is missing (gpgv serves bakery only)".to_string());
        fixes.push("install gnupg (Debian: apt install gnupg)".to_string());
    }
    for (keyring, size) in &s.keyrings {
        let problem = match size {
            None => format!("{keyring} is missing"),
            Some(0) => format!("{keyring} is empty"),
            Some(_) => continue,
        };
        status = Status::Fail;
        problems.push(problem);
        fixes.push(format!(
            "install the release's import-pubring.gpg (`bakery release --sign-key` writes it) as {keyring}; `bakery butane` configs do"
        ));
    }
    let keyrings: Vec<&str> = s.keyrings.iter().map(|(k, _)| k.as_str()).collect();
    let detail = if problems.is_empty() {
        let tool = if s.gpg && (s.sysupdate || !s.gpgv) { "gpg" } else { "gpgv" };
        format!("Verify=yes in {}: {tool} checks SHA256SUMS.gpg with {}", s.verifying.join(", "), keyrings.join(", "))
    } else {
        format!("Verify=yes in {}, but {}", s.verifying.join(", "), problems.join("; "))
    };
    check("signatures", status, detail, fixes.join("; "))
}

/// Whether `require_signed` can hold: a certificate in verity.d to verify DDIs with (`trusted`:
/// each certificate's node path and subject, or why one could not be read), and systemd 254+ to
/// enforce the signature at the merge as well (`--image-policy=`).
pub fn signed_images_check(
    require_signed: bool,
    systemd: Option<u32>,
    trusted: &Result<Vec<(String, String)>, String>,
) -> Check {
    let dirs = crate::ddi::read::sig::CERT_DIRS.map(|d| format!("/{d}")).join(", ");
    let certs = match trusted {
        Err(e) => {
            let status = if require_signed { Status::Fail } else { Status::Warn };
            return check("signed images", status, e.clone(), "replace or remove the certificate that cannot be read");
        }
        Ok(certs) => certs,
    };
    let listed: Vec<String> = certs.iter().map(|(file, subject)| format!("{subject} ({file})")).collect();
    if !require_signed {
        let trusted =
            if listed.is_empty() { String::new() } else { format!("; DDIs verify with {}", listed.join(", ")) };
        return check(
            "signed images",
            Status::Ok,
            format!("require_signed is off: plain images and DDIs merge{trusted}"),
            "",
        );
    }
    if listed.is_empty() {
        return check(
            "signed images",
            Status::Fail,
            format!("require_signed = true, but no certificate in {dirs}: every image is refused"),
            "install the release's <ext>.crt as /etc/verity.d/<ext>.crt (`bakery release --verity-cert` publishes it, `bakery butane` installs it)",
        );
    }
    let only = format!("require_signed = true: only DDIs signed for {} merge", listed.join(", "));
    match systemd {
        Some(v) if v >= super::sysext::IMAGE_POLICY_SINCE => check(
            "signed images",
            Status::Ok,
            format!("{only}; systemd-sysext enforces --image-policy={}", super::sysext::SIGNED_ONLY),
            "",
        ),
        _ => check(
            "signed images",
            Status::Warn,
            format!(
                "{only}; this systemd has no image policies, so bakery's check just before the merge is the only guard"
            ),
            "systemd 254 or newer also enforces the signature when it merges",
        ),
    }
}

/// The keyrings `SHA256SUMS.gpg` is checked with, as node paths: systemd-sysupdate reads only
/// `/etc/systemd/import-pubring.gpg`; `bakery node update` the node config's `keyring` instead.
pub fn keyrings(sysupdate: bool, configured: Option<&Path>) -> Vec<PathBuf> {
    let systemd = Path::new("/").join(KEYRING);
    match configured {
        Some(k) if sysupdate && k != systemd => vec![systemd, k.to_path_buf()],
        Some(k) => vec![k.to_path_buf()],
        None => vec![systemd],
    }
}

/// The URL to fetch a release's `SHA256SUMS` from, or the failed check: plain http is fetched
/// where the transfer verifies the signature (which covers every digest, and systemd-sysupdate
/// accepts it), otherwise only through a mirror configured for it.
pub fn release_source(url: &str, verify: bool, origin: &str, mirrors: &Mirrors) -> Result<String, Check> {
    let sums = format!("{}/SHA256SUMS", url.trim_end_matches('/'));
    let resolved = if verify { mirrors.resolve_signed(&sums) } else { mirrors.resolve(&sums) };
    resolved.map_err(|e| {
        if !verify && sums.starts_with("http://") {
            check(
                "release",
                Status::Fail,
                format!("{sums}: plain http with Verify=no, so nothing vouches for what it serves"),
                format!(
                    "use an https URL in {origin}, sign the release (`bakery release --sign-key`, Verify=yes) or configure a mirror for it (--mirror FROM=TO)"
                ),
            )
        } else {
            check("release", Status::Fail, format!("{sums}: {}", describe(&e)), format!("check the URL in {origin}"))
        }
    })
}

/// Runs every check on the host at `root`.
pub async fn doctor(root: &Path, config: &NodeConfig, http: &Http, mirrors: &Mirrors) -> Vec<Check> {
    let mut checks = Vec::new();
    let version = std::process::Command::new("systemctl")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| parse_systemd_version(&String::from_utf8_lossy(&o.stdout)));
    let sysupdate = root.join("usr/lib/systemd/systemd-sysupdate").exists();
    checks.push(systemd_check(version, sysupdate));

    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = Path::new("/lib/modules").join(release.trim()).join("kernel/fs");
    let erofs_images: Vec<String> = super::observe::linked(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|l| crate::image::read::sniff(&l.image).is_ok_and(|f| f == crate::model::Format::Erofs))
        .map(|l| l.node_image)
        .collect();
    checks.push(kernel_check(&filesystems, &|module| modules.join(module).exists(), &erofs_images));

    let trusted = crate::ddi::read::sig::trusted(root)
        .map(|certs| certs.iter().map(|t| (node_path(root, &t.file), t.subject())).collect())
        .map_err(|e| describe(&e));
    checks.push(signed_images_check(config.require_signed, version, &trusted));

    checks.push(writable(
        root,
        "etc/extensions",
        "extensions",
        Some("mkdir -p /etc/extensions: systemd-sysupdate cannot create its CurrentSymlink without it (bakery creates it itself)"),
    ));
    checks.push(writable(root, "var/lib/bakery", "records", None));

    checks.push(match Bus::connect().await {
        Ok(bus) => match bus.state("dbus.service").await {
            Ok(state) => {
                check("dbus", Status::Ok, format!("systemd answers over the system bus (dbus.service {state})"), "")
            }
            Err(e) => check("dbus", Status::Fail, describe(&e), "check that systemd and dbus are running"),
        },
        Err(e) => check("dbus", Status::Fail, describe(&e), "start dbus.service (bakery restarts units over D-Bus)"),
    });

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let floor = 1_735_689_600; // 2025-01-01, before this release of bakery existed
    checks.push(if now >= floor {
        check("clock", Status::Ok, crate::util::time::rfc3339(now), "")
    } else {
        check(
            "clock",
            Status::Fail,
            format!("the clock says {}", crate::util::time::rfc3339(now)),
            "set the time (systemd-timesyncd): TLS certificates and signatures do not verify in the past",
        )
    });

    let found = super::update::transfers(root).unwrap_or_default();
    let keyrings: Vec<(String, Option<u64>)> = keyrings(sysupdate, config.keyring.as_deref())
        .into_iter()
        .map(|k| {
            let k = k.display().to_string();
            let size = std::fs::metadata(super::observe::on_disk(root, &k)).ok().map(|m| m.len());
            (k, size)
        })
        .collect();
    // `bakery node update` verifies a release_url exactly when it finds a keyring for it
    let release_url_verified = config.release_url.is_some() && super::update::keyring(root, config).is_some();
    let mut verifying: Vec<String> =
        found.iter().filter(|f| f.transfer.verify).map(|f| node_path(root, &f.path)).collect();
    if release_url_verified {
        verifying.push("release_url in /etc/bakery/node.toml".to_string());
    }
    let signatures = Signatures {
        verifying,
        gpgv: crate::util::find_program("gpgv").is_some(),
        gpg: crate::util::find_program("gpg").is_some(),
        sysupdate,
        keyrings,
    };
    checks.push(signatures_check(&signatures));

    // (url, Verify=yes, where it is configured)
    let mut urls: Vec<(String, bool, String)> = Vec::new();
    if let Some(url) = &config.release_url {
        urls.push((url.clone(), release_url_verified, "release_url in /etc/bakery/node.toml".to_string()));
    }
    for f in &found {
        if let Some(url) = f.transfer.source.get("Path")
            && !urls.iter().any(|(u, v, _)| u == url && *v == f.transfer.verify)
        {
            urls.push((url.to_string(), f.transfer.verify, node_path(root, &f.path)));
        }
    }
    if urls.is_empty() {
        checks.push(check(
            "release",
            Status::Warn,
            "no transfer files and no release_url",
            "install transfer files (bakery butane does) or set release_url",
        ));
    }
    for (url, verify, origin) in urls {
        let fetch = match release_source(&url, verify, &origin, mirrors) {
            Ok(fetch) => fetch,
            Err(failed) => {
                checks.push(failed);
                continue;
            }
        };
        let signed =
            if verify && fetch.starts_with("http://") { "; plain http, the signature vouches for it" } else { "" };
        checks.push(match http.get_small(&fetch).await {
            Ok(_) => check("release", Status::Ok, format!("{fetch} answers (from {origin}{signed})"), ""),
            Err(e) => check(
                "release",
                Status::Fail,
                format!("{fetch}: {}", describe(&e)),
                format!("check the URL in {origin}, the network and any mirror"),
            ),
        });
    }
    checks
}

/// `path` (on disk, under `root`) as the node names it.
fn node_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).map(|p| Path::new("/").join(p)).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// Whether bakery can write in `root/rel`, or create it (checked in its nearest existing parent,
/// without creating anything).
fn writable(root: &Path, rel: &str, name: &str, missing_fix: Option<&str>) -> Check {
    let dir = root.join(rel);
    let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(root);
    let probe = tempfile::NamedTempFile::new_in(existing)
        .map(drop)
        .map_err(|e| format!("{e} ({} is not writable)", existing.display()));
    directory_check(name, rel, existing == dir, probe, missing_fix)
}

/// The check of a directory bakery writes in, from whether it exists and whether a file could be
/// created in it or its nearest existing parent; with `missing_fix`, a missing one is a warning.
pub fn directory_check(
    name: &str,
    rel: &str,
    exists: bool,
    probe: Result<(), String>,
    missing_fix: Option<&str>,
) -> Check {
    match (probe, exists, missing_fix) {
        (Err(e), _, _) => check(
            name,
            Status::Fail,
            format!("/{rel}: {e}"),
            format!("run as root, and make /{rel} writable (not on a read-only /etc or /var)"),
        ),
        (Ok(()), true, _) => check(name, Status::Ok, format!("/{rel} is writable"), ""),
        (Ok(()), false, Some(fix)) => check(name, Status::Warn, format!("/{rel} is missing (it can be created)"), fix),
        (Ok(()), false, None) => check(name, Status::Ok, format!("/{rel} can be created"), ""),
    }
}

/// The text report.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{status}  {:<10}  {}\n", c.check, c.detail));
        if !c.fix.is_empty() {
            out.push_str(&format!("      {:<10}  fix: {}\n", "", c.fix));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_versions_imply_features() {
        assert_eq!(parse_systemd_version("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT"), Some(252));
        let debian = systemd_check(Some(252), false);
        assert_eq!(debian.status, Status::Warn);
        assert!(debian.detail.contains("systemd-sysext") && debian.fix.contains("bakery node update"), "{debian:?}");
        assert!(debian.fix.contains("EXTENSION_RELOAD_MANAGER"));
        assert_eq!(systemd_check(Some(257), true).status, Status::Ok);
        assert_eq!(systemd_check(Some(247), true).status, Status::Fail);
        assert_eq!(systemd_check(None, false).status, Status::Fail);
    }

    #[test]
    fn kernel_file_systems_or_modules() {
        let ok = kernel_check("nodev\toverlay\n\tsquashfs\n", &|_| false, &[]);
        assert_eq!(ok.status, Status::Ok);
        let module = kernel_check("nodev\toverlay\n", &|m| m == "squashfs", &[]);
        assert_eq!(module.status, Status::Ok);
        assert!(module.detail.contains("squashfs (module)"));
        let missing = kernel_check("nodev\tproc\n", &|_| false, &[]);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.detail.contains("squashfs, overlay"));
        // EROFS is needed only when a linked image is EROFS
        let image = vec!["/opt/extensions/k/k.raw".to_string()];
        let no_erofs = kernel_check("nodev\toverlay\n\tsquashfs\n", &|_| false, &image);
        assert_eq!(no_erofs.status, Status::Fail);
        assert!(no_erofs.detail.contains("missing erofs, and /opt/extensions/k/k.raw linked as EROFS"), "{no_erofs:?}");
        assert!(no_erofs.fix.contains("--format squashfs"), "{no_erofs:?}");
        let erofs = kernel_check("nodev\toverlay\n\tsquashfs\n\terofs\n", &|_| false, &image);
        assert_eq!(erofs.status, Status::Ok);
    }

    #[test]
    fn signatures_need_a_verifier_and_a_keyring_where_a_transfer_verifies() {
        let keyring = "/etc/systemd/import-pubring.gpg";
        let setup = |verifying: &[&str], gpgv, gpg, sysupdate, size: Option<u64>| Signatures {
            verifying: verifying.iter().map(|v| v.to_string()).collect(),
            gpgv,
            gpg,
            sysupdate,
            keyrings: vec![(keyring.to_string(), size)],
        };
        let demo = ["/etc/sysupdate.demo.d/demo.conf"];
        // (setup, status, in the detail, in the fix)
        let table = [
            (setup(&[], false, false, true, None), Status::Ok, "no transfer file says Verify=yes", ""),
            (
                setup(&demo, true, false, false, Some(400)),
                Status::Ok,
                "gpgv checks SHA256SUMS.gpg with /etc/systemd",
                "",
            ),
            (setup(&demo, false, true, true, Some(400)), Status::Ok, "gpg checks", ""),
            (
                setup(&demo, false, false, false, Some(400)),
                Status::Fail,
                "neither gpgv nor gpg",
                "install gpgv or gnupg",
            ),
            (setup(&demo, true, false, true, Some(400)), Status::Warn, "systemd-sysupdate verifies with gpg", "gnupg"),
            (setup(&demo, true, true, true, None), Status::Fail, "import-pubring.gpg is missing", "bakery butane"),
            (
                setup(&demo, true, true, true, Some(0)),
                Status::Fail,
                "import-pubring.gpg is empty",
                "import-pubring.gpg",
            ),
        ];
        for (signatures, status, detail, fix) in table {
            let got = signatures_check(&signatures);
            assert_eq!((got.check.as_str(), got.status), ("signatures", status), "{signatures:?}: {got:?}");
            assert!(got.detail.contains(detail) && got.fix.contains(fix), "{signatures:?}: {got:?}");
            assert_eq!(got.fix.is_empty(), status == Status::Ok, "{got:?}");
        }
        let both = signatures_check(&setup(&demo, false, false, false, None));
        assert!(
            both.detail.contains("neither") && both.detail.contains("missing") && both.fix.contains("; "),
            "{both:?}"
        );
    }

    #[test]
    fn require_signed_needs_a_certificate_and_is_enforced_by_systemd_from_254() {
        let cert = Ok(vec![("/etc/verity.d/k.crt".to_string(), "CN=release".to_string())]);
        let none = Ok(Vec::new());
        let off = signed_images_check(false, Some(252), &none);
        assert_eq!(off.status, Status::Ok);
        assert_eq!(off.detail, "require_signed is off: plain images and DDIs merge");
        let off = signed_images_check(false, Some(257), &cert);
        assert!(off.detail.ends_with("DDIs verify with CN=release (/etc/verity.d/k.crt)"), "{off:?}");

        let empty = signed_images_check(true, Some(257), &none);
        assert_eq!(empty.status, Status::Fail);
        assert!(
            empty
                .detail
                .contains("no certificate in /etc/verity.d, /run/verity.d, /usr/local/lib/verity.d, /usr/lib/verity.d")
        );
        assert!(empty.fix.contains("/etc/verity.d/<ext>.crt"), "{empty:?}");

        let enforced = signed_images_check(true, Some(254), &cert);
        assert_eq!(enforced.status, Status::Ok);
        assert!(
            enforced.detail.contains("only DDIs signed for CN=release (/etc/verity.d/k.crt) merge"),
            "{enforced:?}"
        );
        assert!(enforced.detail.ends_with("--image-policy=root=signed+absent:usr=signed+absent"), "{enforced:?}");
        let unenforced = signed_images_check(true, Some(253), &cert);
        assert_eq!(unenforced.status, Status::Warn);
        assert!(unenforced.detail.contains("bakery's check just before the merge is the only guard"), "{unenforced:?}");

        let unreadable = Err("/etc/verity.d/bad.crt: not a PEM certificate".to_string());
        assert_eq!(signed_images_check(true, Some(257), &unreadable).status, Status::Fail);
        assert_eq!(signed_images_check(false, Some(257), &unreadable).status, Status::Warn);
    }

    #[test]
    fn keyrings_are_systemds_and_the_configured_one() {
        let systemd = PathBuf::from("/etc/systemd/import-pubring.gpg");
        let other = Path::new("/etc/bakery/release.gpg");
        assert_eq!(keyrings(true, None), vec![systemd.clone()]);
        assert_eq!(keyrings(false, Some(other)), [other.to_path_buf()], "bakery node update reads only that one");
        assert_eq!(
            keyrings(true, Some(other)),
            [systemd.clone(), other.to_path_buf()],
            "systemd-sysupdate reads its own"
        );
        assert_eq!(keyrings(true, Some(&systemd)), vec![systemd.clone()]);
    }

    #[test]
    fn plain_http_releases_are_fine_only_when_signed_or_mirrored() {
        let none = Mirrors::default();
        let mirrored = Mirrors::new(["http://plain.example=http://10.0.0.1/ext".parse().unwrap()]);
        let origin = "/etc/sysupdate.demo.d/demo.conf";
        // (url, Verify=yes, mirrors, fetched)
        let ok = [
            ("https://example.org/ext", false, &none, "https://example.org/ext/SHA256SUMS"),
            ("https://example.org/ext/", true, &none, "https://example.org/ext/SHA256SUMS"),
            ("http://plain.example/ext", true, &none, "http://plain.example/ext/SHA256SUMS"),
            ("http://plain.example/ext", false, &mirrored, "http://10.0.0.1/ext/ext/SHA256SUMS"),
        ];
        for (url, verify, mirrors, fetched) in ok {
            assert_eq!(release_source(url, verify, origin, mirrors).unwrap(), fetched, "{url} verify={verify}");
        }
        let unsigned = release_source("http://plain.example/ext", false, origin, &none).unwrap_err();
        assert_eq!((unsigned.check.as_str(), unsigned.status), ("release", Status::Fail));
        assert!(unsigned.detail.contains("plain http with Verify=no"), "{unsigned:?}");
        for remedy in ["https", origin, "sign the release", "--sign-key", "mirror"] {
            assert!(unsigned.fix.contains(remedy), "{remedy:?} missing: {unsigned:?}");
        }
        let ftp = release_source("ftp://example.org/ext", true, origin, &none).unwrap_err();
        assert!(ftp.status == Status::Fail && ftp.fix.contains(origin), "{ftp:?}");
    }

    #[test]
    fn a_missing_extensions_directory_is_a_warning_with_the_command_to_create_it() {
        let fix = Some("mkdir -p /etc/extensions: systemd-sysupdate cannot create its CurrentSymlink");
        let present = directory_check("extensions", "etc/extensions", true, Ok(()), fix);
        assert_eq!((present.status, present.detail.as_str()), (Status::Ok, "/etc/extensions is writable"));
        let missing = directory_check("extensions", "etc/extensions", false, Ok(()), fix);
        assert_eq!(missing.status, Status::Warn);
        assert!(
            missing.detail.contains("missing") && missing.fix.starts_with("mkdir -p /etc/extensions"),
            "{missing:?}"
        );
        let records = directory_check("records", "var/lib/bakery", false, Ok(()), None);
        assert_eq!((records.status, records.detail.as_str()), (Status::Ok, "/var/lib/bakery can be created"));
        let read_only = directory_check("extensions", "etc/extensions", true, Err("read-only".into()), fix);
        assert!(read_only.status == Status::Fail && read_only.fix.contains("writable"), "{read_only:?}");
    }

    #[test]
    fn doctor_on_a_root_with_signed_transfers_checks_the_keyring_and_the_extensions_directory() {
        let root = tempfile::tempdir().unwrap();
        let spec = crate::sysupdate::transfer::TransferSpec {
            name: "demo".into(),
            base_url: "http://127.0.0.1:9/ext".into(),
            pattern: crate::sysupdate::pattern::extension_pattern("demo"),
            verify: true,
            instances_max: 3,
            description: String::new(),
        };
        std::fs::create_dir_all(root.path().join("etc/sysupdate.demo.d")).unwrap();
        std::fs::write(root.path().join("etc/sysupdate.demo.d/demo.conf"), spec.render().unwrap()).unwrap();
        let once = crate::pipeline::http::RetryPolicy { attempts: 1, first_delay: std::time::Duration::ZERO };
        let http = Http::new(once).unwrap();
        let run = || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(doctor(root.path(), &NodeConfig::default(), &http, &Mirrors::default()))
        };
        let find = |checks: &[Check], name: &str| checks.iter().find(|c| c.check == name).cloned().unwrap();

        let checks = run();
        let signatures = find(&checks, "signatures");
        assert_eq!(signatures.status, Status::Fail, "{signatures:?}");
        assert!(signatures.detail.contains("/etc/sysupdate.demo.d/demo.conf"), "{signatures:?}");
        assert!(signatures.detail.contains("/etc/systemd/import-pubring.gpg is missing"), "{signatures:?}");
        let extensions = find(&checks, "extensions");
        assert_eq!(extensions.status, Status::Warn, "{extensions:?}");
        let release = find(&checks, "release");
        assert!(!release.detail.contains("refusing plain http"), "signed, so plain http is fetched: {release:?}");
        assert!(release.detail.starts_with("http://127.0.0.1:9/ext/SHA256SUMS"), "{release:?}");

        std::fs::create_dir_all(root.path().join("etc/systemd")).unwrap();
        std::fs::write(root.path().join("etc/systemd/import-pubring.gpg"), b"\x99\x00\x33").unwrap();
        std::fs::create_dir_all(root.path().join("etc/extensions")).unwrap();
        let checks = run();
        let signatures = find(&checks, "signatures");
        let verifier = crate::util::find_program("gpgv").or_else(|| crate::util::find_program("gpg"));
        assert_eq!(signatures.status == Status::Ok, verifier.is_some(), "{signatures:?}");
        assert_eq!(find(&checks, "extensions").status, Status::Ok);
    }
}
