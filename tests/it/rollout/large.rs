//! A thousand Nodes: the real controller against simulated agents that are slow, roll back, go
//! NotReady, are deleted or cordoned by kured mid-rollout, with the controller killed (-9) and
//! restarted halfway; and a fleet whose rollbacks exceed the failure budget. Measures come from
//! the recorded history, computed incrementally.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::fleet::{self, Behaviour, FleetAgents, World};
use super::{Controller, LEASES, rollout_status, target_patches, wait_phase};

const NODES: usize = 1000;

/// The k-th Nodes to be targeted that roll back: far enough apart (200) that at most one is in
/// flight at a time with maxUnavailable 100.
const ROLL_BACK: [usize; 5] = [150, 350, 550, 750, 950];

fn behaviour() -> Behaviour {
    Behaviour {
        roll_back: ROLL_BACK.into_iter().collect(),
        slow_every: Some(10),
        slow: Duration::from_millis(300),
        reboot_every: Some(50),
    }
}

fn targeted_count(world: &World) -> usize {
    world.api.with(|v| fleet::targeted(v).len())
}

/// 1,000 workers, maxUnavailable 10%, failureBudget 5 for the five planned rollbacks; every
/// tenth agent slow, every fiftieth rebooting (NotReady) while it activates, ten Nodes NotReady
/// for a while at the start, three cordoned by kured for a while, three deleted mid-rollout,
/// the controller killed with -9 at half-way and started again. It completes; never more than
/// 100 unavailable at any write; nothing left cordoned and the controller never wrote
/// spec.unschedulable (only targets); no Node targeted twice; deleted Nodes dropped; the
/// rolled-back ones never retried; at most 4 controller writes per Node.
#[test]
fn a_thousand_nodes_roll_out_within_the_budget() {
    let world = World::new(NODES, 2);
    let names = world.selected();
    let not_ready: Vec<String> = names.iter().skip(500).step_by(50).take(10).cloned().collect();
    for name in &not_ready {
        world.api.set_node_ready(name, false).unwrap();
    }
    let kured: Vec<String> = names.iter().skip(303).step_by(200).take(3).cloned().collect();
    for name in &kured {
        fleet::kured(&world.api, name, true);
    }
    let agents = FleetAgents::start(&world.api, behaviour());
    let mut first = Controller::start(&world, "c1");
    world.create_rollout("workers", json!({ "maxUnavailable": "10%", "failureBudget": 5 }));

    world.api.wait_for("200 Nodes targeted", super::WAIT, |v| (fleet::targeted(v).len() >= 200).then_some(()));
    // kured's reboots end and the NotReady Nodes come back
    for name in &kured {
        fleet::kured(&world.api, name, false);
    }
    for name in &not_ready {
        world.api.set_node_ready(name, true).unwrap();
    }
    // three Nodes not yet targeted go away
    let deleted: Vec<String> = world.api.with(|v| {
        let targeted: BTreeSet<String> = fleet::targeted(v).into_iter().collect();
        v.nodes().keys().filter(|k| k.starts_with('w') && !targeted.contains(*k)).rev().take(3).cloned().collect()
    });
    for name in &deleted {
        world.api.delete_node(name).unwrap();
    }

    world.api.wait_for("half the Nodes targeted", super::WAIT, |v| (fleet::targeted(v).len() >= 500).then_some(()));
    first.kill();
    let _second = Controller::start(&world, "c1");
    let status = wait_phase(&world, "workers", "Complete");
    drop(agents);

    let remaining = NODES - deleted.len();
    assert_eq!(status["selected"].as_u64(), Some(remaining as u64), "deleted Nodes dropped: {status:#}");
    assert_eq!(status["updated"].as_u64(), Some((remaining - ROLL_BACK.len()) as u64), "{status:#}");
    assert_eq!(status["failed"].as_u64(), Some(ROLL_BACK.len() as u64), "{status:#}");

    let history = world.api.history();
    let client = first.client();
    let selected: BTreeSet<String> = names.iter().cloned().collect();
    let most = fleet::max_unavailable(&history, &selected);
    assert!(most <= NODES / 10, "{most} unavailable at once, more than maxUnavailable 10%");
    assert_eq!(world.api.with(fleet::cordoned), Vec::<String>::new(), "nothing left cordoned");
    super::assert_only_targets_written(&history, &client);
    let patched = target_patches(&history, &client);
    assert_eq!(patched.len(), remaining, "every remaining Node targeted once, the deleted ones never");
    assert!(patched.values().all(|n| *n == 1), "no Node targeted twice (nor a failed one retried)");
    assert!(deleted.iter().all(|d| !patched.contains_key(d)), "deleted Nodes were targeted");
    let failed: Vec<&Value> = status["failedNodes"].as_array().unwrap().iter().collect();
    assert_eq!(failed.len(), ROLL_BACK.len());
    assert!(failed.iter().all(|f| f["state"] == "rolled-back"), "{failed:?}");
    let writes = history.by(&client).filter(|w| w.resource != LEASES).count();
    let per_node = writes as f64 / remaining as f64;
    eprintln!(
        "1,000 Nodes: most unavailable {most} (max 100); {writes} controller writes ({per_node:.2} per Node); \
         {} writes in all",
        history.writes.len()
    );
    assert!(per_node <= 4.0, "{writes} controller writes for {remaining} Nodes");
}

/// The same fleet with failureBudget 3 and five planned rollbacks (never two in flight at
/// once): the rollout halts at the fourth failure, budget + 1, and targets nothing more.
#[test]
fn a_thousand_nodes_halt_at_the_failure_budget_plus_one() {
    let world = World::new(NODES, 0);
    let agents = FleetAgents::start(&world.api, Behaviour { slow_every: None, ..behaviour() });
    let controller = Controller::start(&world, "c1");
    world.create_rollout("workers", json!({ "maxUnavailable": "10%", "failureBudget": 3 }));
    let status = wait_phase(&world, "workers", "Halted");
    assert_eq!(status["failed"].as_u64(), Some(4), "halted at budget + 1: {status:#}");
    let at_halt = targeted_count(&world);
    assert!(at_halt < ROLL_BACK[4], "{at_halt} targeted: the fifth rollback was never reached");
    // what was in flight settles; nothing new is targeted
    let settled = world.api.wait_for("in-flight Nodes settled", super::WAIT, |v| {
        let s = rollout_status(v, "workers");
        (s["inFlight"] == 0).then_some(s)
    });
    assert_eq!(settled["phase"], "Halted", "{settled:#}");
    assert_eq!(settled["failed"].as_u64(), Some(4), "{settled:#}");
    drop(agents);
    let history = world.api.history();
    let patched = target_patches(&history, &controller.client());
    assert_eq!(patched.len(), at_halt, "no target after the halt");
    assert!(patched.values().all(|n| *n == 1));
}
