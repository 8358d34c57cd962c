//! systemd over D-Bus (`org.freedesktop.systemd1`, with zbus): reload, restart, start or stop a
//! unit and wait for its job's result, enable or disable unit files, read a unit's state. A small
//! trait, so the decision logic is tested without a bus and the real implementation runs against
//! a real systemd in the node tests.

use std::future::Future;

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use zbus::OwnedObjectPath;

/// A unit's state as health checks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `activating`, `failed`, `inactive`, ...
    pub active_state: String,
    /// `running`, `exited`, `auto-restart`, `dead`, ...
    pub sub_state: String,
    /// How often systemd restarted the service (`NRestarts`).
    pub n_restarts: u32,
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}, {} restarts", self.active_state, self.sub_state, self.n_restarts)
    }
}

/// What the node agent needs from systemd.
pub trait Systemd {
    /// `daemon-reload`.
    fn reload(&self) -> impl Future<Output = Result<()>>;
    /// Restarts `unit` and returns its job's result (`done`, `failed`, `timeout`, ...).
    fn restart(&self, unit: &str) -> impl Future<Output = Result<String>>;
    /// Clears `unit`'s failed state and start rate limit (`systemctl reset-failed`).
    fn reset_failed(&self, unit: &str) -> impl Future<Output = Result<()>>;
    /// Starts `unit` (a no-op when it runs) and returns its job's result.
    fn start(&self, unit: &str) -> impl Future<Output = Result<String>>;
    /// Stops `unit` and returns its job's result.
    fn stop(&self, unit: &str) -> impl Future<Output = Result<String>>;
    /// Enables (true) or disables `unit`'s unit file; true when that changed anything.
    fn enable(&self, unit: &str, enabled: bool) -> impl Future<Output = Result<bool>>;
    /// The unit's current state.
    fn state(&self, unit: &str) -> impl Future<Output = Result<UnitState>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<Vec<(String, String, String)>>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

#[zbus::proxy(interface = "org.freedesktop.systemd1.Unit", default_service = "org.freedesktop.systemd1")]
trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(interface = "org.freedesktop.systemd1.Service", default_service = "org.freedesktop.systemd1")]
trait Service {
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
}

/// The real systemd, on the system bus. (systemd's private socket is no fallback: it answers as
/// `org.freedesktop.systemd1`, a sender name zbus refuses on peer-to-peer connections.)
pub struct Bus {
    connection: zbus::Connection,
}

impl Bus {
    pub async fn connect() -> Result<Self> {
        let connection =
            zbus::Connection::system().await.context("connecting to the D-Bus system bus (is dbus running?)")?;
        // systemd sends job signals only to subscribed clients; once per connection
        ManagerProxy::new(&connection).await?.subscribe().await.context("subscribing to systemd's job signals")?;
        Ok(Self { connection })
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>> {
        Ok(ManagerProxy::new(&self.connection).await?)
    }

    /// Queues a `verb` (restart, start, stop) job for `unit` and waits for its result.
    async fn job(&self, unit: &str, verb: &str) -> Result<String> {
        let manager = self.manager().await?;
        // Listen before asking, so the job cannot finish unseen.
        let mut removed = manager.receive_job_removed().await?;
        let job = match verb {
            "restart" => manager.restart_unit(unit, "replace").await,
            "start" => manager.start_unit(unit, "replace").await,
            _ => manager.stop_unit(unit, "replace").await,
        }
        .with_context(|| format!("{verb}ing {unit}"))?;
        while let Some(signal) = removed.next().await {
            let args = signal.args()?;
            if args.job == job {
                return Ok(args.result);
            }
        }
        Err(anyhow!("systemd's job signals ended before the {verb} of {unit} finished"))
    }
}

impl Systemd for Bus {
    async fn reload(&self) -> Result<()> {
        self.manager().await?.reload().await.context("reloading systemd")
    }

    async fn restart(&self, unit: &str) -> Result<String> {
        self.job(unit, "restart").await
    }

    async fn reset_failed(&self, unit: &str) -> Result<()> {
        self.manager().await?.reset_failed_unit(unit).await.with_context(|| format!("resetting {unit}"))
    }

    async fn start(&self, unit: &str) -> Result<String> {
        self.job(unit, "start").await
    }

    async fn stop(&self, unit: &str) -> Result<String> {
        self.job(unit, "stop").await
    }

    async fn enable(&self, unit: &str, enabled: bool) -> Result<bool> {
        let manager = self.manager().await?;
        let changes = if enabled {
            manager.enable_unit_files(&[unit], false, true).await.with_context(|| format!("enabling {unit}"))?.1
        } else {
            manager.disable_unit_files(&[unit], false).await.with_context(|| format!("disabling {unit}"))?
        };
        Ok(!changes.is_empty())
    }

    async fn state(&self, unit: &str) -> Result<UnitState> {
        let path = self.manager().await?.load_unit(unit).await.with_context(|| format!("looking up {unit}"))?;
        let unit_proxy = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let service = ServiceProxy::builder(&self.connection)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(UnitState {
            active_state: unit_proxy.active_state().await?,
            sub_state: unit_proxy.sub_state().await?,
            // not a service (a path or timer unit): never restarted by systemd
            n_restarts: service.n_restarts().await.unwrap_or(0),
        })
    }
}
