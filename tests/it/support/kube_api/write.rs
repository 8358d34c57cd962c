//! What a write does, the same for HTTP requests and the direct API: create (409
//! `AlreadyExists`, generated names), replace and patch (a stale `metadata.resourceVersion` is a
//! 409 `Conflict`; system fields are kept; a no-op write changes nothing, not even the
//! resourceVersion), the status subresource (a main-resource write keeps `.status`, a status
//! write changes only `.status`), `metadata.generation` (custom resources: up by one when
//! anything outside `metadata` and `status` changes), finalizers (a delete sets
//! `deletionTimestamp`; the update removing the last finalizer deletes), delete preconditions,
//! and `dryRun`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::apply::Ownership;
use super::errors::ApiError;
use super::patch::{json_patch, merge, strategic_in};
use super::resources::ResourceType;
use super::store::{Store, key, key_of, now, rv_of};
use super::watch::EventType;

/// A change as the server receives it.
pub(super) enum Action {
    Create(Value),
    Replace(Value),
    Patch(PatchBody),
    /// With the DeleteOptions body (preconditions).
    Delete(Value),
}

/// A patch, by content type.
#[derive(Clone, Debug)]
pub enum PatchBody {
    /// `application/merge-patch+json`
    Merge(Value),
    /// `application/strategic-merge-patch+json` (built-in kinds only)
    Strategic(Value),
    /// `application/json-patch+json`
    Json(Value),
    /// `application/apply-patch+yaml`, with `force=true` or not
    Apply { body: Value, force: bool },
}

/// One write to execute.
pub(super) struct Op {
    pub resource: usize,
    pub namespace: Option<String>,
    /// Empty for a create (the body names the object).
    pub name: String,
    /// `status` or None.
    pub subresource: Option<String>,
    pub action: Action,
    /// Who asks (the user agent, or the direct caller's name): recorded in the history.
    pub client: String,
    /// `fieldManager`, else the client.
    pub manager: Option<String>,
    pub dry_run: bool,
}

impl Op {
    pub fn verb(&self) -> &'static str {
        match &self.action {
            Action::Create(_) => "create",
            Action::Replace(_) => "update",
            Action::Patch(PatchBody::Apply { .. }) => "apply",
            Action::Patch(_) => "patch",
            Action::Delete(_) => "delete",
        }
    }
}

/// Who owns the fields a write sets: its manager (an update), or the ownership an apply computed.
enum Owning<'a> {
    Update(&'a str),
    Applied(Ownership),
}

/// A write's answer: 200 or 201 (created), and the body.
pub(super) struct Done {
    pub code: u16,
    pub object: Arc<Value>,
}

