//! Embeds the data folders (`extensions/` recipes, `sysupdate/` and `butane/` templates, `units/`,
//! `components/`) into the binary as sorted lists of `(relative path, bytes)` pairs, so an
//! installed `bakery` needs no data files next to it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let file_type = entry.file_type().expect("file type of an embedded file");
        if file_type.is_dir() {
            collect(root, &path, out);
        } else if file_type.is_file() {
            let rel = path.strip_prefix(root).expect("path under its root");
            let rel = rel.to_str().expect("embedded file names are UTF-8").replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn embed(name: &str, folder: &str, code: &mut String) {
    // the manifest directory of this build, not the one the build script was compiled in
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR set by cargo");
    let root = Path::new(&manifest).join(folder);
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(!files.is_empty(), "{} has no files to embed", root.display());
    files.sort();
    writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[").unwrap();
    for (rel, path) in files {
        writeln!(code, "    ({rel:?}, include_bytes!({:?})),", path.display().to_string()).unwrap();
    }
    writeln!(code, "];").unwrap();
}

fn main() {
    let mut code = String::new();
    embed("EXTENSIONS", "extensions", &mut code);
    embed("SYSUPDATE", "sysupdate", &mut code);
    embed("BUTANE", "butane", &mut code);
    embed("UNITS", "units", &mut code);
    embed("COMPONENTS", "components", &mut code);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    std::fs::write(out.join("embedded.rs"), code).expect("writing embedded.rs");
}
