//! Failures as the API server words them: an HTTP code and a `Status` object, with the reason
//! and details kube-rs and kubectl branch on (`NotFound`, `AlreadyExists`, `Conflict`,
//! `Expired`, `Invalid`, ...).

use serde_json::{Value, json};

use super::resources::ResourceType;

/// A refused request: the code and the `Status` body the real API server sends.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub status: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: &str) -> Self {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        });
        ApiError { code, status }
    }

    fn details(mut self, details: Value) -> Self {
        self.status["details"] = details;
        self
    }

    /// The machine-readable reason (`NotFound`, `Conflict`, ...).
    pub fn reason(&self) -> &str {
        self.status["reason"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.status["message"].as_str().unwrap_or_default()
    }

    pub fn not_found(ty: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", &format!("{} \"{name}\" not found", ty.qualified()))
            .details(object_details(ty, name))
    }

    pub fn already_exists(ty: &ResourceType, name: &str) -> Self {
        Self::new(409, "AlreadyExists", &format!("{} \"{name}\" already exists", ty.qualified()))
            .details(object_details(ty, name))
    }

    /// A write whose resourceVersion precondition is stale.
    pub fn conflict(ty: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            ty.qualified()
        );
        Self::new(409, "Conflict", &message).details(object_details(ty, name))
    }

    /// A conflict with a precondition other than the resourceVersion (a uid).
    pub fn precondition(ty: &ResourceType, name: &str, message: &str) -> Self {
        let message = format!("Operation cannot be fulfilled on {} \"{name}\": {message}", ty.qualified());
        Self::new(409, "Conflict", &message).details(object_details(ty, name))
    }

    pub fn bad_request(message: &str) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 with one field cause, as validation failures are answered.
    pub fn invalid(kind: &str, group: &str, name: &str, field: &str, message: &str) -> Self {
        let full = format!("{kind}{} \"{name}\" is invalid: {field}: {message}", dot(group));
        let mut details = json!({
            "name": name, "kind": kind,
            "causes": [{ "reason": "FieldValueInvalid", "message": message, "field": field }],
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self::new(422, "Invalid", &full).details(details)
    }

    /// 410 for a resourceVersion or continue token older than what is kept.
    pub fn expired(message: &str) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(message: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn internal(message: &str) -> Self {
        Self::new(500, "InternalError", &format!("Internal error occurred: {message}"))
    }
}

fn dot(group: &str) -> String {
    if group.is_empty() { String::new() } else { format!(".{group}") }
}

fn object_details(ty: &ResourceType, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": ty.plural });
    if !ty.group.is_empty() {
        details["group"] = json!(ty.group);
    }
    details
}
