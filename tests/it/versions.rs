//! Upstream versions: `bakery list` and `latest` / `X.Y` resolution in `create`, against a real
//! HTTP server on 127.0.0.1 serving dl.k8s.io-style marker files and GitHub-API-shaped release
//! pages (JSON arrays linked by `Link: rel="next"` headers naming api.github.com, which bakery's
//! mirror rewrites).

use std::path::Path;

use crate::support;
use support::fixtures::{
    GhRelease, Upstream, default_cni_version, github_api_mirror, github_releases, kubernetes_markers,
    kubernetes_releases, mirror_args,
};
use support::golden::assert_golden;
use support::{Run, Server, bakery, run};

const STABLE: [&str; 6] = ["v1.32.3", "v1.31.7", "v1.30.11", "v1.29.15", "v1.28.15", "v1.27.16"];

fn bakery_at(home: &Path, server: &Server, args: &[&str]) -> Run {
    let mut command = bakery(home);
    command.arg("--cache-dir").arg(home.join("cache")).args(mirror_args(server)).args(github_api_mirror(server));
    run(command.args(args))
}

/// CNI plugin releases as GitHub lists them (newest first), 130 so they span pages.
fn cni_releases() -> Vec<(String, bool, bool)> {
    let mut out = vec![("v1.7.0-rc.1".to_string(), true, false), ("v1.7.0".to_string(), false, true)];
    for minor in (0..=6).rev() {
        for patch in (0..18).rev() {
            out.push((format!("v1.{minor}.{patch}"), false, false));
        }
    }
    out.push(("v0.9.1".to_string(), false, false));
    out
}

fn serve_cni_releases(server: &Server) -> Vec<String> {
    let owned = cni_releases();
    let releases: Vec<GhRelease> = owned.iter().map(|(t, p, d)| (t.as_str(), *p, *d)).collect();
    github_releases(server, "containernetworking/plugins", &releases, 40)
}

#[test]
fn list_shows_the_known_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bakery(dir.path()).arg("list")).expect_code(0);
    assert_golden("list.txt", &out.stdout);
    let json = run(bakery(dir.path()).args(["list", "--json"])).expect_code(0);
    let known: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let kubernetes = known.as_array().unwrap().iter().find(|k| k["name"] == "kubernetes").unwrap();
    assert_eq!(kubernetes["origin"], "built in");
}

#[test]
fn list_marks_extensions_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("extensions/demo");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("recipe.yaml"), "name: demo\ndescription: a local recipe\n").unwrap();
    let out =
        run(bakery(dir.path()).args(["list", "--extensions-dir"]).arg(dir.path().join("extensions"))).expect_code(0);
    let line = out.stdout.lines().find(|l| l.starts_with("demo")).unwrap().to_string();
    assert!(line.contains(&folder.display().to_string()) && line.contains("a local recipe"), "{line}");
}

/// Serves the marker files and the GitHub releases of kubernetes/kubernetes; returns the pages.
fn serve_kubernetes(server: &Server) -> Vec<String> {
    kubernetes_markers(server, &STABLE, "v1.33.0-rc.1");
    kubernetes_releases(server, &STABLE, "v1.33.0-rc.1")
}

