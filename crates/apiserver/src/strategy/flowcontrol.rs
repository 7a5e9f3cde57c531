//! API Priority and Fairness objects: FlowSchemas and PriorityLevelConfigurations, with
//! upstream's v1 defaults and validation (field paths and messages). The mandatory objects'
//! specs are fixed; the server itself keeps them so ([`crate::flowcontrol`]).

use api::validation::{FieldError, dns1123_label, dns1123_subdomain};
use serde_json::{Value, json};

use super::Strategy;
use super::defaults::set_absent;

/// FlowSchemas.
pub(super) struct FlowSchema;

/// PriorityLevelConfigurations.
pub(super) struct PriorityLevelConfiguration;

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "proxy",
    "update",
    "watch",
];

impl Strategy for FlowSchema {
    fn defaults(&self, obj: &mut Value) {
        if obj["spec"]["matchingPrecedence"].as_i64().unwrap_or(0) == 0 {
            obj["spec"]["matchingPrecedence"] = json!(1000);
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        precedence(name, &spec["matchingPrecedence"], errs);
        let method = &spec["distinguisherMethod"];
        if method.is_object() && !matches!(method["type"].as_str(), Some("ByNamespace" | "ByUser"))
        {
            let supported = &["ByNamespace", "ByUser"];
            errs.push(FieldError::not_supported(
                "spec.distinguisherMethod.type",
                method,
                supported,
            ));
        }
        let level = &spec["priorityLevelConfiguration"]["name"];
        let field = "spec.priorityLevelConfiguration.name";
        match level.as_str().unwrap_or_default() {
            "" => errs.push(FieldError::required(
                field,
                "must reference a priority level",
            )),
            l => errs.extend(
                dns1123_subdomain(l)
                    .into_iter()
                    .map(|m| FieldError::invalid(field, level, m)),
            ),
        }
        for (i, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
            policy_rule(&format!("spec.rules[{i}]"), rule, errs);
        }
        fixed_spec(name, spec, "FlowSchema", errs);
    }

    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        if sub == Some("status") {
            conditions(new, errs);
        }
    }
}

