//! Publishing that a second writer or a crash cannot break: concurrent `bakery create`s into one
//! output directory, and `create` and `release` killed with SIGKILL at every step (the binary
//! pauses at a named point when `BAKERY_FAILPOINT` says so; the test waits for it on stderr and
//! kills it there). After every kill, each `SHA256SUMS` line names a present image with that
//! digest, and the next run lists every image, re-signs and removes what the killed run left.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support;
use bakery::model::sums::Sha256Sums;
use support::fixtures::{Upstream, default_cni_version, mirror_args, sha256_hex};
use support::gpg::{EMAIL, Keyring};
use support::{Run, Server, bakery, dir_names, run, upstreams};

/// A home with an output directory `out/`, a cache and the upstream server.
struct World {
    home: tempfile::TempDir,
    server: Server,
}

impl World {
    fn new() -> Self {
        World { home: tempfile::tempdir().unwrap(), server: Server::start() }
    }

    fn out(&self) -> PathBuf {
        self.home.path().join("out")
    }

    /// `bakery create ARGS -o out` with its own cache `cache`.
    fn create_command(&self, cache: &str, args: &[&str]) -> Command {
        let mut command = bakery(self.home.path());
        command.arg("--cache-dir").arg(self.home.path().join(cache)).args(mirror_args(&self.server));
        command.arg("create").args(args).arg("-o").arg(self.out());
        command
    }

    fn create(&self, args: &[&str]) -> Run {
        run(&mut self.create_command("cache", args))
    }

    /// `bakery release out --base-url … --sign-key …` signing with `keyring`.
    fn release_command(&self, keyring: &Keyring) -> Command {
        let mut command = bakery(self.home.path());
        command.env("GNUPGHOME", keyring.path()).arg("release").arg(self.out());
        command.args(["--base-url", "https://example.org/ext", "--sign-key", EMAIL]);
        command
    }

    fn kubernetes(&self, version: &str, goarch: &str) {
        Upstream::kubernetes(&self.server, version, goarch, &default_cni_version());
    }
}

fn image(version: &str) -> String {
    format!("kubernetes-{version}-x86-64.raw")
}

/// `dir/SHA256SUMS`, parsed as sysupdate would (a bad line fails the test).
fn sums(dir: &Path) -> Sha256Sums {
    let text = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap_or_default();
    Sha256Sums::parse(&text).unwrap_or_else(|e| panic!("SHA256SUMS: {e}\n{text}"))
}

/// Every line of `SHA256SUMS` names an image in `dir` whose digest it gives: what a node needs.
fn assert_every_line_true(dir: &Path, context: &str) {
    for (name, digest) in sums(dir).iter() {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{context}: {name} is listed: {e}"));
        assert_eq!(sha256_hex(&bytes), digest.to_string(), "{context}: the line of {name}");
    }
}

/// Every line true, every image listed, nothing left by an interrupted run.
fn assert_complete(dir: &Path, context: &str) {
    assert_every_line_true(dir, context);
    let sums = sums(dir);
    for name in dir_names(dir) {
        if name.ends_with(".raw") {
            assert!(sums.get(&name).is_some(), "{context}: {name} is not listed in SHA256SUMS");
        }
        assert!(!name.starts_with(".bakery-tmp-"), "{context}: a temporary file is left: {name}");
        assert!(name != ".bakery-journal", "{context}: the journal of an interrupted run is left");
    }
}

/// Whether `SHA256SUMS.gpg` verifies `SHA256SUMS` with the release's public key (the real gpgv).
fn pair_verifies(dir: &Path) -> bool {
    Command::new("gpgv")
        .arg("--keyring")
        .arg(dir.join("import-pubring.gpg"))
        .arg(dir.join("SHA256SUMS.gpg"))
        .arg(dir.join("SHA256SUMS"))
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs `command` with `BAKERY_FAILPOINT=point` and returns it once it reports on stderr that
/// it has reached the point (and stopped there).
fn pause_at(mut command: Command, point: &str) -> Child {
    command.env("BAKERY_FAILPOINT", point).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let marker = format!("failpoint {point} reached");
    if let Err(log) = wait_for_line(&mut child, &marker) {
        let status = child.wait().unwrap();
        panic!("{point} was never reached ({status}):\n{log}");
    }
    child
}

/// Reads `child`'s stderr until a line contains `needle`; the whole log when it ends first.
fn wait_for_line(child: &mut Child, needle: &str) -> Result<(), String> {
    let mut log = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if line.contains(needle) {
            // keep draining so the child never blocks on a full pipe
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return Ok(());
        }
        log.push_str(&line);
        line.clear();
    }
    Err(log)
}

