//! Models of what each upstream publishes for a release (file names, archive layouts, checksum
//! file formats), served by the test server. They follow the real projects' release scripts,
//! independently of bakery's recipes, so the recipe tests check the recipes against upstream.

use std::collections::BTreeMap;
use std::io::Write;

use super::Server;
use super::fixtures::{payload, sha256_hex};

/// An archive entry.
pub enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
}

/// A gzip tar of `entries` in order.
pub fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_760_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_path(path).unwrap();
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
            Entry::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                header.set_path(path).unwrap();
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            }
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// What a build should install: image path → bytes served for it.
pub type Installed = BTreeMap<String, Vec<u8>>;

fn binary(name: &str, len: usize) -> Vec<u8> {
    payload(name, len)
}

/// containerd's static release tarball (`bin/...`, no top directory) with its one-line
/// `.sha256sum`, and runc's `runc.<arch>` with the clear-signed `runc.sha256sum` listing every
/// architecture.
pub fn containerd(server: &Server, version: &str, goarch: &str, runc: &str) -> Installed {
    let number = version.trim_start_matches('v');
    let names = ["containerd", "containerd-shim-runc-v2", "containerd-stress", "ctr"];
    let bins: Vec<(String, Vec<u8>)> =
        names.iter().map(|n| (format!("bin/{n}"), binary(&format!("{n}-{version}-{goarch}"), 140_000))).collect();
    let mut entries = vec![Entry::Dir("bin/")];
    entries.extend(bins.iter().map(|(p, b)| Entry::File(p, b, 0o755)));
    let archive = tar_gz(&entries);
    let file = format!("containerd-static-{number}-linux-{goarch}.tar.gz");
    let base = format!("/github.com/containerd/containerd/releases/download/{version}");
    server.put(&format!("{base}/{file}.sha256sum"), format!("{}  {file}\n", sha256_hex(&archive)));
    server.put(&format!("{base}/{file}"), archive);

    let base = format!("/github.com/opencontainers/runc/releases/download/{runc}");
    let mut sums = String::from("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n");
    let mut runc_bytes = Vec::new();
    for arch in ["amd64", "386", "arm64", "armel", "armhf", "ppc64le", "riscv64", "s390x"] {
        let bytes = binary(&format!("runc-{runc}-{arch}"), 60_000);
        sums.push_str(&format!("{}  runc.{arch}\n", sha256_hex(&bytes)));
        if arch == goarch {
            runc_bytes = bytes.clone();
        }
        server.put(&format!("{base}/runc.{arch}"), bytes);
    }
    sums.push_str(&format!("{}  runc-{}.tar.xz\n", sha256_hex(b"source"), runc.trim_start_matches('v')));
    sums.push_str("-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n");
    server.put(&format!("{base}/runc.sha256sum"), sums);

    let mut installed: Installed = bins.into_iter().map(|(p, b)| (format!("usr/{p}"), b)).collect();
    installed.insert("usr/bin/runc".into(), runc_bytes);
    installed
}

/// containernetworking/plugins: `cni-plugins-linux-<arch>-<v>.tgz` (`./bridge`, ..., `./LICENSE`,
/// `./README.md`) with `<hex>  <file>` in `.sha256`.
pub fn cni_plugins(server: &Server, version: &str, goarch: &str, plugins_dir: &str) -> Installed {
    let plugins = ["bandwidth", "bridge", "host-local", "loopback", "portmap"];
    let bins: Vec<(String, Vec<u8>)> =
        plugins.iter().map(|p| (format!("./{p}"), binary(&format!("{p}-{version}-{goarch}"), 90_000))).collect();
    let mut entries = vec![Entry::Dir("./"), Entry::File("./LICENSE", b"Apache License\n", 0o644)];
    entries.push(Entry::File("./README.md", b"# plugins\n", 0o644));
    entries.extend(bins.iter().map(|(p, b)| Entry::File(p, b, 0o755)));
    let archive = tar_gz(&entries);
    let file = format!("cni-plugins-linux-{goarch}-{version}.tgz");
    let base = format!("/github.com/containernetworking/plugins/releases/download/{version}");
    server.put(&format!("{base}/{file}.sha256"), format!("{}  {file}\n", sha256_hex(&archive)));
    server.put(&format!("{base}/{file}"), archive);
    bins.into_iter().map(|(p, b)| (format!("{plugins_dir}/{}", p.trim_start_matches("./")), b)).collect()
}