impl Strategy for PriorityLevelConfiguration {
    fn defaults(&self, obj: &mut Value) {
        if obj["spec"]["limited"].is_object() {
            set_absent(
                obj,
                vec![
                    ("/spec/limited/nominalConcurrencyShares", json!(30)),
                    ("/spec/limited/lendablePercent", json!(0)),
                ],
            );
            let queuing = obj.pointer_mut("/spec/limited/limitResponse/queuing");
            if let Some(queuing) = queuing.filter(|q| q.is_object()) {
                for (field, default) in [("handSize", 8), ("queues", 64), ("queueLengthLimit", 50)]
                {
                    if queuing[field].as_i64().unwrap_or(0) == 0 {
                        queuing[field] = json!(default);
                    }
                }
            }
        }
        if obj["spec"]["exempt"].is_object() {
            set_absent(
                obj,
                vec![
                    ("/spec/exempt/nominalConcurrencyShares", json!(0)),
                    ("/spec/exempt/lendablePercent", json!(0)),
                ],
            );
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let kind = &spec["type"];
        if (name == "exempt") != (kind == "Exempt") {
            errs.push(FieldError::invalid(
                "spec.type",
                kind,
                "type must be 'Exempt' if and only if name is 'exempt'",
            ));
        }
        match kind.as_str() {
            Some("Exempt") => exempt(spec, errs),
            Some("Limited") => limited(spec, errs),
            _ => errs.push(FieldError::not_supported(
                "spec.type",
                kind,
                &["Exempt", "Limited"],
            )),
        }
        fixed_spec(name, spec, "PriorityLevelConfiguration", errs);
    }

    fn validate_update(
        &self,
        _old: &Value,
        new: &Value,
        sub: Option<&str>,
        errs: &mut Vec<FieldError>,
    ) {
        if sub == Some("status") {
            conditions(new, errs);
        }
    }
}

fn precedence(name: &str, value: &Value, errs: &mut Vec<FieldError>) {
    let p = value.as_i64().unwrap_or(0);
    let field = "spec.matchingPrecedence";
    if p <= 0 {
        errs.push(FieldError::invalid(
            field,
            value,
            "must be a positive value",
        ));
    }
    if p > 10000 {
        errs.push(FieldError::invalid(
            field,
            value,
            "must not be greater than 10000",
        ));
    }
    if p == 1 && name != "exempt" {
        errs.push(FieldError::invalid(
            field,
            value,
            "only the schema named 'exempt' may have matchingPrecedence 1",
        ));
    }
}

fn policy_rule(at: &str, rule: &Value, errs: &mut Vec<FieldError>) {
    let subjects = rule["subjects"].as_array().map_or(&[][..], |v| v);
    if subjects.is_empty() {
        errs.push(FieldError::required(
            format!("{at}.subjects"),
            "subjects must contain at least one value",
        ));
    }
    for (j, s) in subjects.iter().enumerate() {
        subject(&format!("{at}.subjects[{j}]"), s, errs);
    }
    let list = |key: &str| rule[key].as_array().map_or(&[][..], |v| v);
    let (resources, paths) = (list("resourceRules"), list("nonResourceRules"));
    if resources.is_empty() && paths.is_empty() {
        errs.push(FieldError::required(
            at,
            "at least one of resourceRules and nonResourceRules has to be non-empty",
        ));
    }
    for (k, r) in resources.iter().enumerate() {
        resource_rule(&format!("{at}.resourceRules[{k}]"), r, errs);
    }
    for (k, r) in paths.iter().enumerate() {
        let at = format!("{at}.nonResourceRules[{k}]");
        verbs(&format!("{at}.verbs"), &r["verbs"], errs);
        let urls = &r["nonResourceURLs"];
        let field = format!("{at}.nonResourceURLs");
        if !listed(
            &field,
            urls,
            "nonResourceURLs must contain at least one value",
            "non-resource URLs",
            errs,
        ) {
            for (n, url) in urls.as_array().into_iter().flatten().enumerate() {
                if let Some(problem) = url_problem(url.as_str().unwrap_or_default()) {
                    errs.push(FieldError::invalid(format!("{field}[{n}]"), url, problem));
                }
            }
        }
    }
}

fn subject(at: &str, s: &Value, errs: &mut Vec<FieldError>) {
    let kind = s["kind"].as_str().unwrap_or_default();
    let members = [
        ("User", "user"),
        ("Group", "group"),
        ("ServiceAccount", "serviceAccount"),
    ];
    let Some((_, member)) = members.iter().find(|(k, _)| *k == kind) else {
        errs.push(FieldError::not_supported(
            format!("{at}.kind"),
            &s["kind"],
            &["Group", "ServiceAccount", "User"],
        ));
        return;
    };
    let m = &s[*member];
    if !m.is_object() {
        errs.push(FieldError::required(
            format!("{at}.{member}"),
            format!("{member} is required when subject kind is '{kind}'"),
        ));
    } else if m["name"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(format!("{at}.{member}.name"), ""));
    }
    if kind == "ServiceAccount"
        && m.is_object()
        && m["namespace"].as_str().unwrap_or_default().is_empty()
    {
        errs.push(FieldError::required(
            format!("{at}.serviceAccount.namespace"),
            "must specify namespace for service account",
        ));
    }
    for (k, other) in members {
        if k != kind && s[other].is_object() {
            errs.push(FieldError::forbidden(
                format!("{at}.{other}"),
                format!("{other} is forbidden when subject kind is not '{k}'"),
            ));
        }
    }
}

