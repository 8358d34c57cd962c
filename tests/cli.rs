//! The command line itself: help and version.

mod support;

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
