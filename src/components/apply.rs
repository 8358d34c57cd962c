//! Carrying out a plan on the node, step by step: files written atomically (and only when their
//! content or mode differs), services through systemd over D-Bus, scripts with a timeout and
//! their output recorded, sysext images through the node update and refresh paths. Each
//! component is recorded as it completes, so a failure leaves an accurate record and the next run
//! resumes; restarts run once at the end and stay recorded until they succeed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::model::ServiceState;
use super::plan::{Change, Plan};
use super::render::Action;
use crate::model::Mirrors;
use crate::node::config::NodeConfig;
use crate::node::records::{ComponentRecord, Failure, Outcome, Records, ReleaseRecord, ScriptRun};
use crate::node::systemd::Systemd;
use crate::node::{self, update};
use crate::pipeline::http::Http;
use crate::sysupdate::update::write_symlink;
use crate::util::{atomic, time};

/// Serialises bootstraps (refresh has its own lock, which the extension step takes).
pub const LOCK: &str = "run/bakery/bootstrap.lock";
/// Script output kept per run.
const OUTPUT_LIMIT: usize = 16 * 1024;

/// The node a plan runs on.
pub struct Node<'a, S: Systemd> {
    pub root: &'a Path,
    pub config: &'a NodeConfig,
    pub http: &'a Http,
    pub mirrors: &'a Mirrors,
    /// None with `--root`: unit files are enabled with `systemctl --root`, nothing is started.
    pub systemd: Option<&'a S>,
}

/// What happened to one component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Done {
    pub component: String,
    pub version: String,
    /// One line per action.
    pub steps: Vec<String>,
}

/// Runs `plan`; returns what each component did.
pub async fn apply<S: Systemd>(node: &Node<'_, S>, plan: &Plan) -> Result<Vec<Done>> {
    let _lock = crate::node::lock::acquire_file(node.root, LOCK)?;
    let root = node.root;
    let current = Records::load(root)?;
    let recorded = current.release.as_ref().is_some_and(|r| r.version == plan.release && r.role == plan.role);
    if plan.is_empty() && recorded && current.failure.is_none() {
        return Ok(Vec::new()); // nothing to change, nothing to write
    }
    let mut reload = false;
    let mut done = Vec::new();
    for planned in plan.components.iter().filter(|c| c.runs()) {
        let mut steps = Vec::new();
        let mut scripts = Vec::new();
        for action in &planned.actions {
            let line = execute(node, action, &mut reload, &mut scripts)
                .await
                .with_context(|| format!("{} {}: {}", planned.name, planned.version, action.describe()));
            // the failure (with a failed script's output) is recorded; the component is not
            if let Err(e) = line {
                let failure = Failure {
                    component: planned.name.clone(),
                    version: planned.version.clone(),
                    message: crate::error::describe(&e),
                    output: scripts.last().filter(|r| r.exit != 0).map(|r| r.output.clone()),
                    at: time::now_rfc3339(),
                };
                edit(root, |records| records.failure = Some(failure))?;
                return Err(e);
            }
            steps.push(line?);
        }
        edit(root, |records| {
            for unit in planned.actions.iter().filter_map(Action::restarts) {
                if !records.pending_restarts.iter().any(|u| u == unit) {
                    records.pending_restarts.push(unit.to_string());
                }
            }
            if planned.change == Change::Remove {
                records.components.remove(&planned.name);
            } else {
                let record = ComponentRecord {
                    version: planned.version.clone(),
                    release: plan.release.clone(),
                    position: planned.position,
                    installed_at: time::now_rfc3339(),
                    uninstall: planned.uninstall.clone(),
                    scripts,
                };
                records.components.insert(planned.name.clone(), record);
            }
        })?;
        tracing::info!("{} {}: {}", planned.name, planned.version, change_word(&planned.change));
        done.push(Done { component: planned.name.clone(), version: planned.version.clone(), steps });
    }
    // unit files written or removed since the last service step
    if let (Some(systemd), true) = (node.systemd, reload) {
        systemd.reload().await?;
    }
    if !plan.restarts.is_empty() {
        if let Some(systemd) = node.systemd {
            for unit in &plan.restarts {
                tracing::info!("restarting {unit}");
                let result = systemd.restart(unit).await?;
                if result != "done" {
                    bail!("restarting {unit}: its job ended {result:?} (see journalctl -u {unit})");
                }
                edit(root, |records| records.pending_restarts.retain(|u| u != unit))?;
            }
        } else {
            tracing::info!("not restarting {} under --root", plan.restarts.join(", "));
            edit(root, |records| records.pending_restarts.clear())?;
        }
    }
    edit(root, |records| {
        records.failure = None;
        records.release = Some(ReleaseRecord {
            version: plan.release.clone(),
            role: plan.role.clone(),
            completed_at: time::now_rfc3339(),
        });
    })
    .map(|()| done)
}

