//! Tolerations against taints.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether toleration `t` tolerates `taint` (upstream's `Toleration.ToleratesTaint`): the
/// effect matches or is empty; `Exists` matches the key (any key when empty), `Equal` (the
/// default, and any other operator) the key and the value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => effect_ok && (key.is_empty() || key == taint.key),
        _ => {
            effect_ok
                && key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// Whether one of `tolerations` tolerates `taint` (upstream's `TolerationsTolerateTaint`).
pub fn any_tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn toleration(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn exists_matches_the_key_or_any_key_when_empty() {
        let t = taint("gpu", Some("a100"), "NoSchedule");
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "operator": "Exists"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "ssd", "operator": "Exists"})),
            &t
        ));
    }

    #[test]
    fn equal_matches_key_and_value_an_absent_value_being_empty() {
        let t = taint("gpu", Some("a100"), "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "value": "a100"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "gpu", "value": "h100"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "gpu", "operator": "Equal"})),
            &t
        ));
        let bare = taint("gpu", None, "NoSchedule");
        assert!(tolerates(
            &toleration(json!({"key": "gpu", "value": ""})),
            &bare
        ));
    }

    #[test]
    fn the_effect_must_match_unless_empty() {
        let t = taint("gpu", None, "NoExecute");
        let tol = |effect: &str| toleration(json!({"operator": "Exists", "effect": effect}));
        assert!(tolerates(&tol("NoExecute"), &t));
        assert!(tolerates(&tol(""), &t));
        assert!(!tolerates(&tol("NoSchedule"), &t));
    }

    #[test]
    fn any_toleration_suffices() {
        let t = taint("gpu", None, "NoSchedule");
        let list = [
            toleration(json!({"key": "ssd", "operator": "Exists"})),
            toleration(json!({"key": "gpu", "operator": "Exists"})),
        ];
        assert!(any_tolerates(&list, &t));
        assert!(!any_tolerates(&list[..1], &t));
        assert!(!any_tolerates(&[], &t));
    }
}
