//! Metadata validation never panics on any JSON, and every error it reports has a field.
#![no_main]

use api::validation::{NameRule, object_meta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for rule in [NameRule::Subdomain, NameRule::Label, NameRule::Dns1035] {
        for e in object_meta(&meta, true, rule) {
            assert!(!e.field.is_empty());
            let _ = e.to_string();
        }
    }
});