#[test]
fn kubernetes_lists_every_release_and_the_markers_answer_latest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let pages = serve_kubernetes(&server);
    let all = bakery_at(dir.path(), &server, &["list", "kubernetes"]).expect_code(0);
    assert_golden("list-kubernetes.txt", &all.stdout);
    assert!(all.stdout.lines().any(|v| v == "v1.32.0"), "the version the README builds: {}", all.stdout);
    assert_eq!(all.stdout.lines().count(), 4 + 8 + 12 + 16 + 16 + 17, "every patch, no draft, no pre-release");
    for page in &pages {
        assert_eq!(server.hits(page), 1, "{page}");
    }
    assert_eq!(server.hits("/dl.k8s.io/release/stable.txt"), 0, "the list comes from GitHub alone");

    let latest = bakery_at(dir.path(), &server, &["list", "kubernetes", "--latest"]).expect_code(0);
    assert_golden("list-kubernetes-latest.txt", &latest.stdout);
    assert_eq!(server.hits(&pages[0]), 1, "--latest reads the markers, not GitHub");
    assert_eq!(server.hits("/dl.k8s.io/release/stable-1.30.txt"), 1);
    assert_eq!(server.hits("/dl.k8s.io/release/stable-1.29.txt"), 0, "only the supported minors");
    let pre = bakery_at(dir.path(), &server, &["list", "kubernetes", "--pre"]).expect_code(0);
    assert_eq!(pre.stdout.lines().next(), Some("v1.33.0-rc.1"), "{}", pre.stdout);
    assert!(!pre.stdout.contains("v1.99.0"), "drafts never show: {}", pre.stdout);
    let json = bakery_at(dir.path(), &server, &["list", "kubernetes", "--latest", "--json"]).expect_code(0);
    let latest: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(latest[0], serde_json::json!({"minor": "1.32", "version": "v1.32.3"}));
}

#[test]
fn marker_sources_without_a_repository_walk_the_minors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    kubernetes_markers(&server, &STABLE, "v1.33.0-rc.1");
    let recipe = "name: markers\ndescription: d\nversion:\n  prefix: v\n  source:\n    markers:\n      \
                  stable: https://dl.k8s.io/release/stable.txt\n      \
                  minor: \"https://dl.k8s.io/release/stable-{{ minor }}.txt\"\n      \
                  latest: https://dl.k8s.io/release/latest.txt\n";
    let folder = dir.path().join("extensions/markers");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("recipe.yaml"), recipe).unwrap();
    let extensions = dir.path().join("extensions").display().to_string();
    let all = bakery_at(dir.path(), &server, &["--extensions-dir", &extensions, "list", "markers", "--pre"]);
    assert_eq!(all.expect_code(0).stdout, "v1.33.0-rc.1\n".to_string() + &STABLE.join("\n") + "\n");
    assert_eq!(server.hits("/dl.k8s.io/release/stable-1.26.txt"), 1, "walks down until a minor is missing");
}

#[test]
fn github_releases_are_paged_drafts_hidden_and_prereleases_optional() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let pages = serve_cni_releases(&server);
    assert_eq!(pages.len(), 4);
    let recipe =
        "name: cnidemo\ndescription: d\nversion:\n  prefix: v\n  source: { github: containernetworking/plugins }\n";
    let folder = dir.path().join("extensions/cnidemo");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("recipe.yaml"), recipe).unwrap();
    let extensions = dir.path().join("extensions").display().to_string();
    let all = bakery_at(dir.path(), &server, &["--extensions-dir", &extensions, "list", "cnidemo"]).expect_code(0);
    let versions: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(versions.len(), 7 * 18 + 1, "every stable release, no draft, no pre-release");
    assert_eq!(&versions[..3], ["v1.6.17", "v1.6.16", "v1.6.15"]);
    assert_eq!(versions.last(), Some(&"v0.9.1"));
    for page in &pages {
        assert_eq!(server.hits(page), 1, "{page}");
    }
    let pre =
        bakery_at(dir.path(), &server, &["--extensions-dir", &extensions, "list", "cnidemo", "--pre"]).expect_code(0);
    assert_eq!(pre.stdout.lines().next(), Some("v1.7.0-rc.1"));
    assert!(!pre.stdout.contains("v1.7.0\n"), "drafts never show");
    let latest = bakery_at(dir.path(), &server, &["--extensions-dir", &extensions, "list", "cnidemo", "--latest"])
        .expect_code(0);
    assert_eq!(latest.stdout, "v1.6.17\nv1.5.17\nv1.4.17\n");
}

