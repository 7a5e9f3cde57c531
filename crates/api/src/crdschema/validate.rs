//! Validating a custom object against its definition's schema, as upstream does on create and
//! update.
//!
//! Three passes, in upstream's order: kube-openapi's OpenAPI v3 validator (type, nullable,
//! formats, bounds, lengths, patterns, enums, items, properties, required, additionalProperties,
//! allOf/anyOf/oneOf/not), then the checks of `x-kubernetes-embedded-resource` objects (apiVersion,
//! kind, metadata), then `x-kubernetes-list-type` `set` and `map` uniqueness.
//!
//! kube-openapi names fields with dots from the root (`spec.replicas`, `spec.items[0].name`; a
//! required field of the root is `.name`, printed without the dot) and repeats that name in its
//! messages (`spec.replicas in body must be of type integer: "string"`). Its errors that are no
//! field errors (the allOf/anyOf/oneOf/not summaries, range-check failures) have no field, which
//! upstream prints as `<nil>` with the value `""`.

use super::format;
use super::gofmt::{self, GoNumber};
use super::{Additional, additional, flag, items, property, type_of};
use crate::validation::{FieldError, NameRule, dns1035_label, object_meta};
use serde_json::{Map, Value};

/// What kind of field error a kube-openapi error becomes.
enum Kind {
    Required,
    Enum(Vec<String>),
    TooLong(i64),
    TooMany(usize, i64),
    Invalid,
}

/// One kube-openapi error, before upstream turns it into a field error.
enum OpenApiError {
    /// An `errors.Validation`: the dotted name, the kind, the value shown and the message.
    Field(String, Kind, Value, String),
    /// Any other error: shown at `<nil>` with the value `""`.
    Plain(String),
}

type Errors = Vec<OpenApiError>;

fn invalid(out: &mut Errors, name: &str, value: Value, msg: String) {
    out.push(OpenApiError::Field(
        name.to_string(),
        Kind::Invalid,
        value,
        msg,
    ));
}

/// kube-openapi's `InvalidType` error: `<name> in body must be of type <ty>: "<got>"`.
fn invalid_type(out: &mut Errors, name: &str, ty: &str, got: &str) {
    let msg = format!("{name} in body must be of type {ty}: {got:?}");
    invalid(out, name, Value::from(got), msg);
}

/// Validates `obj` against `schema` (a version's `openAPIV3Schema`), returning upstream's field
/// errors. Root `metadata` is validated as the schema says (the registry checks the rest).
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    node(schema, obj, "", &mut errors);
    let mut out: Vec<FieldError> = errors.into_iter().map(to_field_error).collect();
    embedded(Some(schema), obj, "", &mut out);
    if let Some(map) = obj.as_object() {
        list_types_object(schema, map, "", &mut out);
    }
    out
}

fn to_field_error(e: OpenApiError) -> FieldError {
    match e {
        OpenApiError::Plain(msg) => FieldError::invalid("<nil>", &Value::from(""), msg),
        OpenApiError::Field(name, kind, value, msg) => {
            let path = if name.is_empty() || name == "." {
                "<nil>".to_string()
            } else {
                name.strip_prefix('.').unwrap_or(&name).to_string()
            };
            match kind {
                Kind::Required => FieldError::required(path, ""),
                Kind::Enum(values) => {
                    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                    FieldError::not_supported(path, &value, &refs)
                }
                Kind::TooLong(max) => FieldError::too_long(path, usize::try_from(max).unwrap_or(0)),
                // Upstream: `Too many: <n>: must have at most <max> items` (field.TooMany); the
                // closest the existing kinds can say.
                Kind::TooMany(actual, max) => {
                    let noun = if max == 1 { "item" } else { "items" };
                    let detail = format!("must have at most {max} {noun}");
                    FieldError::invalid(path, &Value::from(actual), detail)
                }
                Kind::Invalid => FieldError::invalid(path, &value, msg),
            }
        }
    }
}

