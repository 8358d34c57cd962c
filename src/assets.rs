//! Files shipped in the binary: `sysupdate/` (transfer files), `butane/` (node configs) and
//! `units/` (the units nodes run bakery with).

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

fn find(files: &'static [(&'static str, &'static [u8])], name: &str) -> &'static str {
    let bytes = files.iter().find(|(path, _)| *path == name).map(|(_, bytes)| *bytes);
    let bytes = bytes.unwrap_or_else(|| panic!("template {name} is embedded by build.rs"));
    std::str::from_utf8(bytes).expect("templates are UTF-8")
}

/// A template from `sysupdate/`.
pub fn sysupdate(name: &str) -> &'static str {
    find(embedded::SYSUPDATE, name)
}

/// A template from `butane/`.
pub fn butane(name: &str) -> &'static str {
    find(embedded::BUTANE, name)
}

/// A unit file from `units/` (what nodes run bakery with).
pub fn unit(name: &str) -> &'static str {
    find(embedded::UNITS, name)
}

/// The recipe folders of `extensions/`.
pub fn extensions() -> &'static [(&'static str, &'static [u8])] {
    embedded::EXTENSIONS
}

/// The built-in components repository (`components/`).
pub fn components() -> &'static [(&'static str, &'static [u8])] {
    embedded::COMPONENTS
}
