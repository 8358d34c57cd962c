//! A real systemd node in a container, on either of two systemd versions: the host's own
//! systemd 252 (Debian 12) booted by systemd-nspawn on a volatile root (the host's /usr, tmpfs
//! everywhere else), or systemd 257 from a Debian trixie root that `scripts/test` builds with
//! debootstrap and caches (`BAKERY_TEST_TRIXIE_ROOT`), booted with `--volatile=overlay` so the
//! cached root stays untouched. Either runs in a mount namespace private to the test, with its
//! own cgroup, loop devices for systemd-sysext, and the host's network (so 127.0.0.1 reaches the
//! test's servers). Boots in well under a second (252) or about two seconds (257).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Run;

/// A directory bound into the container.
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
    pub writable: bool,
}

/// The systemd a test node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Systemd {
    /// The host's: Debian 12, no systemd-sysupdate, no varlink sysext.
    V252,
    /// Debian trixie's: the real systemd-sysupdate, varlink io.systemd.sysext, `.transfer` files.
    V257,
}

/// Where `scripts/test` (and so CI) puts the cached trixie root.
pub const TRIXIE_ROOT_VAR: &str = "BAKERY_TEST_TRIXIE_ROOT";

impl Systemd {
    pub const BOTH: [Systemd; 2] = [Systemd::V252, Systemd::V257];

    /// The directory to boot: `/` for the host, the trixie root for 257.
    fn directory(self) -> Result<PathBuf, String> {
        match self {
            Systemd::V252 => Ok(PathBuf::from("/")),
            Systemd::V257 => {
                let root = std::env::var_os(TRIXIE_ROOT_VAR).map(PathBuf::from).ok_or_else(|| {
                    format!("{TRIXIE_ROOT_VAR} is not set (scripts/test builds the Debian trixie root and sets it)")
                })?;
                if !root.join("usr/lib/systemd/systemd-sysupdate").exists() {
                    return Err(format!("{} is not a Debian trixie root with systemd-sysupdate", root.display()));
                }
                Ok(root)
            }
        }
    }

    /// Whether a node on this systemd can be booted here: root, and (for 257) the trixie root.
    /// Elsewhere it prints why the test skips; in CI (`CI` set) a skip is a failure.
    pub fn available(self, test: &str) -> bool {
        if !super::root_or_skip(test) {
            return false;
        }
        match self.directory() {
            Ok(_) => true,
            Err(why) => {
                assert!(std::env::var_os("CI").is_none(), "{test} cannot run in CI: {why}");
                eprintln!("skipping {test} on systemd {}: {why}", self.number());
                false
            }
        }
    }

    pub fn number(self) -> u32 {
        match self {
            Systemd::V252 => 252,
            Systemd::V257 => 257,
        }
    }
}

pub struct Container {
    pub systemd: Systemd,
    nspawn: Child,
    pub pid1: u32,
    work: tempfile::TempDir,
    cgroups: Vec<PathBuf>,
}

fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let unified = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_end_matches('/').to_string();
    let named = own
        .lines()
        .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        .unwrap_or("/")
        .trim_end_matches('/')
        .to_string();
    let mut out = Vec::new();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        out.push(PathBuf::from(format!("/sys/fs/cgroup{unified}/{name}")));
    } else {
        if Path::new("/sys/fs/cgroup/unified").is_dir() {
            out.push(PathBuf::from(format!("/sys/fs/cgroup/unified{unified}/{name}")));
        }
        if Path::new("/sys/fs/cgroup/systemd").is_dir() {
            out.push(PathBuf::from(format!("/sys/fs/cgroup/systemd{named}/{name}")));
        }
    }
    out
}

impl Container {
    /// Boots the host's systemd (252) with `binds`.
    pub fn boot(binds: &[Bind]) -> Container {
        Container::boot_on(Systemd::V252, binds)
    }

    /// Boots `systemd` with the suite's own `bakery` bound in at its host path (returned, so
    /// `node.run(&[exe, ...])` runs it) and `shared` at /srv/bakery.
    pub fn with_bakery(systemd: Systemd, shared: &Path, writable: bool) -> (Container, PathBuf) {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_bakery"));
        let dir = exe.parent().expect("the binary has a directory").to_path_buf();
        let binds = [
            Bind { host: dir.clone(), container: dir.display().to_string(), writable: false },
            Bind { host: shared.to_path_buf(), container: "/srv/bakery".into(), writable },
        ];
        (Container::boot_on(systemd, &binds), exe)
    }

