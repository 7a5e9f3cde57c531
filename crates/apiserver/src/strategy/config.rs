//! ConfigMaps and Secrets: keys that must be config keys, a Secret's `stringData` and type,
//! and the data an `immutable` object keeps.

use api::validation::FieldError;
use serde_json::{Value, json};

use super::{Strategy, set_default};

/// ConfigMaps.
pub(super) struct ConfigMap;

impl Strategy for ConfigMap {
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        config_key_errors(&obj["data"], "data", errs);
        config_key_errors(&obj["binaryData"], "binaryData", errs);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        immutable_data(old, new, errs);
    }
}

/// Secrets.
pub(super) struct Secret;

impl Strategy for Secret {
    fn defaults(&self, obj: &mut Value) {
        set_default(obj, "type", json!("Opaque"));
        merge_string_data(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        config_key_errors(&obj["data"], "data", errs);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        immutable_data(old, new, errs);
    }
}

/// Once `immutable` is set, the data and the flag stay as they are.
fn immutable_data(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["immutable"] != json!(true) {
        return;
    }
    for field in ["/data", "/binaryData", "/stringData", "/immutable"] {
        if old.pointer(field) != new.pointer(field) {
            errs.push(FieldError::forbidden(
                field.trim_start_matches('/'),
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// A Secret's `stringData` is written into `data` (base64, winning over a `data` key of the
/// same name) and dropped, as upstream's conversion does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(strings) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(strings) = strings.as_object() else {
        return;
    };
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// The keys of a ConfigMap's or Secret's `data` (or `binaryData`) must be config keys.
fn config_key_errors(data: &Value, field: &str, errs: &mut Vec<FieldError>) {
    for key in data.as_object().into_iter().flat_map(|m| m.keys()) {
        for e in api::validation::config_key(key) {
            errs.push(FieldError::invalid(
                format!("{field}[{key}]"),
                &json!(key),
                e,
            ));
        }
    }
}
