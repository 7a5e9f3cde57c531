//! Field validation (`fieldValidation=Strict|Warn|Ignore`): unknown and duplicate fields in a
//! request body.
//!
//! Unknown fields are found while decoding the object into its typed form (k8s-openapi's
//! structs for the 1.33 API): every field the type's deserializer skips is one
//! (`serde_ignored` reports them with their paths). Duplicate fields are found while reading the JSON, before a map keeps only the
//! last value.
//!
//! The same decode finds values of the wrong JSON type (`replicas: "three"`), refused with
//! upstream's message, which names the Go struct and type from the OpenAPI schema.

use std::fmt;

use api::{Resource, Status};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::typed::{self, ApiType, Typed};

/// What to do with unknown or duplicate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Accept them silently.
    Ignore,
    /// Accept them, with a `Warning` header each (the default).
    Warn,
    /// Refuse the request.
    Strict,
}

impl Directive {
    /// The `fieldValidation` query parameter.
    pub fn parse(value: Option<&str>) -> Result<Directive, Status> {
        match value {
            None | Some("") | Some("Warn") => Ok(Directive::Warn),
            Some("Strict") => Ok(Directive::Strict),
            Some("Ignore") => Ok(Directive::Ignore),
            Some(other) => Err(Status::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path as upstream prints it: `spec.template.spec.containers[0].imagePolicy`.
pub fn path_string(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// What decoding an object into its typed form found.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// It decodes; these fields are unknown to the type.
    Unknown(Vec<Vec<Step>>),
    /// A value of the wrong JSON type, as upstream's message words it.
    TypeError(String),
    /// The type is not known here, or the object fails in a way left to validation (a
    /// missing required field, a malformed time, ...).
    Undecided,
}

/// Decodes `obj` as the resource's type. A `null` leaves a field unset, as in upstream's
/// decoding, where a plain typed decode would refuse it: such fields are removed.
pub fn decode(r: &Resource, obj: &mut Value) -> Decoded {
    struct Roundtrip<'a>(&'a mut Value, &'a Resource);
    impl Typed for Roundtrip<'_> {
        type Out = Decoded;
        fn visit<T: ApiType>(self) -> Decoded {
            roundtrip::<T>(self.1, self.0)
        }
    }
    typed::visit(r, Roundtrip(obj, r)).unwrap_or(Decoded::Undecided)
}

fn roundtrip<T: ApiType>(r: &Resource, obj: &mut Value) -> Decoded {
    // Each pass fixes at most one value, so a bounded number of passes is plenty.
    for _ in 0..64 {
        let mut unknown = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(steps(&path));
        let de = serde_ignored::Deserializer::new(&*obj, &mut note);
        let err = match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(_) => return Decoded::Unknown(unknown),
            Err(e) => e,
        };
        let path: Vec<Step> = err
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect();
        let message = err.inner().to_string();
        let Some(at) = value_at(obj, &path) else {
            return Decoded::Undecided;
        };
        if at.is_null() {
            remove_at(obj, &path);
        } else if message.starts_with("invalid type:")
            || message.starts_with("invalid value: integer")
        {
            let found = match at {
                Value::String(_) => "string".to_string(),
                Value::Number(n) => format!("number {n}"),
                Value::Bool(_) => "bool".to_string(),
                Value::Array(_) => "array".to_string(),
                _ => "object".to_string(),
            };
            let keys: Vec<&str> = path
                .iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(k.as_str()),
                    Step::Index(_) => None,
                })
                .collect();
            let target = match crate::openapi::schema_field(r, &path) {
                Some(f) => format!(
                    "Go struct field {}.{} of type {}",
                    f.parent,
                    keys.join("."),
                    f.go_type
                ),
                None => "Go value".to_string(),
            };
            return Decoded::TypeError(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal {found} into {target}",
                kind = r.kind,
                version = r.version,
            ));
        } else {
            return Decoded::Undecided;
        }
    }
    Decoded::Undecided
}

fn value_at<'a>(obj: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(obj, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

fn remove_at(obj: &mut Value, path: &[Step]) {
    prune(obj, std::slice::from_ref(&path.to_vec()));
}

fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = steps(parent);
            v.push(Step::Index(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = steps(parent);
            v.push(Step::Key(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    }
}

/// Removes the fields at `paths`, as upstream's decoding drops what the type lacks.
fn prune(obj: &mut Value, paths: &[Vec<Step>]) {
    for path in paths {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let parent = parents.iter().try_fold(&mut *obj, |v, step| match step {
            Step::Key(k) => v.get_mut(k.as_str()),
            Step::Index(i) => v.get_mut(*i),
        });
        if let (Some(Value::Object(m)), Step::Key(k)) = (parent, last) {
            m.remove(k);
        }
    }
}

/// Parses a JSON body in one pass, recording the paths of keys that appear twice in one
/// object (the last value wins, as in a plain parse).
pub fn parse_json(body: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let (mut stack, mut dups) = (Vec::new(), Vec::new());
    let value = Build {
        stack: &mut stack,
        dups: &mut dups,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, dups))
}

/// The paths of keys that appear twice in one JSON object of `body`.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    parse_json(body).map(|(_, dups)| dups).unwrap_or_default()
}

