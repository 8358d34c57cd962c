//! A simulated fleet under a controller with no memory: every step a fresh `decide` whose
//! starts are sometimes only half applied (killed mid-way) and whose status writes are
//! sometimes lost, checked against the budget after every start.

use super::*;

/// A tiny deterministic random source for the simulation.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// Unavailable by the definition, computed apart from `decide`.
fn unavailable(nodes: &[N], min_ready: i64, now: Timestamp) -> usize {
    nodes
        .iter()
        .filter(|n| {
            let n = &n.0;
            let a = |k: &str| n.annotations.get(k).map(String::as_str);
            let target = a(&format!("{TARGET}{EXT}"));
            let status = a(&format!("{STATUS}{EXT}"));
            let settled = |t: &str| {
                status == Some(t)
                    && n.up_to_date_since.zip(n.ready_since).is_some_and(|(u, r)| u.max(r) + secs(min_ready) <= now)
            };
            let failed = |t: &str| matches!(a(STATE), Some("failed" | "rolled-back")) && status != Some(t);
            let in_flight = target.is_some_and(|t| !settled(t) && !failed(t));
            in_flight
                || n.ready_since.is_none()
                || n.unschedulable
                || matches!(a(STATE), Some("staging" | "activating"))
        })
        .count()
}

/// One simulated fleet: the agents follow their state machine (stage, activate with a cordon,
/// report, some slow, some rolling back), kured cordons and Nodes go NotReady at random, Nodes
/// join and leave; the controller is a fresh `decide` every step whose starts are sometimes
/// only half applied (killed mid-way) and whose status writes are sometimes lost. Returns the
/// final status and the most Nodes the controller ever left unavailable after starting one.
fn simulate(seed: u64, rollbacks: &[&str], failure_budget: i64) -> (ExtensionRolloutStatus, usize) {
    let mut rng = Lcg(seed);
    let min_ready = 20;
    let mut r = rollout(|s| {
        s.max_unavailable = Some(IntOrString::String("10%".into()));
        s.failure_budget = failure_budget;
        s.min_ready_seconds = min_ready;
    });
    let mut nodes = fleet(40);
    let mut now = at(NOW);
    let mut targeted: BTreeMap<String, usize> = BTreeMap::new();
    let mut worst = 0;
    let mut joined = 0;
    for step in 0..3000 {
        now += secs(10);
        // the world moves
        for n in nodes.iter_mut() {
            let name = n.0.name.clone();
            let v = &mut n.0;
            // kured or an admin cordons for a while; Nodes go NotReady for a while
            if v.annotations.contains_key("bakery.dev/cordoned") {
            } else if v.unschedulable {
                v.unschedulable = !rng.chance(200);
            } else {
                v.unschedulable = rng.chance(3);
            }
            if v.ready_since.is_none() {
                v.ready_since = rng.chance(200).then_some(now);
            } else if rng.chance(3) {
                v.ready_since = None;
            }
            let target = v.annotations.get(&format!("{TARGET}{EXT}")).cloned();
            let state = v.annotations[STATE].clone();
            let Some(target) = target else { continue };
            if v.annotations[&format!("{STATUS}{EXT}")] == target || state == "rolled-back" || v.ready_since.is_none() {
                continue;
            }
            if !rng.chance(if name.ends_with('7') { 100 } else { 500 }) {
                continue; // slow agents
            }
            match state.as_str() {
                "idle" => {
                    v.annotations.insert(STATE.into(), "staging".into());
                    v.up_to_date_since = None;
                }
                "staging" => {
                    v.annotations.insert(STATE.into(), "activating".into());
                    if !v.unschedulable {
                        v.unschedulable = true;
                        v.annotations.insert("bakery.dev/cordoned".into(), "true".into());
                    }
                }
                _ => {
                    if rollbacks.contains(&name.as_str()) {
                        v.annotations.insert(STATE.into(), "rolled-back".into());
                        v.annotations.insert(MESSAGE.into(), format!("{EXT}: rolled back"));
                    } else {
                        v.annotations.insert(format!("{STATUS}{EXT}"), target.clone());
                        v.annotations.insert(STATE.into(), "idle".into());
                        v.up_to_date_since = Some(now);
                    }
                    if v.annotations.remove("bakery.dev/cordoned").is_some() {
                        v.unschedulable = false;
                    }
                }
            }
        }
        if step % 97 == 50 && joined < 3 {
            joined += 1;
            nodes.push(node(&format!("node-new-{joined}")));
        }
        if step == 120 {
            nodes.retain(|n| n.0.name != "node-05");
        }

        // a controller started afresh: everything it knows is the API's
        let d = decide(&r, &views(&nodes), &[], now);
        let applied = if rng.chance(100) { d.start.len() / 2 } else { d.start.len() };
        for start in &d.start[..applied] {
            let n = nodes.iter_mut().find(|n| n.0.name == start.node).unwrap();
            assert_ne!(
                n.0.annotations.get(&format!("{TARGET}{EXT}")).map(String::as_str),
                Some(V),
                "{} started twice",
                start.node
            );
            n.0.annotations.insert(format!("{TARGET}{EXT}"), V.into());
            *targeted.entry(start.node.clone()).or_default() += 1;
        }
        if applied > 0 {
            let after = unavailable(&nodes, min_ready, now);
            assert!(
                after <= d.status.max_unavailable as usize,
                "step {step}: {after} unavailable after starting {applied}"
            );
            worst = worst.max(after);
        }
        if !rng.chance(100) {
            r.status = Some(d.status.clone());
        }
        let settled_down = d.status.in_flight == 0 && d.start.is_empty();
        // (once every Node that joins has joined)
        if step > 250 && settled_down && matches!(d.status.phase, Phase::Complete | Phase::Halted) {
            for rolled in rollbacks {
                assert!(targeted.get(*rolled).is_none_or(|n| *n == 1), "{rolled} was retried");
            }
            return (d.status, worst);
        }
    }
    panic!("the simulated rollout did not finish: {:?}", r.status);
}

#[test]
fn a_memoryless_controller_never_exceeds_the_budget_and_finishes() {
    for seed in 1..=5 {
        let (status, worst) = simulate(seed, &["node-11", "node-23"], 2);
        assert_eq!(status.phase, Phase::Complete, "seed {seed}: {status:?}");
        assert_eq!((status.failed, status.updated, status.selected), (2, 40, 42), "seed {seed}");
        assert_eq!(worst, 4, "seed {seed}: the budget (10% of 40) is used, never exceeded");
    }
    for seed in 1..=5 {
        let (status, _) = simulate(seed, &["node-02", "node-03", "node-04"], 2);
        assert_eq!(status.phase, Phase::Halted, "seed {seed}: {status:?}");
        assert_eq!(status.failed, 3, "seed {seed}");
    }
}
