//! The direct API: what kubelets, admins and simulated node agents do, called from Rust rather
//! than over HTTP. Every call is one short critical section through the same rules as a request
//! (`Store::execute`), gets a resourceVersion, reaches the watches and is recorded in the
//! history under the caller's client name. A fleet of a thousand agents costs a thousand
//! threads' worth of calls, not a thousand HTTP clients.

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::ApiError;
use super::selector::Filter;
use super::watch::{Start, Subscription, register};
use super::write::{Action, Op, PatchBody};
use super::{KubeApi, ResourceType};

/// The client name of the convenience calls (`add_node`, `annotate`, ...).
pub const TEST_CLIENT: &str = "test";

fn node_object(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut all = json!({ "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" });
    for (key, value) in labels {
        all[*key] = json!(value);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": all, "annotations": { "node.alpha.kubernetes.io/ttl": "0" } },
        "spec": { "podCIDR": "10.244.0.0/24" },
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-11-21T00:00:00Z", "lastTransitionTime": "2026-11-21T00:00:00Z",
            }],
            "addresses": [{ "type": "InternalIP", "address": "192.0.2.10" }, { "type": "Hostname", "address": name }],
            "nodeInfo": { "kubeletVersion": "v1.32.3", "architecture": "amd64", "operatingSystem": "linux" },
        },
    })
}