fn resource_rule(at: &str, r: &Value, errs: &mut Vec<FieldError>) {
    verbs(&format!("{at}.verbs"), &r["verbs"], errs);
    let groups = format!("{at}.apiGroups");
    listed(
        &groups,
        &r["apiGroups"],
        "resource rules must supply at least one api group",
        "api groups",
        errs,
    );
    let resources = format!("{at}.resources");
    listed(
        &resources,
        &r["resources"],
        "resource rules must supply at least one resource",
        "resources",
        errs,
    );
    let namespaces = r["namespaces"].as_array().map_or(&[][..], |v| v);
    let field = format!("{at}.namespaces");
    if namespaces.is_empty() {
        if r["clusterScope"] != true {
            errs.push(FieldError::required(
                field,
                "resource rules that are not cluster scoped must supply at least one namespace",
            ));
        }
    } else if !listed(&field, &r["namespaces"], "", "namespaces", errs) {
        for (n, ns) in namespaces.iter().enumerate() {
            let problems = dns1123_label(ns.as_str().unwrap_or_default());
            if ns != "*" && !problems.is_empty() {
                let detail = format!(
                    "each member of this list must be '*' or a DNS-1123 label; {}",
                    problems.join("; ")
                );
                errs.push(FieldError::invalid(format!("{field}[{n}]"), ns, detail));
            }
        }
    }
}

fn verbs(field: &str, list: &Value, errs: &mut Vec<FieldError>) {
    if listed(
        field,
        list,
        "verbs must contain at least one value",
        "verbs",
        errs,
    ) {
        return;
    }
    let items = list.as_array().into_iter().flatten();
    if items
        .clone()
        .any(|v| v != "*" && !VERBS.contains(&v.as_str().unwrap_or_default()))
    {
        errs.push(FieldError::not_supported(field, list, VERBS));
    }
}

/// Checks a list that must not be empty and may hold `*` only alone; true if it failed.
fn listed(field: &str, list: &Value, empty: &str, what: &str, errs: &mut Vec<FieldError>) -> bool {
    let items = list.as_array().map_or(&[][..], |v| v);
    if items.is_empty() {
        errs.push(FieldError::required(field, empty));
        return true;
    }
    if items.len() > 1 && items.iter().any(|v| v == "*") {
        errs.push(FieldError::invalid(
            field,
            list,
            format!("if '*' is present, must not specify other {what}"),
        ));
        return true;
    }
    false
}

fn url_problem(url: &str) -> Option<&'static str> {
    let stars = url.matches('*').count();
    match url {
        "" => Some("must not be empty"),
        "/" | "*" => None,
        _ if !url.starts_with('/') => Some("must start with slash"),
        _ if url.contains(char::is_whitespace) => Some("must not contain white-space"),
        _ if url.contains("//") => Some("must not contain double slash"),
        _ if stars > 1 || (stars == 1 && !url.ends_with("/*")) => {
            Some("wildcard can only do suffix matching")
        }
        _ => None,
    }
}

fn exempt(spec: &Value, errs: &mut Vec<FieldError>) {
    if spec["limited"].is_object() {
        errs.push(FieldError::forbidden(
            "spec.limited",
            "must be nil if the type is not Limited",
        ));
    }
    let e = &spec["exempt"];
    let shares = &e["nominalConcurrencyShares"];
    if shares.as_i64().is_some_and(|v| v < 0) {
        errs.push(FieldError::invalid(
            "spec.exempt.nominalConcurrencyShares",
            shares,
            "must be a non-negative integer",
        ));
    }
    percent("spec.exempt.lendablePercent", &e["lendablePercent"], errs);
}

fn limited(spec: &Value, errs: &mut Vec<FieldError>) {
    if spec["exempt"].is_object() {
        errs.push(FieldError::forbidden(
            "spec.exempt",
            "must be nil if the type is Limited",
        ));
    }
    let l = &spec["limited"];
    if !l.is_object() {
        errs.push(FieldError::required(
            "spec.limited",
            "must not be empty when type is Limited",
        ));
        return;
    }
    let shares = &l["nominalConcurrencyShares"];
    if shares.as_i64().unwrap_or(0) <= 0 {
        errs.push(FieldError::invalid(
            "spec.limited.nominalConcurrencyShares",
            shares,
            "must be positive",
        ));
    }
    percent("spec.limited.lendablePercent", &l["lendablePercent"], errs);
    let borrowing = &l["borrowingLimitPercent"];
    if borrowing.as_i64().is_some_and(|v| v < 0) {
        errs.push(FieldError::invalid(
            "spec.limited.borrowingLimitPercent",
            borrowing,
            "if specified, must be a non-negative integer",
        ));
    }
    limit_response(&l["limitResponse"], errs);
}

