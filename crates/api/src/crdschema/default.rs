//! Defaulting: filling in the `default` values of a custom object's schema (upstream's
//! `apiextensions-apiserver/pkg/apiserver/schema/defaulting`).
//!
//! In every object the schema describes, each property with a `default` that is absent (or
//! null while the property is not `nullable`) gets a copy of the default; then every field is
//! defaulted by its own schema (a property's, or `additionalProperties`'), and every array item
//! by `items`. A null field of an `additionalProperties` map or a null array item that is not
//! `nullable` gets the default of that schema, if it has one.

use super::{Additional, additional, flag, items};
use serde_json::Value;

/// Applies `schema`'s defaults to `obj` (a whole custom object), in place.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    walk(schema, obj);
}

/// The schema's non-null `default`.
fn default_of(schema: &Value) -> Option<&Value> {
    schema.get("default").filter(|d| !d.is_null())
}

/// A null where the schema does not allow null.
fn non_nullable_null(x: &Value, schema: &Value) -> bool {
    x.is_null() && !flag(schema, "nullable")
}

fn walk(schema: &Value, x: &mut Value) {
    if !schema.is_object() {
        return;
    }
    match x {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, prop) in props.into_iter().flatten() {
                let Some(default) = default_of(prop) else {
                    continue;
                };
                if map.get(k).is_none_or(|v| non_nullable_null(v, prop)) {
                    map.insert(k.clone(), default.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = props.and_then(|p| p.get(k)) {
                    walk(prop, v);
                } else if let Additional::Schema(extra) = additional(schema) {
                    if non_nullable_null(v, extra) {
                        *v = default_of(extra).cloned().unwrap_or(Value::Null);
                    }
                    walk(extra, v);
                }
            }
        }
        Value::Array(list) => {
            let Some(item) = items(schema) else {
                return;
            };
            for v in list.iter_mut() {
                if non_nullable_null(v, item) {
                    *v = default_of(item).cloned().unwrap_or(Value::Null);
                }
                walk(item, v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaulted(schema: Value, mut obj: Value) -> Value {
        apply_defaults(&schema, &mut obj);
        obj
    }

    #[test]
    fn fills_absent_fields_recursively() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "default": "auto"},
            "inner": {"type": "object", "properties": {"x": {"type": "string", "default": "d"}}}}}}});
        assert_eq!(
            defaulted(schema.clone(), json!({})),
            json!({"spec": {"replicas": 1, "mode": "auto"}})
        );
        assert_eq!(
            defaulted(schema, json!({"spec": {"replicas": 3, "inner": {}}})),
            json!({"spec": {"replicas": 3, "mode": "auto", "inner": {"x": "d"}}})
        );
    }

    #[test]
    fn items_and_maps() {
        let schema = json!({"type": "object", "properties": {
            "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "integer", "default": 80}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"on": {"type": "boolean", "default": true}}}}}});
        assert_eq!(
            defaulted(
                schema,
                json!({"list": [{}, {"p": 1}], "map": {"a": {}, "b": {"on": false}}})
            ),
            json!({"list": [{"p": 80}, {"p": 1}], "map": {"a": {"on": true}, "b": {"on": false}}})
        );
    }

    #[test]
    fn nulls() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "string", "nullable": true, "default": "y"},
            "list": {"type": "array", "items": {"type": "string", "default": "z"}},
            "map": {"type": "object", "additionalProperties": {"type": "string", "default": "w"}}}});
        assert_eq!(
            defaulted(
                schema,
                json!({"a": null, "b": null, "list": [null, "q"], "map": {"k": null}})
            ),
            json!({"a": "x", "b": null, "list": ["z", "q"], "map": {"k": "w"}})
        );
    }
}