/// cri-tools: `crictl-<v>-linux-<arch>.tar.gz` holding just `crictl`, bare digest in `.sha256`.
pub fn crictl(server: &Server, version: &str, goarch: &str) -> Installed {
    let bytes = binary(&format!("crictl-{version}-{goarch}"), 150_000);
    let archive = tar_gz(&[Entry::File("crictl", &bytes, 0o755)]);
    let file = format!("crictl-{version}-linux-{goarch}.tar.gz");
    let base = format!("/github.com/kubernetes-sigs/cri-tools/releases/download/{version}");
    server.put(&format!("{base}/{file}.sha256"), format!("{}\n", sha256_hex(&archive)));
    server.put(&format!("{base}/{file}"), archive);
    BTreeMap::from([("usr/bin/crictl".to_string(), bytes)])
}

/// etcd: `etcd-<v>-linux-<arch>.tar.gz` with a top directory (binaries, READMEs,
/// Documentation/), and one `SHA256SUMS` for every asset of the release, both arches included.
pub fn etcd(server: &Server, version: &str, goarch: &str) -> Installed {
    let base = format!("/github.com/etcd-io/etcd/releases/download/{version}");
    let mut sums = String::new();
    let mut installed = BTreeMap::new();
    for arch in ["amd64", "arm64", "ppc64le", "s390x"] {
        let top = format!("etcd-{version}-linux-{arch}");
        let bins: Vec<(String, Vec<u8>)> = ["etcd", "etcdctl", "etcdutl"]
            .iter()
            .map(|b| (format!("{top}/{b}"), binary(&format!("{b}-{version}-{arch}"), 130_000)))
            .collect();
        let (dir, docs, readme) = (format!("{top}/"), format!("{top}/Documentation/"), format!("{top}/README.md"));
        let doc = format!("{top}/Documentation/dev-guide.md");
        let mut entries = vec![Entry::Dir(&dir), Entry::File(&readme, b"# etcd\n", 0o644), Entry::Dir(&docs)];
        entries.push(Entry::File(&doc, b"guide\n", 0o644));
        entries.extend(bins.iter().map(|(p, b)| Entry::File(p, b, 0o755)));
        let archive = tar_gz(&entries);
        let file = format!("{top}.tar.gz");
        sums.push_str(&format!("{}  {file}\n", sha256_hex(&archive)));
        server.put(&format!("{base}/{file}"), archive);
        if arch == goarch {
            installed =
                bins.into_iter().map(|(p, b)| (format!("usr/bin/{}", p.rsplit('/').next().unwrap()), b)).collect();
        }
    }
    sums.push_str(&format!("{}  etcd-{version}-darwin-arm64.zip\n", sha256_hex(b"zip")));
    server.put(&format!("{base}/SHA256SUMS"), sums);
    installed
}

/// Helm on get.helm.sh: `helm-<v>-linux-<arch>.tar.gz` (`linux-<arch>/helm`, LICENSE, README.md)
/// with `<hex>  <file>` in `.sha256sum` and the bare digest in `.sha256`.
pub fn helm(server: &Server, version: &str, goarch: &str) -> Installed {
    let bytes = binary(&format!("helm-{version}-{goarch}"), 170_000);
    let (dir, bin) = (format!("linux-{goarch}/"), format!("linux-{goarch}/helm"));
    let (license, readme) = (format!("linux-{goarch}/LICENSE"), format!("linux-{goarch}/README.md"));
    let archive = tar_gz(&[
        Entry::Dir(&dir),
        Entry::File(&bin, &bytes, 0o755),
        Entry::File(&license, b"Apache\n", 0o644),
        Entry::File(&readme, b"# Helm\n", 0o644),
    ]);
    let file = format!("helm-{version}-linux-{goarch}.tar.gz");
    server.put(&format!("/get.helm.sh/{file}.sha256sum"), format!("{}  {file}\n", sha256_hex(&archive)));
    server.put(&format!("/get.helm.sh/{file}.sha256"), format!("{}\n", sha256_hex(&archive)));
    server.put(&format!("/get.helm.sh/{file}"), archive);
    BTreeMap::from([("usr/bin/helm".to_string(), bytes)])
}
