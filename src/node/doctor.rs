//! `bakery doctor`: what bakery depends on, checked on this host, each with a fix.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::config::NodeConfig;
use super::systemd::{Bus, Systemd};
use crate::error::describe;
use crate::model::Mirrors;
use crate::pipeline::http::Http;

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

/// The kernel check from /proc/filesystems and the modules directory.
pub fn kernel_check(filesystems: &str, module_exists: &dyn Fn(&str) -> bool) -> Check {
    let listed = |fs: &str| filesystems.lines().any(|l| l.split_whitespace().last() == Some(fs));
    let mut missing_required = Vec::new();
    let mut notes = Vec::new();
    for (fs, module, required) in
        [("squashfs", "squashfs", true), ("overlay", "overlayfs", true), ("erofs", "erofs", false)]
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
    } else {
        check(
            "kernel",
            Status::Fail,
            format!("missing {}", missing_required.join(", ")),
            "use a kernel with CONFIG_SQUASHFS and CONFIG_OVERLAY_FS (and load the modules)",
        )
    }
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
    checks.push(kernel_check(&filesystems, &|module| modules.join(module).exists()));

    checks.push(writable(root, "etc/extensions", "extensions"));
    checks.push(writable(root, "var/lib/bakery", "records"));

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

    let mut urls: Vec<(String, String)> = Vec::new();
    if let Some(url) = &config.release_url {
        urls.push((url.clone(), "release_url in /etc/bakery/node.toml".to_string()));
    }
    if let Ok(found) = super::update::transfers(root) {
        for f in found {
            if let Some(url) = f.transfer.source.get("Path")
                && !urls.iter().any(|(u, _)| u == url)
            {
                urls.push((url.to_string(), f.path.display().to_string()));
            }
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
    for (url, origin) in urls {
        let sums = format!("{}/SHA256SUMS", url.trim_end_matches('/'));
        let result = match mirrors.resolve(&sums) {
            Ok(fetch) => http.get_small(&fetch).await.map(|_| fetch),
            Err(e) => Err(e),
        };
        checks.push(match result {
            Ok(fetched) => check("release", Status::Ok, format!("{fetched} answers (from {origin})"), ""),
            Err(e) => check(
                "release",
                Status::Fail,
                format!("{sums}: {}", describe(&e)),
                format!("check the URL in {origin}, the network and any mirror"),
            ),
        });
    }
    checks
}

/// Whether bakery can write in `root/rel`, or create it (checked in its nearest existing parent,
/// without creating anything).
fn writable(root: &Path, rel: &str, name: &str) -> Check {
    let dir = root.join(rel);
    let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(root);
    let result = tempfile::NamedTempFile::new_in(existing).map(drop);
    let what = if existing == dir { format!("/{rel} is writable") } else { format!("/{rel} can be created") };
    match result {
        Ok(()) => check(name, Status::Ok, what, ""),
        Err(e) => check(
            name,
            Status::Fail,
            format!("/{rel}: {e} ({} is not writable)", existing.display()),
            format!("run as root, and make /{rel} writable (not on a read-only /etc or /var)"),
        ),
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
        let ok = kernel_check("nodev\toverlay\n\tsquashfs\n", &|_| false);
        assert_eq!(ok.status, Status::Ok);
        let module = kernel_check("nodev\toverlay\n", &|m| m == "squashfs");
        assert_eq!(module.status, Status::Ok);
        assert!(module.detail.contains("squashfs (module)"));
        let missing = kernel_check("nodev\tproc\n", &|_| false);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.detail.contains("squashfs, overlay"));
    }
}
