//! Bounded work: templates that never end or never stop writing, downloads that trickle or never
//! end, signals during rendering, and stdout closed under a command. Each ends quickly, with a
//! message naming the file or URL and the limit, and leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support;
use support::fixtures::{payload, sha256_hex};
use support::server::NotTls;
use support::{Run, Server, bakery};

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
fn sigterm_and_sigint_stop_rendering_with_exit_130() {
    for signal in ["TERM", "INT"] {
        interrupt_rendering(signal);
    }
}

fn interrupt_rendering(signal: &str) {
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
    Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || tx.send(child.wait()).ok());
    let status = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            Command::new("kill").args(["-KILL", &pid.to_string()]).status().ok();
            panic!("SIG{signal} was ignored while rendering");
        }
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains(&format!("interrupted by SIG{signal}")), "{rest}");
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

/// The artifact's path on the test servers.
const BLOB: &str = "/downloads.example/blob";

/// A recipe with one artifact, `https://downloads.example/blob` (pinned to `body`'s digest), and
/// a bakery.toml with `download` as its `[download]` table (none when empty).
fn download_recipe(dir: &Path, body: &[u8], download: &str) {
    let folder = dir.join("extensions").join("demo");
    std::fs::create_dir_all(&folder).unwrap();
    let recipe = format!(
        "name: demo\ndescription: d\nartifacts:\n  - name: blob\n    url: https://downloads.example/blob\n    \
         checksum: {{ sha256: \"{}\" }}\n    install: {{ path: usr/lib/demo/blob }}\n",
        sha256_hex(body)
    );
    std::fs::write(folder.join("recipe.yaml"), recipe).unwrap();
    if !download.is_empty() {
        std::fs::write(dir.join("bakery.toml"), format!("[download]\n{download}")).unwrap();
    }
}

/// `bakery create demo` with `https://downloads.example` mirrored to `mirror`.
fn create_through(dir: &Path, mirror: &str) -> Run {
    let mut command = create_demo(dir);
    command.arg("--mirror").arg(format!("https://downloads.example={mirror}/downloads.example"));
    run_within(&mut command, Duration::from_secs(30))
}

/// No partial download stayed in the cache, nor anything unverified.
fn assert_cache_clean(dir: &Path) {
    let cache = dir.join("cache");
    assert_eq!(support::dir_names(&cache.join("tmp")), Vec::<String>::new(), "a partial download stayed");
    let blobs = walk_files(&cache.join("blobs"));
    assert!(blobs.is_empty(), "{blobs:?}");
    assert!(support::dir_names(&dir.join("out")).is_empty());
}

fn walk_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk_files(&entry.path()));
        } else {
            out.push(entry.path().display().to_string());
        }
    }
    out
}

/// Fails with `code`, names the URL and every one of `needles`; returns stderr.
fn assert_failed(run: Run, url: &str, needles: &[&str]) -> String {
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in [url].iter().chain(needles) {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    run.stderr
}

#[test]
fn a_trickling_download_is_too_slow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let body = payload("blob", 1000);
    download_recipe(dir.path(), &body, "attempts = 2\nmin_speed = \"1 KiB\"\nspeed_window = 1\n");
    server.put(BLOB, body);
    server.trickle(BLOB, Duration::from_millis(100));
    let started = Instant::now();
    let failed = create_through(dir.path(), &server.url());
    assert_failed(
        failed,
        &format!("{}{BLOB}", server.url()),
        &["below the minimum speed of 1.0 KiB/s ([download] min_speed, speed_window)", "giving up after 2 attempts"],
    );
    assert_eq!(server.hits(BLOB), 2, "transient: retried as configured");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_cache_clean(dir.path());
}

#[test]
fn a_stalled_download_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let body = payload("blob", 1000);
    download_recipe(dir.path(), &body, "attempts = 1\nstall_timeout = 1\nmin_speed = 0\n");
    server.put(BLOB, body);
    server.trickle(BLOB, Duration::from_secs(3600));
    let failed = create_through(dir.path(), &server.url());
    assert_failed(failed, &format!("{}{BLOB}", server.url()), &["no data for 1 s ([download] stall_timeout)"]);
    assert_cache_clean(dir.path());
}

