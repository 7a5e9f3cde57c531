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
        type_errors(obj, errs);
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        immutable_data(old, new, errs);
        if old["type"] != new["type"] {
            errs.push(FieldError::invalid(
                "type",
                &new["type"],
                "field is immutable",
            ));
        }
    }
}

/// What a Secret of a built-in type must hold (upstream's checks per type).
fn type_errors(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = &obj["data"];
    let has = |key: &str| data.get(key).is_some();
    let mut require = |keys: &[&str]| {
        for key in keys {
            errs.push(FieldError::required(format!("data[{key}]"), ""));
        }
    };
    match obj["type"].as_str().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let account = &obj["metadata"]["annotations"]["kubernetes.io/service-account.name"];
            if account.as_str().unwrap_or_default().is_empty() {
                let field = "metadata.annotations[kubernetes.io/service-account.name]";
                errs.push(FieldError::required(field, ""));
            }
        }
        "kubernetes.io/dockercfg" => json_entry(data, ".dockercfg", errs),
        "kubernetes.io/dockerconfigjson" => json_entry(data, ".dockerconfigjson", errs),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require(&["username", "password"])
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => require(&["ssh-privatekey"]),
        "kubernetes.io/tls" => {
            let missing: Vec<&str> = ["tls.crt", "tls.key"]
                .into_iter()
                .filter(|k| !has(k))
                .collect();
            require(&missing)
        }
        _ => {}
    }
}

/// A Docker config entry: present, and JSON.
fn json_entry(data: &Value, key: &str, errs: &mut Vec<FieldError>) {
    use base64::Engine as _;
    let field = format!("data[{key}]");
    let Some(encoded) = data[key].as_str() else {
        errs.push(FieldError::required(field, ""));
        return;
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    if let Err(e) = serde_json::from_slice::<Value>(&decoded) {
        let redacted = json!("<secret contents redacted>");
        errs.push(FieldError::invalid(field, &redacted, e.to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_errors(obj: Value) -> Vec<String> {
        let mut errs = Vec::new();
        type_errors(&obj, &mut errs);
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect()
    }

    #[test]
    fn secrets_of_built_in_types_hold_what_their_type_needs() {
        let token = json!({"type": "kubernetes.io/service-account-token", "metadata": {}});
        assert_eq!(
            secret_errors(token),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(secret_errors(tls), ["data[tls.key]: Required value"]);
        let auth = json!({"type": "kubernetes.io/basic-auth", "data": {"password": "eA=="}});
        assert!(secret_errors(auth).is_empty());
        let docker = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "eA=="}});
        let errs = secret_errors(docker);
        assert!(
            errs[0].starts_with(
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""
            ),
            "{errs:?}"
        );
        assert!(secret_errors(json!({"type": "Opaque"})).is_empty());
    }
}
