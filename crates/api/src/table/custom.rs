//! Custom resources' tables when their definition names columns (`additionalPrinterColumns`):
//! the name, then each column's cell read at its JSONPath, formatted by its type as upstream's
//! custom resource table does (a `date` as an age). Without columns a custom resource prints
//! name and age (`CUSTOM` in the module above).

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::Value;

use super::{Column, NAME, ago, name};
use crate::resources::PrinterColumn;

/// The name column, then the definition's.
pub(super) fn columns(defined: &[PrinterColumn]) -> Vec<Column> {
    let mut out = vec![NAME];
    out.extend(defined.iter().map(|c| Column {
        name: Cow::Owned(c.name.clone()),
        kind: Cow::Owned(c.kind.clone()),
        format: Cow::Owned(c.format.clone()),
        priority: c.priority,
    }));
    out
}

/// The name, then one cell per defined column: null where the path finds nothing.
pub(super) fn cells(defined: &[PrinterColumn], obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut out = vec![name(obj)];
    out.extend(defined.iter().map(|c| match find(obj, &c.json_path) {
        None | Some(Value::Null) => Value::Null,
        Some(v) => cell(&c.kind, v, now),
    }));
    out
}

/// A found value as its column's type shows it.
fn cell(kind: &str, v: &Value, now: Timestamp) -> Value {
    match (kind, v) {
        ("date", Value::String(s)) => Value::from(ago(s.parse().ok(), now)),
        ("integer" | "number" | "boolean", Value::Number(_) | Value::Bool(_)) => v.clone(),
        (_, Value::String(s)) => Value::from(s.as_str()),
        _ => Value::from(v.to_string()),
    }
}

/// The first value a JSONPath of the forms printer columns use finds: `.a.b`, `.a[0].b`,
/// `.a[*].b`, `.a[?(@.type=="Ready")].status`, with `\.` for a dot inside a key.
fn find<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let steps = steps(path.strip_prefix('.').unwrap_or(path))?;
    walk(obj, &steps)
}

/// One step of a path.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
    Filter(String, String),
}

fn steps(mut path: &str) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    while !path.is_empty() {
        if let Some(rest) = path.strip_prefix('[') {
            let end = rest.find(']')?;
            out.push(bracket(&rest[..end])?);
            path = rest[end + 1..]
                .strip_prefix('.')
                .unwrap_or(&rest[end + 1..]);
            continue;
        }
        let mut key = String::new();
        let mut chars = path.char_indices().peekable();
        let mut end = path.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => key.extend(chars.next().map(|(_, c)| c)),
                '.' | '[' => {
                    end = i;
                    break;
                }
                c => key.push(c),
            }
        }
        out.push(Step::Key(key));
        path = &path[end..];
        path = path.strip_prefix('.').unwrap_or(path);
    }
    Some(out)
}

/// `[0]`, `[*]` or `[?(@.key=="value")]`.
fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = inner.parse() {
        return Some(Step::Index(i));
    }
    let cond = inner.strip_prefix("?(@.")?.strip_suffix(')')?;
    let (key, value) = cond.split_once("==")?;
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    Some(Step::Filter(key.trim().to_string(), value.to_string()))
}

fn walk<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(v);
    };
    match step {
        Step::Key(k) => walk(v.get(k)?, rest),
        Step::Index(i) => walk(v.get(*i)?, rest),
        Step::All => v.as_array()?.iter().find_map(|e| walk(e, rest)),
        Step::Filter(key, want) => v
            .as_array()?
            .iter()
            .filter(|e| match &e[key] {
                Value::String(s) => s == want,
                other => serde_json::from_str::<Value>(want).is_ok_and(|w| w == *other),
            })
            .find_map(|e| walk(e, rest)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn column(name: &str, kind: &str, path: &str) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            kind: kind.into(),
            json_path: path.into(),
            ..PrinterColumn::default()
        }
    }

    #[test]
    fn cells_come_from_each_columns_path() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let obj = json!({
            "metadata": {"name": "c", "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/name": "db"}},
            "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
        });
        let defined = [
            column("Replicas", "integer", ".spec.replicas"),
            column(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            column("Port", "integer", ".spec.ports[1].port"),
            column(
                "App",
                "string",
                ".metadata.labels.app\\.kubernetes\\.io/name",
            ),
            column("Age", "date", ".metadata.creationTimestamp"),
            column("Missing", "string", ".status.nothing"),
            column("Ports", "string", ".spec.ports[0]"),
        ];
        assert_eq!(
            cells(&defined, &obj, now),
            [
                json!("c"),
                json!(3),
                json!("True"),
                json!(443),
                json!("db"),
                json!("60m"),
                Value::Null,
                json!("{\"port\":80}")
            ]
        );
        let cols = columns(&defined);
        assert_eq!(
            (cols[0].name.as_ref(), cols[1].name.as_ref()),
            ("Name", "Replicas")
        );
        assert_eq!(cols.len(), defined.len() + 1);
    }
}
