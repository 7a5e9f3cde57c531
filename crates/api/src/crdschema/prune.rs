//! Pruning: dropping the fields of a custom object its schema does not specify (upstream's
//! `apiextensions-apiserver/pkg/apiserver/schema/pruning`).
//!
//! A field survives if the object's schema lists it under `properties`, or the schema has
//! `additionalProperties` (a schema, or a boolean: upstream keeps the field then, but prunes
//! everything inside it), or `x-kubernetes-preserve-unknown-fields: true` keeps it. `apiVersion`,
//! `kind` and `metadata` are kept (and not looked into) at the root and in every
//! `x-kubernetes-embedded-resource` object. Only the structural part of the schema counts:
//! `properties` under `allOf`/`anyOf`/`oneOf`/`not` keep nothing.

use super::{Additional, additional, flag, items, property};
use serde_json::Value;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes from `obj` (a whole custom object) every field `schema` does not specify.
pub fn prune(schema: &Value, obj: &mut Value) {
    walk(Some(schema), obj, true);
}

/// What a field of an object is pruned with: its property's schema, the additionalProperties
/// schema, `Some(None)` for a field kept with nothing specified inside it, `None` to drop it.
fn field_schema<'a>(schema: &'a Value, key: &str) -> Option<Option<&'a Value>> {
    if let Some(prop) = property(schema, key) {
        return Some(Some(prop));
    }
    match additional(schema) {
        Additional::Schema(s) => Some(Some(s)),
        Additional::Bool(_) => Some(None),
        Additional::Absent => None,
    }
}

fn walk(schema: Option<&Value>, x: &mut Value, root: bool) {
    let schema = schema.filter(|s| s.is_object());
    if let Some(s) = schema
        && flag(s, "x-kubernetes-preserve-unknown-fields")
    {
        skip(s, x, root);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = schema else {
                map.clear();
                return;
            };
            let embedded = root || flag(s, "x-kubernetes-embedded-resource");
            map.retain(|k, v| {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                match field_schema(s, k) {
                    Some(sub) => {
                        walk(sub, v, false);
                        true
                    }
                    None => false,
                }
            });
        }
        Value::Array(list) => {
            let item = schema.and_then(items);
            for v in list {
                walk(item, v, false);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields: true`: unknown fields stay, the specified ones
/// are pruned by their own schemas.
fn skip(schema: &Value, x: &mut Value, root: bool) {
    match x {
        Value::Object(map) => {
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(sub) = field_schema(schema, k) {
                    walk(sub, v, false);
                }
            }
        }
        Value::Array(list) => {
            if let Some(item) = items(schema) {
                for v in list {
                    skip(item, v, false);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pruned(schema: Value, mut obj: Value) -> Value {
        prune(&schema, &mut obj);
        obj
    }

    #[test]
    fn drops_unspecified_fields() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}}}}});
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "odd": 1}, "junk": 1,
            "spec": {"a": "x", "b": 2, "list": [{"n": 1, "m": 2}], "map": {"k": {"v": "1", "w": 2}}}});
        assert_eq!(
            pruned(schema, obj),
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "odd": 1},
                "spec": {"a": "x", "list": [{"n": 1}], "map": {"k": {"v": "1"}}}})
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_them() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}}});
        let obj = json!({"spec": {"other": {"deep": 1}, "known": {"a": "x", "b": 1}}});
        assert_eq!(
            pruned(schema, obj),
            json!({"spec": {"other": {"deep": 1}, "known": {"a": "x"}}})
        );
        let root = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let obj = json!({"kind": "K", "anything": {"goes": [1]}});
        assert_eq!(pruned(root, obj.clone()), obj);
    }

    #[test]
    fn embedded_resources_keep_their_meta() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "plain": {"type": "object", "properties": {"a": {"type": "string"}}}}}}});
        let obj = json!({"spec": {
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "spec": {"a": "1", "b": 2}, "extra": 1},
            "plain": {"apiVersion": "v1", "kind": "Pod", "a": "1"}}});
        assert_eq!(
            pruned(schema, obj),
            json!({"spec": {
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "spec": {"a": "1"}},
                "plain": {"a": "1"}}})
        );
    }

    #[test]
    fn additional_properties_true_keeps_the_key_only() {
        let schema = json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": true}}});
        let obj = json!({"m": {"a": 1, "b": {"c": 1}}});
        assert_eq!(pruned(schema, obj), json!({"m": {"a": 1, "b": {}}}));
    }
}
