//! Nodes: a node's pod CIDRs go from none to some, and then stay.

use api::validation::FieldError;
use serde_json::Value;

use super::Strategy;

/// The node strategy.
pub(super) struct Node;

impl Strategy for Node {
    fn validate_update(
        &self,
        old: &Value,
        new: &Value,
        _sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        if old["spec"]["podCIDRs"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            && old["spec"]["podCIDRs"] != new["spec"]["podCIDRs"]
        {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ))
        }
    }
}