/// Reads the records afresh, changes them and writes them back, under the records' lock: an
/// `extension` step's refresh (or a `node refresh` beside this run) writes them too, so a copy
/// held across steps would undo its work.
fn edit(root: &Path, change: impl FnOnce(&mut Records)) -> Result<()> {
    crate::node::records::edit(root, change)
}

fn change_word(change: &Change) -> String {
    match change {
        Change::Install => "installed".into(),
        Change::Upgrade { from } => format!("upgraded from {from}"),
        Change::Downgrade { from } => format!("downgraded from {from}"),
        Change::Remove => "removed".into(),
        Change::Keep => "kept".into(),
    }
}

/// A node path under the root, its directory resolved inside the root ([`node::root`]): the
/// entry itself is what a step writes, removes or links.
fn entry(root: &Path, path: &str) -> Result<PathBuf> {
    node::root::entry(root, path)
}

/// Whether writing `path` means systemd should reload before it starts anything.
fn unit_path(path: &str) -> bool {
    path.contains("/systemd/")
}

async fn execute<S: Systemd>(
    node: &Node<'_, S>,
    action: &Action,
    reload: &mut bool,
    scripts: &mut Vec<ScriptRun>,
) -> Result<String> {
    let root = node.root;
    Ok(match action {
        Action::File { dest, mode, contents } => {
            let path = entry(root, dest)?;
            // a link there is replaced, never written through
            let same = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == *mode)
                && std::fs::read(&path).is_ok_and(|old| &old == contents);
            if same {
                format!("{dest} unchanged")
            } else {
                write_file(&path, contents, *mode)?;
                *reload |= unit_path(dest);
                format!("wrote {dest}")
            }
        }
        Action::Directory { path, mode } => {
            let dir = node::root::resolve(root, path)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if std::fs::metadata(&dir)?.permissions().mode() & 0o7777 != *mode {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))?;
            }
            format!("directory {path}")
        }
        Action::Absent { path, recursive } => {
            let target = entry(root, path)?;
            match std::fs::symlink_metadata(&target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{path} already absent"),
                Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
                Ok(meta) => {
                    if meta.is_dir() && *recursive {
                        std::fs::remove_dir_all(&target)
                    } else if meta.is_dir() {
                        std::fs::remove_dir(&target)
                    } else {
                        std::fs::remove_file(&target)
                    }
                    .with_context(|| format!("removing {}", target.display()))?;
                    atomic::sync_dir(target.parent().unwrap_or(root))?;
                    *reload |= unit_path(path);
                    format!("removed {path}")
                }
            }
        }
        Action::Link { path, target } => {
            // the link says what the step says; it resolves inside the root like any node path
            let link = entry(root, path)?;
            if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(target)) {
                format!("{path} already links to {target}")
            } else {
                write_symlink(&link, Path::new(target))?;
                *reload |= unit_path(path);
                format!("linked {path} -> {target}")
            }
        }
        Action::Extension { name, version } => extension(node, name, version).await?,
        Action::Service { name, enabled, state } => {
            let mut said = Vec::new();
            match node.systemd {
                Some(systemd) => {
                    if std::mem::take(reload) {
                        systemd.reload().await?;
                    }
                    if let Some(enabled) = enabled {
                        let changed = systemd.enable(name, *enabled).await?;
                        let word = if *enabled { "enabled" } else { "disabled" };
                        said.push(if changed { word.to_string() } else { format!("already {word}") });
                        if changed {
                            systemd.reload().await?;
                        }
                    }
                    match state {
                        Some(ServiceState::Started) => said.push(job(systemd.start(name).await?, name, "started")?),
                        Some(ServiceState::Stopped) => said.push(job(systemd.stop(name).await?, name, "stopped")?),
                        Some(ServiceState::Restarted) => said.push("restart at the end".into()),
                        None => {}
                    }
                }
                None => {
                    if let Some(enabled) = enabled {
                        let verb = if *enabled { "enable" } else { "disable" };
                        let out = std::process::Command::new("systemctl")
                            .arg(format!("--root={}", root.display()))
                            .args([verb, "--quiet", name])
                            .output()
                            .context("running systemctl")?;
                        if !out.status.success() {
                            bail!("systemctl --root {verb} {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
                        }
                        said.push(format!("{verb}d"));
                    }
                    if state.is_some() {
                        said.push("not started or stopped under --root".into());
                    }
                }
            }
            format!("{name}: {}", said.join(", "))
        }
        Action::Script { run, timeout } => {
            let ran = script(root, run, Duration::from_secs(*timeout)).await?;
            let (exit, last) = (ran.exit, ran.output.lines().last().unwrap_or_default().to_string());
            scripts.push(ran);
            if exit != 0 {
                bail!("the script exited {exit}: {last}");
            }
            format!("ran {run:?}")
        }
    })
}

