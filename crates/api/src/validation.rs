//! Field errors and the checks every object gets: names, labels, annotations.
//!
//! Errors are data ([`FieldError`]), collected rather than returned at the first problem, and
//! printed the way upstream's `field.Error` prints them.

use serde_json::Value;

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// The field must be set.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value is not one of the allowed ones.
    NotSupported(Vec<String>),
    /// The value repeats one given before.
    Duplicate,
    /// The field may not be set (or changed) here.
    Forbidden,
    /// The value is longer than this many bytes.
    TooLong(usize),
}

/// One validation error: a field path, what is wrong, the offending value and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
    /// The offending value, where the message shows it.
    pub value: Value,
    /// Why, in words.
    pub detail: String,
}

impl FieldError {
    /// `Required value`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Required,
            value: Value::Null,
            detail: detail.into(),
        }
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Invalid,
            value: value.clone(),
            detail: detail.into(),
        }
    }

    /// `Unsupported value: <value>: supported values: ...`.
    pub fn not_supported(field: impl Into<String>, value: &Value, valid: &[&str]) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::NotSupported(valid.iter().map(|s| s.to_string()).collect()),
            value: value.clone(),
            detail: String::new(),
        }
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Duplicate,
            value: value.clone(),
            detail: String::new(),
        }
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Forbidden,
            value: Value::Null,
            detail: detail.into(),
        }
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> FieldError {
        FieldError {
            field: field.into(),
            kind: ErrorKind::TooLong(max),
            value: Value::Null,
            detail: String::new(),
        }
    }

    /// Upstream's `StatusCause` reason for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported(_) => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong(_) => "FieldValueTooLong",
        }
    }

    /// The message without the field path.
    pub fn body(&self) -> String {
        let mut s = match &self.kind {
            ErrorKind::Required => "Required value".to_string(),
            ErrorKind::Forbidden => "Forbidden".to_string(),
            ErrorKind::TooLong(max) => format!("Too long: may not be more than {max} bytes"),
            ErrorKind::Invalid => format!("Invalid value: {}", go_value(&self.value)),
            ErrorKind::Duplicate => format!("Duplicate value: {}", go_value(&self.value)),
            ErrorKind::NotSupported(valid) => {
                let listed: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    go_value(&self.value),
                    listed.join(", ")
                )
            }
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A value printed the way upstream's error messages print Go values.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let mut pairs: Vec<_> = m.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower)
}

/// Problems with `s` as an RFC 1123 label (namespaces, most label-like names).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !dns_label_chars(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// Problems with `s` as an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(dns_label_chars) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// Problems with `s` as a path segment (upstream's `ValidatePathSegmentName`).
pub fn path_segment(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s == "." || s == ".." {
        errs.push(format!("may not be '{s}'"));
    }
    for c in ["/", "%"] {
        if s.contains(c) {
            errs.push(format!("may not contain '{c}'"));
        }
    }
    errs
}

/// Problems with `s` as a ConfigMap or Secret key (upstream's `IsConfigMapKey`).
pub fn config_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if s.is_empty() || !s.chars().all(allowed) {
        errs.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
             (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is \
             '[-._a-zA-Z0-9]+')"
                .to_string(),
        );
    }
    match s {
        "." => errs.push("must not be '.'".to_string()),
        ".." => errs.push("must not be '..'".to_string()),
        _ if s.starts_with("..") => errs.push("must not start with '..'".to_string()),
        _ => {}
    }
    errs
}

/// Problems with `s` as an RFC 1035 label (Service names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !dns_label_chars(s) || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        errs.push(DNS1035_LABEL_MSG.to_string());
    }
    errs
}

fn label_chars(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(edge)
        && s.ends_with(edge)
}

/// Problems with `s` as a qualified name (`prefix/name`): label and annotation keys.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            errs.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_string());
        }
        if !label_chars(name) {
            errs.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    errs
}

/// Problems with `s` as a label value.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() && !label_chars(s) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

/// How a resource's names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (the default).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Dns1035,
    /// Any name usable as a URL path segment (RBAC objects: `testing-RB` is fine).
    PathSegment,
}

impl NameRule {
    fn check(self, s: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(s),
            NameRule::Label => dns1123_label(s),
            NameRule::Dns1035 => dns1035_label(s),
            NameRule::PathSegment => path_segment(s),
        }
    }
}

/// The most bytes all annotations of one object may take together.
pub const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

/// Checks `metadata`: name (or generateName), namespace, labels and annotations.
pub fn object_meta(meta: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() && generate.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    }
    if !name.is_empty() {
        for e in rule.check(name) {
            errs.push(FieldError::invalid("metadata.name", &Value::from(name), e));
        }
    }
    let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for e in dns1123_label(namespace) {
                errs.push(FieldError::invalid(
                    "metadata.namespace",
                    &Value::from(namespace),
                    e,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for e in qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    &Value::from(k.as_str()),
                    e,
                ));
            }
            match v.as_str() {
                Some(s) => {
                    for e in label_value(s) {
                        errs.push(FieldError::invalid("metadata.labels", &Value::from(s), e));
                    }
                }
                None => errs.push(FieldError::invalid(
                    "metadata.labels",
                    v,
                    "must be a string",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in annotations {
            for e in qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    &Value::from(k.as_str()),
                    e,
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_BYTES,
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments() {
        assert!(path_segment("testing-RB").is_empty());
        assert_eq!(path_segment(".."), ["may not be '..'"]);
        assert_eq!(
            path_segment("a/b%"),
            ["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn config_keys() {
        assert!(config_key("key.name").is_empty());
        assert!(config_key("KEY_NAME-1").is_empty());
        assert_eq!(config_key("").len(), 1);
        assert_eq!(config_key("a/b").len(), 1);
        assert_eq!(config_key(".."), ["must not be '..'"]);
        assert_eq!(config_key("..a"), ["must not start with '..'"]);
    }

    #[test]
    fn names() {
        assert!(dns1123_subdomain("web-1.example").is_empty());
        assert_eq!(dns1123_subdomain("Web").len(), 1);
        assert!(dns1123_subdomain("a..b").len() == 1);
        assert!(dns1123_label("kube-system").is_empty());
        assert_eq!(dns1123_label("a.b").len(), 1);
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(dns1035_label("web").is_empty());
        assert_eq!(dns1035_label("1web").len(), 1);
    }

    #[test]
    fn labels() {
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(!qualified_name("-app").is_empty());
        assert!(!qualified_name("/app").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_3").is_empty());
        assert!(!label_value("a b").is_empty());
    }

    #[test]
    fn object_meta_reports_every_problem_with_upstream_text() {
        let meta = json!({"name": "Bad_Name", "labels": {"ok": "fine", "bad key": "x"}});
        let errs = object_meta(&meta, true, NameRule::Subdomain);
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(text[0].starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
        assert_eq!(text[1], "metadata.namespace: Required value");
        assert!(
            text[2]
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist")
        );
        assert_eq!(
            object_meta(&json!({}), false, NameRule::Subdomain)[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }

    #[test]
    fn go_values_print_like_upstream() {
        let labels = json!({"app": "x", "a": "b"});
        assert_eq!(
            go_value(&labels),
            "map[string]string{\"a\":\"b\", \"app\":\"x\"}"
        );
        assert_eq!(go_value(&json!(3)), "3");
        let e = FieldError::not_supported("spec.type", &json!("Foo"), &["ClusterIP", "NodePort"]);
        assert_eq!(
            e.to_string(),
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
    }
}
