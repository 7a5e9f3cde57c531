//! Helpers the controllers' unit tests share: building test objects from JSON.

use serde_json::Value;

/// Merges `from` into `into`: objects merge key by key, anything else (a `null` too)
/// replaces what was there. Tests build an object from a base and the fields one case
/// changes.
pub(crate) fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_merge_and_the_rest_is_replaced() {
        let mut v = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(
            &mut v,
            json!({"a": {"c": [3], "e": null}, "d": {"f": true}}),
        );
        assert_eq!(
            v,
            json!({"a": {"b": 1, "c": [3], "e": null}, "d": {"f": true}})
        );
    }
}