#[test]
fn a_github_token_is_sent_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let pages = serve_cni_releases(&server);
    let mut command = bakery(dir.path());
    command.env("GH_TOKEN", "secret-token").args(github_api_mirror(&server));
    command.args(["create", "kubernetes", "v1.32.0", "x86-64", "--cni-version", "latest", "--dry-run"]);
    run(&mut command).expect_code(0);
    assert_eq!(server.request_header(&pages[0], "authorization").as_deref(), Some("Bearer secret-token"));
    assert_eq!(server.request_header(&pages[1], "accept").as_deref(), Some("application/vnd.github+json"));
}

#[test]
fn rate_limits_say_to_set_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let path = "/api.github.com/repos/containernetworking/plugins/releases?per_page=100";
    let body = r#"{"message":"API rate limit exceeded for 10.0.0.1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
    server.put_with_headers(path, body, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1735693200")]);
    server.fail_with(path, 403);
    let failed = bakery_at(
        dir.path(),
        &server,
        &["create", "kubernetes", "v1.32.0", "x86-64", "--cni-version", "1.6", "--dry-run"],
    );
    let failed = failed.expect_code(1);
    assert!(failed.stderr.contains("GitHub API rate limit exceeded"), "{}", failed.stderr);
    assert!(failed.stderr.contains("set GITHUB_TOKEN (or GH_TOKEN)"), "{}", failed.stderr);
    assert!(failed.stderr.contains("resets at 01:00 UTC"), "{}", failed.stderr);
    assert_eq!(server.hits(path), 1, "a rate limit is not retried");
}

#[test]
fn malformed_sources_name_the_url_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let path = "/api.github.com/repos/containernetworking/plugins/releases?per_page=100";
    server.put(path, "<!DOCTYPE html><html><body>Sign in</body></html>");
    let failed = bakery_at(
        dir.path(),
        &server,
        &["create", "kubernetes", "v1.32.0", "x86-64", "--cni-version", "latest", "--dry-run"],
    );
    let failed = failed.expect_code(1);
    let url = format!("{}{path}", server.url());
    assert!(
        failed.stderr.contains(&format!("{url}: expected a JSON array of GitHub releases, got HTML")),
        "{}",
        failed.stderr
    );

    server.put("/dl.k8s.io/release/stable.txt", "<html>maintenance</html>\n");
    let failed = bakery_at(dir.path(), &server, &["list", "kubernetes", "--latest"]).expect_code(1);
    assert!(
        failed.stderr.contains("/dl.k8s.io/release/stable.txt: expected a version such as v1.2.3, got HTML"),
        "{}",
        failed.stderr
    );
}

#[test]
fn an_unreachable_mirror_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mirror = format!("https://dl.k8s.io=http://127.0.0.1:{closed}/k8s");
    let failed = run(bakery(dir.path()).args(["--mirror", &mirror, "list", "kubernetes", "--latest"])).expect_code(1);
    assert!(failed.stderr.contains(&format!("http://127.0.0.1:{closed}/k8s/release/stable.txt")), "{}", failed.stderr);
    assert!(failed.stderr.contains("giving up after 4 attempts"), "{}", failed.stderr);
}

#[test]
fn create_resolves_latest_and_minors_and_builds_what_the_exact_version_builds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    kubernetes_markers(&server, &STABLE, "v1.33.0-rc.1");
    Upstream::kubernetes(&server, "v1.32.3", "amd64", &default_cni_version());
    Upstream::kubernetes(&server, "v1.31.7", "arm64", &default_cni_version());
    let latest =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "latest", "x86-64", "-o", "latest"]).expect_code(0);
    assert!(latest.stderr.contains("kubernetes latest is v1.32.3"), "{}", latest.stderr);
    let image = dir.path().join("latest/kubernetes-v1.32.3-x86-64.raw");
    let exact =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "v1.32.3", "x86-64", "-o", "exact"]).expect_code(0);
    assert!(!exact.stderr.contains(" is v1.32.3"), "exact versions are not looked up: {}", exact.stderr);
    let exact_image = dir.path().join("exact/kubernetes-v1.32.3-x86-64.raw");
    assert!(std::fs::read(&image).unwrap() == std::fs::read(&exact_image).unwrap(), "latest and exact builds differ");

    let minor =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "1.31", "arm64", "-o", "minor"]).expect_code(0);
    assert!(minor.stderr.contains("kubernetes 1.31 is v1.31.7"), "{}", minor.stderr);
    assert!(dir.path().join("minor/kubernetes-v1.31.7-arm64.raw").exists());
}

