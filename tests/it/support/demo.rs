//! A demo extension for node tests: a service that records its version in /run/demo.version
//! (or, built `crashing`, exits at once), built by bakery from a recipe and an "upstream" the
//! test server serves, and releases of it served as https://release.example/ext.

use std::path::PathBuf;

use super::fixtures::sha256_hex;
use super::{Server, bakery, run};

pub const RECIPE: &str = r#"name: demo
description: a service that records its version, for node tests
version: { prefix: v }
reload_manager: true
restart_units: [demo.service]
artifacts:
  - name: demo
    url: "https://demo.example/{{ version }}/demo"
    checksum: { url: "{{ url }}.sha256", format: digest }
    install: { path: usr/bin/demo, mode: "0755" }
templates:
  - { source: demo.service, path: usr/lib/systemd/system/demo.service }
"#;

pub const UNIT: &str =
    "[Unit]\nDescription=demo {{ version }}\n\n[Service]\nExecStart=/usr/bin/demo\nRestart=on-failure\nRestartSec=1\n";

/// Where releases are published, as nodes see it (mirrored to the test server).
pub const RELEASE_URL: &str = "https://release.example/ext";

/// The host side: a recipe folder, a server with the demo's "upstream", images built by bakery.
pub struct Demo {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

/// The kubelet's way: a service that fails until its config file exists.
pub const WAITS_FOR_CONFIG: &str = "/var/lib/kubelet/config.yaml";

impl Demo {
    pub fn new() -> Self {
        Self::with_recipe(RECIPE)
    }

    /// The demo with a health rule like the kubernetes recipe's: demo.service counts only once
    /// [`WAITS_FOR_CONFIG`] exists.
    pub fn with_health_rule() -> Self {
        Self::with_recipe(&format!(
            "{RECIPE}health:\n  demo.service: {{ require: active, unless_missing: {WAITS_FOR_CONFIG} }}\n"
        ))
    }

    fn with_recipe(recipe_yaml: &str) -> Self {
        let demo = Demo { dir: tempfile::tempdir().unwrap(), server: Server::start() };
        let recipe = demo.dir.path().join("extensions/demo");
        std::fs::create_dir_all(recipe.join("templates")).unwrap();
        std::fs::write(recipe.join("recipe.yaml"), recipe_yaml).unwrap();
        std::fs::write(recipe.join("templates/demo.service"), UNIT).unwrap();
        std::fs::create_dir_all(demo.shared()).unwrap();
        demo
    }

    /// Where images and releases are written (what a container sees at /srv/bakery).
    pub fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    /// Builds demo `version` for `arch`; a `crashing` one exits at once.
    pub fn build(&self, version: &str, arch: &str, crashing: bool) -> String {
        let script = if crashing {
            "#!/bin/sh\necho crashing >&2\nexit 1\n".to_string()
        } else {
            format!("#!/bin/sh\necho {version} > /run/demo.version\nexec sleep infinity\n")
        };
        self.build_script(version, arch, script)
    }

    /// Builds a demo `version` that exits 1 until [`WAITS_FOR_CONFIG`] exists, like kubelet
    /// before `kubeadm join`.
    pub fn build_waiting_for_config(&self, version: &str) -> String {
        let script = format!(
            "#!/bin/sh\n[ -f {WAITS_FOR_CONFIG} ] || {{ echo 'no {WAITS_FOR_CONFIG}' >&2; exit 1; }}\n\
             echo {version} > /run/demo.version\nexec sleep infinity\n"
        );
        self.build_script(version, "x86-64", script)
    }

    /// Builds `version` of a second extension, `other`: the demo's program as `/usr/bin/other`,
    /// no units.
    pub fn build_other(&self, version: &str) -> String {
        let recipe = self.dir.path().join("extensions/other");
        std::fs::create_dir_all(&recipe).unwrap();
        let yaml = RECIPE
            .replace("name: demo\n", "name: other\n")
            .replace("restart_units: [demo.service]\n", "")
            .replace("path: usr/bin/demo", "path: usr/bin/other")
            .replace("demo.example/{{ version }}", "demo.example/other/{{ version }}");
        let yaml = &yaml[..yaml.find("templates:").unwrap()];
        std::fs::write(recipe.join("recipe.yaml"), yaml).unwrap();
        self.build_script_of("other", version, "x86-64", format!("#!/bin/sh\necho other {version}\n"))
    }

    /// Builds demo `version` (x86-64) written as `format` (`squashfs` or `erofs`).
    pub fn build_as(&self, version: &str, format: &str) -> String {
        let script = format!("#!/bin/sh\necho {version} > /run/demo.version\nexec sleep infinity\n");
        self.build_with("demo", version, "x86-64", script, &["--format", format])
    }

    /// The demo built as a DDI signed with `key` (PEM) for `cert` (PEM). Its script carries 16 KiB
    /// of hex digests in a comment, so the filesystem spans several verity blocks and the hash
    /// partition holds a tree after its superblock.
    pub fn build_ddi(&self, version: &str, key: &std::path::Path, cert: &std::path::Path) -> String {
        let filler: String = (0..256u32).map(|i| sha256_hex(&i.to_le_bytes())).collect();
        let script = format!("#!/bin/sh\n# {filler}\necho {version} > /run/demo.version\nexec sleep infinity\n");
        let (key, cert) = (key.to_str().unwrap(), cert.to_str().unwrap());
        self.build_with("demo", version, "x86-64", script, &["--ddi", "--sign-key", key, "--sign-cert", cert])
    }

    fn build_script(&self, version: &str, arch: &str, script: String) -> String {
        self.build_script_of("demo", version, arch, script)
    }

    fn build_script_of(&self, name: &str, version: &str, arch: &str, script: String) -> String {
        self.build_with(name, version, arch, script, &[])
    }

    fn build_with(&self, name: &str, version: &str, arch: &str, script: String, extra: &[&str]) -> String {
        let path = match name {
            "demo" => format!("/demo.example/{version}/demo"),
            _ => format!("/demo.example/{name}/{version}/demo"),
        };
        self.server.put(&format!("{path}.sha256"), sha256_hex(script.as_bytes()));
        self.server.put(&path, script);
        let mut command = bakery(self.dir.path());
        command.arg("--cache-dir").arg(self.dir.path().join("cache"));
        command.arg("--extensions-dir").arg(self.dir.path().join("extensions"));
        command.args(["--mirror", &self.server.mirror_for("https://demo.example")]);
        command.args(["create", name, version, arch, "--force"]).args(extra).arg("-o").arg(self.shared());
        run(&mut command).expect_code(0);
        format!("{name}-{version}-{arch}.raw")
    }

    /// Releases what `shared()` holds (unsigned) and serves it at [`RELEASE_URL`].
    pub fn release(&self) {
        let mut release = bakery(self.dir.path());
        release.arg("release").arg(self.shared()).args(["--base-url", RELEASE_URL, "--allow-unsigned"]);
        run(&mut release).expect_code(0);
        self.server.serve_dir("/release.example/ext", &self.shared());
    }

    /// `--mirror` for the release.
    pub fn release_mirror(&self) -> String {
        self.server.mirror_for("https://release.example")
    }
}
