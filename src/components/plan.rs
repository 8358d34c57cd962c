//! What a bootstrap will do, as a pure function of the records and the wanted release: which
//! components to remove (with the uninstall steps recorded when they were installed), install,
//! upgrade, downgrade or keep, and which services to restart once at the end.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

use super::render::Action;
use crate::model::version::compare;
use crate::node::records::ComponentRecord;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum Change {
    Install,
    Upgrade { from: String },
    Downgrade { from: String },
    Remove,
    Keep,
}

/// One component in the plan with the actions it runs (uninstall steps for a removal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub name: String,
    pub version: String,
    #[serde(flatten)]
    pub change: Change,
    /// Its place in the release.
    pub position: usize,
    pub actions: Vec<Action>,
    /// Uninstall steps to record (installs, upgrades and downgrades).
    #[serde(skip)]
    pub uninstall: Vec<Action>,
}

impl Planned {
    pub fn runs(&self) -> bool {
        self.change != Change::Keep
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub release: String,
    pub role: String,
    /// Removals first (in reverse of their install order), then the release in order.
    pub components: Vec<Planned>,
    /// Each once, after every component: what changed components restart, plus what a failed
    /// earlier run left to restart.
    pub restarts: Vec<String>,
}

impl Plan {
    /// Nothing to do: no component changes and nothing to restart.
    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty() && !self.components.iter().any(Planned::runs)
    }
}

/// A component the release wants, rendered for this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub name: String,
    pub version: String,
    pub install: Vec<Action>,
    pub uninstall: Vec<Action>,
}

/// The plan from what is installed (`records`, `pending_restarts`) to `wanted`.
pub fn plan(
    release: &str,
    role: &str,
    installed: &BTreeMap<String, ComponentRecord>,
    pending_restarts: &[String],
    wanted: Vec<Rendered>,
) -> Plan {
    let mut components = Vec::new();
    let mut removed: Vec<(&String, &ComponentRecord)> =
        installed.iter().filter(|(name, _)| !wanted.iter().any(|w| &w.name == *name)).collect();
    removed.sort_by(|a, b| b.1.position.cmp(&a.1.position).then_with(|| a.0.cmp(b.0)));
    let mut restarts: Vec<String> = Vec::new();
    let mut restart = |actions: &[Action]| {
        for unit in actions.iter().filter_map(Action::restarts) {
            if !restarts.iter().any(|r| r == unit) {
                restarts.push(unit.to_string());
            }
        }
    };
    restart(&pending_restarts.iter().map(|u| restart_action(u)).collect::<Vec<_>>());
    for (name, record) in removed {
        restart(&record.uninstall);
        components.push(Planned {
            name: name.clone(),
            version: record.version.clone(),
            change: Change::Remove,
            position: record.position,
            actions: record.uninstall.clone(),
            uninstall: Vec::new(),
        });
    }
    for (position, component) in wanted.into_iter().enumerate() {
        let change = match installed.get(&component.name) {
            None => Change::Install,
            Some(record) if record.version == component.version => Change::Keep,
            Some(record) => match compare(&component.version, &record.version) {
                Ordering::Less => Change::Downgrade { from: record.version.clone() },
                _ => Change::Upgrade { from: record.version.clone() },
            },
        };
        if change != Change::Keep {
            restart(&component.install);
        }
        let actions = if change == Change::Keep { Vec::new() } else { component.install };
        components.push(Planned {
            name: component.name,
            version: component.version,
            change,
            position,
            actions,
            uninstall: component.uninstall,
        });
    }
    Plan { release: release.to_string(), role: role.to_string(), components, restarts }
}

fn restart_action(unit: &str) -> Action {
    Action::Service { name: unit.to_string(), enabled: None, state: Some(super::model::ServiceState::Restarted) }
}

