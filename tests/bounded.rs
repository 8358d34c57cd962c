//! Bounded work: templates that never end or never stop writing, downloads that trickle or never
//! end, signals during rendering, and stdout closed under a command. Each ends quickly, with a
//! message naming the file or URL and the limit, and leaves nothing behind.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Run, bakery};

/// Writes `extensions/demo/` with one template, `templates/t.conf`, into `dir`.
fn template_recipe(dir: &Path, template: &str) -> String {
    let folder = dir.join("extensions").join("demo");
    std::fs::create_dir_all(folder.join("templates")).unwrap();
    let recipe = "name: demo\ndescription: d\ntemplates:\n  - { source: t.conf, path: usr/lib/demo/t.conf }\n";
    std::fs::write(folder.join("recipe.yaml"), recipe).unwrap();
    std::fs::write(folder.join("templates").join("t.conf"), template).unwrap();
    dir.join("extensions").display().to_string()
}

/// `bakery create demo` for the recipe in `dir`, as a command not yet started.
fn create_demo(dir: &Path) -> Command {
    let mut command = bakery(dir);
    command.arg("--cache-dir").arg(dir.join("cache")).arg("--extensions-dir").arg(dir.join("extensions"));
    command.args(["create", "demo", "1.0.0", "x86-64", "--output"]).arg(dir.join("out"));
    command
}

/// Runs `command`, killing it and failing the test when it takes longer than `limit`.
fn run_within(command: &mut Command, limit: Duration) -> Run {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(limit) {
        Ok(output) => {
            let output = output.unwrap();
            Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            Command::new("kill").args(["-KILL", &pid.to_string()]).status().ok();
            panic!("still running after {limit:?}");
        }
    }
}

#[test]
fn a_template_with_endless_loops_runs_out_of_fuel() {
    let dir = tempfile::tempdir().unwrap();
    // ten billion iterations that write nothing
    template_recipe(
        dir.path(),
        "{% for a in range(100000) %}{% for b in range(100000) %}{% set x = a + b %}{% endfor %}{% endfor %}\n",
    );
    let failed = run_within(&mut create_demo(dir.path()), Duration::from_secs(30)).expect_code(2);
    assert!(
        failed.stderr.contains("extensions/demo/templates/t.conf") && failed.stderr.contains("out of fuel"),
        "{}",
        failed.stderr
    );
    assert!(support::dir_names(&dir.path().join("out")).is_empty());
}

#[test]
fn a_template_output_past_1_mib_is_refused() {
    for template in [
        "{{ 'x' * 2000000 }}\n",
        // what grew to a 2 GiB allocation and an abort
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{{ b }}{% endfor %}{% endfor %}\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        template_recipe(dir.path(), template);
        let failed = run_within(&mut create_demo(dir.path()), Duration::from_secs(30)).expect_code(2);
        assert!(
            failed.stderr.contains("extensions/demo/templates/t.conf: the output is larger than 1.0 MiB"),
            "{}",
            failed.stderr
        );
        assert!(support::dir_names(&dir.path().join("out")).is_empty());
    }
}

#[test]
fn sigterm_stops_rendering_with_exit_130() {
    let dir = tempfile::tempdir().unwrap();
    // within fuel and output caps, but seconds of work per line (minutes in all)
    template_recipe(dir.path(), "{% for i in range(500) %}{{ ('x' * 20000000) | upper | length }}\n{% endfor %}");
    let mut child = create_demo(dir.path()).arg("-v").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "bakery ended before rendering: {seen}");
        seen.push_str(&line);
        if line.contains("rendering") && line.contains("templates/t.conf") {
            break;
        }
    }
    let signalled = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || tx.send(child.wait()).ok());
    let status = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            Command::new("kill").args(["-KILL", &pid.to_string()]).status().ok();
            panic!("SIGTERM was ignored while rendering");
        }
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted by SIGTERM"), "{rest}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "took {:?}", signalled.elapsed());
    assert!(support::dir_names(&dir.path().join("out")).is_empty());
}

/// Runs `args` with stdout a pipe nobody reads (its read end closed before the start).
fn with_stdout_closed(dir: &Path, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = bakery(dir);
    command.arg("--cache-dir").arg(dir.join("cache")).arg("--extensions-dir").arg(dir.join("extensions"));
    command.args(args).stdout(writer).stderr(Stdio::piped());
    let output = command.output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let dir = tempfile::tempdir().unwrap();
    template_recipe(dir.path(), "x\n");
    let out = dir.path().join("out");
    let image = out.join("demo-1.0.0-x86-64.raw");
    let image = image.to_str().unwrap();
    let built = with_stdout_closed(dir.path(), &["create", "demo", "1.0.0", "x86-64", "-o", out.to_str().unwrap()]);
    assert_eq!((built.code, built.stderr.contains("panicked")), (0, false), "{}", built.stderr);
    assert!(std::path::Path::new(image).is_file(), "the work is done even when nobody reads the result");
    for args in [
        &["inspect", image, "--json"][..],
        &["inspect", image],
        &["list"],
        &["list", "--json"],
        &["create", "kubernetes", "v1.32.0", "x86-64", "--dry-run"],
        &["release", out.to_str().unwrap(), "--allow-unsigned"],
        &["completions", "bash"],
        &["manpage"],
        &["--help"],
    ] {
        let run = with_stdout_closed(dir.path(), args);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(run.stderr.is_empty() || !run.stderr.contains("error"), "{args:?}: {}", run.stderr);
    }
}
