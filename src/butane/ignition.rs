//! The Ignition JSON that Butane produces from `butane/flatcar.bu`, built from the same model:
//! modes as decimal numbers, inline contents as `data:` URLs, units and drop-ins as units.

use base64::Engine;
use serde::Serialize;

use super::NodeConfig;

#[derive(Serialize)]
struct Config {
    ignition: Meta,
    storage: Storage,
    systemd: Systemd,
}

#[derive(Serialize)]
struct Meta {
    version: String,
}

#[derive(Serialize)]
struct Storage {
    directories: Vec<Directory>,
    files: Vec<File>,
    links: Vec<Link>,
}

#[derive(Serialize)]
struct Directory {
    path: String,
    mode: u32,
}

#[derive(Serialize)]
struct File {
    path: String,
    mode: u32,
    contents: Contents,
}

#[derive(Serialize)]
struct Contents {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
}

#[derive(Serialize)]
struct Verification {
    hash: String,
}

#[derive(Serialize)]
struct Link {
    path: String,
    target: String,
    hard: bool,
}

#[derive(Serialize)]
struct Systemd {
    units: Vec<Unit>,
}

#[derive(Serialize)]
struct Unit {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contents: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dropins: Vec<Dropin>,
}

#[derive(Serialize)]
struct Dropin {
    name: String,
    contents: String,
}

/// Inline contents as Butane writes them without compression: `data:,` and percent-encoding.
pub fn data_url(contents: &str) -> String {
    let mut out = String::from("data:,");
    for byte in contents.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Binary contents (a keyring) as a base64 `data:` URL, in Butane's `contents.source` too.
pub fn base64_data_url(bytes: &[u8]) -> String {
    format!("data:;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The Ignition config as pretty JSON.
pub fn to_ignition(config: &NodeConfig) -> String {
    let mut files = Vec::new();
    // a file Ignition downloads and checks against its sha256
    let downloaded = |path: &str, mode: u32, url: &str, sha256: &str| File {
        path: path.to_string(),
        mode,
        contents: Contents {
            source: url.to_string(),
            verification: Some(Verification { hash: format!("sha256-{sha256}") }),
        },
    };
    for e in &config.extensions {
        files.push(downloaded(&e.path, 0o644, &e.url, &e.sha256));
        files.push(File {
            path: e.transfer.path.clone(),
            mode: 0o644,
            contents: Contents { source: data_url(&e.transfer.contents), verification: None },
        });
    }
    if let Some(bakery) = &config.bakery {
        files.push(downloaded(&bakery.path, bakery.mode, &bakery.url, &bakery.sha256));
    }
    files.push(File {
        path: config.noop.path.clone(),
        mode: 0o644,
        contents: Contents { source: data_url(&config.noop.contents), verification: None },
    });
    if let Some(keyring) = &config.keyring {
        files.push(File {
            path: keyring.path.clone(),
            mode: keyring.mode,
            contents: Contents { source: keyring.source.clone(), verification: None },
        });
    }
    for cert in &config.certificates {
        files.push(File {
            path: cert.path.clone(),
            mode: 0o644,
            contents: Contents { source: data_url(&cert.contents), verification: None },
        });
    }
    let ignition = Config {
        ignition: Meta { version: config.ignition_version.clone() },
        storage: Storage {
            directories: config.directories.iter().map(|d| Directory { path: d.clone(), mode: 0o755 }).collect(),
            files,
            links: config
                .extensions
                .iter()
                .map(|e| Link { path: e.link.clone(), target: e.path.clone(), hard: false })
                .collect(),
        },
        systemd: Systemd {
            units: config
                .units
                .iter()
                .map(|u| Unit {
                    name: u.name.clone(),
                    enabled: u.enabled,
                    contents: u.contents.clone(),
                    dropins: u
                        .dropins
                        .iter()
                        .map(|d| Dropin { name: d.path.clone(), contents: d.contents.clone() })
                        .collect(),
                })
                .collect(),
        },
    };
    let mut json = serde_json::to_string_pretty(&ignition).expect("an Ignition config serialises");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_urls_percent_encode_everything_but_unreserved() {
        assert_eq!(super::data_url("a b\n[x]=1"), "data:,a%20b%0A%5Bx%5D%3D1");
    }

    #[test]
    fn binary_data_urls_are_base64() {
        assert_eq!(super::base64_data_url(&[0x99, 0x01, 0xff]), "data:;base64,mQH/");
    }
}
