//! CustomResourceDefinition schemas never make the server panic: input is a JSON array of a
//! schema and an object; the structural checks, pruning, defaulting and validation all run,
//! and every error they report has a field or says it has none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Array(pair)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let [schema, obj] = pair.as_slice() else {
        return;
    };
    for e in api::crdschema::structural_errors(schema, "spec.validation") {
        let _ = e.to_string();
    }
    let mut obj = obj.clone();
    api::crdschema::prune(schema, &mut obj);
    api::crdschema::apply_defaults(schema, &mut obj);
    for e in api::crdschema::validate(schema, &obj) {
        let _ = e.to_string();
    }
});
