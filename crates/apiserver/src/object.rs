//! Small helpers over objects in their JSON form: metadata access and system fields.

use serde_json::{Map, Value, json};

/// `metadata.<field>` as a string, or "".
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The object's `metadata`, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

/// Now, as upstream writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random 5-character suffix for `generateName`, from upstream's alphabet (no vowels, no
/// confusable characters).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Everything but `metadata` and `status`: what a change to bumps `generation`.
pub fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Sets (or, with `None`, removes) the field at a JSON pointer of plain object keys,
/// creating the objects on the way.
pub fn set_pointer(doc: &mut Value, path: &str, value: Option<Value>) {
    let mut keys: Vec<&str> = path.split('/').skip(1).collect();
    let leaf = keys.pop().expect("a pointer names a field");
    let mut at = doc;
    for k in keys {
        if !at.get(k).is_some_and(Value::is_object) {
            if value.is_none() {
                return;
            }
            at[k] = json!({});
        }
        at = &mut at[k];
    }
    match (value, at.as_object_mut()) {
        (Some(v), Some(m)) => {
            m.insert(leaf.into(), v);
        }
        (None, Some(m)) => {
            m.remove(leaf);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helpers() {
        let mut o = json!({"kind": "Pod"});
        meta_mut(&mut o).insert("name".into(), json!("p"));
        assert_eq!(meta_str(&o, "name"), "p");
        assert_eq!(
            finalizers(&json!({"metadata": {"finalizers": ["a", "b"]}})),
            ["a", "b"]
        );
        let s = name_suffix();
        assert_eq!(s.len(), 5);
        assert!(now().ends_with('Z'));
        assert_eq!(
            spec_part(&json!({"metadata": {}, "spec": 1, "status": 2})),
            json!({"spec": 1})
        );
    }
}