    /// Boots a container on `systemd` with `binds`; panics with the console log when it does not
    /// come up.
    pub fn boot_on(systemd: Systemd, binds: &[Bind]) -> Container {
        let directory = systemd.directory().unwrap_or_else(|why| panic!("systemd {}: {why}", systemd.number()));
        let work = tempfile::Builder::new().prefix("node").tempdir_in("/tmp").unwrap();
        let name = format!(
            "bakery-test-{}",
            work.path().file_name().unwrap().to_string_lossy().to_lowercase().replace(['.', '_'], "-")
        );
        // a fixed machine-id skips first boot
        let id: String =
            (0..32).map(|i| format!("{:x}", (i * 7 + name.len() + std::process::id() as usize) % 16)).collect();
        std::fs::write(work.path().join("machine-id"), format!("{id}\n")).unwrap();
        // systemd-sysext needs /dev/loopN nodes in the container's private /dev
        let loops: String = (0..256).map(|i| format!("b /dev/loop{i} 0660 root root - 7:{i}\n")).collect();
        std::fs::write(work.path().join("loop.conf"), loops).unwrap();

        let cgroups = cgroup_dirs(&name);
        for dir in &cgroups {
            std::fs::create_dir_all(dir).unwrap();
        }
        let mut args: Vec<String> = vec![
            "--quiet".into(),
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--machine={name}"),
            // the host's /usr on tmpfs; the trixie root under a tmpfs overlay (left untouched)
            if systemd == Systemd::V252 { "--volatile=yes" } else { "--volatile=overlay" }.into(),
            format!("--directory={}", directory.display()),
            "--boot".into(),
            "--console=pipe".into(),
            format!("--bind-ro={}:/etc/machine-id", work.path().join("machine-id").display()),
            "--bind=/dev/loop-control".into(),
            format!("--bind-ro={}:/etc/tmpfiles.d/loop-devices.conf", work.path().join("loop.conf").display()),
        ];
        if systemd == Systemd::V252 {
            args.push("--bind-ro=/etc/ssl/certs".into());
        }
        for bind in binds {
            let kind = if bind.writable { "--bind" } else { "--bind-ro" };
            args.push(format!("{kind}={}:{}", bind.host.display(), bind.container));
        }
        args.extend(["--".into(), "systemd.mask=systemd-machine-id-commit.service".into()]);
        let join_cgroups: String =
            cgroups.iter().map(|c| format!("echo $$ > {}/cgroup.procs; ", c.display())).collect();
        // private towards the host, shared inside (systemd-sysext hands its overlay back through it)
        let script = format!(
            "{join_cgroups}exec unshare --mount --propagation private -- sh -c \
             'mount --make-rshared / && mount -t tmpfs -o mode=0755 tmpfs /run && exec systemd-nspawn \"$@\"' sh \"$@\""
        );
        let console = std::fs::File::create(work.path().join("console.log")).unwrap();
        let nspawn = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("systemd-nspawn (systemd-container) is installed");
        let mut container = Container { systemd, pid1: 0, nspawn, work, cgroups };
        container.pid1 = container.wait_for_pid1();
        let state = container.run(&["systemctl", "is-system-running", "--wait"]);
        assert!(
            state.stdout.trim() == "running",
            "the container did not boot cleanly: {state:?}\n{}",
            container.console()
        );
        container
    }

    /// The container's PID 1 once its manager socket exists (deadline 30 s).
    fn wait_for_pid1(&mut self) -> u32 {
        let nspawn = self.nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn exited with {status}:\n{}", self.console());
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).unwrap_or_default();
            for child in children.split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" && Path::new(&format!("/proc/{child}/root/run/systemd/private")).exists() {
                    return child.parse().unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the container's systemd did not start within 30 s:\n{}", self.console());
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(self.work.path().join("console.log")).unwrap_or_default()
    }

    /// A command run inside with all of PID 1's namespaces and a clean environment; killing the
    /// nsenter process kills the command too.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        command.args(["-t", &self.pid1.to_string(), "-a", "setpriv", "--pdeathsig", "KILL", "--"]).args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        super::run(&mut self.command(args))
    }

    /// `sh -c script` inside.
    pub fn sh(&self, script: &str) -> Run {
        self.run(&["sh", "-c", script])
    }

    /// Writes `contents` to `path` inside the container.
    pub fn write(&self, path: &str, contents: &[u8]) {
        let mut child = self
            .command(&["sh", "-c", &format!("mkdir -p \"$(dirname '{path}')\" && cat > '{path}'")])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(contents).unwrap();
        assert!(child.wait().unwrap().success(), "writing {path} in the container");
    }

    pub fn read(&self, path: &str) -> String {
        self.run(&["cat", path]).stdout
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn halt the container; SIGKILL of its PID 1 is the fallback.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let pid1 = self.pid1;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.nspawn.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = Command::new("kill").args(["-KILL", &pid1.to_string()]).status();
                    let _ = self.nspawn.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        for dir in &self.cgroups {
            remove_cgroup(dir);
        }
    }
}

fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