/// The types a schema allows: `x-kubernetes-int-or-string` is integer or string.
fn types(schema: &Value) -> Vec<&str> {
    if flag(schema, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match type_of(schema) {
        "" => Vec::new(),
        t => vec![t],
    }
}

fn int_keyword(schema: &Value, key: &str) -> Option<i64> {
    let v = schema.get(key)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn value_of(n: &GoNumber) -> Value {
    match *n {
        GoNumber::Int(i) => Value::from(i),
        GoNumber::Float(f) => gofmt::float_value(f),
    }
}

/// kube-openapi's `SchemaValidator.Validate` of one value at one (dotted) name.
fn node(schema: &Value, data: &Value, name: &str, out: &mut Errors) {
    if !schema.is_object() {
        return;
    }
    let tys = types(schema);
    let fmt = format::effective(
        &tys,
        schema.get("format").and_then(Value::as_str).unwrap_or(""),
    );
    if data.is_null() {
        type_check(schema, &tys, fmt, data, name, out);
        enum_check(schema, data, name, out);
        return;
    }
    type_check(schema, &tys, fmt, data, name, out);
    combinators(schema, data, name, out);
    if let Some(s) = data.as_str() {
        string_checks(schema, s, name, out);
        if format::is_string_format(fmt) && !format::check(fmt, s) {
            invalid_type(out, name, fmt, s);
        }
    }
    if let Some(n) = data.as_number() {
        number_checks(schema, &tys, fmt, &gofmt::number(n), name, out);
    }
    if let Some(list) = data.as_array() {
        array_checks(schema, list, name, out);
    }
    enum_check(schema, data, name, out);
    if let Some(map) = data.as_object() {
        object_checks(schema, map, name, out);
    }
}

/// kube-openapi's type validator: the value's JSON type (and number format) against `type`.
fn type_check(schema: &Value, tys: &[&str], fmt: &str, data: &Value, name: &str, out: &mut Errors) {
    if tys.is_empty() && fmt.is_empty() {
        return;
    }
    if data.is_null() {
        if !tys.is_empty() && !tys.contains(&"null") && !flag(schema, "nullable") {
            invalid_type(out, name, &tys.join(","), "null");
        }
        return;
    }
    let (actual, actual_fmt, float) = match data {
        Value::Bool(_) => ("boolean", "", None),
        Value::String(_) => ("string", "", None),
        Value::Array(_) => ("array", "", None),
        Value::Object(_) => ("object", "", None),
        Value::Number(n) => match gofmt::number(n) {
            GoNumber::Int(_) => ("integer", "int64", None),
            GoNumber::Float(f) => ("number", "float64", Some(f)),
        },
        Value::Null => return,
    };
    let float_int = float.is_some_and(gofmt::is_json_integer) && tys.contains(&"integer");
    let int_float = actual == "integer" && tys.contains(&"number");
    let stringish = data.is_string() || data.is_array();
    let fits = tys.contains(&actual) || float_int || int_float;
    if !(stringish || fmt.is_empty() || fits || actual_fmt == fmt) {
        invalid_type(out, name, fmt, actual_fmt);
        return;
    }
    let numeric = tys.contains(&"number") || tys.contains(&"integer");
    if !numeric && !fmt.is_empty() && stringish {
        return;
    }
    if !fits {
        invalid_type(out, name, &tys.join(","), actual);
    }
}

/// Validates `data` against each of a list of subschemas, at the same name.
fn each(schema: &Value, key: &str, data: &Value, name: &str) -> Vec<Errors> {
    let Some(list) = schema.get(key).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|sub| {
            let mut errs = Vec::new();
            node(sub, data, name, &mut errs);
            errs
        })
        .collect()
}

/// kube-openapi's schema-props validator: anyOf, oneOf, allOf and not.
fn combinators(schema: &Value, data: &Value, name: &str, out: &mut Errors) {
    let any = each(schema, "anyOf", data, name);
    if !any.is_empty() && !any.iter().any(Vec::is_empty) {
        let msg = format!("{name:?} must validate at least one schema (anyOf)");
        out.push(OpenApiError::Plain(msg));
        // Upstream keeps the failures of the best-matching subschema; the first one stands in.
        out.extend(any.into_iter().next().unwrap_or_default());
    }
    let one = each(schema, "oneOf", data, name);
    if !one.is_empty() {
        let valid = one.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let how = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            let msg = format!("{name:?} must validate one and only one schema (oneOf). {how}");
            out.push(OpenApiError::Plain(msg));
            if valid == 0 {
                out.extend(one.into_iter().next().unwrap_or_default());
            }
        }
    }
    let all = each(schema, "allOf", data, name);
    if !all.is_empty() {
        let total = all.len();
        let valid = all.iter().filter(|r| r.is_empty()).count();
        for r in all {
            out.extend(r);
        }
        if valid != total {
            let none = if valid == 0 { ". None validated" } else { "" };
            let msg = format!("{name:?} must validate all the schemas (allOf){none}");
            out.push(OpenApiError::Plain(msg));
        }
    }
    if let Some(not) = schema.get("not").filter(|n| n.is_object()) {
        let mut errs = Vec::new();
        node(not, data, name, &mut errs);
        if errs.is_empty() {
            let msg = format!("{name:?} must not validate the schema (not)");
            out.push(OpenApiError::Plain(msg));
        }
    }
}

/// kube-openapi's string validator: the first failing of maxLength, minLength and pattern.
fn string_checks(schema: &Value, s: &str, name: &str, out: &mut Errors) {
    let len = s.chars().count() as i64;
    if let Some(max) = int_keyword(schema, "maxLength")
        && len > max
    {
        let msg = format!("{name} in body should be at most {max} chars long");
        out.push(OpenApiError::Field(
            name.to_string(),
            Kind::TooLong(max),
            Value::from(s),
            msg,
        ));
        return;
    }
    if let Some(min) = int_keyword(schema, "minLength")
        && len < min
    {
        invalid(
            out,
            name,
            Value::from(s),
            format!("{name} in body should be at least {min} chars long"),
        );
        return;
    }
    if let Some(pattern) = schema
        .get("pattern")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        match super::regex::Regex::new(pattern) {
            Err(e) => {
                let msg =
                    format!("{name} in body should match '{pattern}, but pattern is invalid: {e}'");
                invalid(out, name, Value::from(s), msg);
            }
            Ok(re) if !re.is_match(s) => {
                invalid(
                    out,
                    name,
                    Value::from(s),
                    format!("{name} in body should match '{pattern}'"),
                );
            }
            Ok(_) => {}
        }
    }
}

