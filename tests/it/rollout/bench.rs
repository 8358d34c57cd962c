//! `scripts/bench-rollout`: a fleet of BENCH_NODES Nodes (1,000 unless set) whose agents answer
//! at once, rolled out by the real controller with maxUnavailable 10%; prints one JSON line
//! (`BENCH_ROLLOUT {...}`) with the figures. Ignored: run it in release mode through the script.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::fleet::{self, Behaviour, FleetAgents, World};
use super::{Controller, LEASES, wait_phase};

/// The controller's peak resident set (VmHWM) in MiB, read from /proc while it runs.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[test]
#[ignore = "a benchmark: scripts/bench-rollout runs it"]
fn fleet() {
    let nodes: usize =
        std::env::var("BENCH_NODES").ok().map(|n| n.parse().expect("BENCH_NODES: a number")).unwrap_or(1000);
    let world = World::new(nodes, 0);
    let agents = FleetAgents::start(&world.api, Behaviour::default());
    let controller = Controller::start(&world, "bench");
    let started = Instant::now();
    world.create_rollout("workers", json!({ "maxUnavailable": "10%" }));
    let status = wait_phase(&world, "workers", "Complete");
    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(controller.child.id());
    drop(agents);

    let history = world.api.history();
    let client = controller.client();
    let selected: BTreeSet<String> = world.selected().into_iter().collect();
    let most = fleet::max_unavailable(&history, &selected);
    let writes = history.by(&client).filter(|w| w.resource != LEASES).count();
    let mut waits = fleet::done_to_next_start(&history, &client);
    waits.sort();
    let pick = |q: f64| waits.get(((waits.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
    let figures = json!({
        "nodes": nodes,
        "max_unavailable": status["maxUnavailable"],
        "max_unavailable_observed": most,
        "stranded_cordoned": world.api.with(fleet::cordoned).len(),
        "complete": status["phase"] == "Complete",
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "writes_per_node": ((writes as f64 / nodes as f64) * 1000.0).round() / 1000.0,
        "peak_rss_mib": (rss * 10.0).round() / 10.0,
        "done_to_next_start_ms_median": millis(pick(0.5)),
        "done_to_next_start_ms_p99": millis(pick(0.99)),
    });
    println!("BENCH_ROLLOUT {figures}");
}
