//! Label and field selector parsing never panics, and what parses also matches without panic.
#![no_main]

use api::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let labels = serde_json::json!({"app": "web", "tier": "front"});
    if let Ok(sel) = LabelSelector::parse(data) {
        let _ = sel.matches(Some(&labels));
    }
    if let Ok(sel) = FieldSelector::parse(data) {
        let _ = sel.matches(&serde_json::json!({"metadata": {"name": "x"}}));
    }
});
