//! Label and field selectors: parsing the query-string forms and matching objects.

use serde_json::Value;

use crate::validation::{label_value, qualified_name};

/// How a label requirement compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `key=value` or `key==value`.
    Equals,
    /// `key!=value` (also true when the label is absent).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (also true when the label is absent).
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub op: Op,
    /// The values compared with (empty for the existence operators).
    pub values: Vec<String>,
}

/// A label selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn check_key(key: &str) -> Result<(), String> {
    match qualified_name(key).into_iter().next() {
        None => Ok(()),
        Some(e) => Err(format!(
            "unable to parse requirement: invalid label key \"{key}\": {e}"
        )),
    }
}

fn check_value(v: &str) -> Result<(), String> {
    match label_value(v).into_iter().next() {
        None => Ok(()),
        Some(e) => Err(format!(
            "unable to parse requirement: invalid label value: \"{v}\": {e}"
        )),
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query form: `a=b,c!=d,e in (f,g),!h,i`.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("found '', expected: identifier in selector {s:?}"));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement {
                    key: key.trim().to_string(),
                    op: Op::DoesNotExist,
                    values: vec![],
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotEquals,
                    values: vec![v.trim().to_string()],
                }
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Equals,
                    values: vec![v.trim().to_string()],
                }
            } else if let Some(open) = part.find('(') {
                let head: Vec<&str> = part[..open].split_whitespace().collect();
                let op = match head.get(1) {
                    Some(&"in") => Op::In,
                    Some(&"notin") => Op::NotIn,
                    _ => {
                        return Err(format!(
                            "unable to parse requirement: {part:?}: expected 'in' or 'notin'"
                        ));
                    }
                };
                let Some(inner) = part[open + 1..].strip_suffix(')') else {
                    return Err(format!(
                        "unable to parse requirement: {part:?}: expected ')'"
                    ));
                };
                let values: Vec<String> = inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if values.is_empty() {
                    return Err(format!(
                        "unable to parse requirement: {part:?}: for 'in', 'notin' operators, values set can't be empty"
                    ));
                }
                Requirement {
                    key: head[0].to_string(),
                    op,
                    values,
                }
            } else if part.contains(char::is_whitespace) {
                return Err(format!(
                    "unable to parse requirement: {part:?}: expected an operator"
                ));
            } else {
                Requirement {
                    key: part.to_string(),
                    op: Op::Exists,
                    values: vec![],
                }
            };
            check_key(&req.key)?;
            for v in &req.values {
                check_value(v)?;
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![v.as_str().unwrap_or_default().to_string()],
                });
            }
        }
        for expr in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expr
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let op = match expr.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In,
                Some("NotIn") => Op::NotIn,
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement { key, op, values });
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` (an object of strings, or absent) satisfies every requirement.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| {
            let v = get(&r.key);
            match r.op {
                Op::Equals | Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotEquals | Op::NotIn => v.is_none_or(|v| r.values.iter().all(|x| x != v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Converts a selector as objects carry it: a `metav1.LabelSelector` (`matchLabels`,
    /// `matchExpressions`), or a plain map of labels (Services, ReplicationControllers,
    /// node selectors).
    pub fn from_any(sel: &Value) -> Result<LabelSelector, String> {
        if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
            LabelSelector::from_object(sel)
        } else {
            LabelSelector::from_object(&serde_json::json!({ "matchLabels": sel }))
        }
    }
}

/// The query form, requirements sorted by key as upstream prints them: `app=web,tier in (a,b)`.
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut reqs: Vec<&Requirement> = self.0.iter().collect();
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        for (i, r) in reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let values = r.values.join(",");
            match r.op {
                Op::Equals => write!(f, "{}={values}", r.key)?,
                Op::NotEquals => write!(f, "{}!={values}", r.key)?,
                Op::In => write!(f, "{} in ({values})", r.key)?,
                Op::NotIn => write!(f, "{} notin ({values})", r.key)?,
                Op::Exists => write!(f, "{}", r.key)?,
                Op::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

/// A field selector: `field=value` and `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` query form.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            terms.push((field.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether `obj` satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(field, equal, value)| (field_value(obj, field) == *value) == *equal)
    }

    /// The fields the selector uses.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _, _)| f.as_str())
    }

    /// The value a term requires for `field`, if one does (`field=value`).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, equal, _)| f == field && *equal)
            .map(|(_, _, v)| v.as_str())
    }
}

/// A field's value as field selectors compare it: upstream's string forms, with booleans
/// defaulting to `false` and counts to `0`, as Go's zero values do.
pub fn field_value(obj: &Value, path: &str) -> String {
    let path = if path == "source" {
        "source.component"
    } else {
        path
    };
    let v = path.split('.').try_fold(obj, |v, k| v.get(k));
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => match path {
            "spec.hostNetwork" | "spec.unschedulable" => "false".into(),
            "status.replicas" | "status.successful" => "0".into(),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_parse_and_match() {
        let labels = json!({"app": "web", "tier": "front"});
        let yes = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(yes(""));
        assert!(yes("app=web"));
        assert!(yes("app==web,tier"));
        assert!(yes("app in (web, db)"));
        assert!(yes("app notin (db),!missing"));
        assert!(yes("missing!=x"));
        assert!(!yes("app!=web"));
        assert!(!yes("tier in (back)"));
        assert!(!yes("!app"));
        assert!(!LabelSelector::parse("app=web").unwrap().matches(None));
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("app=x y").is_err());
        assert!(LabelSelector::parse("app in ()").is_err());
        assert!(LabelSelector::parse("app in (a").is_err());
    }

    #[test]
    fn label_selector_objects_convert() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front"]}]});
        let s = LabelSelector::from_object(&sel).unwrap();
        assert!(s.matches(Some(&json!({"app": "web", "tier": "front"}))));
        assert!(!s.matches(Some(&json!({"app": "web"}))));
        assert_eq!(s.to_string(), "app=web,tier in (front)");
        let plain = LabelSelector::from_any(&json!({"tier": "a", "app": "b"})).unwrap();
        assert_eq!(plain.to_string(), "app=b,tier=a");
        let parsed = LabelSelector::parse("!x,a notin (b,c),k").unwrap();
        assert_eq!(parsed.to_string(), "a notin (b,c),k,!x");
    }

    #[test]
    fn field_selectors_compare_string_forms() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&pod);
        assert!(m("metadata.name=p,spec.nodeName=n1"));
        assert!(m("status.phase!=Pending"));
        assert!(m("spec.hostNetwork=false"));
        assert!(!m("spec.nodeName=n2"));
        assert!(FieldSelector::parse("nonsense").is_err());
        assert_eq!(
            FieldSelector::parse("a=b").unwrap().required("a"),
            Some("b")
        );
    }
}
