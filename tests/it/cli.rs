//! The command line itself: help and version.

use crate::support;
use support::{bakery, run};

#[test]
fn help_lists_the_commands_and_create_shows_its_contract() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(bakery(dir.path()).arg("--help")).expect_code(0);
    for command in ["create", "inspect"] {
        assert!(help.stdout.contains(command), "{}", help.stdout);
    }
    let create = run(bakery(dir.path()).args(["create", "--help"])).expect_code(0);
    for flag in [
        "--output",
        "--mirror",
        "--cache-dir",
        "--cni-version",
        "--set",
        "--compression",
        "--os",
        "--force",
        "--dry-run",
        "--verbose",
        "--quiet",
        "--extensions-dir",
    ] {
        assert!(create.stdout.contains(flag), "{flag} missing from create --help:\n{}", create.stdout);
    }
}

#[test]
fn butane_help_says_which_ignition_each_butane_version_needs() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(bakery(dir.path()).args(["butane", "--help"])).expect_code(0).stdout;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in ["1.0.0 (Ignition spec 3.3.0)", "1.1.0 (spec 3.4.0", "Ignition 2.15 or later", "[default: 1.0.0]"] {
        assert!(help.contains(needle), "{needle:?} missing from butane --help:\n{help}");
    }
}

#[test]
fn version_names_the_package_version() {
    let dir = tempfile::tempdir().unwrap();
    let version = run(bakery(dir.path()).arg("--version")).expect_code(0);
    assert_eq!(version.stdout, format!("bakery {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    run(bakery(dir.path()).args(["create", "kubernetes"])).expect_code(2);
    run(bakery(dir.path()).arg("bogus")).expect_code(2);
}

/// The committed completions and man pages are what the CLI definition generates
/// (`BAKERY_UPDATE_GOLDEN=1` rewrites them).
#[test]
fn committed_completions_and_man_pages_match_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for (shell, file) in [("bash", "bakery.bash"), ("zsh", "_bakery"), ("fish", "bakery.fish")] {
        let generated = run(bakery(dir.path()).args(["completions", shell])).expect_code(0).stdout;
        assert!(generated.contains("bakery"), "{shell}");
        check_committed(&contrib.join("completions").join(file), &generated);
    }
    let pages = dir.path().join("man");
    run(bakery(dir.path()).arg("manpage").arg("--dir").arg(&pages)).expect_code(0);
    let mut names: Vec<String> =
        std::fs::read_dir(&pages).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(
        names.contains(&"bakery-create.1".to_string()) && names.contains(&"bakery-node-refresh.1".to_string()),
        "{names:?}"
    );
    for name in &names {
        check_committed(&contrib.join("man").join(name), &std::fs::read_to_string(pages.join(name)).unwrap());
    }
    let mut committed: Vec<String> = std::fs::read_dir(contrib.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    committed.sort();
    assert_eq!(committed, names, "contrib/man holds exactly the generated pages");
    let top = run(bakery(dir.path()).arg("manpage")).expect_code(0).stdout;
    assert!(top.starts_with(".ie \\n(.g .ds Aq") || top.contains(".TH bakery 1"), "{}", &top[..200.min(top.len())]);
}

fn check_committed(path: &std::path::Path, generated: &str) {
    if std::env::var_os("BAKERY_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it (BAKERY_UPDATE_GOLDEN=1 cargo test --test it cli::)",
        path.display()
    );
}