/// The plan for people.
pub fn describe(plan: &Plan) -> String {
    let mut out = format!("release {} ({})\n", plan.release, plan.role);
    for c in &plan.components {
        let change = match &c.change {
            Change::Install => "install".to_string(),
            Change::Upgrade { from } => format!("upgrade from {from}"),
            Change::Downgrade { from } => format!("downgrade from {from}"),
            Change::Remove => "remove".to_string(),
            Change::Keep => "keep".to_string(),
        };
        out.push_str(&format!("  {} {}: {change}\n", c.name, c.version));
        for action in &c.actions {
            out.push_str(&format!("    {}\n", action.describe()));
        }
    }
    if !plan.restarts.is_empty() {
        out.push_str(&format!("  restart: {}\n", plan.restarts.join(", ")));
    }
    if plan.is_empty() {
        out.push_str("  nothing to do\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::model::ServiceState;

    fn record(version: &str, position: usize, uninstall: Vec<Action>) -> ComponentRecord {
        ComponentRecord {
            version: version.into(),
            release: "r".into(),
            position,
            installed_at: String::new(),
            uninstall,
            scripts: Vec::new(),
        }
    }

    fn restart(unit: &str) -> Action {
        Action::Service { name: unit.into(), enabled: None, state: Some(ServiceState::Restarted) }
    }

    fn wanted(name: &str, version: &str, install: Vec<Action>) -> Rendered {
        Rendered { name: name.into(), version: version.into(), install, uninstall: Vec::new() }
    }

    fn summary(plan: &Plan) -> Vec<(String, String, Change)> {
        plan.components.iter().map(|c| (c.name.clone(), c.version.clone(), c.change.clone())).collect()
    }

    #[test]
    fn the_first_bootstrap_installs_everything_in_release_order() {
        let plan = plan(
            "v1.32.1",
            "worker",
            &BTreeMap::new(),
            &[],
            vec![
                wanted("net", "1", vec![restart("systemd-sysctl.service")]),
                wanted("kubelet", "v1.32.1~1", vec![restart("kubelet.service")]),
            ],
        );
        assert_eq!(
            summary(&plan),
            [("net".into(), "1".into(), Change::Install), ("kubelet".into(), "v1.32.1~1".into(), Change::Install)]
        );
        assert_eq!(plan.restarts, ["systemd-sysctl.service", "kubelet.service"]);
        assert!(!plan.is_empty());
    }

    #[test]
    fn only_changes_run_and_removals_come_first_in_reverse() {
        let gone = Action::Absent { path: "/etc/old".into(), recursive: false };
        let installed = BTreeMap::from([
            ("net".to_string(), record("1", 0, vec![])),
            ("old-a".to_string(), record("1", 1, vec![gone.clone()])),
            ("old-b".to_string(), record("1", 2, vec![])),
            ("kubelet".to_string(), record("v1.32.1~1", 3, vec![])),
            ("cfg".to_string(), record("v1.32.1~2", 4, vec![])),
        ]);
        let next = vec![
            wanted("net", "1", vec![restart("systemd-sysctl.service")]),
            wanted("kubelet", "v1.32.2~1", vec![restart("kubelet.service")]),
            wanted("cfg", "v1.32.1~1", vec![restart("kubelet.service"), restart("containerd.service")]),
        ];
        let plan = plan("v1.32.2", "worker", &installed, &[], next);
        assert_eq!(
            summary(&plan),
            [
                ("old-b".into(), "1".into(), Change::Remove),
                ("old-a".into(), "1".into(), Change::Remove),
                ("net".into(), "1".into(), Change::Keep),
                ("kubelet".into(), "v1.32.2~1".into(), Change::Upgrade { from: "v1.32.1~1".into() }),
                ("cfg".into(), "v1.32.1~1".into(), Change::Downgrade { from: "v1.32.1~2".into() }),
            ]
        );
        assert_eq!(plan.components[1].actions, [gone], "the recorded uninstall steps");
        assert!(plan.components[2].actions.is_empty(), "a kept component runs nothing");
        assert_eq!(plan.restarts, ["kubelet.service", "containerd.service"], "each once; sysctl is unchanged");
    }

    #[test]
    fn an_unchanged_node_has_an_empty_plan_but_pending_restarts_are_kept() {
        let installed = BTreeMap::from([("net".to_string(), record("1", 0, vec![]))]);
        let same = || vec![wanted("net", "1", vec![restart("systemd-sysctl.service")])];
        assert!(plan("r", "worker", &installed, &[], same()).is_empty());
        let resumed = plan("r", "worker", &installed, &["kubelet.service".into()], same());
        assert!(!resumed.is_empty());
        assert_eq!(resumed.restarts, ["kubelet.service"]);
        assert!(describe(&plan("r", "worker", &installed, &[], same())).ends_with("nothing to do\n"));
    }
}