impl Store {
    /// Executes `op`: the same rules for HTTP requests and the direct API.
    pub fn execute(&mut self, op: Op) -> Result<Done, ApiError> {
        let c = op.resource;
        let ty = self.collections[c].ty.clone();
        if ty.namespaced != op.namespace.is_some() {
            return Err(ApiError::not_found(&ty, &op.name));
        }
        let manager = op.manager.clone().unwrap_or_else(|| op.client.clone());
        let subresource = op.subresource.clone().unwrap_or_default();
        let key = key(op.namespace.as_deref(), &op.name);
        let current = self.collections[c].objects.get(&key).cloned();
        match (&op.action, current) {
            (Action::Create(body), _) => self.create(&op, &ty, body.clone(), &manager, None),
            (Action::Patch(PatchBody::Apply { body, force }), None) if subresource.is_empty() => {
                check_applied(&ty, &op.name, body)?;
                let mut owners = Ownership::default();
                let skeleton = json!({ "metadata": { "name": op.name } });
                let applied = owners.apply(&ty, &manager, "", *force, &skeleton, body)?;
                self.create(&op, &ty, applied, &manager, Some(owners))
            }
            (_, None) => Err(ApiError::not_found(&ty, &op.name)),
            (Action::Delete(options), Some(current)) => self.delete(&op, &ty, &key, &current, options),
            (Action::Replace(body), Some(current)) => {
                check_identity(&ty, &op, body)?;
                let mut candidate = body.clone();
                if rv_of(&candidate).is_empty() {
                    candidate["metadata"]["resourceVersion"] = json!(rv_of(&current));
                }
                self.update(&op, &ty, &key, &current, candidate, Owning::Update(&manager))
            }
            (Action::Patch(patch), Some(current)) => {
                let (candidate, owning) = match patch {
                    PatchBody::Merge(body) => {
                        let mut candidate = (*current).clone();
                        merge(&mut candidate, body);
                        (candidate, Owning::Update(&manager))
                    }
                    PatchBody::Strategic(body) if ty.builtin => {
                        let mut candidate = (*current).clone();
                        strategic_in(&ty, &mut candidate, body, "");
                        (candidate, Owning::Update(&manager))
                    }
                    PatchBody::Strategic(_) => {
                        return Err(ApiError::unsupported_media_type(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                        ));
                    }
                    PatchBody::Json(ops) => {
                        let mut candidate = (*current).clone();
                        json_patch(&mut candidate, ops).map_err(|e| ApiError::new(422, "Invalid", &e))?;
                        (candidate, Owning::Update(&manager))
                    }
                    PatchBody::Apply { body, force } => {
                        check_applied(&ty, &op.name, body)?;
                        let wanted = rv_of(body);
                        if !wanted.is_empty() && wanted != rv_of(&current) {
                            return Err(ApiError::conflict(&ty, &op.name));
                        }
                        // on a copy: the ownership changes only if the write happens
                        let mut owners =
                            self.collections[c].meta.get(&key).map(|m| m.owners.clone()).unwrap_or_default();
                        let applied = owners.apply(&ty, &manager, &subresource, *force, &current, body)?;
                        (applied, Owning::Applied(owners))
                    }
                };
                self.update(&op, &ty, &key, &current, candidate, owning)
            }
        }
    }