/// kube-openapi's `IsValueValidAgainstRange`: whether a number fits the schema's numeric type
/// and format; the message if not.
fn range_error(n: &GoNumber, ty: &str, fmt: &str, prefix: &str, name: &str) -> Option<String> {
    let rep = match *n {
        GoNumber::Int(i) => i.to_string(),
        GoNumber::Float(f) => format!("{f}"),
    };
    let fits = match ty {
        "integer" if fmt == "int32" => rep.parse::<i32>().is_ok(),
        "integer" => rep.parse::<i64>().is_ok(),
        _ if fmt == "float" => rep.parse::<f32>().is_ok_and(f32::is_finite),
        _ => true,
    };
    if fits {
        return None;
    }
    Some(if fmt.is_empty() {
        format!("{prefix} value must be of type {ty} (default format) in {name}")
    } else {
        format!("{prefix} value must be of type {ty} with format {fmt} in {name}")
    })
}

/// A bound as upstream prints it: an integer when compared natively with an integer value.
fn bound_text(native: bool, bound: f64) -> String {
    if native {
        (bound as i64).to_string()
    } else {
        gofmt::float(bound)
    }
}

/// kube-openapi's number validator: range of the type, multipleOf, minimum, maximum.
fn number_checks(
    schema: &Value,
    tys: &[&str],
    fmt: &str,
    n: &GoNumber,
    name: &str,
    out: &mut Errors,
) {
    let ty = match tys {
        [t @ ("integer" | "number")] => *t,
        _ => "",
    };
    let fmt = match (ty, fmt) {
        ("integer", "int32" | "int64") | ("number", "float" | "double") => fmt,
        _ => "",
    };
    if let Some(e) = range_error(n, ty, fmt, "Checked", name) {
        out.push(OpenApiError::Plain(e));
    }
    let data = value_of(n);
    let as_float = match *n {
        GoNumber::Int(i) => i as f64,
        GoNumber::Float(f) => f,
    };
    let bound = |key: &str, prefix: &str, out: &mut Errors| -> Option<(f64, bool)> {
        let b = schema.get(key)?.as_f64()?;
        let err = range_error(&GoNumber::Float(b), ty, fmt, prefix, name);
        let native = err.is_none() && matches!(n, GoNumber::Int(_));
        if let Some(e) = err {
            out.push(OpenApiError::Plain(e));
        }
        Some((b, native))
    };
    if let Some((factor, native)) = bound("multipleOf", "MultipleOf", out) {
        let shown = if native {
            (factor as i64) as f64
        } else {
            factor
        };
        if shown <= 0.0 {
            let msg = format!(
                "factor MultipleOf declared for {name} must be positive: {}",
                bound_text(native, factor)
            );
            invalid(
                out,
                name,
                if native {
                    Value::from(factor as i64)
                } else {
                    gofmt::float_value(factor)
                },
                msg,
            );
        } else {
            let multiple = match *n {
                GoNumber::Int(i) if native => i % (factor as i64) == 0,
                _ => {
                    let m = if factor < 1.0 {
                        1.0 / factor * as_float
                    } else {
                        as_float / factor
                    };
                    gofmt::is_json_integer(m)
                }
            };
            if !multiple {
                let msg = format!(
                    "{name} in body should be a multiple of {}",
                    bound_text(native, factor)
                );
                invalid(out, name, data.clone(), msg);
            }
        }
    }
    let exclusive = |key: &str| flag(schema, key);
    if let Some((min, native)) = bound("minimum", "Minimum boundary", out) {
        let excl = exclusive("exclusiveMinimum");
        let below = match *n {
            GoNumber::Int(i) if native => i < min as i64 || (excl && i <= min as i64),
            _ => as_float < min || (excl && as_float <= min),
        };
        if below {
            let rel = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            let msg = format!("{name} in body should be {rel} {}", bound_text(native, min));
            invalid(out, name, data.clone(), msg);
        }
    }
    if let Some((max, native)) = bound("maximum", "Maximum boundary", out) {
        let excl = exclusive("exclusiveMaximum");
        let above = match *n {
            GoNumber::Int(i) if native => i > max as i64 || (excl && i >= max as i64),
            _ => as_float > max || (excl && as_float >= max),
        };
        if above {
            let rel = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            let msg = format!("{name} in body should be {rel} {}", bound_text(native, max));
            invalid(out, name, data, msg);
        }
    }
}

/// kube-openapi's slice validator: items, minItems, maxItems, uniqueItems.
fn array_checks(schema: &Value, list: &[Value], name: &str, out: &mut Errors) {
    match schema.get("items") {
        Some(Value::Object(_)) => {
            let item = &schema["items"];
            for (i, v) in list.iter().enumerate() {
                node(item, v, &format!("{name}[{i}]"), out);
            }
        }
        Some(Value::Array(schemas)) => {
            for (i, (s, v)) in schemas.iter().zip(list).enumerate() {
                node(s, v, &format!("{name}[{i}]"), out);
            }
        }
        _ => {}
    }
    let size = list.len();
    if let Some(min) = int_keyword(schema, "minItems")
        && (size as i64) < min
    {
        invalid(
            out,
            name,
            Value::from(size),
            format!("{name} in body should have at least {min} items"),
        );
    }
    if let Some(max) = int_keyword(schema, "maxItems")
        && size as i64 > max
    {
        let msg = format!("{name} in body should have at most {max} items");
        out.push(OpenApiError::Field(
            name.to_string(),
            Kind::TooMany(size, max),
            Value::Null,
            msg,
        ));
    }
    if flag(schema, "uniqueItems") {
        let dup = list.iter().enumerate().any(|(i, a)| list[..i].contains(a));
        if dup {
            invalid(
                out,
                name,
                Value::from(""),
                format!("{name} in body shouldn't contain duplicates"),
            );
        }
    }
}

