//! The image's tree: path → directory, file or symlink, in the order the writers lay it out.
//! Built by the pipeline's plan stage, written by either image writer (`squashfs`, `erofs`).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::error::bad_input;
use crate::model::ImagePath;
use crate::model::digest::Sha256;
use crate::recipe::Mode;

/// Where a file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// A verified blob in the download cache.
    Blob { sha256: Sha256, size: u64 },
    /// Bytes rendered by bakery.
    Inline(#[serde(skip)] Vec<u8>),
}

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Content::Blob { size, .. } => *size,
            Content::Inline(bytes) => bytes.len() as u64,
        }
    }
}

/// An extended attribute (`user.extension-release.strict` = `false`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Xattr {
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Node {
    Dir { mode: Mode },
    File { content: Content, mode: Mode, xattrs: Vec<Xattr> },
    Symlink { target: String },
}

/// The image's entries, ordered like SquashFS orders them. Parents always exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tree {
    nodes: BTreeMap<ImagePath, Node>,
    #[serde(skip)]
    origins: BTreeMap<ImagePath, String>,
}

impl Tree {
    /// Adds `node` at `path` (creating parent directories, mode 0755). Two sources installing
    /// the same path is an error naming both.
    pub fn add(&mut self, path: ImagePath, node: Node, origin: &str) -> Result<()> {
        for dir in path.ancestors() {
            match self.nodes.get(&dir) {
                None => {
                    self.nodes.insert(dir.clone(), Node::Dir { mode: Mode::executable() });
                    self.origins.insert(dir, origin.to_string());
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(bad_input(format!(
                        "{origin} installs {path}, but {dir} is a file from {}",
                        self.origins[&dir]
                    )));
                }
            }
        }
        match self.nodes.get(&path) {
            Some(Node::Dir { .. }) if matches!(node, Node::Dir { .. }) => {}
            Some(_) => return Err(bad_input(format!("{origin} and {} both install {path}", self.origins[&path]))),
            None => {}
        }
        self.nodes.insert(path.clone(), node);
        self.origins.insert(path, origin.to_string());
        Ok(())
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&ImagePath, &Node)> {
        self.nodes.iter()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&ImagePath::parse(path).ok()?)
    }
}
