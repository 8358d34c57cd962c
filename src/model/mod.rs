//! Domain values, parsed once (`FromStr`) and printed (`Display`), so invalid ones cannot travel.

pub mod arch;
pub mod archive;
pub mod compression;
pub mod digest;
pub mod extension_release;
pub mod image_path;
pub mod manifest;
pub mod mirror;
pub mod name;
pub mod os;
pub mod sums;
pub mod tree;
pub mod version;

pub use arch::Arch;
pub use compression::{Compression, Format};
pub use digest::Sha256;
pub use extension_release::ExtensionRelease;
pub use image_path::ImagePath;
pub use manifest::Manifest;
pub use mirror::Mirrors;
pub use name::ExtName;
pub use os::OsTarget;
pub use tree::Tree;
pub use version::ExtVersion;