    /// Creates `object`; `owners` are its fields' managers when an apply creates it.
    fn create(
        &mut self,
        op: &Op,
        ty: &ResourceType,
        mut object: Value,
        manager: &str,
        owners: Option<Ownership>,
    ) -> Result<Done, ApiError> {
        let c = op.resource;
        if !object.is_object() {
            return Err(ApiError::bad_request("the object to create is not a JSON object"));
        }
        check_types(ty, &object)?;
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let mut name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            name = format!("{prefix}{}", generated_suffix(self.rv));
            object["metadata"]["name"] = json!(name);
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                &ty.kind,
                &ty.group,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        match (&op.namespace, object["metadata"]["namespace"].as_str()) {
            (Some(ns), Some(given)) if !given.is_empty() && given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (Some(ns), _) => object["metadata"]["namespace"] = json!(ns),
            (None, _) => {
                object["metadata"].as_object_mut().unwrap().remove("namespace");
            }
        }
        if !rv_of(&object).is_empty() {
            return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
        }
        let key = key(op.namespace.as_deref(), &name);
        if self.collections[c].objects.contains_key(&key) {
            return Err(ApiError::already_exists(ty, &name));
        }
        object["apiVersion"] = json!(ty.api_version());
        object["kind"] = json!(ty.kind);
        let uid = self.uid();
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(now()));
        for server_set in ["deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "generation"] {
            metadata.remove(server_set);
        }
        if ty.generation {
            metadata.insert("generation".into(), json!(1));
        }
        if ty.status_subresource && !ty.builtin {
            object.as_object_mut().unwrap().remove("status");
        }
        if op.dry_run {
            return Ok(Done { code: 201, object: Arc::new(object) });
        }
        let owners = owners.unwrap_or_else(|| {
            let mut owners = Ownership::default();
            owners.update(ty, manager, "", &Value::Null, &object);
            owners
        });
        let stored = self.commit(c, &key, Some(object), EventType::Added, op);
        let meta = self.collections[c].meta.entry(key).or_default();
        meta.created = self.rv;
        meta.owners = owners;
        if ty.qualified() == "customresourcedefinitions.apiextensions.k8s.io" {
            self.establish(&stored, op);
        }
        let stored = self.collections[c].objects.get(&key_of(&stored)).cloned().unwrap_or(stored);
        Ok(Done { code: 201, object: stored })
    }

    /// A new CRD: its resources are served at once, and its status says so.
    fn establish(&mut self, crd: &Value, op: &Op) {
        let Ok(types) = ResourceType::from_crd(crd) else { return };
        for ty in types {
            self.register(ty);
        }
        let c = op.resource;
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut established = crd.clone();
        let time = now();
        established["status"] = json!({
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten()
                .filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": time},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": time},
            ],
        });
        let server = Op {
            resource: c,
            namespace: None,
            name: name.clone(),
            subresource: Some("status".into()),
            action: Action::Replace(Value::Null),
            client: "kube-apiserver".into(),
            manager: None,
            dry_run: false,
        };
        self.commit(c, &name, Some(established), EventType::Modified, &server);
    }

    /// Finishes a replace or patch: `candidate` is the object the client asked for.
    fn update(
        &mut self,
        op: &Op,
        ty: &ResourceType,
        key: &str,
        current: &Arc<Value>,
        mut candidate: Value,
        owning: Owning,
    ) -> Result<Done, ApiError> {
        let c = op.resource;
        if !candidate.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON object"));
        }
        let wanted = rv_of(&candidate).to_string();
        if !wanted.is_empty() && wanted != rv_of(current) {
            return Err(ApiError::conflict(ty, &op.name));
        }
        if candidate["metadata"]["name"].as_str().is_some_and(|n| n != op.name) {
            return Err(ApiError::bad_request(&format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                candidate["metadata"]["name"].as_str().unwrap_or_default(),
                op.name
            )));
        }
        let uid = candidate["metadata"]["uid"].as_str().unwrap_or_default();
        let current_uid = current["metadata"]["uid"].as_str().unwrap_or_default();
        if !uid.is_empty() && uid != current_uid {
            let message = format!("Precondition failed: UID in precondition: {current_uid}, UID in object meta: {uid}");
            return Err(ApiError::precondition(ty, &op.name, &message));
        }
        if !candidate["metadata"].is_object() {
            candidate["metadata"] = json!({});
        }
        for kept in
            ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion"]
        {
            match current["metadata"].get(kept) {
                Some(value) => candidate["metadata"][kept] = value.clone(),
                None => {
                    candidate["metadata"].as_object_mut().unwrap().remove(kept);
                }
            }
        }
        candidate["apiVersion"] = current["apiVersion"].clone();
        candidate["kind"] = current["kind"].clone();
        let status_write = op.subresource.as_deref() == Some("status");
        let mut result = if status_write {
            let mut result = (**current).clone();
            set_status(&mut result, candidate.get("status").cloned());
            result
        } else {
            if ty.status_subresource {
                set_status(&mut candidate, current.get("status").cloned());
            }
            candidate
        };
        if ty.generation && outside_metadata(ty, &result) != outside_metadata(ty, current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            result["metadata"]["generation"] = json!(generation);
        }
        if op.dry_run {
            let object = if result == **current { current.clone() } else { Arc::new(result) };
            return Ok(Done { code: 200, object });
        }
        let meta = self.collections[c].meta.entry(key.to_string()).or_default();
        match owning {
            Owning::Applied(owners) => meta.owners = owners,
            Owning::Update(manager) => {
                meta.owners.update(ty, manager, op.subresource.as_deref().unwrap_or_default(), current, &result)
            }
        }
        if result == **current {
            // nothing changes, not even the resourceVersion (an apply may still share fields)
            return Ok(Done { code: 200, object: current.clone() });
        }
        let finalized = result["metadata"].get("deletionTimestamp").is_some()
            && result["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if finalized {
            let stored = self.commit(c, key, Some(result), EventType::Modified, op);
            self.commit(c, key, None, EventType::Deleted, op);
            return Ok(Done { code: 200, object: stored });
        }
        let stored = self.commit(c, key, Some(result), EventType::Modified, op);
        Ok(Done { code: 200, object: stored })
    }

    fn delete(
        &mut self,
        op: &Op,
        ty: &ResourceType,
        key: &str,
        current: &Arc<Value>,
        options: &Value,
    ) -> Result<Done, ApiError> {
        let preconditions = &options["preconditions"];
        for (field, label) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
            if let Some(wanted) = preconditions[field].as_str() {
                let actual = current["metadata"][field].as_str().unwrap_or_default();
                if wanted != actual {
                    let message = format!(
                        "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                    );
                    return Err(ApiError::precondition(ty, &op.name, &message));
                }
            }
        }
        let pending = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if pending {
            // not deleted yet: the answer is the object, 200
            if current["metadata"].get("deletionTimestamp").is_some() || op.dry_run {
                return Ok(Done { code: 200, object: current.clone() });
            }
            let mut marked = (**current).clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = self.commit(op.resource, key, Some(marked), EventType::Modified, op);
            return Ok(Done { code: 200, object: stored });
        }
        if !op.dry_run {
            self.commit(op.resource, key, None, EventType::Deleted, op);
        }
        let mut details = json!({ "name": op.name, "kind": ty.plural, "uid": current["metadata"]["uid"] });
        if !ty.group.is_empty() {
            details["group"] = json!(ty.group);
        }
        let status =
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
        Ok(Done { code: 200, object: Arc::new(status) })
    }
}

