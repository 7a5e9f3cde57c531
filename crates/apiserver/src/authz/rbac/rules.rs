//! Policy rules: whether one allows a request (upstream's `RuleAllows`, read straight from the
//! stored JSON, so the authorizer parses nothing per request), and whether a set of rules
//! covers another (upstream's `Covers`, for escalation checks), with the compact form
//! upstream's escalation message lists missing rules in.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

/// What a rule is checked against: a resource request (`resource` set) or a non-resource
/// one (`path`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The verb: `get`, `list`, ..., or a lower-case HTTP method for a non-resource path.
    pub verb: &'a str,
    /// The API group, for a resource request.
    pub group: &'a str,
    /// The resource's plural, or `None` for a non-resource request.
    pub resource: Option<&'a str>,
    /// The subresource, if any.
    pub subresource: Option<&'a str>,
    /// The object's name, if the request names one.
    pub name: Option<&'a str>,
    /// The namespace, for namespaced requests.
    pub namespace: Option<&'a str>,
    /// The URL path of a non-resource request.
    pub path: &'a str,
}

/// Whether the JSON list `list` holds `s`.
fn has(list: &Value, s: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(s)))
}

/// The strings of the JSON list `list`.
fn strings(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether the stored rule `rule` allows the request.
pub fn allows(rule: &Value, req: &Request<'_>) -> bool {
    let verb_matches = has(&rule["verbs"], "*") || has(&rule["verbs"], req.verb);
    if !verb_matches {
        return false;
    }
    let Some(resource) = req.resource else {
        return strings(&rule["nonResourceURLs"]).any(|url| url_matches(url, req.path));
    };
    (has(&rule["apiGroups"], "*") || has(&rule["apiGroups"], req.group))
        && resource_matches(&rule["resources"], resource, req.subresource)
        && name_matches(&rule["resourceNames"], req.name)
}

/// `*`, the resource (with `/subresource`), or `*/subresource`.
fn resource_matches(resources: &Value, resource: &str, subresource: Option<&str>) -> bool {
    strings(resources).any(|r| match subresource {
        _ if r == "*" => true,
        None => r == resource,
        Some(sub) => {
            r.strip_prefix(resource)
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(sub)
                || r.strip_prefix("*/") == Some(sub)
        }
    })
}

/// No names in the rule, or the request's name among them.
fn name_matches(names: &Value, name: Option<&str>) -> bool {
    match names.as_array() {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => name.is_some_and(|n| list.iter().any(|v| v.as_str() == Some(n))),
    }
}

/// `*`, the path itself, or a prefix of it ending in `*`.
fn url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// The rules of `servant` that `owner` does not cover, broken down into single-verb rules and
/// compacted (upstream's `Covers` then `CompactRules`); empty when everything is covered.
pub fn missing(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
        .collect();
    compact(uncovered)
}

/// One rule per group, resource, verb (and name), and per URL and verb.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    let names = rule.resource_names.as_deref().unwrap_or_default();
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..Default::default()
                };
                for name in names {
                    let resource_names = one(name);
                    out.push(PolicyRule {
                        resource_names,
                        ..base.clone()
                    });
                }
                if names.is_empty() {
                    out.push(base);
                }
            }
        }
    }
    for url in rule.non_resource_urls.iter().flatten() {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn contains(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn all_in(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| contains(set, w))
}

/// Upstream's `ruleCovers`: whether `owner` grants everything `sub` does.
fn covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let (owner_groups, sub_groups) = (list(&owner.api_groups), list(&sub.api_groups));
    let (owner_names, sub_names) = (list(&owner.resource_names), list(&sub.resource_names));
    let verbs = contains(&owner.verbs, "*") || all_in(&owner.verbs, &sub.verbs);
    let groups = contains(&owner_groups, "*") || all_in(&owner_groups, &sub_groups);
    let resources = resources_cover(&list(&owner.resources), &list(&sub.resources));
    let urls = list(&sub.non_resource_urls).iter().all(|u| {
        list(&owner.non_resource_urls)
            .iter()
            .any(|o| o == u || o.strip_suffix('*').is_some_and(|p| u.starts_with(p)))
    });
    let names = if sub_names.is_empty() {
        owner_names.is_empty()
    } else {
        owner_names.is_empty() || all_in(&owner_names, &sub_names)
    };
    verbs && groups && resources && urls && names
}

