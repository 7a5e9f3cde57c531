//! CertificateSigningRequests: conditions change only through `approval` (Approved, Denied)
//! and `status` (the rest), and an approval or denial, once given, stays.

use api::validation::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use crate::object::{now, set_pointer};

/// The CertificateSigningRequest strategy.
pub(super) struct CertificateSigningRequest;

impl Strategy for CertificateSigningRequest {
    fn prepare_for_update(&self, old: &Value, new: &mut Value, sub: Option<&str>) {
        match sub {
            // The request itself never changes.
            None => set_pointer(new, "/spec", old.get("spec").cloned()),
            Some(_) => stamp_conditions(old, new, &now()),
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        errs.extend(validate(obj));
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        errs.extend(validate_update(old, new, sub == Some("approval")));
    }
}

/// Conditions that decide a request; each may only be `True`, and none may be removed.
const DECISIONS: [&str; 3] = ["Approved", "Denied", "Failed"];

fn conditions(obj: &Value) -> &[Value] {
    obj["status"]["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Checks a new request: a PEM `CERTIFICATE REQUEST` and a signer.
pub(super) fn validate(obj: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let mut errs = Vec::new();
    match obj["spec"]["request"].as_str() {
        None | Some("") => errs.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE REQUEST-----") {
                errs.push(FieldError::invalid(
                    "spec.request",
                    &json!(b64),
                    "PEM block type must be CERTIFICATE REQUEST",
                ));
            }
        }
    }
    if obj["spec"]["signerName"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldError::required("spec.signerName", ""));
    }
    errs
}

/// Fills in empty condition timestamps: `lastUpdateTime` now, `lastTransitionTime` carried
/// over from the old condition of the same type and status, else now.
pub(super) fn stamp_conditions(old: &Value, new: &mut Value, now: &str) {
    let before = conditions(old).to_vec();
    let Some(list) = new["status"]["conditions"].as_array_mut() else {
        return;
    };
    for c in list {
        let empty = |v: &Value| v.as_str().is_none_or(str::is_empty);
        if empty(&c["lastUpdateTime"]) {
            c["lastUpdateTime"] = json!(now);
        }
        if empty(&c["lastTransitionTime"]) {
            let same = before
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
            c["lastTransitionTime"] = same
                .map(|o| o["lastTransitionTime"].clone())
                .filter(|t| !empty(t))
                .unwrap_or_else(|| json!(now));
        }
    }
}

/// Checks an update's conditions; `approval` says whether it came through `/approval`.
pub(super) fn validate_update(old: &Value, new: &Value, approval: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (was, now) = (conditions(old), conditions(new));
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in now.iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let ty = c["type"].as_str().unwrap_or("");
        let status = c["status"].as_str().unwrap_or("");
        if ty.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), ""));
        }
        if status.is_empty() {
            errs.push(FieldError::required(format!("{path}.status"), ""));
        } else if DECISIONS.contains(&ty) && status != "True" {
            errs.push(FieldError::not_supported(
                format!("{path}.status"),
                &json!(status),
                &["True"],
            ));
        } else if !["True", "False", "Unknown"].contains(&status) {
            errs.push(FieldError::not_supported(
                format!("{path}.status"),
                &json!(status),
                &["False", "True", "Unknown"],
            ));
        }
        let rival = match ty {
            "Approved" => Some("Denied"),
            "Denied" => Some("Approved"),
            _ => None,
        };
        if seen.contains(&ty) {
            errs.push(FieldError::duplicate(format!("{path}.type"), &json!(ty)));
        } else if rival.is_some_and(|r| seen.contains(&r)) {
            errs.push(FieldError::invalid(
                format!("{path}.type"),
                &json!(ty),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        seen.push(ty);
    }
    for ty in DECISIONS {
        let before = was.iter().filter(|c| c["type"] == ty).count();
        let after = now.iter().filter(|c| c["type"] == ty).count();
        if after < before {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {ty:?}"),
            ));
        } else if !approval && ty != "Failed" && after > before {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not add a condition of type {ty:?}"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conditions: Value) -> Value {
        json!({"status": {"conditions": conditions}})
    }

    #[test]
    fn approval_adds_decisions_that_then_stay() {
        let pending = csr(json!([]));
        let approved = csr(json!([{"type": "Approved", "status": "True"}]));
        assert!(validate_update(&pending, &approved, true).is_empty());
        let text = |e: Vec<FieldError>| e.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            text(validate_update(&pending, &approved, false)),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );
        assert_eq!(
            text(validate_update(&approved, &pending, true)),
            [
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
        let both = csr(
            json!([{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]),
        );
        assert_eq!(
            text(validate_update(&approved, &both, true)),
            [
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
            ]
        );
        let twice = csr(
            json!([{"type": "Approved", "status": "True"}, {"type": "Approved", "status": "True"}]),
        );
        assert_eq!(
            text(validate_update(&approved, &twice, true)),
            ["status.conditions[1].type: Duplicate value: \"Approved\""]
        );
        let soft = csr(json!([{"type": "Approved", "status": "False"}]));
        assert_eq!(
            text(validate_update(&pending, &soft, true)),
            [
                "status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""
            ]
        );
    }

    #[test]
    fn timestamps_are_filled_and_carried_over() {
        let old = csr(
            json!([{"type": "Approved", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]),
        );
        let mut new = csr(
            json!([{"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]),
        );
        stamp_conditions(&old, &mut new, "2026-01-01T00:00:00Z");
        let c = conditions(&new);
        assert_eq!(c[0]["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(c[0]["lastUpdateTime"], "2026-01-01T00:00:00Z");
        assert_eq!(c[1]["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }
}