#[test]
fn cni_version_latest_resolves_through_the_option_source_into_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    serve_cni_releases(&server);
    let plan = bakery_at(
        dir.path(),
        &server,
        &["create", "kubernetes", "v1.32.0", "x86-64", "--cni-version", "latest", "--dry-run"],
    );
    let plan = plan.expect_code(0);
    assert!(plan.stderr.contains("option cni_version latest is v1.6.17"), "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["options"]["cni_version"], "v1.6.17");
    let minor = bakery_at(
        dir.path(),
        &server,
        &["create", "kubernetes", "v1.32.0", "x86-64", "--set", "cni_version=1.5", "--dry-run"],
    );
    let plan: serde_json::Value = serde_json::from_str(&minor.expect_code(0).stdout).unwrap();
    assert_eq!(plan["options"]["cni_version"], "v1.5.17");
}

#[test]
fn versions_that_do_not_exist_upstream_name_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    serve_kubernetes(&server);
    Upstream::kubernetes(&server, "v1.32.3", "amd64", &default_cni_version());
    let failed =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "v1.32.99", "x86-64", "-o", "out"]).expect_code(2);
    assert!(
        failed.stderr.contains(
            "kubernetes v1.32.99 does not exist upstream; nearest versions: v1.32.3, v1.32.2, v1.32.1, v1.32.0, v1.31.7"
        ),
        "{}",
        failed.stderr
    );
    assert!(!dir.path().join("out").exists() || support::dir_names(&dir.path().join("out")).is_empty());
    // the GitHub mirror rule serves the version lookup: it is not an unused rule
    assert!(!failed.stderr.contains("matches no URL"), "{}", failed.stderr);

    let failed =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "1.99", "x86-64", "-o", "out"]).expect_code(2);
    assert!(
        failed.stderr.contains("kubernetes has no stable release 1.99 upstream (newest minors: 1.32, 1.31, 1.30"),
        "{}",
        failed.stderr
    );
}

#[test]
fn a_missing_checksum_of_an_existing_version_names_its_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    serve_kubernetes(&server);
    // v1.32.0 exists (GitHub lists it), but one checksum is gone
    let upstream = Upstream::kubernetes(&server, "v1.32.0", "amd64", &default_cni_version());
    let sha256 = format!("{}.sha256", upstream.paths["kubeadm"]);
    server.remove(&sha256);
    let failed =
        bakery_at(dir.path(), &server, &["create", "kubernetes", "v1.32.0", "x86-64", "-o", "out"]).expect_code(1);
    assert!(!failed.stderr.contains("does not exist"), "{}", failed.stderr);
    let url = format!("{}{sha256}", server.url());
    assert!(failed.stderr.contains(&format!("{url}: HTTP 404 Not Found")), "{}", failed.stderr);
    assert_eq!(server.hits(&sha256), 1, "a 404 is not retried");
}

#[test]
fn exact_versions_make_no_listing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let plan = bakery_at(
        dir.path(),
        &server,
        &["create", "kubernetes", "v1.32.0", "x86-64", "--cni-version", "1.6.1", "--dry-run"],
    );
    let plan: serde_json::Value = serde_json::from_str(&plan.expect_code(0).stdout).unwrap();
    assert_eq!(plan["options"]["cni_version"], "v1.6.1", "the option's prefix is added");
    assert_eq!(server.total_hits(), 0);
}
