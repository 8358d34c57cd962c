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

/// Every command's `-h` and `--help` (the command paths from the man page names): no argument
/// states its default twice (a doc `[default: ...]` beside clap's own), and create's VERSION
/// no longer claims to be exact only, nor sends the reader to the source tree.
#[test]
fn no_help_repeats_a_default_and_create_help_tells_what_version_takes() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man");
    let written = run(bakery(dir.path()).arg("manpage").arg("--dir").arg(&pages)).expect_code(0).stdout;
    let paths: Vec<Vec<String>> = written
        .lines()
        .map(|path| {
            let name = std::path::Path::new(path).file_stem().unwrap().to_str().unwrap().to_string();
            name.split('-').skip(1).map(String::from).collect()
        })
        .collect();
    assert!(paths.len() > 15, "{paths:?}");
    for path in &paths {
        for flag in ["-h", "--help"] {
            let help = run(bakery(dir.path()).args(path).arg(flag)).expect_code(0).stdout;
            for entry in help_entries(&help) {
                assert!(entry.matches("[default:").count() <= 1, "{path:?} {flag}: a default twice in:\n{entry}");
            }
            assert!(help.matches("[default: .]").count() <= 1, "{path:?} {flag}:\n{help}");
        }
    }
    let create = run(bakery(dir.path()).args(["create", "--help"])).expect_code(0).stdout;
    let version = help_entries(&create).into_iter().find(|e| e.trim_start().starts_with("<VERSION>")).unwrap();
    let version = version.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!version.to_lowercase().contains("exact upstream version"), "{version}");
    for needle in ["v1.32.0", "1.32", "latest", "bakery list EXT"] {
        assert!(version.contains(needle), "{needle:?} missing: {version}");
    }
    assert!(!create.contains("extensions/ folder"), "{create}");
    assert!(create.contains("`bakery list`"), "{create}");
}

/// The help text split into one entry per argument (an entry starts at a line whose first
/// non-blank is `-`, `<` or `[` after two to six spaces).
fn help_entries(help: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let starts = (2..=6).contains(&indent) && line.trim_start().starts_with(['-', '<', '[']);
        match entries.last_mut() {
            Some(entry) if !starts && (line.is_empty() || indent > 6) => {
                entry.push('\n');
                entry.push_str(line);
            }
            _ if starts => entries.push(line.to_string()),
            _ => {}
        }
    }
    entries
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
    let create = std::fs::read_to_string(contrib.join("man/bakery-create.1")).unwrap();
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES", "BAKERY_PROGRESS_INTERVAL_MS"] {
        assert!(create.contains(section), "{section} missing from bakery-create.1");
    }
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

/// `sysext-bakery` habits: `--arch ARCH` instead of the positional ARCH (exactly one of them),
/// and `--sysupdate true|false` besides the bare flag.
#[test]
fn arch_and_sysupdate_take_sysext_bakery_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let plan = |args: &[&str]| {
        let mut command = bakery(dir.path());
        run(command.args(["create", "kubernetes", "v1.32.0"]).args(args).arg("--dry-run"))
    };
    let flagged: serde_json::Value = serde_json::from_str(&plan(&["--arch", "aarch64"]).expect_code(0).stdout).unwrap();
    assert_eq!(flagged["arch"], "arm64");
    assert_eq!(plan(&["--arch", "arm64"]).stdout, plan(&["arm64"]).expect_code(0).stdout);
    let both = plan(&["x86-64", "--arch", "arm64"]).expect_code(2);
    assert!(both.stderr.contains("cannot be used with '--arch <ARCH>'"), "{}", both.stderr);
    let neither = plan(&[]).expect_code(2);
    assert!(neither.stderr.contains("<ARCH|--arch <ARCH>>"), "{}", neither.stderr);

    plan(&["x86-64", "--sysupdate", "false"]).expect_code(0);
    for needs_a_base_url in [&["x86-64", "--sysupdate", "true"][..], &["x86-64", "--sysupdate"]] {
        let refused = plan(needs_a_base_url).expect_code(2);
        assert!(refused.stderr.contains("--base-url <URL>"), "{needs_a_base_url:?}: {}", refused.stderr);
    }
    let wrong = plan(&["x86-64", "--sysupdate", "maybe"]).expect_code(2);
    assert!(wrong.stderr.contains("[possible values: true, false]"), "{}", wrong.stderr);

    let butane = |arch: &[&str]| {
        let mut command = bakery(dir.path());
        command.args(["butane", "kubernetes", "v1.32.3"]).args(arch);
        run(command.args(["--base-url", "https://example.org/ext", "--allow-unsigned", "--dir"]).arg(dir.path()))
    };
    let (positional, flagged) = (butane(&["x86-64"]), butane(&["--arch", "x86-64"]));
    assert_eq!(
        (positional.code, &positional.stdout, &positional.stderr),
        (flagged.code, &flagged.stdout, &flagged.stderr)
    );
    assert!(butane(&["--arch", "arm64"]).stderr.contains("kubernetes-v1.32.3-arm64.raw"), "the flag's arch is used");
    butane(&["x86-64", "--arch", "x86-64"]).expect_code(2);
}