/// Whether a value equals an `enum` entry the way kube-openapi compares them: Go's conversion of
/// the value to the entry's type (so `1.5` matches `1`, and the number 97 matches `"a"`).
fn enum_matches(data: &Value, entry: &Value) -> bool {
    if data == entry {
        return true;
    }
    match (data, entry) {
        (Value::Number(d), Value::Number(e)) => match (gofmt::number(d), gofmt::number(e)) {
            (GoNumber::Int(a), GoNumber::Int(b)) => a == b,
            (GoNumber::Float(a), GoNumber::Int(b)) => a as i64 == b,
            (GoNumber::Int(a), GoNumber::Float(b)) => a as f64 == b,
            (GoNumber::Float(a), GoNumber::Float(b)) => a == b,
        },
        (Value::Number(d), Value::String(e)) => match gofmt::number(d) {
            GoNumber::Int(i) => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                c.to_string() == *e
            }
            GoNumber::Float(_) => false,
        },
        _ => false,
    }
}

/// kube-openapi's common validator: `enum`.
fn enum_check(schema: &Value, data: &Value, name: &str, out: &mut Errors) {
    let Some(entries) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    else {
        return;
    };
    if !data.is_null() && entries.iter().any(|e| enum_matches(data, e)) {
        return;
    }
    let values: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let shown: Vec<String> = entries.iter().map(Value::to_string).collect();
    let msg = format!("{name} in body should be one of [{}]", shown.join(" "));
    out.push(OpenApiError::Field(
        name.to_string(),
        Kind::Enum(values),
        data.clone(),
        msg,
    ));
}

/// kube-openapi's object validator: min/maxProperties, additionalProperties, properties,
/// required.
fn object_checks(schema: &Value, map: &Map<String, Value>, name: &str, out: &mut Errors) {
    let size = map.len();
    if let Some(min) = int_keyword(schema, "minProperties")
        && (size as i64) < min
    {
        invalid(
            out,
            name,
            Value::from(size),
            format!("{name} in body should have at least {min} properties"),
        );
    }
    if let Some(max) = int_keyword(schema, "maxProperties")
        && size as i64 > max
    {
        let msg = format!("{name} in body should have at most {max} properties");
        out.push(OpenApiError::Field(
            name.to_string(),
            Kind::TooMany(size, max),
            Value::Null,
            msg,
        ));
    }
    let listed = |k: &str| property(schema, k).is_some();
    match additional(schema) {
        Additional::Bool(false) => {
            for k in map.keys().filter(|k| !listed(k)) {
                invalid(
                    out,
                    name,
                    Value::from(k.as_str()),
                    format!("{name}.{k} in body is a forbidden property"),
                );
            }
        }
        Additional::Schema(extra) => {
            for (k, v) in map.iter().filter(|(k, _)| !listed(k)) {
                node(extra, v, &format!("{name}.{k}"), out);
            }
        }
        Additional::Bool(true) | Additional::Absent => {}
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            if let Some(v) = map.get(k) {
                let child = if name.is_empty() {
                    k.clone()
                } else {
                    format!("{name}.{k}")
                };
                node(sub, v, &child, out);
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for k in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(k) {
                let child = format!("{name}.{k}");
                let msg = format!("{child} in body is required");
                out.push(OpenApiError::Field(child, Kind::Required, Value::Null, msg));
            }
        }
    }
}