#[test]
fn a_download_past_its_deadline_stops_however_fast_it_trickles() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let body = payload("blob", 1000);
    // 20 bytes a second: fast enough, never stalled, but 50 s in all
    download_recipe(dir.path(), &body, "stall_timeout = 5\nmin_speed = 1\nspeed_window = 1\ndeadline = 2\n");
    server.put(BLOB, body);
    server.trickle(BLOB, Duration::from_millis(50));
    let started = Instant::now();
    let failed = create_through(dir.path(), &server.url());
    assert_failed(failed, &format!("{}{BLOB}", server.url()), &["not done within 2 s ([download] deadline)"]);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(server.hits(BLOB), 1);
    assert_cache_clean(dir.path());
}

#[test]
fn an_endless_body_stops_at_max_size_and_leaves_nothing_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    download_recipe(dir.path(), b"whatever", "max_size = \"1 MiB\"\n");
    server.put(BLOB, Vec::new());
    server.endless(BLOB);
    let failed = create_through(dir.path(), &server.url());
    assert_failed(failed, &format!("{}{BLOB}", server.url()), &["larger than 1.0 MiB ([download] max_size)"]);
    assert_eq!(server.hits(BLOB), 1, "permanent: not retried");
    assert_cache_clean(dir.path());

    // announced as too large: refused before a byte is read
    let server = Server::start();
    let body = payload("blob", 2 * 1024 * 1024);
    download_recipe(dir.path(), &body, "max_size = \"1 MiB\"\n");
    server.put(BLOB, body);
    let failed = create_through(dir.path(), &server.url());
    assert_failed(failed, &format!("{}{BLOB}", server.url()), &["larger than 1.0 MiB ([download] max_size)"]);
    assert_eq!(server.hits(BLOB), 1);
    assert_cache_clean(dir.path());
}

#[test]
fn tls_failures_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let not_tls = NotTls::start();
    download_recipe(dir.path(), b"x", "");
    let failed = create_through(dir.path(), &format!("https://127.0.0.1:{}", not_tls.port));
    let stderr = assert_failed(failed, &format!("https://127.0.0.1:{}{BLOB}", not_tls.port), &[]);
    assert!(!stderr.contains("retrying") && !stderr.contains("giving up"), "{stderr}");
    assert_eq!(not_tls.connections(), 1, "one handshake, no retry: {stderr}");
}

#[test]
fn redirect_loops_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    download_recipe(dir.path(), b"x", "");
    server.redirect(BLOB, 302, BLOB);
    let failed = create_through(dir.path(), &server.url());
    assert_failed(failed, &format!("{}{BLOB}", server.url()), &["too many redirects"]);
    assert_eq!(server.hits(BLOB), 10, "ten requests, once");
}

#[test]
fn a_plain_http_mirror_may_redirect_only_on_its_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let body = payload("blob", 1000);
    let (mirror, elsewhere) = (Server::start(), Server::start());
    download_recipe(dir.path(), &body, "");
    elsewhere.put(BLOB, body.clone());
    mirror.redirect(BLOB, 302, &format!("http://localhost:{}{BLOB}", elsewhere.port));
    let failed = create_through(dir.path(), &mirror.url());
    assert_failed(
        failed,
        &format!("{}{BLOB}", mirror.url()),
        &["refusing redirect from plain http 127.0.0.1 to another host"],
    );
    assert_eq!((mirror.hits(BLOB), elsewhere.total_hits()), (1, 0), "refused before asking, not retried");
    assert_cache_clean(dir.path());

    mirror.redirect(BLOB, 302, "/downloads.example/moved");
    mirror.put("/downloads.example/moved", body);
    let built = create_through(dir.path(), &mirror.url());
    assert_eq!(built.code, 0, "{}", built.stderr);
}
