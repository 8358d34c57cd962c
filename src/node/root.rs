//! Node paths (`/etc/extensions/demo.raw`) resolved inside the node's root (`--root`) as the
//! kernel resolves them on the booted node, with openat2's `RESOLVE_IN_ROOT` semantics: one
//! component at a time, a symlink's target read and resolved from the root when absolute and from
//! its directory when relative, `..` never above the root. Every write the node does goes
//! through here, so a link in the tree (a component's `link` step, a hostile `CurrentSymlink=`,
//! `/etc/extensions` itself a link) cannot carry a write outside the root.
//!
//! The result is a path on disk whose directories are real directories below the root (or do
//! not exist yet); only its last component may be a link, when it is not followed.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Links followed in one resolution, as the kernel's limit (ELOOP).
const MAX_LINKS: usize = 40;

/// `node_path` below `root`, every link followed inside the root, the last one too: for reading,
/// for creating a directory, for an image a link points at.
pub fn resolve(root: &Path, node_path: impl AsRef<Path>) -> Result<PathBuf> {
    walk(root, node_path.as_ref(), true)
}

/// `node_path` below `root` with its directory resolved but its last component left as it is:
/// for what replaces, removes or renames the entry itself (a link, an atomic write).
pub fn entry(root: &Path, node_path: impl AsRef<Path>) -> Result<PathBuf> {
    walk(root, node_path.as_ref(), false)
}

/// [`entry`], with its directory created (as real directories inside the root) when missing.
pub fn entry_in_new_dir(root: &Path, node_path: impl AsRef<Path>) -> Result<PathBuf> {
    with_dir(entry(root, node_path)?)
}

/// [`resolve`], with its directory created when missing: for a file opened in place (a lock).
pub fn resolve_in_new_dir(root: &Path, node_path: impl AsRef<Path>) -> Result<PathBuf> {
    with_dir(resolve(root, node_path)?)
}

fn with_dir(path: PathBuf) -> Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(path)
}

/// [`resolve`] for callers that only read: a path that cannot be resolved (a link loop, an
/// unreadable directory) maps to the lexical path below the root, `..` clamped, so the read fails
/// there with its own error.
pub fn on_disk(root: &Path, node_path: &str) -> PathBuf {
    resolve(root, node_path).unwrap_or_else(|_| {
        let lexical = crate::sysupdate::update::normalize(&Path::new("/").join(node_path));
        root.join(lexical.strip_prefix("/").unwrap_or(&lexical))
    })
}

fn walk(root: &Path, path: &Path, follow_last: bool) -> Result<PathBuf> {
    // what is still to resolve, the next component last
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut done: Vec<OsString> = Vec::new();
    // from this index on, `done` does not exist on disk: nothing there is a link
    let mut missing: Option<usize> = None;
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            if missing.is_some_and(|m| done.len() <= m) {
                missing = None;
            }
            continue;
        }
        let last = todo.is_empty();
        if missing.is_some() || (last && !follow_last) {
            done.push(part);
            continue;
        }
        let candidate = join(root, &done).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing = Some(done.len());
                done.push(part);
            }
            Err(e) => return Err(e).with_context(|| format!("resolving {} under {}", path.display(), root.display())),
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("resolving {} under {}: too many levels of symbolic links", path.display(), root.display());
                }
                let target = std::fs::read_link(&candidate)
                    .with_context(|| format!("reading the link {}", candidate.display()))?;
                if target.has_root() {
                    done.clear();
                }
                push_components(&mut todo, &target);
            }
            Ok(_) => done.push(part),
        }
    }
    Ok(join(root, &done))
}

/// Pushes `path`'s components so that its first one is popped next (`/` and `.` dropped).
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        (dir, root)
    }

    #[test]
    fn absolute_links_resolve_from_the_root_and_dotdot_stops_there() {
        let (dir, root) = tree();
        symlink("/", root.join("etc/up")).unwrap();
        symlink("../../../../..", root.join("etc/rel")).unwrap();
        symlink(dir.path(), root.join("etc/host")).unwrap();
        symlink("/usr/lib", root.join("etc/lib")).unwrap();
        assert_eq!(resolve(&root, "/etc/up/x").unwrap(), root.join("x"));
        assert_eq!(resolve(&root, "/etc/rel/x").unwrap(), root.join("x"));
        assert_eq!(resolve(&root, "/../../etc/x").unwrap(), root.join("etc/x"));
        // a link to the host's directory of the root is that path inside the root
        let inside = root.join(dir.path().strip_prefix("/").unwrap()).join("x");
        assert_eq!(resolve(&root, "/etc/host/x").unwrap(), inside);
        assert_eq!(resolve(&root, "/etc/lib/../x").unwrap(), root.join("usr/x"), "physical, like the kernel");
        assert_eq!(resolve(&root, "etc/lib/new/../y").unwrap(), root.join("usr/lib/y"));
    }

    #[test]
    fn the_last_component_is_followed_only_when_asked() {
        let (_dir, root) = tree();
        symlink("/usr/lib/target", root.join("etc/link")).unwrap();
        assert_eq!(resolve(&root, "/etc/link").unwrap(), root.join("usr/lib/target"));
        assert_eq!(entry(&root, "/etc/link").unwrap(), root.join("etc/link"));
        symlink("/etc/dir", root.join("etc/via")).unwrap();
        assert_eq!(entry(&root, "/etc/via/file").unwrap(), root.join("etc/dir/file"));
        let made = entry_in_new_dir(&root, "/etc/via/a/b").unwrap();
        assert_eq!(made, root.join("etc/dir/a/b"));
        assert!(root.join("etc/dir/a").is_dir() && !root.join("etc/dir").is_symlink());
    }

    #[test]
    fn loops_are_an_error_and_reads_fall_back_inside_the_root() {
        let (_dir, root) = tree();
        symlink("b", root.join("etc/a")).unwrap();
        symlink("a", root.join("etc/b")).unwrap();
        let err = resolve(&root, "/etc/a/x").unwrap_err().to_string();
        assert!(err.contains("too many levels of symbolic links"), "{err}");
        assert_eq!(on_disk(&root, "/etc/a/../../x"), root.join("x"));
        assert_eq!(on_disk(Path::new("/"), "/etc/../etc"), Path::new("/etc"));
    }
}