/// [`pause_at`], then SIGKILL.
fn kill_at(command: Command, point: &str) {
    let mut child = pause_at(command, point);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn twenty_concurrent_creates_into_one_directory_keep_every_line() {
    let world = World::new();
    let versions: Vec<String> = (0..9).map(|patch| format!("v1.32.{patch}")).collect();
    let mut jobs: Vec<Vec<String>> = Vec::new();
    for version in &versions {
        for (goarch, arch) in [("amd64", "x86-64"), ("arm64", "arm64")] {
            world.kubernetes(version, goarch);
            jobs.push(vec!["kubernetes".into(), version.clone(), arch.into()]);
        }
    }
    for version in ["v1.8.0", "v1.9.1"] {
        upstreams::cni_plugins(&world.server, version, "amd64", "usr/libexec/cni");
        jobs.push(vec!["cni-plugins".into(), version.into(), "x86-64".into()]);
    }
    assert_eq!(jobs.len(), 20);
    let children: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(n, job)| {
            let args: Vec<&str> = job.iter().map(String::as_str).collect();
            let mut command = world.create_command(&format!("cache-{n}"), &args);
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for (job, child) in jobs.iter().zip(children) {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{job:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let out = world.out();
    assert_complete(&out, "after 20 concurrent creates");
    let listed: Vec<String> = sums(&out).iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(listed.len(), 20, "{listed:?}");
    let check = Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&out).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}

/// The points a `create` passes, and whether each is reached when the image is new and when
/// `--force` replaces it.
const CREATE_POINTS: [(&str, bool, bool); 6] = [
    ("create:packed", true, true),
    ("publish:locked", true, true),
    ("publish:journal-written", true, true),
    ("publish:old-line-removed", false, true),
    ("publish:image-renamed", true, true),
    ("publish:sums-written", true, true),
];

#[test]
fn a_create_killed_at_any_step_leaves_true_lines_and_the_next_run_repairs_it() {
    let world = World::new();
    for patch in 0..20 {
        world.kubernetes(&format!("v1.32.{patch}"), "amd64");
    }
    world.create(&["kubernetes", "v1.32.0", "x86-64"]).expect_code(0);
    let mut tried = 0;
    for (point, when_new, when_forced) in CREATE_POINTS {
        for forced in [false, true] {
            if !(if forced { when_forced } else { when_new }) {
                continue;
            }
            let context = format!("killed at {point}{}", if forced { " (--force)" } else { "" });
            // A new image, or v1.32.1 replaced by a build with other bytes.
            let version = if forced { "v1.32.1".to_string() } else { format!("v1.32.{}", 10 + tried) };
            let mut args = vec!["kubernetes", &version, "x86-64"];
            if forced {
                world.create(&[&args[..], &["--force"]].concat()).expect_code(0);
                args.extend(["--force", "--compression", "lz4"]);
            }
            kill_at(world.create_command("cache", &args), point);
            tried += 1;
            assert_every_line_true(&world.out(), &context);

            // The next run (another image) lists what the killed one renamed and cleans up.
            world.create(&["kubernetes", "v1.32.2", "x86-64", "--force"]).expect_code(0);
            assert_complete(&world.out(), &format!("{context}, then another create"));
            for kept in ["v1.32.0", "v1.32.2"] {
                assert!(sums(&world.out()).get(&image(kept)).is_some(), "{context}: {kept} is listed");
            }
        }
    }
    eprintln!("create crash points tried: {tried}");
    assert_eq!(tried, 11);
}

#[test]
fn rerunning_a_create_killed_after_its_rename_finds_the_image_listed() {
    let world = World::new();
    world.kubernetes("v1.32.0", "amd64");
    kill_at(world.create_command("cache", &["kubernetes", "v1.32.0", "x86-64"]), "publish:image-renamed");
    assert!(sums(&world.out()).get(&image("v1.32.0")).is_none(), "killed before SHA256SUMS was written");
    let again = world.create(&["kubernetes", "v1.32.0", "x86-64"]).expect_code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_complete(&world.out(), "after the rerun");
    assert!(sums(&world.out()).get(&image("v1.32.0")).is_some());
}

/// The points a signed `release` passes when SHA256SUMS changes (an image was removed by hand)
/// and when only the signature does (`create` added a line).
const RELEASE_POINTS: [(&str, bool, bool); 4] = [
    ("release:locked", true, true),
    ("release:pair-staged", true, true),
    ("release:sums-renamed", true, false),
    ("release:signed", true, true),
];

#[test]
fn a_release_killed_at_any_step_leaves_a_pair_that_verifies_or_the_next_run_re_signs() {
    let world = World::new();
    let keyring = Keyring::new();
    let versions: Vec<String> = (0..8).map(|patch| format!("v1.32.{patch}")).collect();
    for version in &versions[..4] {
        world.kubernetes(version, "amd64");
        world.create(&["kubernetes", version, "x86-64"]).expect_code(0);
    }
    run(&mut world.release_command(&keyring)).expect_code(0);
    assert!(pair_verifies(&world.out()));
    let (mut removable, mut addable) = (versions[..4].iter(), versions[4..].iter());
    let mut tried = 0;
    for (point, sums_change, signature_only) in RELEASE_POINTS {
        for sums_changes in [true, false] {
            if !(if sums_changes { sums_change } else { signature_only }) {
                continue;
            }
            let context =
                format!("killed at {point} ({})", if sums_changes { "an image removed" } else { "one created" });
            if sums_changes {
                std::fs::remove_file(world.out().join(image(removable.next().unwrap()))).unwrap();
            } else {
                let version = addable.next().unwrap();
                world.kubernetes(version, "amd64");
                world.create(&["kubernetes", version, "x86-64"]).expect_code(0);
            }
            let before = pair_verifies(&world.out());
            kill_at(world.release_command(&keyring), point);
            tried += 1;
            let after = pair_verifies(&world.out());
            match point {
                "release:signed" => assert!(after, "{context}: the finished pair does not verify"),
                // Between the renames of SHA256SUMS and its signature no order helps: sysupdate
                // reads both by fixed names, so the next run checks and re-signs.
                "release:sums-renamed" => {}
                _ => assert!(after || !before, "{context}: a pair that verified no longer does"),
            }
            run(&mut world.release_command(&keyring)).expect_code(0);
            assert!(pair_verifies(&world.out()), "{context}: the next release did not re-sign");
            assert_complete(&world.out(), &format!("{context}, then release"));
            let listed = sums(&world.out()).iter().count();
            let raws = dir_names(&world.out()).iter().filter(|n| n.ends_with(".raw")).count();
            assert_eq!(listed, raws, "{context}: SHA256SUMS lists exactly the images");
        }
    }
    eprintln!("release crash points tried: {tried}");
    assert_eq!(tried, 7);
}

#[test]
fn a_dot_dot_line_in_sha256sums_is_refused_naming_file_and_line() {
    let world = World::new();
    world.kubernetes("v1.32.0", "amd64");
    std::fs::create_dir_all(world.out()).unwrap();
    let text = format!("{}  a.raw\n{}  ..\n", "ab".repeat(32), "cd".repeat(32));
    std::fs::write(world.out().join("SHA256SUMS"), &text).unwrap();
    let refused = world.create(&["kubernetes", "v1.32.0", "x86-64"]).expect_code(2);
    let path = world.out().join("SHA256SUMS");
    assert!(
        refused.stderr.contains(&format!("{}: line 2: \"..\" is not a plain file name", path.display())),
        "{}",
        refused.stderr
    );
    assert_eq!(world.server.total_hits(), 0, "refused before downloading");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "left alone");
    assert!(!world.out().join(image("v1.32.0")).exists());
}

#[test]
fn a_create_waits_for_a_release_that_holds_the_directory() {
    let world = World::new();
    let keyring = Keyring::new();
    for version in ["v1.32.0", "v1.32.1"] {
        world.kubernetes(version, "amd64");
    }
    world.create(&["kubernetes", "v1.32.0", "x86-64"]).expect_code(0);
    let mut release = pause_at(world.release_command(&keyring), "release:locked");
    let mut create = world.create_command("cache", &["kubernetes", "v1.32.1", "x86-64"]);
    let mut create = create.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let waited = wait_for_line(&mut create, "waiting for another bakery run to finish with");
    release.kill().unwrap();
    release.wait().unwrap();
    assert!(create.wait().unwrap().success());
    waited.unwrap_or_else(|log| panic!("create did not wait for the release's lock:\n{log}"));
    assert_complete(&world.out(), "after the create that waited");
    assert!(sums(&world.out()).get(&image("v1.32.1")).is_some());
}