impl KubeApi {
    /// Executes one write for `client`; `resource` is `nodes`, `leases.coordination.k8s.io`, ...
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        client: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        action: Action,
    ) -> Result<Arc<Value>, ApiError> {
        let result = {
            let mut state = self.state();
            let Some(c) = state.store.find(resource) else {
                return Err(ApiError::new(404, "NotFound", &format!("the server does not serve {resource}")));
            };
            let op = Op {
                resource: c,
                namespace: namespace.map(str::to_string),
                name: name.to_string(),
                subresource: subresource.map(str::to_string),
                action,
                client: client.to_string(),
                manager: None,
                dry_run: false,
            };
            state.store.execute(op).map(|done| done.object)
        };
        self.shared.changed.notify_all();
        result
    }

    /// Creates `object` (its `metadata.name` names it).
    pub fn create(
        &self,
        client: &str,
        resource: &str,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        self.write(client, resource, namespace, "", None, Action::Create(object))
    }

    /// Replaces an object (a stale `metadata.resourceVersion` is a 409, as over HTTP).
    pub fn replace(
        &self,
        client: &str,
        resource: &str,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.write(client, resource, namespace, &name, None, Action::Replace(object))
    }

    /// Patches an object (its main resource).
    pub fn patch(
        &self,
        client: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        patch: PatchBody,
    ) -> Result<Arc<Value>, ApiError> {
        self.write(client, resource, namespace, name, None, Action::Patch(patch))
    }

    /// Patches an object's status subresource.
    pub fn patch_status(
        &self,
        client: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        patch: PatchBody,
    ) -> Result<Arc<Value>, ApiError> {
        self.write(client, resource, namespace, name, Some("status"), Action::Patch(patch))
    }

    pub fn delete(&self, client: &str, resource: &str, namespace: Option<&str>, name: &str) -> Result<(), ApiError> {
        self.write(client, resource, namespace, name, None, Action::Delete(Value::Null)).map(drop)
    }

    /// An object as stored now.
    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let key = super::store::key(namespace, name);
        self.state().objects(resource).get(&key).cloned()
    }

    /// Watches `resource` from Rust: every change the selectors (label and field, as in a
    /// request) match, as it happens; with `initial`, the matching objects first as `ADDED`.
    pub fn subscribe(&self, resource: &str, labels: &str, fields: &str, initial: bool) -> Subscription {
        let mut state = self.state();
        let c = state.store.find(resource).unwrap_or_else(|| panic!("the server does not serve {resource}"));
        let kind = state.store.collections[c].ty.kind.clone();
        let filter = Filter::parse(None, Some(labels), Some(fields), &kind).expect("valid selectors");
        let start = if initial { Start::Now } else { Start::After(state.store.rv) };
        let (id, rx) = register(&mut state, c, filter, start, false, true);
        Subscription { shared: self.shared.clone(), c, id, rx }
    }

    /// Installs a CustomResourceDefinition (a parsed `deploy/` manifest): its resources are
    /// served at once, as after `kubectl apply -f crd.yaml`.
    pub fn install_crd(&self, crd: Value) -> Result<Vec<ResourceType>, ApiError> {
        let types = ResourceType::from_crd(&crd).map_err(|e| ApiError::bad_request(&e))?;
        self.create(TEST_CLIENT, "customresourcedefinitions.apiextensions.k8s.io", None, crd)?;
        Ok(types)
    }

    /// Registers a Node as the kubelet would (Ready, with node info).
    pub fn add_node(&self, name: &str) {
        self.add_node_with(name, &[]);
    }

    /// Registers a Node with extra labels (`node-role.kubernetes.io/worker`, ...).
    pub fn add_node_with(&self, name: &str, labels: &[(&str, &str)]) {
        self.create(&format!("kubelet/{name}"), "nodes", None, node_object(name, labels)).expect("a new node");
    }

    /// Sets (or with None removes) an annotation, as `kubectl annotate` would.
    pub fn annotate(&self, node: &str, key: &str, value: Option<&str>) {
        self.patch_node_annotations(TEST_CLIENT, node, &[(key, value)]).expect("a known node");
    }

    /// Sets (Some) or removes (None) annotations of a Node in one merge patch.
    pub fn patch_node_annotations(
        &self,
        client: &str,
        node: &str,
        annotations: &[(&str, Option<&str>)],
    ) -> Result<Arc<Value>, ApiError> {
        let mut patch = json!({ "metadata": { "annotations": {} } });
        for (key, value) in annotations {
            patch["metadata"]["annotations"][*key] = json!(value);
        }
        self.patch(client, "nodes", None, node, PatchBody::Merge(patch))
    }

    /// Sets (or with None removes) a label of a Node.
    pub fn label_node(&self, node: &str, key: &str, value: Option<&str>) -> Result<Arc<Value>, ApiError> {
        let patch = json!({ "metadata": { "labels": { key: value } } });
        self.patch(TEST_CLIENT, "nodes", None, node, PatchBody::Merge(patch))
    }

    /// Sets one condition of a Node's status (merged by `type`, as a strategic merge patch).
    pub fn set_node_condition(&self, client: &str, node: &str, condition: Value) -> Result<Arc<Value>, ApiError> {
        let patch = json!({ "status": { "conditions": [condition] } });
        self.patch_status(client, "nodes", None, node, PatchBody::Strategic(patch))
    }

    /// Makes a Node Ready or NotReady as its kubelet (or the node lifecycle controller) would.
    pub fn set_node_ready(&self, node: &str, ready: bool) -> Result<Arc<Value>, ApiError> {
        let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (status, reason, message) = if ready {
            ("True", "KubeletReady", "kubelet is posting ready status")
        } else {
            ("False", "KubeletNotReady", "container runtime is down")
        };
        let current = self
            .get("nodes", None, node)
            .ok_or_else(|| ApiError::new(404, "NotFound", &format!("nodes \"{node}\" not found")))?;
        let conditions = current["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let before = conditions.iter().find(|c| c["type"] == "Ready");
        let transition = match before {
            Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let condition = json!({
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": transition,
        });
        self.set_node_condition(&format!("kubelet/{node}"), node, condition)
    }

    /// Cordons (true) or uncordons (false) a Node as `kubectl cordon`/`uncordon` would.
    pub fn set_unschedulable(&self, node: &str, unschedulable: bool) {
        let value = if unschedulable { json!(true) } else { Value::Null };
        let patch = json!({ "spec": { "unschedulable": value } });
        self.patch(TEST_CLIENT, "nodes", None, node, PatchBody::Merge(patch)).expect("a known node");
    }

    /// Deletes a Node as `kubectl delete node` would.
    pub fn delete_node(&self, node: &str) -> Result<(), ApiError> {
        self.delete(TEST_CLIENT, "nodes", None, node)
    }

    /// A Node as stored now (panics for an unknown one).
    pub fn node(&self, name: &str) -> Value {
        (*self.get("nodes", None, name).expect("a known node")).clone()
    }
}
