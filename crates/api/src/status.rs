//! Upstream's `Status` errors: codes, reasons and message texts as kubectl users know them.
//!
//! Every failed API request answers with one of these. Messages follow upstream's wording
//! (`pods "web" not found`, `Operation cannot be fulfilled on ...`), because scripts and people
//! match on them.

use serde_json::{Value, json};

use crate::resources::Resource;
use crate::validation::FieldError;

/// A failed request: HTTP code, machine-readable reason, human message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The HTTP status code.
    pub code: u16,
    /// Upstream's `StatusReason` (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `details`, when the error is about one object.
    pub details: Option<Value>,
    /// `metadata.continue`: the token an expired paged list may go on with (upstream's
    /// `ListMeta.Continue` on the Status).
    pub continue_token: Option<String>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Status {}

fn details(r: &Resource, name: &str) -> Value {
    json!({ "name": name, "group": r.group, "kind": r.plural })
}

impl Status {
    /// A status with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Status {
        Status {
            code,
            reason,
            message: message.into(),
            details: None,
            continue_token: None,
        }
    }

    /// 422 for a patch that does not apply to the object, as upstream's
    /// `NewGenericServerResponse` words it: a generic message, the cause in `details`.
    pub fn patch_failed(cause: impl Into<String>) -> Status {
        Status {
            details: Some(
                json!({"causes": [{"reason": "UnexpectedServerResponse", "message": cause.into()}]}),
            ),
            ..Status::new(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            )
        }
    }

    /// 404: `pods "web" not found`.
    pub fn not_found(r: &Resource, name: &str) -> Status {
        Status {
            details: Some(details(r, name)),
            ..Status::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", r.qualified()),
            )
        }
    }

    /// 404 for a URL that names nothing.
    pub fn path_not_found() -> Status {
        Status::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409: `pods "web" already exists`.
    pub fn already_exists(r: &Resource, name: &str) -> Status {
        Status {
            details: Some(details(r, name)),
            ..Status::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.qualified()),
            )
        }
    }

    /// 409: an update based on a stale `resourceVersion`.
    pub fn conflict(r: &Resource, name: &str) -> Status {
        Status::conflict_because(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 with another explanation.
    pub fn conflict_because(r: &Resource, name: &str, why: &str) -> Status {
        Status {
            details: Some(details(r, name)),
            ..Status::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    r.qualified()
                ),
            )
        }
    }

    /// 422: `The Pod "web" is invalid: <errors>`.
    pub fn invalid(r: &Resource, name: &str, errors: &[FieldError]) -> Status {
        let listed = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.reason(), "message": e.body(), "field": e.field }))
            .collect();
        Status {
            details: Some(json!({
                "name": name, "group": r.group, "kind": r.kind, "causes": causes,
            })),
            ..Status::new(
                422,
                "Invalid",
                format!("The {} \"{name}\" is invalid: {listed}", r.kind),
            )
        }
    }

    /// 400 with upstream's generic reason.
    pub fn bad_request(message: impl Into<String>) -> Status {
        Status::new(400, "BadRequest", message)
    }

    /// 401.
    pub fn unauthorized() -> Status {
        Status::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403: `pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the
    /// namespace "default"`.
    pub fn forbidden(
        r: &Resource,
        name: &str,
        user: &str,
        verb: &str,
        namespace: Option<&str>,
    ) -> Status {
        let object = if name.is_empty() {
            r.qualified()
        } else {
            format!("{} \"{name}\"", r.qualified())
        };
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        Status {
            details: Some(details(r, name)),
            ..Status::new(
                403,
                "Forbidden",
                format!(
                    "{object} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                    r.plural, r.group
                ),
            )
        }
    }

    /// 405.
    pub fn method_not_supported(r: &Resource, verb: &str) -> Status {
        Status {
            details: Some(json!({ "group": r.group, "kind": r.plural })),
            ..Status::new(
                405,
                "MethodNotAllowed",
                format!(
                    "{verb} is not supported on resources of kind \"{}\"",
                    r.qualified()
                ),
            )
        }
    }

    /// 410 for a watch or list from a compacted revision.
    pub fn expired(requested: i64, oldest: i64) -> Status {
        Status::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 410 for a continue token whose revision has been compacted: upstream's
    /// `inconsistentContinue`, with a token that goes on from the same key at the latest
    /// revision (etcd3 `handleCompactedErrorForPaging`).
    pub fn continue_expired(token: String) -> Status {
        Status {
            continue_token: Some(token),
            ..Status::new(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter, or use the continue token \
                 in this response to retrieve the remainder of the results. Continuing with the \
                 provided token results in an inconsistent list - objects that were created, \
                 modified, or deleted between the time the first chunk was returned and now may \
                 show up in the list.",
            )
        }
    }

    fn metadata(&self) -> Value {
        match &self.continue_token {
            Some(token) => json!({ "continue": token }),
            None => json!({}),
        }
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Status {
        Status::new(413, "RequestEntityTooLarge", message)
    }

    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Status {
        Status::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 415 for a PATCH whose Content-Type names no patch type.
    pub fn unsupported_patch_type(content_type: &str) -> Status {
        Status::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 500.
    pub fn internal(message: impl std::fmt::Display) -> Status {
        Status::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(503, "ServiceUnavailable", message)
    }

    /// 504.
    pub fn timeout(message: impl Into<String>) -> Status {
        Status::new(504, "Timeout", message)
    }

    /// The `Status` object as sent on the wire.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": self.metadata(),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    /// The `Status` as upstream's server writes it: Go's field order (`kind`, `apiVersion`,
    /// `metadata`, `status`, `message`, `reason`, `details`, `code`), empty fields left out,
    /// and a closing newline. Clients that compare error bodies as text see the same bytes.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut fields: Vec<(&str, Value)> = vec![
            ("kind", json!("Status")),
            ("apiVersion", json!("v1")),
            ("metadata", self.metadata()),
            ("status", json!("Failure")),
        ];
        if !self.message.is_empty() {
            fields.push(("message", json!(self.message)));
        }
        if !self.reason.is_empty() {
            fields.push(("reason", json!(self.reason)));
        }
        if let Some(d) = &self.details {
            fields.push(("details", d.clone()));
        }
        fields.push(("code", json!(self.code)));
        let mut out = Ordered(fields).to_string().into_bytes();
        out.push(b'\n');
        out
    }

    /// A successful `Status`, as some deletes answer.
    pub fn success(r: &Resource, name: &str, uid: &str) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": { "name": name, "group": r.group, "kind": r.plural, "uid": uid },
        })
    }
}

