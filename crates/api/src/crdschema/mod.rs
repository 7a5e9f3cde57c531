//! The schemas of CustomResourceDefinitions: validating, pruning and defaulting custom objects,
//! and the checks that a definition's schema is structural.
//!
//! Everything works on a version's `schema.openAPIV3Schema` as a `serde_json::Value` and a custom
//! object as a `Value`, the way upstream's apiextensions-apiserver does:
//!
//! - [`validate`]: upstream's OpenAPI v3 validation of a custom resource (kube-openapi's
//!   validator, then the checks of embedded resources and of `x-kubernetes-list-type`), with
//!   upstream's field paths and messages.
//! - [`prune`]: drops the fields the schema does not specify.
//! - [`apply_defaults`]: fills in `default` values.
//! - [`structural_errors`]: what a definition's schema must satisfy to be accepted.
//!
//! Schema nodes are read as they are written; a malformed schema (a `type` that is no string, a
//! `minimum` that is no number) is treated as if the malformed keyword were absent, so nothing
//! here panics on any input.

mod default;
mod format;
mod gofmt;
mod prune;
mod regex;
mod structural;
mod validate;

pub use default::apply_defaults;
pub use prune::prune;
pub use structural::structural_errors;
pub use validate::validate;

use serde_json::Value;

/// The schema's `type`, or `""`.
fn type_of(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Whether the schema sets the boolean `key` to true.
fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The schema of property `key`, if the schema lists it.
fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema.get("properties")?.as_object()?.get(key)
}

/// What `additionalProperties` says: absent, a boolean, or a schema.
enum Additional<'a> {
    Absent,
    Bool(bool),
    Schema(&'a Value),
}

fn additional(schema: &Value) -> Additional<'_> {
    match schema.get("additionalProperties") {
        None | Some(Value::Null) => Additional::Absent,
        Some(Value::Bool(b)) => Additional::Bool(*b),
        Some(s) if s.is_object() => Additional::Schema(s),
        Some(_) => Additional::Absent,
    }
}

/// The schema of the items of an array (only the single-schema form).
fn items(schema: &Value) -> Option<&Value> {
    schema.get("items").filter(|i| i.is_object())
}