/// Builds a `Value`, keeping the path it is at only as a stack of steps, so a path string is
/// made only for a duplicate.
struct Build<'a> {
    stack: &'a mut Vec<Step>,
    dups: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.stack.push(Step::Key(key.clone()));
            let value = map.next_value_seed(Build {
                stack: &mut *self.stack,
                dups: &mut *self.dups,
            })?;
            if out.insert(key, value).is_some() {
                self.dups.push(path_string(self.stack));
            }
            self.stack.pop();
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.stack.push(Step::Index(out.len()));
            let item = seq.next_element_seed(Build {
                stack: &mut *self.stack,
                dups: &mut *self.dups,
            })?;
            self.stack.pop();
            match item {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Applies the directive to a decoded body: `Ok(warnings)` to send as `Warning` headers (the
/// unknown fields are then dropped from `obj`, as upstream drops them), or the 400 that Strict
/// answers.
pub fn check(
    r: &Resource,
    directive: Directive,
    obj: &mut Value,
    duplicates: &[String],
) -> Result<Vec<String>, Status> {
    let unknown = match decode(r, obj) {
        Decoded::Unknown(paths) => paths,
        Decoded::TypeError(message) => return Err(Status::bad_request(message)),
        Decoded::Undecided => Vec::new(),
    };
    if directive == Directive::Ignore {
        prune(obj, &unknown);
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {:?}", path_string(p)))
        .collect();
    problems.extend(duplicates.iter().map(|f| format!("duplicate field {f:?}")));
    if directive == Directive::Strict && !problems.is_empty() {
        return Err(Status::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = r.kind,
            version = r.version,
        )));
    }
    prune(obj, &unknown);
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::find;
    use serde_json::json;

    fn unknown_fields(r: &Resource, obj: &Value) -> Option<Vec<Vec<Step>>> {
        match decode(r, &mut obj.clone()) {
            Decoded::Unknown(paths) => Some(paths),
            _ => None,
        }
    }

    #[test]
    fn wrong_json_types_get_upstreams_message_and_nulls_pass() {
        let d = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"metadata": {"name": "web"}, "spec": {"replicas": "three",
            "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            decode(d, &mut obj),
            Decoded::TypeError("Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32".into())
        );
        obj["spec"]["replicas"] = json!(3.5);
        let Decoded::TypeError(m) = decode(d, &mut obj) else {
            panic!()
        };
        assert!(m.ends_with("cannot unmarshal number 3.5 into Go struct field DeploymentSpec.spec.replicas of type int32"), "{m}");
        obj["spec"]["replicas"] = json!(2);
        obj["spec"]["template"]["spec"]["containers"][0]["ports"] = json!({"containerPort": 80});
        let Decoded::TypeError(m) = decode(d, &mut obj) else {
            panic!()
        };
        assert!(m.ends_with("cannot unmarshal object into Go struct field Container.spec.template.spec.containers.ports of type []v1.ContainerPort"), "{m}");
        obj["spec"]["template"]["spec"]["containers"][0]["ports"] = json!(null);
        obj["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": 1, "memory": "1Gi"}});
        obj["spec"]["template"]["spec"]["containers"][0]["name"] = json!(null);
        assert_eq!(decode(d, &mut obj), Decoded::Unknown(vec![]));
    }

    #[test]
    fn unknown_fields_are_found_by_path_and_dropped() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labelz": {}},
            "spec": {"replicas": 1, "replica": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}}}});
        let paths: Vec<String> = unknown_fields(d, &obj)
            .unwrap()
            .iter()
            .map(|p| path_string(p))
            .collect();
        assert_eq!(
            paths,
            [
                "metadata.labelz",
                "spec.replica",
                "spec.template.spec.containers[0].imagePolicy"
            ]
        );
        let mut warned = obj.clone();
        assert_eq!(
            check(d, Directive::Warn, &mut warned, &[]).unwrap().len(),
            3
        );
        assert!(warned["spec"].get("replica").is_none() && warned["spec"]["replicas"] == 1);
        assert!(
            warned["spec"]["template"]["spec"]["containers"][0]
                .get("imagePolicy")
                .is_none()
        );
        let good = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"any": "key"}});
        assert!(
            unknown_fields(find("", "v1", "configmaps").unwrap(), &good)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn duplicates_and_directives() {
        assert_eq!(
            duplicate_fields(
                br#"{"a": 1, "b": {"c": 1, "c": 2}, "l": [{"x": 1, "x": 1}], "a": 2}"#
            ),
            ["b.c", "l[0].x", "a"]
        );
        assert!(duplicate_fields(br#"{"a": 1}"#).is_empty());
        let cm = find("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "c"}, "dta": {}});
        let raw = br#"{"metadata": {"name": "c"}, "dta": {}, "dta": {}}"#;
        let err = check(
            cm,
            Directive::Strict,
            &mut obj.clone(),
            &duplicate_fields(raw),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dta\", duplicate field \"dta\""
        );
        assert_eq!(
            check(cm, Directive::Warn, &mut obj.clone(), &[]).unwrap(),
            ["unknown field \"dta\""]
        );
        let mut ignored = obj.clone();
        assert!(
            check(cm, Directive::Ignore, &mut ignored, &[])
                .unwrap()
                .is_empty()
        );
        assert!(
            ignored.get("dta").is_none(),
            "ignored fields are dropped too"
        );
        assert!(Directive::parse(Some("Loud")).is_err());
    }
}