/// Upstream's `resourceCoversAll`: `*`, each resource itself, or `*/<subresource>` for a
/// subresource.
fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    contains(owner, "*")
        || wanted.iter().all(|w| {
            contains(owner, w)
                || w.split_once('/')
                    .is_some_and(|(_, sub)| contains(owner, &format!("*/{sub}")))
        })
}

/// Upstream's `CompactRules`: simple rules (one group, one resource, no names) on the same
/// group and resource become one rule with all their verbs; the rest stay as they are.
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let simple = |r: &PolicyRule| {
            r.api_groups.as_ref().is_some_and(|g| g.len() == 1)
                && r.resources.as_ref().is_some_and(|g| g.len() == 1)
                && r.resource_names.as_deref().unwrap_or_default().is_empty()
                && r.non_resource_urls
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
        };
        let same = out.iter_mut().find(|o| {
            simple(o)
                && simple(&rule)
                && o.api_groups == rule.api_groups
                && o.resources == rule.resources
        });
        match same {
            Some(o) => {
                for v in rule.verbs {
                    if !contains(&o.verbs, &v) {
                        o.verbs.push(v);
                    }
                }
            }
            None => out.push(rule),
        }
    }
    out
}

/// Go's `%q` of a list of strings: `["a" "b"]`.
fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, list) in [
        ("APIGroups", rule.api_groups.as_deref()),
        ("Resources", rule.resources.as_deref()),
        ("NonResourceURLs", rule.non_resource_urls.as_deref()),
        ("ResourceNames", rule.resource_names.as_deref()),
        ("Verbs", Some(rule.verbs.as_slice())),
    ] {
        if let Some(list) = list.filter(|l| !l.is_empty()) {
            parts.push(format!("{label}:{}", quoted(list)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> Request<'a> {
        Request {
            verb,
            group,
            resource: Some(resource),
            subresource: None,
            name: None,
            namespace: Some("default"),
            path: "",
        }
    }

    fn rule(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_match_as_upstream() {
        let pods =
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(allows(&pods, &request("get", "", "pods")));
        assert!(!allows(&pods, &request("delete", "", "pods")));
        assert!(!allows(&pods, &request("get", "apps", "pods")));
        let log = Request {
            subresource: Some("log"),
            ..request("get", "", "pods")
        };
        assert!(allows(&pods, &log));
        let status = Request {
            subresource: Some("status"),
            ..log
        };
        assert!(!allows(&pods, &status));
        let any_status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(allows(&any_status, &status));
        assert!(!allows(&any_status, &request("get", "", "pods")));
        let named = json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]});
        let get_a = Request {
            name: Some("a"),
            ..request("get", "", "configmaps")
        };
        assert!(allows(&named, &get_a));
        assert!(!allows(&named, &request("get", "", "configmaps")));
        let urls = json!({"nonResourceURLs": ["/healthz", "/version/*"], "verbs": ["get"]});
        let path = |path| Request {
            resource: None,
            path,
            ..request("get", "", "")
        };
        assert!(allows(&urls, &path("/healthz")));
        assert!(allows(&urls, &path("/version/x")));
        assert!(!allows(&urls, &path("/metrics")));
    }

    #[test]
    fn coverage_and_the_escalation_text_follow_upstream() {
        let owner = [rule(
            json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get"]}),
        )];
        let ok = [rule(
            json!({"apiGroups": [""], "resources": ["pods", "services/status"], "verbs": ["get"]}),
        )];
        assert!(missing(&owner, &ok).is_empty());
        let more = [rule(
            json!({"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"], "resourceNames": []}),
        )];
        let text: Vec<String> = missing(&owner, &more).iter().map(compact_string).collect();
        assert_eq!(
            text,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["list"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#
            ]
        );
        let urls = [rule(
            json!({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}),
        )];
        let owner_urls = [rule(json!({"nonResourceURLs": ["/logs*"], "verbs": ["*"]}))];
        assert!(missing(&owner_urls, &urls).is_empty());
        assert_eq!(
            compact_string(&missing(&owner, &urls)[0]),
            r#"{NonResourceURLs:["/logs/*"], Verbs:["get"]}"#
        );
    }
}
