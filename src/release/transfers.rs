//! Which transfer files a release (or one image) gets: per extension one following every
//! version (`<ext>.conf`), one per minor following its patches only (`<ext>-v1.32.conf`), and
//! the noop transfer for `/etc/sysupdate.d`.

use std::collections::BTreeSet;

use anyhow::Result;

use super::index::Index;
use crate::sysupdate::pattern::{extension_pattern, minor_pattern, minor_prefix};
use crate::sysupdate::transfer::{self, Suffix, TransferSpec};

/// `(file name, contents)` of the transfer files for `name` with `versions` present.
pub fn for_extension(
    name: &str,
    versions: &[&str],
    base_url: &str,
    verify: bool,
    instances_max: u32,
    suffix: Suffix,
) -> Result<Vec<(String, String)>> {
    let ext = suffix.extension();
    let spec = |pattern: String, description: String| TransferSpec {
        name: name.to_string(),
        base_url: base_url.to_string(),
        pattern,
        verify,
        instances_max,
        description,
    };
    let mut files =
        vec![(format!("{name}.{ext}"), spec(extension_pattern(name), format!("{name}: every release")).render()?)];
    let minors: BTreeSet<String> = versions.iter().filter_map(|v| minor_prefix(v)).collect();
    for minor in minors {
        let label = minor.trim_end_matches('.');
        let text = spec(minor_pattern(name, &minor), format!("{name} {label}: patch releases only")).render()?;
        files.push((format!("{name}-{label}.{ext}"), text));
    }
    Ok(files)
}

/// The transfer that matches nothing, named for `suffix`.
pub fn noop(suffix: Suffix) -> (String, String) {
    (format!("noop.{}", suffix.extension()), transfer::noop())
}

/// Every transfer file of a release.
pub fn for_release(
    index: &Index,
    base_url: &str,
    verify: bool,
    instances_max: u32,
    suffix: Suffix,
) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for name in index.extensions.keys() {
        files.extend(for_extension(name, &index.versions(name), base_url, verify, instances_max, suffix)?);
    }
    files.push(noop(suffix));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transfer_per_extension_and_minor() {
        let files =
            for_extension("kubernetes", &["v1.31.7", "v1.32.0", "v1.32.3"], "https://x", true, 3, Suffix::Transfer)
                .unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["kubernetes.transfer", "kubernetes-v1.31.transfer", "kubernetes-v1.32.transfer"]);
        assert!(files[2].1.contains("MatchPattern=kubernetes-v1.32.@v-%a.raw"));
    }
}