/// Go's order of the fields of `StatusDetails` and `StatusCause`.
const DETAIL_ORDER: [&str; 9] = [
    "name",
    "group",
    "kind",
    "uid",
    "causes",
    "retryAfterSeconds",
    "reason",
    "message",
    "field",
];

/// An object written with its keys in a given order (serde_json's maps sort theirs), nested
/// details and causes in Go's order, empty strings and zero counts left out as `omitempty`.
struct Ordered<'a>(Vec<(&'a str, Value)>);

impl std::fmt::Display for Ordered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in &self.0 {
            if matches!(v, Value::String(s) if s.is_empty()) || *v == json!(0) && *k != "code" {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}:", Value::from(*k))?;
            match v {
                Value::Object(m) if *k == "details" => write!(f, "{}", go_ordered(m))?,
                Value::Array(items) if *k == "causes" => {
                    f.write_str("[")?;
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        match item {
                            Value::Object(m) => write!(f, "{}", go_ordered(m))?,
                            other => write!(f, "{other}")?,
                        }
                    }
                    f.write_str("]")?;
                }
                other => write!(f, "{other}")?,
            }
        }
        f.write_str("}")
    }
}

/// A details or cause object in Go's field order (unknown keys after, sorted).
fn go_ordered(m: &serde_json::Map<String, Value>) -> Ordered<'_> {
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    let rank = |k: &str| {
        DETAIL_ORDER
            .iter()
            .position(|o| *o == k)
            .unwrap_or(usize::MAX)
    };
    keys.sort_by_key(|k| (rank(k), *k));
    Ordered(keys.into_iter().map(|k| (k, m[k].clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use crate::validation::FieldError;

    #[test]
    fn messages_read_as_upstream() {
        let pods = find("", "v1", "pods").unwrap();
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            Status::not_found(pods, "web").message,
            "pods \"web\" not found"
        );
        assert_eq!(
            Status::already_exists(deploy, "web").message,
            "deployments.apps \"web\" already exists"
        );
        assert_eq!(
            Status::conflict(pods, "x").message,
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(
            Status::forbidden(pods, "", "bob", "list", Some("default")).message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            String::from_utf8(Status::not_found(pods, "web").to_wire()).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"pods \\\"web\\\" not found\",\"reason\":\"NotFound\",\
             \"details\":{\"name\":\"web\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let json = Status::not_found(pods, "web").to_json();
        assert_eq!(json["code"], 404);
        assert_eq!(json["details"]["kind"], "pods");
    }

    // conformance: 155
    #[test]
    fn an_expired_continue_carries_a_token_to_go_on_with() {
        let s = Status::continue_expired("tok".into());
        let wire: Value = serde_json::from_slice(&s.to_wire()).unwrap();
        assert_eq!(wire["code"], 410);
        assert_eq!(wire["reason"], "Expired");
        assert_eq!(wire["metadata"], json!({"continue": "tok"}));
        assert_eq!(
            wire["message"],
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
        );
        assert_eq!(s.to_json()["metadata"]["continue"], "tok");
    }

    #[test]
    fn a_patch_that_does_not_apply_is_a_generic_422_with_its_cause() {
        let s = Status::patch_failed("testing value /data/mode failed: test failed");
        assert_eq!(
            String::from_utf8(s.to_wire()).unwrap(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"the server rejected our request due to an error in our request","#,
                r#""reason":"Invalid","details":{"causes":[{"reason":"UnexpectedServerResponse","#,
                r#""message":"testing value /data/mode failed: test failed"}]},"code":422}"#,
                "\n"
            )
        );
    }

    #[test]
    fn invalid_lists_one_or_many_errors() {
        let pods = find("", "v1", "pods").unwrap();
        let one = [FieldError::required("spec.containers", "")];
        assert_eq!(
            Status::invalid(pods, "p", &one).message,
            "The Pod \"p\" is invalid: spec.containers: Required value"
        );
        let two = [
            FieldError::required("spec.containers[0].image", ""),
            FieldError::invalid("metadata.name", &json!("A"), "bad"),
        ];
        let s = Status::invalid(pods, "p", &two);
        assert_eq!(
            s.message,
            "The Pod \"p\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        let causes = &s.details.unwrap()["causes"];
        assert_eq!(causes[0]["reason"], "FieldValueRequired");
        assert_eq!(causes[1]["field"], "metadata.name");
        assert_eq!(causes[1]["message"], "Invalid value: \"A\": bad");
    }
}