fn job(result: String, unit: &str, word: &str) -> Result<String> {
    if result == "done" { Ok(word.to_string()) } else { Err(anyhow!("{unit}: its job ended {result:?}")) }
}

/// Writes `contents` with `mode` by temp file, fsync and rename (directories created).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = atomic::temp_beside_mode(path, mode & 0o777)?;
    tmp.write_all(contents).with_context(|| format!("writing {}", tmp.path().display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    atomic::persist(tmp, path)
}

/// Stages, links and refreshes an extension, unless that version is already active.
async fn extension<S: Systemd>(node: &Node<'_, S>, name: &str, version: &str) -> Result<String> {
    let records = Records::load(node.root)?;
    let active = records.extensions.get(name).and_then(|r| r.active.as_ref());
    let link = node::root::on_disk(node.root, &format!("etc/extensions/{name}.raw"));
    if active.is_some_and(|a| crate::cluster::contract::same_version(&a.version, version)) && link.exists() {
        return Ok(format!("{name} {version} already active"));
    }
    let prepared = update::stage_exact(node.root, node.config, node.http, node.mirrors, name, version).await?;
    let report = prepared.activate(node.root, node.config, node.systemd).await?;
    let line = report.lines.iter().find(|l| l.extension == name).ok_or_else(|| anyhow!("{name} is not linked"))?;
    match line.outcome {
        Outcome::Activated | Outcome::Unchanged => Ok(format!("{name} {version} active")),
        _ => Err(anyhow!("{name} {version}: {}", line.message)),
    }
}

/// Runs `/bin/sh -c run` in the root with a timeout; output is kept (the end, when long).
async fn script(root: &Path, run: &str, timeout: Duration) -> Result<ScriptRun> {
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(run)
        .current_dir(root)
        .env("BAKERY_ROOT", root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting /bin/sh")?;
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, collect).await {
        Ok(done) => done,
        Err(_) => bail!("the script did not finish within {} s and was killed", timeout.as_secs()),
    };
    let status = status.context("waiting for the script")?;
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    if output.len() > OUTPUT_LIMIT {
        let cut = output.len() - OUTPUT_LIMIT;
        let cut = (cut..output.len()).find(|i| output.is_char_boundary(*i)).unwrap_or(output.len());
        output = format!("[...]{}", &output[cut..]);
    }
    Ok(ScriptRun { run: run.to_string(), exit: status.code().unwrap_or(-1), output, at: time::now_rfc3339() })
}
