//! The checks upstream makes of a definition's `openAPIV3Schema` when the definition is created:
//! that it is structural, and that it uses only what custom resources support.
//!
//! In upstream's order: `nullable` at the root; then the structural invariants and the
//! completeness of value validations (sorted by their text, as upstream sorts them); then the
//! per-node checks of the OpenAPI schema (`$ref`, `uniqueItems`, `additionalItems`, list and map
//! types, ...). Not checked here: the root `metadata` restriction to `name`/`generateName`,
//! defaults against their schemas, and CEL rules (`x-kubernetes-validations`).

use super::regex::Regex;
use super::{Additional, additional, flag, items, type_of};
use crate::validation::FieldError;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

fn props(schema: &Value) -> impl Iterator<Item = (&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

fn list<'a>(schema: &'a Value, k: &str) -> &'a [Value] {
    schema
        .get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(schema: &'a Value, k: &str) -> &'a str {
    schema.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The checks upstream makes that `schema` (a version's `openAPIV3Schema`, at `field_path_prefix`
/// such as `spec.versions[0].schema.openAPIV3Schema`) is structural and supported.
pub fn structural_errors(schema: &Value, field_path_prefix: &str) -> Vec<FieldError> {
    let path = field_path_prefix;
    let mut out = Vec::new();
    if flag(schema, "nullable") {
        out.push(FieldError::forbidden(
            child(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    invariants(schema, Level::Root, path, &mut structural);
    value_completeness(schema, Some(schema), path, path, &mut structural);
    structural.sort_by_key(ToString::to_string);
    out.extend(structural);
    let ctx = Context {
        root: true,
        in_meta: false,
        no_defaults: None,
    };
    openapi(schema, path, &ctx, &mut out);
    out
}

fn int_or_string_any_of(anyof: &[Value]) -> bool {
    anyof == [json!({"type": "integer"}), json!({"type": "string"})]
}

/// Upstream's `validateStructuralInvariants`.
fn invariants(s: &Value, lvl: Level, path: &str, out: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    let ty = type_of(s);
    let item = items(s);
    if ty == "array" && item.is_none() {
        out.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(item) = item {
        invariants(item, Level::Item, &child(path, "items"), out);
    }
    for (k, p) in props(s) {
        invariants(p, Level::Field, &key(&child(path, "properties"), k), out);
    }
    let extra = additional(s);
    if !matches!(extra, Additional::Absent) && lvl == Level::Root {
        out.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used at the root",
        ));
    }
    if let Additional::Schema(a) = extra {
        invariants(a, Level::Field, &child(path, "additionalProperties"), out);
    }
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    if int_or_string && preserve {
        let at = child(path, "x-kubernetes-preserve-unknown-fields");
        out.push(FieldError::invalid(
            at,
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        let at = child(path, "x-kubernetes-embedded-resource");
        out.push(FieldError::invalid(
            at,
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = int_or_string_any_of(list(s, "anyOf"));
    let skip_first_all_of = list(s, "allOf")
        .first()
        .is_some_and(|a| int_or_string_any_of(list(a, "anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of, lvl, path, out);
    let at_type = child(path, "type");
    if embedded && ty != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        out.push(if ty.is_empty() {
            FieldError::required(at_type.clone(), msg)
        } else {
            FieldError::invalid(at_type.clone(), &Value::from(ty), msg)
        });
    } else if ty.is_empty() && !int_or_string && !preserve {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(FieldError::required(at_type.clone(), msg));
    }
    if embedded && !matches!(extra, Additional::Absent) {
        let msg = "must not be used if x-kubernetes-embedded-resource is set";
        out.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            msg,
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(FieldError::invalid(
            at_type,
            &Value::from(ty),
            "must be object at the root",
        ));
    }
    meta_invariants(s, lvl == Level::Root || embedded, path, out);
    if embedded && !preserve && props(s).next().is_none() {
        let msg = "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields";
        out.push(FieldError::required(child(path, "properties"), msg));
    }
}

/// The types of `kind`, `apiVersion` and `metadata` where an object is a resource.
fn meta_invariants(s: &Value, check: bool, path: &str, out: &mut Vec<FieldError>) {
    if !check {
        return;
    }
    for (name, want, msg) in [
        ("kind", "string", "must be string"),
        ("apiVersion", "string", "must be string"),
        ("metadata", "object", "must be object"),
    ] {
        if let Some(p) = super::property(s, name) {
            let ty = type_of(p);
            if ty != want {
                let at = child(&key(&child(path, "properties"), name), "type");
                out.push(FieldError::invalid(at, &Value::from(ty), msg));
            }
        }
    }
}

/// Upstream's `validateValueValidation`: allOf/anyOf/oneOf/not and the pattern.
fn value_validation(
    v: &Value,
    skip_any_of: bool,
    skip_first_all_of: bool,
    lvl: Level,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, sub) in list(v, "anyOf").iter().enumerate() {
            nested(
                sub,
                false,
                lvl,
                &format!("{}[{i}]", child(path, "anyOf")),
                out,
            );
        }
    }
    for (i, sub) in list(v, "allOf").iter().enumerate() {
        nested(
            sub,
            skip_first_all_of && i == 0,
            lvl,
            &format!("{}[{i}]", child(path, "allOf")),
            out,
        );
    }
    for (i, sub) in list(v, "oneOf").iter().enumerate() {
        nested(
            sub,
            false,
            lvl,
            &format!("{}[{i}]", child(path, "oneOf")),
            out,
        );
    }
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        nested(not, false, lvl, &child(path, "not"), out);
    }
    let pattern = text(v, "pattern");
    if !pattern.is_empty()
        && let Err(e) = Regex::new(pattern)
    {
        let detail = format!("must be a valid regular expression, but isn't: {e}");
        out.push(FieldError::invalid(
            child(path, "pattern"),
            &Value::from(pattern),
            detail,
        ));
    }
}

/// Upstream's `validateNestedValueValidation`: what a schema under allOf/anyOf/oneOf/not may
/// not say.
fn nested(v: &Value, skip_any_of: bool, lvl: Level, path: &str, out: &mut Vec<FieldError>) {
    if !v.is_object() {
        return;
    }
    value_validation(v, skip_any_of, false, lvl, path, out);
    if let Some(item) = items(v) {
        nested(item, false, lvl, &child(path, "items"), out);
    }
    for (k, p) in props(v) {
        nested(
            p,
            false,
            Level::Field,
            &key(&child(path, "properties"), k),
            out,
        );
    }
    let forbid = |out: &mut Vec<FieldError>, k: &str, msg: &str| {
        out.push(FieldError::forbidden(child(path, k), msg));
    };
    if !type_of(v).is_empty() {
        forbid(out, "type", "must be empty to be structural");
    }
    if !matches!(additional(v), Additional::Absent) {
        forbid(
            out,
            "additionalProperties",
            "must be undefined to be structural",
        );
    }
    if v.get("default").is_some_and(|d| !d.is_null()) {
        forbid(out, "default", "must be undefined to be structural");
    }
    for k in ["title", "description"] {
        if !text(v, k).is_empty() {
            forbid(out, k, "must be empty to be structural");
        }
    }
    if flag(v, "nullable") {
        forbid(out, "nullable", "must be false to be structural");
    }
    for k in [
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if flag(v, k) {
            forbid(out, k, "must be false to be structural");
        }
    }
    if !list(v, "x-kubernetes-list-map-keys").is_empty() {
        forbid(
            out,
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    for k in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if v.get(k).is_some_and(|x| !x.is_null()) {
            forbid(out, k, "must be undefined to be structural");
        }
    }
    if !list(v, "x-kubernetes-validations").is_empty() {
        forbid(
            out,
            "x-kubernetes-validations",
            "must be empty to be structural",
        );
    }
    if super::property(v, "metadata").is_some() {
        let at = key(&child(path, "properties"), "metadata");
        out.push(FieldError::forbidden(
            at,
            "must not be specified in a nested context",
        ));
    }
}

/// Upstream's completeness check: what allOf/anyOf/oneOf/not say about fields and items must
/// also be in the structural part of the schema.
fn value_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    out: &mut Vec<FieldError>,
) {
    if let Some(not) = v.get("not").filter(|n| n.is_object()) {
        nested_completeness(not, s, s_path, &child(v_path, "not"), out);
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in list(v, k).iter().enumerate() {
            nested_completeness(sub, s, s_path, &format!("{}[{i}]", child(v_path, k)), out);
        }
    }
}

fn nested_completeness(
    v: &Value,
    s: Option<&Value>,
    s_path: &str,
    v_path: &str,
    out: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        out.push(FieldError::required(
            s_path,
            format!("because it is defined in {v_path}"),
        ));
        return;
    };
    value_completeness(v, Some(s), s_path, v_path, out);
    if let Some(item) = items(v) {
        nested_completeness(
            item,
            items(s),
            &child(s_path, "items"),
            &child(v_path, "items"),
            out,
        );
    }
    for (k, vf) in props(v) {
        let sp = key(&child(s_path, "properties"), k);
        let vp = key(&child(v_path, "properties"), k);
        match super::property(s, k) {
            Some(sf) => nested_completeness(vf, Some(sf), &sp, &vp, out),
            None => out.push(FieldError::required(
                sp,
                format!("because it is defined in {vp}"),
            )),
        }
    }
}

/// Where in the schema a node is, for the per-node checks.
#[derive(Clone)]
struct Context {
    root: bool,
    in_meta: bool,
    no_defaults: Option<String>,
}

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// Upstream's `specStandardValidatorV3.validate`: keywords custom resources do not support.
fn unsupported(s: &Value, path: &str, ctx: &Context, out: &mut Vec<FieldError>) {
    let ty = type_of(s);
    if !ty.is_empty() && !TYPES.contains(&ty) {
        out.push(FieldError::not_supported(
            child(path, "type"),
            &Value::from(ty),
            &TYPES,
        ));
    }
    if let Some(reason) = &ctx.no_defaults
        && s.get("default").is_some()
    {
        out.push(FieldError::forbidden(
            child(path, "default"),
            format!("must not be set {reason}"),
        ));
    }
    let present = |k: &str| match s.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(x)) => !x.is_empty(),
        Some(Value::Object(m)) => !m.is_empty() || k == "additionalItems" || k == "dependencies",
        Some(_) => true,
    };
    for (k, msg) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if present(k) {
            out.push(FieldError::forbidden(child(path, k), msg));
        }
    }
    if ty == "null" {
        out.push(FieldError::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.get("items")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        out.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if ctx.in_meta && flag(s, "x-kubernetes-embedded-resource") {
        let at = child(path, "x-kubernetes-embedded-resource");
        out.push(FieldError::forbidden(
            at,
            "must not be used inside of resource meta",
        ));
    }
}

/// Upstream's `ValidateCustomResourceDefinitionOpenAPISchema`, recursively.
fn openapi(s: &Value, path: &str, ctx: &Context, out: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    unsupported(s, path, ctx, out);
    if flag(s, "uniqueItems") {
        let msg =
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
        out.push(FieldError::forbidden(child(path, "uniqueItems"), msg));
    }
    let nested_ctx = Context {
        root: false,
        ..ctx.clone()
    };
    let extra = additional(s);
    if !matches!(extra, Additional::Absent) {
        if props(s).next().is_some() && !matches!(extra, Additional::Bool(true)) {
            let msg = "additionalProperties and properties are mutual exclusive";
            out.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                msg,
            ));
        }
        if let Additional::Schema(a) = extra {
            let mut sub = nested_ctx.clone();
            if ctx.in_meta {
                sub.no_defaults =
                    Some("inside additionalProperties applying to object metadata".to_string());
            }
            openapi(a, &child(path, "additionalProperties"), &sub, out);
        }
    }
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    for (k, p) in props(s) {
        let mut sub = nested_ctx.clone();
        if (ctx.root || embedded) && ["metadata", "apiVersion", "kind"].contains(&k.as_str()) {
            sub.in_meta = true;
            if ctx.root {
                sub.no_defaults = Some(format!("in top-level {k}"));
            }
        }
        openapi(p, &key(&child(path, "properties"), k), &sub, out);
    }
    if let Some(not) = s.get("not") {
        openapi(not, &child(path, "not"), &nested_ctx, out);
    }
    for k in ["allOf", "oneOf", "anyOf"] {
        for (i, sub) in list(s, k).iter().enumerate() {
            openapi(sub, &format!("{}[{i}]", child(path, k)), &nested_ctx, out);
        }
    }
    for (k, name) in [
        ("definitions", "definitions"),
        ("dependencies", "dependencies"),
    ] {
        if let Some(map) = s.get(k).and_then(Value::as_object) {
            for (d, sub) in map {
                openapi(sub, &key(&child(path, name), d), &nested_ctx, out);
            }
        }
    }
    match s.get("items") {
        Some(item @ Value::Object(_)) => openapi(item, &child(path, "items"), &nested_ctx, out),
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                openapi(
                    item,
                    &format!("{}[{i}]", child(path, "items")),
                    &nested_ctx,
                    out,
                );
            }
        }
        _ => {}
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        let at = child(path, "x-kubernetes-preserve-unknown-fields");
        out.push(FieldError::invalid(
            at,
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    list_and_map_types(s, path, out);
    list_map_keys(s, path, out);
}

/// The `x-kubernetes-map-type` and `x-kubernetes-list-type` checks.
fn list_and_map_types(s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let ty = type_of(s);
    let at_type = child(path, "type");
    let map_type = s.get("x-kubernetes-map-type").and_then(Value::as_str);
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    if let Some(mt) = map_type {
        let msg = "must be object if x-kubernetes-map-type is specified";
        if ty.is_empty() {
            out.push(FieldError::required(at_type.clone(), msg));
        } else if ty != "object" {
            out.push(FieldError::invalid(at_type.clone(), &Value::from(ty), msg));
        }
        if mt != "atomic" && mt != "granular" {
            let at = child(path, "x-kubernetes-map-type");
            out.push(FieldError::not_supported(
                at,
                &Value::from(mt),
                &["atomic", "granular"],
            ));
        }
    }
    if let Some(lt) = list_type {
        let msg = "must be array if x-kubernetes-list-type is specified";
        if ty.is_empty() {
            out.push(FieldError::required(at_type, msg));
        } else if ty != "array" {
            out.push(FieldError::invalid(at_type, &Value::from(ty), msg));
        } else if let (Some(item), "set") = (items(s), lt) {
            let msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
            let item_lt = item
                .get("x-kubernetes-list-type")
                .cloned()
                .unwrap_or(Value::Null);
            match type_of(item) {
                "array" if item_lt.as_str().is_some_and(|t| t != "atomic") => {
                    let at = child(&child(path, "items"), "x-kubernetes-list-type");
                    out.push(FieldError::invalid(at, &item_lt, msg));
                }
                "object"
                    if item.get("x-kubernetes-map-type").and_then(Value::as_str)
                        != Some("atomic") =>
                {
                    let at = child(&child(path, "items"), "x-kubernetes-map-type");
                    out.push(FieldError::invalid(at, &item_lt, msg));
                }
                _ => {}
            }
        }
        if !["atomic", "set", "map"].contains(&lt) {
            let at = child(path, "x-kubernetes-list-type");
            out.push(FieldError::not_supported(
                at,
                &Value::from(lt),
                &["atomic", "set", "map"],
            ));
        }
    }
}

/// The `x-kubernetes-list-map-keys` checks, and the keys' defaults and nullability.
fn list_map_keys(s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let keys = list(s, "x-kubernetes-list-map-keys");
    let keys_value = Value::Array(keys.to_vec());
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let at_lt = child(path, "x-kubernetes-list-type");
    if !keys.is_empty() {
        let msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => out.push(FieldError::required(at_lt, msg)),
            Some(lt) if lt != "map" => out.push(FieldError::invalid(at_lt, &Value::from(lt), msg)),
            Some(_) => {}
        }
    }
    let at_items = child(path, "items");
    let item = items(s);
    if list_type == Some("map") {
        if keys.is_empty() {
            let msg = "must not be empty if x-kubernetes-list-type is map";
            out.push(FieldError::required(
                child(path, "x-kubernetes-list-map-keys"),
                msg,
            ));
        }
        match s.get("items") {
            None | Some(Value::Null) => {
                out.push(FieldError::required(
                    at_items.clone(),
                    "must have a schema if x-kubernetes-list-type is map",
                ));
            }
            Some(v) if !v.is_object() => {
                out.push(FieldError::invalid(
                    at_items.clone(),
                    v,
                    "must only have a single schema if x-kubernetes-list-type is map",
                ));
            }
            Some(_) => {}
        }
        if let Some(item) = item {
            let item_ty = type_of(item);
            if item_ty != "object" {
                let msg = "must be object if parent array's x-kubernetes-list-type is map";
                out.push(FieldError::invalid(
                    child(&at_items, "type"),
                    &Value::from(item_ty),
                    msg,
                ));
            } else {
                let mut seen = Vec::new();
                for k in keys.iter().filter_map(Value::as_str) {
                    match super::property(item, k) {
                        Some(p) if matches!(type_of(p), "array" | "object") => {
                            let at = child(&key(&child(&at_items, "properties"), k), "type");
                            let msg = "must be a scalar type if parent array's x-kubernetes-list-type is map";
                            out.push(FieldError::invalid(at, &Value::from(item_ty), msg));
                        }
                        Some(_) => {}
                        None => {
                            let at = child(path, "x-kubernetes-list-map-keys");
                            out.push(FieldError::invalid(
                                at,
                                &keys_value,
                                "entries must all be names of item properties",
                            ));
                        }
                    }
                    if seen.contains(&k) {
                        let at = child(path, "x-kubernetes-list-map-keys");
                        out.push(FieldError::invalid(
                            at,
                            &keys_value,
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    let (Some(item), Some(lt @ ("set" | "map"))) = (item, list_type) else {
        return;
    };
    if flag(item, "nullable") {
        let msg = format!("cannot be nullable when x-kubernetes-list-type is {lt}");
        out.push(FieldError::forbidden(child(&at_items, "nullable"), msg));
    }
    if lt != "map" {
        return;
    }
    let required = list(item, "required");
    for k in keys.iter().filter_map(Value::as_str) {
        let Some(p) = super::property(item, k) else {
            continue;
        };
        let at = key(&child(&at_items, "properties"), k);
        if !required.iter().any(|r| r.as_str() == Some(k)) && p.get("default").is_none() {
            let msg = "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property";
            out.push(FieldError::required(child(&at, "default"), msg));
        }
        if flag(p, "nullable") {
            let msg = "this property is in x-kubernetes-list-map-keys, so it cannot be nullable";
            out.push(FieldError::forbidden(child(&at, "nullable"), msg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "spec.versions[0].schema.openAPIV3Schema";

    fn errs(schema: Value) -> Vec<String> {
        structural_errors(&schema, P)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A valid root whose `spec` field has the given schema.
    fn spec(s: Value) -> Value {
        json!({"type": "object", "properties": {"spec": s}})
    }

    fn at(rest: &str) -> String {
        format!("{P}{rest}")
    }

    #[test]
    fn valid_schemas_pass() {
        assert!(
            errs(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}))
                .is_empty()
        );
        let port = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
        assert!(
            errs(spec(
                json!({"type": "object", "properties": {"port": port}})
            ))
            .is_empty()
        );
        let list = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}});
        assert!(errs(spec(json!({"type": "object", "properties": {"l": list}}))).is_empty());
    }

    #[test]
    fn types_must_be_specified() {
        assert_eq!(
            errs(json!({"type": "object", "properties": {"spec": {}}})),
            [at(
                ".properties[spec].type: Required value: must not be empty for specified object fields"
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}})
            )),
            [at(
                ".properties[spec].properties[l].items.type: Required value: must not be empty for specified array items"
            )]
        );
        assert_eq!(
            errs(json!({})),
            [at(".type: Required value: must not be empty at the root")]
        );
        assert_eq!(
            errs(json!({"type": "string"})),
            [at(
                r#".type: Invalid value: "string": must be object at the root"#
            )]
        );
        assert_eq!(
            errs(spec(json!({"type": "array"}))),
            [at(
                ".properties[spec].items: Required value: must be specified"
            )]
        );
        assert_eq!(
            errs(spec(json!({"type": "date"}))),
            [at(
                r#".properties[spec].type: Unsupported value: "date": supported values: "array", "boolean", "integer", "number", "object", "string""#
            )]
        );
        assert_eq!(
            errs(json!({"type": "object", "nullable": true})),
            [at(
                ".nullable: Forbidden: nullable cannot be true at the root"
            )]
        );
    }

    #[test]
    fn additional_properties() {
        assert_eq!(
            errs(spec(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}})
            )),
            [at(
                ".properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            )]
        );
        assert_eq!(
            errs(json!({"type": "object", "additionalProperties": {"type": "string"}})),
            [at(
                ".additionalProperties: Forbidden: must not be used at the root"
            )]
        );
    }

    #[test]
    fn unsupported_keywords() {
        let cases = [
            (
                json!({"type": "string", "$ref": "#/x"}),
                ".properties[spec].$ref: Forbidden: $ref is not supported",
            ),
            (
                json!({"type": "string", "id": "x"}),
                ".properties[spec].id: Forbidden: id is not supported",
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
                ".properties[spec].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ),
            (
                json!({"type": "array", "items": {"type": "string"}, "additionalItems": false}),
                ".properties[spec].additionalItems: Forbidden: additionalItems is not supported",
            ),
            (
                json!({"type": "object", "definitions": {"a": {"type": "string"}}}),
                ".properties[spec].definitions: Forbidden: definitions is not supported",
            ),
            (
                json!({"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
                ".properties[spec].patternProperties: Forbidden: patternProperties is not supported",
            ),
            (
                json!({"type": "object", "dependencies": {"a": ["b"]}}),
                ".properties[spec].dependencies: Forbidden: dependencies is not supported",
            ),
            (
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false}),
                ".properties[spec].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
            ),
            (
                json!({"type": "string", "pattern": "("}),
                ".properties[spec].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ): `(`",
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(errs(spec(schema)), [at(want)]);
        }
        let items_list = errs(spec(
            json!({"type": "array", "items": [{"type": "string"}]}),
        ));
        assert!(items_list.contains(&at(
            ".properties[spec].items: Forbidden: items must be a schema object and not an array"
        )));
    }

    #[test]
    fn value_validations_stay_structural() {
        assert_eq!(
            errs(spec(
                json!({"type": "string", "anyOf": [{"type": "string", "nullable": true}]})
            )),
            [
                at(
                    ".properties[spec].anyOf[0].nullable: Forbidden: must be false to be structural"
                ),
                at(".properties[spec].anyOf[0].type: Forbidden: must be empty to be structural"),
            ]
        );
        // Upstream checks the completeness of the root's value validations.
        let root = json!({"type": "object", "properties": {"spec": {"type": "object"}},
            "allOf": [{"properties": {"spec": {"properties": {"x": {"minLength": 1}}}}}]});
        assert_eq!(
            errs(root),
            [at(&format!(
                ".properties[spec].properties[x]: Required value: because it is defined in {P}.allOf[0].properties[spec].properties[x]"
            ))]
        );
    }

    #[test]
    fn embedded_and_list_types() {
        assert_eq!(
            errs(spec(
                json!({"x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true})
            )),
            [at(
                ".properties[spec].type: Required value: must be object if x-kubernetes-embedded-resource is true"
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "object", "x-kubernetes-embedded-resource": true})
            )),
            [at(
                ".properties[spec].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "string", "x-kubernetes-list-type": "set"})
            )),
            [at(
                r#".properties[spec].type: Invalid value: "string": must be array if x-kubernetes-list-type is specified"#
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"})
            )),
            [at(
                r#".properties[spec].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}, "x-kubernetes-list-type": "map"})
            )),
            [at(
                ".properties[spec].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )]
        );
        assert_eq!(
            errs(spec(
                json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}},
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a"]})
            )),
            [at(
                ".properties[spec].items.properties[a].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            )]
        );
        assert_eq!(
            errs(
                json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}})
            ),
            [at(
                ".properties[metadata].default: Forbidden: must not be set in top-level metadata"
            )]
        );
    }
}
