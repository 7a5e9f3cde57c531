//! PriorityClasses: the preemption policy's default; value and policy never change.

use api::validation::FieldError;
use serde_json::{Value, json};

use super::defaults::set_absent;
use super::{Strategy, immutable};

/// The PriorityClass strategy.
pub(super) struct PriorityClass;

impl Strategy for PriorityClass {
    fn defaults(&self, obj: &mut Value) {
        set_absent(
            obj,
            vec![("/preemptionPolicy", json!("PreemptLowerPriority"))],
        );
    }

    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        if old["value"] != new["value"] {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        immutable(old, new, "/preemptionPolicy", errs);
    }
}
