//! What a kubectl user does: the real kubectl applies the example ExtensionRollout
//! (examples/rollout/kubernetes-workers.yaml) to the in-process API server (which has the CRD of
//! deploy/crd.yaml; no real API server can run here), a real `bakery rollout controller` takes it
//! up, and `kubectl get extensionrollouts` shows its printer columns with the controller's status.

use std::path::Path;
use std::process::Command;

use super::fleet::{ROLLOUTS, World};
use super::{Controller, WAIT, rollout_status};
use crate::support::{self, bakery, run};

#[test]
fn a_kubectl_user_applies_the_example_rollout_and_the_controller_takes_it_up() {
    if Command::new("kubectl").args(["version", "--client"]).output().is_err() {
        support::skip("a_kubectl_user_applies_the_example_rollout_and_the_controller_takes_it_up", "no kubectl");
        return;
    }
    let world = World::new(4, 1);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rollout/kubernetes-workers.yaml");
    let kubectl = |args: &[&str]| {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&world.kubeconfig).arg("--cache-dir").arg(world.dir.path().join("kube"));
        run(command.args(args)).expect_code(0)
    };
    // the model serves no OpenAPI documents, so kubectl cannot validate
    let applied = kubectl(&["apply", "--server-side", "--validate=false", "-f", example.to_str().unwrap()]);
    assert!(
        applied.stdout.contains("extensionrollout.bakery.dev/kubernetes-workers serverside-applied"),
        "{applied:?}"
    );

    let _controller = Controller::start(&world, "replica-a");
    let status = world.api.wait_for("the controller's status", WAIT, |view| {
        let status = rollout_status(view, "kubernetes-workers");
        (status["observedGeneration"] == 1).then_some(status)
    });
    // the four workers, not the control-plane Node; the phase depends on the clock (the window)
    assert_eq!(status["selected"], 4, "{status}");
    let phase = status["phase"].as_str().unwrap().to_string();
    assert!(["Pending", "Progressing", "Paused"].contains(&phase.as_str()), "{status}");

    let table = kubectl(&["get", "extensionrollouts"]).stdout;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "EXTENSION", "VERSION", "PHASE", "UPDATED", "SELECTED", "AGE"], "{table}");
    assert_eq!(
        lines[1][..6],
        ["kubernetes-workers", "kubernetes", "v1.32.3", phase.as_str(), &status["updated"].to_string(), "4"],
        "{table}"
    );
    let shown = run(bakery(world.dir.path())
        .args(["rollout", "status", "kubernetes-workers", "--kubeconfig"])
        .arg(&world.kubeconfig))
    .expect_code(0);
    assert!(shown.stdout.contains(&phase), "{shown:?}");
    assert!(world.api.get(ROLLOUTS, None, "kubernetes-workers").is_some());
}
