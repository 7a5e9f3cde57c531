//! The three patch types never panic on any document and patch: input is two JSON values
//! separated by a NUL byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |b| *b == 0);
    let (Some(doc), Some(patch)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(doc), Ok(patch)) = (
        serde_json::from_slice::<serde_json::Value>(doc),
        serde_json::from_slice::<serde_json::Value>(patch),
    ) else {
        return;
    };
    let _ = api::patch::strategic_merge(&doc, &patch);
    let _ = api::patch::json_patch(&doc, &patch);
    let _ = api::patch::merge_patch(&doc, &patch);
});