fn percent(field: &str, v: &Value, errs: &mut Vec<FieldError>) {
    if v.as_i64().is_some_and(|p| !(0..=100).contains(&p)) {
        errs.push(FieldError::invalid(
            field,
            v,
            "must be between 0 and 100, inclusive",
        ));
    }
}

fn limit_response(r: &Value, errs: &mut Vec<FieldError>) {
    let at = "spec.limited.limitResponse";
    let queuing = &r["queuing"];
    match r["type"].as_str() {
        // Upstream's messages say "Limited" where they mean "Queue".
        Some("Reject") if queuing.is_object() => errs.push(FieldError::forbidden(
            format!("{at}.queuing"),
            "must be nil if limited.limitResponse.type is not Limited",
        )),
        Some("Reject") => {}
        Some("Queue") if !queuing.is_object() => errs.push(FieldError::required(
            format!("{at}.queuing"),
            "must not be empty if limited.limitResponse.type is Limited",
        )),
        Some("Queue") => queue_sizes(queuing, errs),
        _ => errs.push(FieldError::not_supported(
            format!("{at}.type"),
            &r["type"],
            &["Queue", "Reject"],
        )),
    }
}

fn queue_sizes(q: &Value, errs: &mut Vec<FieldError>) {
    let at = "spec.limited.limitResponse.queuing";
    let int = |k: &str| q[k].as_i64().unwrap_or(0);
    let invalid = |k: &str, m: String| FieldError::invalid(format!("{at}.{k}"), &q[k], m);
    if int("queueLengthLimit") <= 0 {
        errs.push(invalid("queueLengthLimit", "must be positive".into()));
    }
    let queues = int("queues");
    if queues <= 0 {
        errs.push(invalid("queues", "must be positive".into()));
    } else if queues > 10_000_000 {
        errs.push(invalid(
            "queues",
            "must not be greater than 10000000".into(),
        ));
    }
    let hand = int("handSize");
    if hand <= 0 {
        errs.push(invalid("handSize", "must be positive".into()));
    } else if hand > queues {
        errs.push(invalid(
            "handSize",
            format!("should not be greater than queues ({queues})"),
        ));
    } else if ((queues as f64).log2() * hand as f64).ceil() > 60.0 {
        errs.push(invalid(
            "handSize",
            format!("required entropy bits of deckSize {queues} and handSize {hand} should not be greater than 60"),
        ));
    }
}

/// The mandatory objects' specs are fixed (the exempt level's `spec.exempt` aside).
fn fixed_spec(name: &str, spec: &Value, kind: &str, errs: &mut Vec<FieldError>) {
    let shipped = match kind {
        "FlowSchema" => crate::flowcontrol::mandatory_schema(name),
        _ => crate::flowcontrol::mandatory_level(name),
    };
    let Some(mut fixed) = shipped else { return };
    let detail = if kind != "FlowSchema" && name == "exempt" {
        fixed["exempt"] = spec["exempt"].clone();
        format!("spec of '{name}' except the 'spec.exempt' field must equal the fixed value")
    } else {
        format!("spec of '{name}' must equal the fixed value")
    };
    if *spec != fixed {
        errs.push(FieldError::invalid("spec", spec, detail));
    }
}

fn conditions(obj: &Value, errs: &mut Vec<FieldError>) {
    let mut seen = Vec::new();
    for (i, c) in obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = &c["type"];
        let field = format!("status.conditions[{i}].type");
        if kind.as_str().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(field, "must not be empty"));
        } else if seen.contains(&kind) {
            errs.push(FieldError::duplicate(field, kind));
        } else {
            seen.push(kind);
        }
    }
}

#[cfg(test)]
mod tests;
