//! The recipe format: everything bakery knows about an extension, as data.
//!
//! A recipe is a folder `extensions/<name>/` with `recipe.yaml`, optional `files/` (copied as is)
//! and `templates/` (minijinja, rendered with the build's context). Rust code never knows which
//! extension it builds; it only follows the recipe.

pub mod catalog;
mod schema;

pub use catalog::{Catalog, Origin, RecipeSource};
pub use schema::*;

/// The recipe file inside a recipe folder.
pub const RECIPE_FILE: &str = "recipe.yaml";
/// Static files, copied byte for byte.
pub const FILES_DIR: &str = "files";
/// minijinja templates.
pub const TEMPLATES_DIR: &str = "templates";
