//! The kinds the server knows: Nodes, events.k8s.io Events, coordination.k8s.io Leases,
//! CustomResourceDefinitions, and any custom resource (from a CRD object, as `kubectl apply -f
//! crd.yaml` installs it, or registered directly). Discovery documents are built from them.

use serde_json::{Value, json};

/// A column of `kubectl get` for a custom resource (`additionalPrinterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    /// 0: always shown; more: with `-o wide`.
    pub priority: i64,
}

/// One resource: where it is served and how writes to it behave.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: main-resource writes keep `.status`, status writes change
    /// only `.status`.
    pub status_subresource: bool,
    /// Counts `metadata.generation` up on changes outside `metadata` (and `status`).
    pub generation: bool,
    /// A built-in (typed) kind: list items come without `apiVersion`/`kind`, strategic merge
    /// patches are accepted. Custom resources keep them and refuse strategic merge.
    pub builtin: bool,
    pub short_names: Vec<String>,
    /// Lists merged item by item, keyed by a field, in strategic merge patches and apply:
    /// `(path, key)` such as `("status.conditions", "type")`.
    pub list_maps: Vec<(String, String)>,
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceType {
    /// A custom resource as a CRD with a status subresource defines it.
    pub fn custom(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: true,
            generation: true,
            builtin: false,
            short_names: Vec::new(),
            list_maps: Vec::new(),
            printer_columns: Vec::new(),
        }
    }

    /// The resource types a CustomResourceDefinition object defines (one per served version).
    pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let spec = &crd["spec"];
        let text = |v: &Value, what: &str| v.as_str().map(str::to_string).ok_or_else(|| format!("CRD without {what}"));
        let group = text(&spec["group"], "spec.group")?;
        let plural = text(&spec["names"]["plural"], "spec.names.plural")?;
        let kind = text(&spec["names"]["kind"], "spec.names.kind")?;
        let singular = spec["names"]["singular"].as_str().map(str::to_string).unwrap_or(kind.to_ascii_lowercase());
        let namespaced = match spec["scope"].as_str() {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => return Err(format!("CRD scope {other:?} is neither Namespaced nor Cluster")),
        };
        let short_names = strings(&spec["names"]["shortNames"]);
        let versions = spec["versions"].as_array().ok_or("CRD without spec.versions")?;
        let mut out = Vec::new();
        for version in versions {
            if version["served"] == false {
                continue;
            }
            let mut list_maps = Vec::new();
            list_maps_in(&version["schema"]["openAPIV3Schema"], "", &mut list_maps);
            let printer_columns = version["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    type_: c["type"].as_str().unwrap_or("string").into(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                })
                .collect();
            out.push(ResourceType {
                group: group.clone(),
                version: text(&version["name"], "a version name")?,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                status_subresource: version["subresources"].get("status").is_some(),
                generation: true,
                builtin: false,
                short_names: short_names.clone(),
                list_maps,
                printer_columns,
            });
        }
        Ok(out)
    }

    /// `nodes`, `leases.coordination.k8s.io`: how messages, RBAC and the history name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The merge key of the list at `path` (dotted, from the object's root), if it is a map.
    pub fn list_key(&self, path: &str) -> Option<&str> {
        self.list_maps.iter().find(|(p, _)| p == path).map(|(_, k)| k.as_str())
    }

    fn discovery_entry(&self) -> Vec<Value> {
        let verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        let mut main = json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced,
                "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    fn aggregated_entry(&self) -> Value {
        let mut entry = json!({
            "resource": self.plural,
            "responseKind": { "group": self.group, "version": self.version, "kind": self.kind },
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        });
        if !self.short_names.is_empty() {
            entry["shortNames"] = json!(self.short_names);
        }
        if self.status_subresource {
            entry["subresources"] = json!([{
                "subresource": "status",
                "responseKind": { "group": self.group, "version": self.version, "kind": self.kind },
                "verbs": ["get", "patch", "update"],
            }]);
        }
        entry
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// Paths of `x-kubernetes-list-type: map` lists in a CRD schema, with their first key.
fn list_maps_in(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if schema["type"] == "array"
        && schema["x-kubernetes-list-type"] == "map"
        && let Some(key) = schema["x-kubernetes-list-map-keys"][0].as_str()
    {
        out.push((path.to_string(), key.to_string()));
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, sub) in properties {
            let here = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            list_maps_in(sub, &here, out);
        }
    }
}

/// What every server has: Nodes, Events, Leases and CustomResourceDefinitions.
pub fn builtins() -> Vec<ResourceType> {
    let builtin = |group: &str, version: &str, plural: &str, kind: &str, namespaced: bool| ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        kind: kind.into(),
        namespaced,
        status_subresource: false,
        generation: false,
        builtin: true,
        short_names: Vec::new(),
        list_maps: Vec::new(),
        printer_columns: Vec::new(),
    };
    let mut nodes = builtin("", "v1", "nodes", "Node", false);
    nodes.status_subresource = true;
    nodes.short_names = vec!["no".into()];
    nodes.list_maps = vec![
        ("status.conditions".into(), "type".into()),
        ("status.addresses".into(), "type".into()),
        ("spec.taints".into(), "key".into()),
    ];
    let mut events = builtin("events.k8s.io", "v1", "events", "Event", true);
    events.short_names = vec!["ev".into()];
    let leases = builtin("coordination.k8s.io", "v1", "leases", "Lease", true);
    let mut crds =
        builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false);
    crds.status_subresource = true;
    crds.short_names = vec!["crd".into(), "crds".into()];
    vec![nodes, events, leases, crds]
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// `/apis`: the groups, each with its versions (the first served is preferred).
pub fn group_list(types: &[&ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, versions)| group(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP`.
pub fn group_document(types: &[&ResourceType], name: &str) -> Option<Value> {
    let (name, versions) = groups(types).into_iter().find(|(n, _)| n == name && !n.is_empty())?;
    let mut document = group(&name, &versions);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

/// `/api/v1` or `/apis/GROUP/VERSION`.
pub fn resource_list(types: &[&ResourceType], group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&&ResourceType> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if matching.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resources: Vec<Value> = matching.iter().flat_map(|t| t.discovery_entry()).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`) for `/api` (core) or `/apis` (the rest).
pub fn aggregated(types: &[&ResourceType], core: bool) -> Value {
    let types: Vec<&ResourceType> = types.iter().copied().filter(|t| t.group.is_empty() == core).collect();
    let items: Vec<Value> = groups(&types)
        .iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| &t.group == name && &t.version == version)
                        .map(|t| t.aggregated_entry())
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if name.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": name, "creationTimestamp": null})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn groups(types: &[&ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) if !versions.contains(&t.version) => versions.push(t.version.clone()),
            Some(_) => {}
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group(name: &str, versions: &[String]) -> Value {
    let entries: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": entries, "preferredVersion": entries[0]})
}