fn set_status(object: &mut Value, status: Option<Value>) {
    let map = object.as_object_mut().unwrap();
    match status {
        Some(status) => {
            map.insert("status".into(), status);
        }
        None => {
            map.remove("status");
        }
    }
}

/// What `metadata.generation` tracks: everything but metadata (and status, when a subresource).
fn outside_metadata(ty: &ResourceType, object: &Value) -> Value {
    let mut copy = object.clone();
    let map = copy.as_object_mut().unwrap();
    map.remove("metadata");
    if ty.status_subresource {
        map.remove("status");
    }
    copy
}

/// `apiVersion` and `kind`, when given, must be the resource's.
fn check_types(ty: &ResourceType, body: &Value) -> Result<(), ApiError> {
    if let Some(api_version) = body["apiVersion"].as_str()
        && api_version != ty.api_version()
    {
        return Err(ApiError::bad_request(&format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            ty.api_version()
        )));
    }
    if let Some(kind) = body["kind"].as_str()
        && kind != ty.kind
    {
        return Err(ApiError::bad_request(&format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            ty.kind
        )));
    }
    Ok(())
}

fn check_identity(ty: &ResourceType, op: &Op, body: &Value) -> Result<(), ApiError> {
    check_types(ty, body)?;
    let given = body["metadata"]["name"].as_str().unwrap_or_default();
    if given != op.name {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({given}) does not match the name on the URL ({})",
            op.name
        )));
    }
    if let (Some(ns), Some(given)) = (&op.namespace, body["metadata"]["namespace"].as_str())
        && !given.is_empty()
        && given != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// An apply body must say what it is, and be the object of the URL.
fn check_applied(ty: &ResourceType, name: &str, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the applied configuration is not an object"));
    }
    let (api_version, kind) = (body["apiVersion"].as_str(), body["kind"].as_str());
    if api_version.is_none_or(str::is_empty) || kind.is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(&format!(
            "invalid object type: {}, Kind={}",
            api_version.unwrap_or_default(),
            kind.unwrap_or_default()
        )));
    }
    check_types(ty, body)?;
    // kube-rs's status applies name no object: the URL does
    let given = body["metadata"]["name"].as_str().unwrap_or_default();
    if !given.is_empty() && given != name {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// Five characters from the API server's alphabet for generated names.
fn generated_suffix(mut seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..5 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.push(ALPHABET[(seed >> 33) as usize % ALPHABET.len()] as char);
    }
    out
}
