//! Where recipes come from: the folders embedded in the binary, then `--extensions-dir`
//! folders, each able to add extensions or replace a built-in one wholesale.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{RECIPE_FILE, Recipe};
use crate::error::bad_input;

/// Where a recipe was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Dir(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built in"),
            Origin::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// One recipe folder's files, keyed by their path inside the folder.
#[derive(Clone, Debug)]
pub struct RecipeSource {
    pub name: String,
    pub origin: Origin,
    files: BTreeMap<String, Cow<'static, [u8]>>,
}

impl RecipeSource {
    pub fn file(&self, rel: &str) -> Option<&[u8]> {
        self.files.get(rel).map(|b| b.as_ref())
    }

    /// How to name a file of this recipe in messages: a real path, or `<built-in>/name/file`.
    pub fn display_path(&self, rel: &str) -> String {
        match &self.origin {
            Origin::Builtin => format!("<built-in>/extensions/{}/{rel}", self.name),
            Origin::Dir(dir) => dir.join(rel).display().to_string(),
        }
    }

    /// Parses and checks `recipe.yaml`; errors name the file and line.
    pub fn recipe(&self) -> Result<Recipe> {
        let path = self.display_path(RECIPE_FILE);
        let bytes = self.file(RECIPE_FILE).ok_or_else(|| bad_input(format!("{path}: missing")))?;
        let text = std::str::from_utf8(bytes).map_err(|e| bad_input(format!("{path}: not UTF-8: {e}")))?;
        let recipe = parse_recipe(text).map_err(|e| bad_input(format!("{path}:{e}")))?;
        let problems = recipe.check(&self.name, &|rel| self.files.contains_key(rel));
        if !problems.is_empty() {
            return Err(bad_input(format!("{path}: {}", problems.join("; "))));
        }
        Ok(recipe)
    }
}

/// Parses recipe YAML; the error starts with `LINE:COLUMN: `.
pub fn parse_recipe(text: &str) -> std::result::Result<Recipe, String> {
    serde_saphyr::from_str::<Recipe>(text).map_err(|e| {
        let location = e.location().map(|l| format!("{}:{}: ", l.line(), l.column())).unwrap_or_else(|| " ".into());
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or_default().to_string();
        format!("{location}{message}")
    })
}

/// All recipes bakery knows, by name.
#[derive(Clone, Debug)]
pub struct Catalog {
    sources: BTreeMap<String, RecipeSource>,
}

impl Catalog {
    /// The recipes embedded in this binary.
    pub fn builtin() -> Self {
        let mut sources: BTreeMap<String, RecipeSource> = BTreeMap::new();
        for (path, bytes) in crate::assets::extensions() {
            let Some((name, rel)) = path.split_once('/') else { continue };
            let source = sources.entry(name.to_string()).or_insert_with(|| RecipeSource {
                name: name.to_string(),
                origin: Origin::Builtin,
                files: BTreeMap::new(),
            });
            source.files.insert(rel.to_string(), Cow::Borrowed(*bytes));
        }
        sources.retain(|_, s| s.files.contains_key(RECIPE_FILE));
        Self { sources }
    }

    /// Adds the recipe folders found in `dir` (each `dir/<name>/recipe.yaml`), replacing
    /// same-named recipes.
    pub fn add_dir(&mut self, dir: &Path) -> Result<()> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading extensions directory {}", dir.display()))
            .map_err(|e| bad_input(crate::error::describe(&e)))?;
        let mut folders: Vec<PathBuf> =
            entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join(RECIPE_FILE).is_file()).collect();
        folders.sort();
        for folder in folders {
            let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            let mut files = BTreeMap::new();
            for entry in walkdir::WalkDir::new(&folder).sort_by_file_name() {
                let entry = entry.with_context(|| format!("reading {}", folder.display()))?;
                if !entry.file_type().is_file() {
                    continue;
                }
                let rel = entry.path().strip_prefix(&folder).expect("walkdir stays below its root");
                let rel = rel.to_str().with_context(|| format!("{} is not UTF-8", entry.path().display()))?;
                let bytes =
                    std::fs::read(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
                files.insert(rel.to_string(), Cow::Owned(bytes));
            }
            self.sources.insert(name.clone(), RecipeSource { name, origin: Origin::Dir(folder), files });
        }
        Ok(())
    }

    pub fn sources(&self) -> impl Iterator<Item = &RecipeSource> {
        self.sources.values()
    }

    /// The recipe folder for `name`; an unknown name lists the known ones.
    pub fn get(&self, name: &str) -> Result<&RecipeSource> {
        self.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            bad_input(format!("unknown extension {name:?}: known extensions are {}", known.join(", ")))
        })
    }
}

/// A relative path with `.`/empty components removed; `None` when it breaks the one path rule
/// ([`crate::model::ImagePath::parse_relative`]) or names the root.
pub fn clean_relative(path: &str) -> Option<String> {
    crate::model::ImagePath::parse_relative(path).ok().flatten().map(|p| p.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse_and_pass_their_checks() {
        let catalog = Catalog::builtin();
        assert!(catalog.get("kubernetes").is_ok());
        for source in catalog.sources() {
            source.recipe().unwrap_or_else(|e| panic!("{}: {e:#}", source.name));
        }
    }

    #[test]
    fn unknown_extension_lists_known_ones() {
        let err = Catalog::builtin().get("kubernetis").unwrap_err().to_string();
        assert!(err.contains("kubernetis") && err.contains("kubernetes"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse_recipe("name: x\ndescription: y\nartifacts:\n  - name: [unclosed\n").unwrap_err();
        assert!(err.starts_with("4:") || err.starts_with("5:"), "{err}");
        let err = parse_recipe("name: x\ndescription: y\nbogus: 1\n").unwrap_err();
        assert!(err.starts_with("3:") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn clean_relative_rejects_escapes() {
        assert_eq!(clean_relative("./a//b/").as_deref(), Some("a/b"));
        assert_eq!(clean_relative("../x"), None);
        assert_eq!(clean_relative("/etc/passwd"), None);
        assert_eq!(clean_relative("a/../../b"), None);
    }

    #[test]
    fn a_directory_replaces_a_builtin_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("kubernetes");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("recipe.yaml"), "name: kubernetes\ndescription: local\n").unwrap();
        let mut catalog = Catalog::builtin();
        catalog.add_dir(dir.path()).unwrap();
        let source = catalog.get("kubernetes").unwrap();
        assert_eq!(source.origin, Origin::Dir(folder));
        assert_eq!(source.recipe().unwrap().description, "local");
    }
}
