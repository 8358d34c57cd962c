//! Generated upstream payloads shaped like dl.k8s.io and GitHub releases, with their checksum
//! files, served by the test server. Deterministic: the same name gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

use super::Server;

/// The CNI plugins in the generated archive (besides LICENSE and README.md).
pub const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// Deterministic bytes that compress roughly like binaries: random runs and repeated runs.
pub fn payload(seed: &str, len: usize) -> Vec<u8> {
    let mut state = seed.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = (next() % 512 + 16) as usize;
        if next() % 3 == 0 {
            let byte = next() as u8;
            out.extend(std::iter::repeat_n(byte, run));
        } else {
            out.extend((0..run).map(|_| next() as u8));
        }
    }
    out.truncate(len);
    out
}

/// sha256 as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    bakery::model::Sha256::of(bytes).to_string()
}

/// A gzip tar of `(path, bytes, mode)`; paths are written as given (`./bridge`).
pub fn tgz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_path("./").unwrap();
    dir.set_cksum();
    builder.append(&dir, &[][..]).unwrap();
    for (path, data, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        // raw name: the tar crate refuses '..', hostile archives do not
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A tgz with one symlink entry besides a regular file.
pub fn tgz_with_symlink(file: &str, link: &str, target: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let data = payload(file, 1000);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_path(file).unwrap();
    header.set_cksum();
    builder.append(&header, &data[..]).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    header.set_path(link).unwrap();
    header.set_link_name(target).unwrap();
    header.set_cksum();
    builder.append(&header, &[][..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// The default CNI version of the built-in Kubernetes recipe.
pub fn default_cni_version() -> String {
    let catalog = bakery::recipe::Catalog::builtin();
    let recipe = catalog.get("kubernetes").unwrap().recipe().unwrap();
    recipe.options["cni_version"].default.clone()
}

/// What the server holds for one Kubernetes build.
pub struct Upstream {
    pub version: String,
    pub goarch: String,
    pub cni_version: String,
    /// Image path (`usr/bin/kubelet`) → the bytes served for it.
    pub installed: BTreeMap<String, Vec<u8>>,
    /// Server path of each artifact (`kubelet` → `/dl.k8s.io/release/...`).
    pub paths: BTreeMap<String, String>,
}

impl Upstream {
    /// Serves kubelet, kubeadm, kubectl (bare-digest `.sha256` files) and the CNI plugins tgz
    /// (`<hex>  <file>` `.sha256`), like dl.k8s.io and GitHub releases.
    pub fn kubernetes(server: &Server, version: &str, goarch: &str, cni_version: &str) -> Upstream {
        let mut installed = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let block = 128 * 1024;
        for (name, len) in [("kubelet", 3 * block + 5000), ("kubeadm", 200_000), ("kubectl", 90_000)] {
            let mut bytes = payload(&format!("{name}-{version}-{goarch}"), len);
            if name == "kubelet" {
                // an all-zero block: SquashFS stores it as a hole
                bytes[block..2 * block].fill(0);
            }
            let path = format!("/dl.k8s.io/release/{version}/bin/linux/{goarch}/{name}");
            server.put(&format!("{path}.sha256"), format!("{}\n", sha256_hex(&bytes)));
            server.put(&path, bytes.clone());
            installed.insert(format!("usr/bin/{name}"), bytes);
            paths.insert(name.to_string(), path);
        }
        let plugins: Vec<(String, Vec<u8>)> = CNI_PLUGINS
            .iter()
            .map(|p| (format!("./{p}"), payload(&format!("{p}-{cni_version}-{goarch}"), 150_000 + p.len() * 1000)))
            .collect();
        let mut entries: Vec<(&str, &[u8], u32)> =
            vec![("./LICENSE", b"Apache License\n", 0o644), ("./README.md", b"# plugins\n", 0o644)];
        entries.extend(plugins.iter().map(|(p, b)| (p.as_str(), b.as_slice(), 0o755)));
        let archive = tgz(&entries);
        let file = format!("cni-plugins-linux-{goarch}-{cni_version}.tgz");
        let path = format!("/github.com/containernetworking/plugins/releases/download/{cni_version}/{file}");
        server.put(&format!("{path}.sha256"), format!("{}  {file}\n", sha256_hex(&archive)));
        server.put(&path, archive);
        paths.insert("cni-plugins".to_string(), path);
        for (name, bytes) in plugins {
            installed.insert(format!("usr/local/bin/cni/{}", name.trim_start_matches("./")), bytes);
        }
        Upstream { version: version.into(), goarch: goarch.into(), cni_version: cni_version.into(), installed, paths }
    }

    /// Server paths of the artifacts themselves (not their checksum files).
    pub fn artifact_paths(&self) -> Vec<String> {
        self.paths.values().cloned().collect()
    }
}

/// `--mirror` flags sending dl.k8s.io and github.com to `server`.
pub fn mirror_args(server: &Server) -> Vec<String> {
    vec![
        "--mirror".into(),
        server.mirror_for("https://dl.k8s.io"),
        "--mirror".into(),
        server.mirror_for("https://github.com"),
    ]
}

/// One GitHub release in a fixture: `(tag, prerelease, draft)`.
pub type GhRelease<'a> = (&'a str, bool, bool);

/// Serves `releases` (in GitHub's order, newest first) as api.github.com release pages of
/// `per_page` entries, linked by `Link: <…>; rel="next"` headers naming api.github.com like the
/// real API does (bakery's mirror rewrites them). Returns the server paths of the pages.
pub fn github_releases(server: &Server, repo: &str, releases: &[GhRelease], per_page: usize) -> Vec<String> {
    let pages: Vec<&[GhRelease]> = releases.chunks(per_page.max(1)).collect();
    let count = pages.len().max(1);
    let page_url = |n: usize| format!("https://api.github.com/repositories/4242/releases?per_page=100&page={n}");
    let mut paths = Vec::new();
    for index in 0..count {
        let page = pages.get(index).copied().unwrap_or(&[]);
        let body: Vec<serde_json::Value> = page
            .iter()
            .map(|(tag, prerelease, draft)| {
                serde_json::json!({
                    "url": format!("https://api.github.com/repos/{repo}/releases/1"),
                    "tag_name": tag,
                    "name": tag,
                    "draft": draft,
                    "prerelease": prerelease,
                    "published_at": "2025-01-01T00:00:00Z",
                    "assets": [],
                })
            })
            .collect();
        let number = index + 1;
        let mut links = Vec::new();
        if number < count {
            links.push(format!("<{}>; rel=\"next\"", page_url(number + 1)));
            links.push(format!("<{}>; rel=\"last\"", page_url(count)));
        }
        if number > 1 {
            links.push(format!("<{}>; rel=\"prev\"", page_url(number - 1)));
            links.push(format!("<{}>; rel=\"first\"", page_url(1)));
        }
        let path = if number == 1 {
            format!("/api.github.com/repos/{repo}/releases?per_page=100")
        } else {
            page_url(number).replace("https://", "/")
        };
        let link = links.join(", ");
        let mut headers = vec![("Content-Type", "application/json; charset=utf-8")];
        if !link.is_empty() {
            headers.push(("Link", link.as_str()));
        }
        server.put_with_headers(&path, serde_json::to_vec(&body).unwrap(), &headers);
        paths.push(path);
    }
    paths
}

/// dl.k8s.io's marker files: `stable.txt` (the first of `stable`), `stable-MAJOR.MINOR.txt` for
/// each entry of `stable` (the newest patch per minor, newest minor first) and `latest.txt`.
pub fn kubernetes_markers(server: &Server, stable: &[&str], latest: &str) {
    server.put("/dl.k8s.io/release/stable.txt", format!("{}\n", stable[0]));
    for version in stable {
        let minor: Vec<&str> = version.trim_start_matches('v').split('.').take(2).collect();
        server.put(&format!("/dl.k8s.io/release/stable-{}.txt", minor.join(".")), format!("{version}\n"));
    }
    server.put("/dl.k8s.io/release/latest.txt", format!("{latest}\n"));
}

/// `--mirror` for api.github.com.
pub fn github_api_mirror(server: &Server) -> Vec<String> {
    vec!["--mirror".into(), server.mirror_for("https://api.github.com")]
}

/// kubernetes/kubernetes releases as GitHub lists them (newest first): every patch up to the
/// newest of each minor in `stable` (`v1.32.3` → `v1.32.3` … `v1.32.0`), the pre-release
/// `prerelease` on top and a draft below it, in pages of 10. Returns the server paths of the pages.
pub fn kubernetes_releases(server: &Server, stable: &[&str], prerelease: &str) -> Vec<String> {
    let mut tags = vec![(prerelease.to_string(), true, false), ("v1.99.0".to_string(), false, true)];
    for newest in stable {
        let (minor, patch) = newest.rsplit_once('.').unwrap();
        for patch in (0..=patch.parse::<u32>().unwrap()).rev() {
            tags.push((format!("{minor}.{patch}"), false, false));
        }
    }
    let releases: Vec<GhRelease> = tags.iter().map(|(t, p, d)| (t.as_str(), *p, *d)).collect();
    github_releases(server, "kubernetes/kubernetes", &releases, 10)
}
