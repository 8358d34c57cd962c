//! `--metrics-addr`: the Prometheus exposition (served by `util::prometheus`) with the active
//! versions (from the records, so manual refreshes show too), upgrade results by extension, the
//! agent's state and the time of its last refresh.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::cluster::contract::State;
use crate::node::records::Records;
use crate::util::prometheus::{self, escape};

#[derive(Debug, Default)]
struct Counters {
    /// (extension, result) → count
    upgrades: BTreeMap<(String, &'static str), u64>,
    last_refresh: Option<u64>,
    state: Option<State>,
}

/// What the endpoint shows; cheap to clone and share with the agent.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    counters: Arc<Mutex<Counters>>,
}

impl Metrics {
    /// Counts an upgrade result: `activated`, `rolled_back`, `failed`.
    pub fn upgrade(&self, extension: &str, result: &'static str) {
        *self.counters.lock().expect("metrics lock").upgrades.entry((extension.to_string(), result)).or_default() += 1;
    }

    pub fn refreshed(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs());
        self.counters.lock().expect("metrics lock").last_refresh = now.ok();
    }

    pub fn state(&self, state: State) {
        self.counters.lock().expect("metrics lock").state = Some(state);
    }

    /// The text exposition, with the active versions from `records`.
    pub fn render(&self, records: &Records) -> String {
        let counters = self.counters.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP bakery_extension_active The active version of each extension (1 per extension).\n");
        out.push_str("# TYPE bakery_extension_active gauge\n");
        for (ext, record) in &records.extensions {
            if let Some(active) = &record.active {
                let _ = writeln!(
                    out,
                    "bakery_extension_active{{extension=\"{}\",version=\"{}\"}} 1",
                    escape(ext),
                    escape(&active.version)
                );
            }
        }
        out.push_str("# HELP bakery_upgrades_total Upgrades the agent ran, by extension and result.\n");
        out.push_str("# TYPE bakery_upgrades_total counter\n");
        for ((ext, result), count) in &counters.upgrades {
            let _ = writeln!(out, "bakery_upgrades_total{{extension=\"{}\",result=\"{result}\"}} {count}", escape(ext));
        }
        out.push_str("# HELP bakery_last_refresh_timestamp_seconds When the agent last refreshed (0: not yet).\n");
        out.push_str("# TYPE bakery_last_refresh_timestamp_seconds gauge\n");
        let _ = writeln!(out, "bakery_last_refresh_timestamp_seconds {}", counters.last_refresh.unwrap_or(0));
        out.push_str("# HELP bakery_state The agent's state (1 for the current one).\n");
        out.push_str("# TYPE bakery_state gauge\n");
        for state in [State::Idle, State::Staging, State::Activating, State::Failed, State::RolledBack] {
            let value = u8::from(counters.state == Some(state));
            let _ = writeln!(out, "bakery_state{{state=\"{}\"}} {value}", state.as_str());
        }
        out
    }

    /// Serves `/metrics` on `addr` until the task is aborted.
    pub async fn serve(self, addr: SocketAddr, root: PathBuf) -> Result<tokio::task::JoinHandle<()>> {
        let render = move || self.render(&Records::load(&root).unwrap_or_default());
        Ok(prometheus::serve(addr, Arc::new(render)).await?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::records::Activation;

    #[test]
    fn the_exposition_names_versions_results_and_state() {
        let metrics = Metrics::default();
        metrics.upgrade("kubernetes", "activated");
        metrics.upgrade("kubernetes", "activated");
        metrics.upgrade("kubernetes", "rolled_back");
        metrics.state(State::RolledBack);
        let mut records = Records::default();
        records.activate(
            "kubernetes",
            Activation {
                version: "v1.32.3".into(),
                image: String::new(),
                sha256: String::new(),
                artifacts: BTreeMap::new(),
                activated_at: String::new(),
            },
        );
        let text = metrics.render(&records);
        for line in [
            "bakery_extension_active{extension=\"kubernetes\",version=\"v1.32.3\"} 1",
            "bakery_upgrades_total{extension=\"kubernetes\",result=\"activated\"} 2",
            "bakery_upgrades_total{extension=\"kubernetes\",result=\"rolled_back\"} 1",
            "bakery_last_refresh_timestamp_seconds 0",
            "bakery_state{state=\"rolled-back\"} 1",
            "bakery_state{state=\"idle\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
