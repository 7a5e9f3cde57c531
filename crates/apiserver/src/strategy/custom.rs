//! Custom resources: objects pruned to, defaulted by and validated against the schema their
//! definition gives their version (`api::crdschema`), in upstream's order: unknown fields
//! dropped, then defaults, on every write; validation before the object is stored.

use std::sync::Arc;

use api::crdschema;
use api::validation::FieldError;
use serde_json::Value;

use super::Strategy;

/// The strategy of a custom resource version with a schema.
pub(crate) struct Custom(pub(super) Arc<Value>);

impl Strategy for Custom {
    fn defaults(&self, obj: &mut Value) {
        crdschema::prune(&self.0, obj);
        crdschema::apply_defaults(&self.0, obj);
    }

    /// A status write changes nothing but the status, metadata included (upstream's custom
    /// resource status strategy copies the old object and takes the new status only).
    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        if sub == Some("status") {
            new["metadata"] = old["metadata"].clone();
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        errs.extend(crdschema::validate(&self.0, obj));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Arc<Value> {
        Arc::new(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": 1},
                "color": {"type": "string"},
            }}},
        }))
    }

    #[test]
    fn unknown_fields_go_and_defaults_come() {
        let mut obj =
            json!({"metadata": {"name": "w"}, "spec": {"color": "blue", "size": 3}, "extra": true});
        Custom(schema()).defaults(&mut obj);
        assert_eq!(obj["spec"], json!({"color": "blue", "replicas": 1}));
        assert!(obj.get("extra").is_none());
        assert_eq!(obj["metadata"]["name"], "w");
    }

    #[test]
    fn a_status_write_keeps_the_old_metadata() {
        let old = json!({"metadata": {"name": "w", "labels": {"a": "1"}}, "status": {}});
        let mut new = json!({"metadata": {"name": "w", "labels": {"b": "2"}}, "status": {"x": 1}});
        Custom(schema()).prepare_for_update(&old, &mut new, Some("status"));
        assert_eq!(new["metadata"], old["metadata"]);
        assert_eq!(new["status"], json!({"x": 1}));
    }

    #[test]
    fn objects_are_checked_against_the_schema() {
        let mut errs = Vec::new();
        let obj = json!({"metadata": {"name": "w"}, "spec": {"replicas": "three"}});
        Custom(schema()).validate(&obj, &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.replicas");
    }
}