/// `field.Path` joining, as the embedded-resource and list-type checks name fields.
fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Upstream's `objectmeta.Validate` below the root: every `x-kubernetes-embedded-resource`
/// object needs a valid apiVersion, kind and metadata.
fn embedded(schema: Option<&Value>, data: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(schema) = schema.filter(|s| s.is_object()) else {
        return;
    };
    match data {
        Value::Object(map) => {
            if flag(schema, "x-kubernetes-embedded-resource") {
                embedded_resource(map, path, out);
            }
            for (k, v) in map {
                if let Some(prop) = property(schema, k) {
                    embedded(Some(prop), v, &child(path, k), out);
                } else if let Additional::Schema(extra) = additional(schema) {
                    embedded(Some(extra), v, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                embedded(items(schema), v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// How Go's JSON decoder names a JSON value's kind in its errors.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The error decoding an embedded object's metadata into an `ObjectMeta` gives, for the string
/// and string-map fields most often wrong.
fn meta_decode_error(meta: &Map<String, Value>) -> Option<String> {
    let fields = [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
    ];
    for (k, v) in meta {
        let want = if fields.contains(&k.as_str()) {
            "string"
        } else if k == "labels" || k == "annotations" {
            "map[string]string"
        } else {
            continue;
        };
        let fits = v.is_null()
            || if want == "string" {
                v.is_string()
            } else {
                v.is_object()
            };
        if !fits {
            return Some(format!(
                "json: cannot unmarshal {} into Go struct field ObjectMeta.{k} of type {want}",
                json_kind(v)
            ));
        }
    }
    None
}

/// Upstream validates an embedded object's metadata like an object's own, with a stand-in name
/// when it has none and names checked only as path segments.
fn embedded_meta(meta: &Map<String, Value>, at: &str) -> Vec<FieldError> {
    let mut meta = meta.clone();
    if meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        meta.insert("name".to_string(), Value::from("fakename"));
    }
    let namespaced = meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let mut out = object_meta(&Value::Object(meta), namespaced, NameRule::PathSegment);
    for e in &mut out {
        let rest = e.field.strip_prefix("metadata").unwrap_or("");
        e.field = format!("{at}{rest}");
    }
    out
}

fn embedded_resource(map: &Map<String, Value>, path: &str, out: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        if !map.contains_key(key) {
            out.push(FieldError::required(child(path, key), ""));
        }
    }
    for (k, v) in map {
        let at = child(path, k);
        match (k.as_str(), v) {
            ("apiVersion" | "kind", Value::String(s)) if s.is_empty() => {
                out.push(FieldError::invalid(at, v, "must not be empty"));
            }
            ("apiVersion", Value::String(s)) if s.matches('/').count() > 1 => {
                let detail = format!("unexpected GroupVersion string: {s}");
                out.push(FieldError::invalid(at, v, detail));
            }
            ("apiVersion", Value::String(_)) => {}
            ("kind", Value::String(s)) => {
                let errs = dns1035_label(&s.to_lowercase());
                if !errs.is_empty() {
                    let detail = format!(
                        "may have mixed case, but should otherwise match: {}",
                        errs.join(",")
                    );
                    out.push(FieldError::invalid(at, v, detail));
                }
            }
            ("apiVersion" | "kind", _) => out.push(FieldError::invalid(at, v, "must be a string")),
            ("metadata", Value::Null) => out.extend(embedded_meta(&Map::new(), &at)),
            ("metadata", Value::Object(meta)) => match meta_decode_error(meta) {
                Some(e) => out.push(FieldError::invalid(at, v, e)),
                None => out.extend(embedded_meta(meta, &at)),
            },
            ("metadata", _) => {
                let detail = format!(
                    "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
                    json_kind(v)
                );
                out.push(FieldError::invalid(at, v, detail));
            }
            _ => {}
        }
    }
}

/// Upstream's `ValidateListSetsAndMaps` over an object.
fn list_types_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    if let Additional::Schema(extra) = additional(schema) {
        for (k, v) in map {
            list_types(extra, v, &format!("{path}[{k}]"), out);
        }
    }
    for (k, v) in map {
        if let Some(prop) = property(schema, k) {
            list_types(prop, v, &child(path, k), out);
        }
    }
}

fn list_types(schema: &Value, data: &Value, path: &str, out: &mut Vec<FieldError>) {
    match data {
        Value::Object(map) => list_types_object(schema, map, path, out),
        Value::Array(list) => {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => {
                    for i in second_occurrences(list) {
                        out.push(FieldError::duplicate(format!("{path}[{i}]"), &list[i]));
                    }
                }
                Some("map") => list_map(schema, list, path, out),
                _ => {}
            }
            if let Some(item) = items(schema) {
                for (i, v) in list.iter().enumerate() {
                    list_types(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The index of the second occurrence of every value that occurs more than once.
fn second_occurrences(list: &[Value]) -> Vec<usize> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let count = seen.entry(v.to_string()).or_insert(0);
        *count += 1;
        if *count == 2 {
            out.push(i);
        }
    }
    out
}

/// `x-kubernetes-list-type: map`: entries must be objects with unique keys.
fn list_map(schema: &Value, list: &[Value], path: &str, out: &mut Vec<FieldError>) {
    for (i, v) in list.iter().enumerate() {
        if !v.is_null() && !v.is_object() {
            out.push(FieldError::invalid(
                format!("{path}[{i}]"),
                v,
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if list.len() <= 1 {
        return;
    }
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let key_of = |v: &Value| -> Value {
        let mut key = Map::new();
        for k in &keys {
            if let Some(x) = v.get(*k) {
                key.insert((*k).to_string(), x.clone());
            }
        }
        Value::Object(key)
    };
    let entry_keys: Vec<Value> = list.iter().map(key_of).collect();
    for i in second_occurrences(&entry_keys) {
        out.push(FieldError::duplicate(
            format!("{path}[{i}]"),
            &entry_keys[i],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, obj: Value) -> Vec<String> {
        validate(&schema, &obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A root schema with `spec` holding one field `x` of the given schema.
    fn spec_x(x: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": x}}}})
    }

    fn with_x(x: Value) -> Value {
        json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"x": x}})
    }

    fn x_errors(schema: Value, value: Value) -> Vec<String> {
        check(spec_x(schema), with_x(value))
    }

    #[test]
    fn type_mismatches() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}});
        assert_eq!(
            check(schema, json!({"spec": {"replicas": "string"}})),
            [
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            x_errors(json!({"type": "string"}), json!(true)),
            [
                r#"spec.x: Invalid value: "boolean": spec.x in body must be of type string: "boolean""#
            ]
        );
        assert_eq!(
            x_errors(json!({"type": "object"}), json!([1])),
            [r#"spec.x: Invalid value: "array": spec.x in body must be of type object: "array""#]
        );
        assert_eq!(
            x_errors(
                json!({"type": "array", "items": {"type": "string"}}),
                json!({})
            ),
            [r#"spec.x: Invalid value: "object": spec.x in body must be of type array: "object""#]
        );
        assert_eq!(
            x_errors(json!({"type": "boolean"}), json!(1)),
            [
                r#"spec.x: Invalid value: "integer": spec.x in body must be of type boolean: "integer""#
            ]
        );
        assert!(x_errors(json!({"type": "number"}), json!(3)).is_empty());
        assert!(x_errors(json!({"type": "integer"}), json!(3.0)).is_empty());
        assert_eq!(
            x_errors(json!({"type": "integer"}), json!(1.5)),
            [
                r#"spec.x: Invalid value: "number": spec.x in body must be of type integer: "number""#,
                r#"<nil>: Invalid value: "": Checked value must be of type integer (default format) in spec.x"#,
            ]
        );
    }

    #[test]
    fn nullable_and_int_or_string() {
        assert_eq!(
            x_errors(json!({"type": "string"}), Value::Null),
            [r#"spec.x: Invalid value: "null": spec.x in body must be of type string: "null""#]
        );
        assert!(x_errors(json!({"type": "string", "nullable": true}), Value::Null).is_empty());
        let ios = json!({"x-kubernetes-int-or-string": true});
        assert!(x_errors(ios.clone(), json!(80)).is_empty());
        assert!(x_errors(ios.clone(), json!("http")).is_empty());
        assert_eq!(
            x_errors(ios, json!(true)),
            [
                r#"spec.x: Invalid value: "boolean": spec.x in body must be of type integer,string: "boolean""#
            ]
        );
    }

    #[test]
    fn required_fields() {
        let schema = json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}});
        assert_eq!(check(schema.clone(), json!({})), ["spec: Required value"]);
        assert_eq!(
            check(schema, json!({"spec": {}})),
            ["spec.name: Required value"]
        );
    }

    #[test]
    fn enums() {
        assert_eq!(
            x_errors(json!({"type": "string", "enum": ["a", "b"]}), json!("c")),
            [r#"spec.x: Unsupported value: "c": supported values: "a", "b""#]
        );
        assert_eq!(
            x_errors(json!({"type": "integer", "enum": [1, 2]}), json!(3)),
            [r#"spec.x: Unsupported value: 3: supported values: "1", "2""#]
        );
        assert!(x_errors(json!({"type": "integer", "enum": [1, 2]}), json!(2)).is_empty());
    }

    #[test]
    fn bounds() {
        let int = |extra: Value| {
            let mut s = json!({"type": "integer"});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        assert_eq!(
            x_errors(int(json!({"minimum": 1})), json!(0)),
            ["spec.x: Invalid value: 0: spec.x in body should be greater than or equal to 1"]
        );
        assert_eq!(
            x_errors(
                int(json!({"minimum": 1, "exclusiveMinimum": true})),
                json!(1)
            ),
            ["spec.x: Invalid value: 1: spec.x in body should be greater than 1"]
        );
        assert_eq!(
            x_errors(int(json!({"maximum": 10})), json!(11)),
            ["spec.x: Invalid value: 11: spec.x in body should be less than or equal to 10"]
        );
        assert_eq!(
            x_errors(
                int(json!({"maximum": 10, "exclusiveMaximum": true})),
                json!(10)
            ),
            ["spec.x: Invalid value: 10: spec.x in body should be less than 10"]
        );
        assert_eq!(
            x_errors(json!({"type": "number", "maximum": 10}), json!(10.5)),
            ["spec.x: Invalid value: 10.5: spec.x in body should be less than or equal to 10"]
        );
        assert_eq!(
            x_errors(
                json!({"type": "number", "maximum": 1000000}),
                json!(1000000.5)
            ),
            [
                "spec.x: Invalid value: 1000000.5: spec.x in body should be less than or equal to 1e+06"
            ]
        );
        assert_eq!(
            x_errors(int(json!({"multipleOf": 5})), json!(7)),
            ["spec.x: Invalid value: 7: spec.x in body should be a multiple of 5"]
        );
        assert!(x_errors(int(json!({"multipleOf": 5})), json!(10)).is_empty());
        assert_eq!(
            x_errors(json!({"type": "number", "multipleOf": 0.25}), json!(0.3)),
            ["spec.x: Invalid value: 0.3: spec.x in body should be a multiple of 0.25"]
        );
        assert!(x_errors(json!({"type": "number", "multipleOf": 0.25}), json!(0.75)).is_empty());
    }

    #[test]
    fn strings() {
        let s = |extra: Value| {
            let mut s = json!({"type": "string"});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        assert_eq!(
            x_errors(s(json!({"minLength": 3})), json!("ab")),
            [r#"spec.x: Invalid value: "ab": spec.x in body should be at least 3 chars long"#]
        );
        assert_eq!(
            x_errors(s(json!({"maxLength": 5})), json!("abcdef")),
            ["spec.x: Too long: may not be more than 5 bytes"]
        );
        assert!(x_errors(s(json!({"maxLength": 3})), json!("héé")).is_empty());
        assert_eq!(
            x_errors(s(json!({"pattern": "^[a-z]+$"})), json!("ABC")),
            [r#"spec.x: Invalid value: "ABC": spec.x in body should match '^[a-z]+$'"#]
        );
        assert!(x_errors(s(json!({"pattern": "[a-z]"})), json!("ABc")).is_empty());
        assert_eq!(
            x_errors(s(json!({"pattern": "("})), json!("x")),
            [
                "spec.x: Invalid value: \"x\": spec.x in body should match '(, but pattern is invalid: error parsing regexp: missing closing ): `(`'"
            ]
        );
    }

    #[test]
    fn formats() {
        let f =
            |format: &str, v: &str| x_errors(json!({"type": "string", "format": format}), json!(v));
        for (format, bad) in [
            ("date-time", "yesterday"),
            ("date", "2024-02-30"),
            ("uuid", "not-a-uuid"),
            ("email", "nobody"),
            ("hostname", "-x"),
            ("ipv4", "1.2.3"),
            ("ipv6", "1.2.3.4"),
            ("cidr", "10.0.0.0"),
            ("byte", "!!"),
        ] {
            assert_eq!(
                f(format, bad),
                [format!(
                    "spec.x: Invalid value: {bad:?}: spec.x in body must be of type {format}: {bad:?}"
                )],
                "{format}"
            );
        }
        for (format, good) in [
            ("date-time", "2024-01-02T03:04:05Z"),
            ("date", "2024-02-29"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            ("email", "a@b.example"),
            ("hostname", "a.example.com"),
            ("ipv4", "10.1.2.3"),
            ("ipv6", "fd00::1"),
            ("cidr", "10.0.0.0/8"),
            ("byte", "aGk="),
            ("unknown-format", "anything"),
        ] {
            assert!(f(format, good).is_empty(), "{format}");
        }
        assert_eq!(
            x_errors(
                json!({"type": "integer", "format": "int32"}),
                json!(3_000_000_000_i64)
            ),
            [
                r#"<nil>: Invalid value: "": Checked value must be of type integer with format int32 in spec.x"#
            ]
        );
        assert!(
            x_errors(
                json!({"type": "integer", "format": "int64"}),
                json!(3_000_000_000_i64)
            )
            .is_empty()
        );
        assert_eq!(
            x_errors(json!({"type": "integer", "format": "int64"}), json!(1.5)),
            [
                r#"spec.x: Invalid value: "float64": spec.x in body must be of type int64: "float64""#,
                r#"<nil>: Invalid value: "": Checked value must be of type integer with format int64 in spec.x"#,
            ]
        );
    }

    #[test]
    fn arrays() {
        let list = |extra: Value| {
            let mut s = json!({"type": "array", "items": {"type": "string"}});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        assert_eq!(
            x_errors(list(json!({"minItems": 1})), json!([])),
            ["spec.x: Invalid value: 0: spec.x in body should have at least 1 items"]
        );
        // Upstream: `spec.x: Too many: 3: must have at most 2 items` (no such kind in FieldError).
        assert_eq!(
            x_errors(list(json!({"maxItems": 2})), json!(["a", "b", "c"])),
            ["spec.x: Invalid value: 3: must have at most 2 items"]
        );
        assert_eq!(
            x_errors(list(json!({"uniqueItems": true})), json!(["a", "a"])),
            [r#"spec.x: Invalid value: "": spec.x in body shouldn't contain duplicates"#]
        );
        let items = json!({"type": "array", "items": {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}}}});
        assert_eq!(
            x_errors(items, json!([{}, {"name": 1}])),
            [
                "spec.x[0].name: Required value",
                r#"spec.x[1].name: Invalid value: "integer": spec.x[1].name in body must be of type string: "integer""#,
            ]
        );
    }

    #[test]
    fn objects() {
        let map = |extra: Value| {
            let mut s = json!({"type": "object"});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        assert_eq!(
            x_errors(map(json!({"minProperties": 1})), json!({})),
            ["spec.x: Invalid value: 0: spec.x in body should have at least 1 properties"]
        );
        assert_eq!(
            x_errors(map(json!({"maxProperties": 1})), json!({"a": 1, "b": 2})),
            ["spec.x: Invalid value: 2: must have at most 1 item"]
        );
        assert_eq!(
            x_errors(
                map(json!({"additionalProperties": false})),
                json!({"extra": 1})
            ),
            [r#"spec.x: Invalid value: "extra": spec.x.extra in body is a forbidden property"#]
        );
        assert_eq!(
            x_errors(
                map(json!({"additionalProperties": {"type": "string"}})),
                json!({"a": "ok", "b": 2})
            ),
            [
                r#"spec.x.b: Invalid value: "integer": spec.x.b in body must be of type string: "integer""#
            ]
        );
        // Unknown fields are not validation errors (pruning removes them).
        let preserve = map(
            json!({"x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}}),
        );
        assert!(x_errors(preserve.clone(), json!({"b": 1})).is_empty());
        assert_eq!(
            x_errors(preserve, json!({"a": 1})),
            [
                r#"spec.x.a: Invalid value: "integer": spec.x.a in body must be of type string: "integer""#
            ]
        );
    }

    #[test]
    fn combinators() {
        let n = |extra: Value| {
            let mut s = json!({"type": "integer"});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            s
        };
        assert_eq!(
            x_errors(
                n(json!({"anyOf": [{"minimum": 5}, {"maximum": 1}]})),
                json!(3)
            ),
            [
                r#"<nil>: Invalid value: "": "spec.x" must validate at least one schema (anyOf)"#,
                "spec.x: Invalid value: 3: spec.x in body should be greater than or equal to 5",
            ]
        );
        assert!(
            x_errors(
                n(json!({"anyOf": [{"minimum": 5}, {"maximum": 3}]})),
                json!(3)
            )
            .is_empty()
        );
        assert_eq!(
            x_errors(
                n(json!({"oneOf": [{"minimum": 1}, {"maximum": 5}]})),
                json!(3)
            ),
            [
                r#"<nil>: Invalid value: "": "spec.x" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
            ]
        );
        assert_eq!(
            x_errors(
                n(json!({"oneOf": [{"minimum": 5}, {"maximum": 1}]})),
                json!(3)
            ),
            [
                r#"<nil>: Invalid value: "": "spec.x" must validate one and only one schema (oneOf). Found none valid"#,
                "spec.x: Invalid value: 3: spec.x in body should be greater than or equal to 5",
            ]
        );
        assert_eq!(
            x_errors(
                n(json!({"allOf": [{"minimum": 5}, {"maximum": 10}]})),
                json!(3)
            ),
            [
                "spec.x: Invalid value: 3: spec.x in body should be greater than or equal to 5",
                r#"<nil>: Invalid value: "": "spec.x" must validate all the schemas (allOf)"#,
            ]
        );
        assert_eq!(
            x_errors(n(json!({"allOf": [{"minimum": 5}]})), json!(3)),
            [
                "spec.x: Invalid value: 3: spec.x in body should be greater than or equal to 5",
                r#"<nil>: Invalid value: "": "spec.x" must validate all the schemas (allOf). None validated"#,
            ]
        );
        assert_eq!(
            x_errors(n(json!({"not": {"minimum": 1}})), json!(3)),
            [r#"<nil>: Invalid value: "": "spec.x" must not validate the schema (not)"#]
        );
        assert!(x_errors(n(json!({"not": {"minimum": 5}})), json!(3)).is_empty());
    }

    #[test]
    fn list_types() {
        let set =
            json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}});
        assert_eq!(
            x_errors(set, json!(["a", "b", "a", "a"])),
            [r#"spec.x[2]: Duplicate value: "a""#]
        );
        let ports = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
            "items": {"type": "object", "properties": {"port": {"type": "integer"}, "name": {"type": "string"}}}});
        assert_eq!(
            x_errors(
                ports.clone(),
                json!([{"port": 80, "name": "a"}, {"port": 80, "name": "b"}])
            ),
            [r#"spec.x[1]: Duplicate value: {"port":80}"#]
        );
        // Upstream prints the key with json.Marshal (`{}`, `{"name":"a"}`); FieldError prints an
        // all-string object as a Go `map[string]string`.
        assert_eq!(
            x_errors(ports.clone(), json!([{"name": "a"}, {"name": "b"}])),
            ["spec.x[1]: Duplicate value: map[string]string{}"]
        );
        assert_eq!(
            x_errors(ports, json!(["x", {"port": 1}])),
            [
                r#"spec.x[0]: Invalid value: "string": spec.x[0] in body must be of type object: "string""#,
                r#"spec.x[0]: Invalid value: "x": must be an object for an array of list-type map"#,
            ]
        );
        let two = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}}});
        assert_eq!(
            x_errors(
                two.clone(),
                json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "UDP"}])
            ),
            [r#"spec.x[1]: Duplicate value: {"port":53,"protocol":"UDP"}"#]
        );
        assert!(
            x_errors(
                two,
                json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
            )
            .is_empty()
        );
    }

    #[test]
    fn embedded_resources() {
        let schema = json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true});
        assert_eq!(
            x_errors(schema.clone(), json!({})),
            [
                "spec.x.apiVersion: Required value",
                "spec.x.kind: Required value"
            ]
        );
        assert!(
            x_errors(
                schema.clone(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}})
            )
            .is_empty()
        );
        let kind_errs = dns1035_label("a_b").join(",");
        assert_eq!(
            x_errors(schema.clone(), json!({"apiVersion": "a/b/c", "kind": "a_b"})),
            [
                r#"spec.x.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#.to_string(),
                format!(r#"spec.x.kind: Invalid value: "a_b": may have mixed case, but should otherwise match: {kind_errs}"#),
            ]
        );
        assert_eq!(
            x_errors(schema.clone(), json!({"apiVersion": "", "kind": 1})),
            [
                r#"spec.x.apiVersion: Invalid value: "": must not be empty"#,
                r#"spec.x.kind: Invalid value: 1: must be a string"#,
            ]
        );
        assert_eq!(
            x_errors(
                schema.clone(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a/b"}})
            ),
            [r#"spec.x.metadata.name: Invalid value: "a/b": may not contain '/'"#]
        );
        assert_eq!(
            x_errors(
                schema.clone(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": "m"})
            ),
            [
                r#"spec.x.metadata: Invalid value: "m": json: cannot unmarshal string into Go value of type v1.ObjectMeta"#
            ]
        );
        assert!(
            x_errors(
                schema,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": null})
            )
            .is_empty()
        );
    }

    #[test]
    fn never_panics() {
        let schemas = [
            json!(null),
            json!(true),
            json!({"type": 5, "properties": [], "items": 3, "required": "x", "enum": {}}),
            json!({"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}},
                "additionalProperties": "x", "minimum": "a", "maxLength": -1, "pattern": "[", "multipleOf": 0}),
            json!({"type": "integer", "multipleOf": -1, "minimum": 1e300, "maximum": -1e300, "format": "int32"}),
            json!({"anyOf": [1, {"not": 2}], "allOf": [], "oneOf": [{}], "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": [1], "x-kubernetes-embedded-resource": true}),
        ];
        let objects = [
            json!(null),
            json!(1),
            json!(-9_223_372_036_854_775_808_i64),
            json!(18_446_744_073_709_551_615_u64),
            json!(1e308),
            json!("\u{0}\u{ffff}"),
            json!([null, [], {}, [[[]]]]),
            json!({"a": [1, 1, null], "metadata": "x", "kind": {}, "apiVersion": []}),
        ];
        for schema in &schemas {
            for obj in &objects {
                let _ = validate(schema, obj);
                let mut o = obj.clone();
                super::super::prune(schema, &mut o);
                super::super::apply_defaults(schema, &mut o);
                let _ = super::super::structural_errors(schema, "s");
            }
        }
    }
}
