//! The access reviews of `authorization.k8s.io/v1`, each a create that stores nothing and is
//! answered with the request and its `status`:
//! - SubjectAccessReview: may this user (and groups) do this? (what other servers ask);
//! - SelfSubjectAccessReview: may I? (`kubectl auth can-i`);
//! - LocalSubjectAccessReview: a SubjectAccessReview inside the URL's namespace;
//! - SelfSubjectRulesReview: what may I do in this namespace? (`kubectl auth can-i --list`),
//!   from RBAC's rules.
//!
//! The access reviews ask the same authorizer chain as every request.

use api::request::RequestInfo;
use api::validation::FieldError;
use api::{Resource, Status};
use serde_json::{Value, json};

use super::{Attributes, Chain, Decision};
use crate::authn::Identity;
use crate::registry::Registry;

/// Answers the review `review` of kind `r` (created in `ns`) asked by `who`.
pub async fn answer(
    chain: &Chain,
    reg: &Registry,
    who: &Identity,
    r: &Resource,
    ns: Option<&str>,
    mut review: Value,
) -> Result<Value, Status> {
    let spec = review["spec"].take();
    let status = match r.plural.as_str() {
        "selfsubjectrulesreviews" => rules_review(reg, who, &spec).await?,
        "subjectaccessreviews" => {
            let subject = subject_of(r, &spec)?;
            access_review(chain, reg, r, &subject, &spec).await?
        }
        "localsubjectaccessreviews" => {
            let ns = ns.unwrap_or_default();
            if spec["resourceAttributes"]
                .get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|n| n != ns)
            {
                return Err(Status::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {ns}"
                )));
            }
            let subject = subject_of(r, &spec)?;
            access_review(chain, reg, r, &subject, &spec).await?
        }
        _ => access_review(chain, reg, r, who, &spec).await?,
    };
    review["spec"] = spec;
    review["status"] = status;
    let meta = review["metadata"].as_object_mut();
    if let Some(meta) = meta {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    } else {
        review["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(review)
}

/// The user a (local) SubjectAccessReview asks about: `spec.user` with `spec.groups`, as
/// given (no `system:authenticated` is added, as upstream).
fn subject_of(r: &Resource, spec: &Value) -> Result<Identity, Status> {
    let user = spec["user"].as_str().unwrap_or_default().to_string();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    if user.is_empty() && groups.is_empty() {
        let e = FieldError::invalid(
            "spec.user",
            &json!(""),
            "at least one of user or group must be specified",
        );
        return Err(Status::invalid(r, "", &[e]));
    }
    Ok(Identity { user, groups })
}

/// Asks the chain about `spec`'s resource or non-resource attributes for `user`.
async fn access_review(
    chain: &Chain,
    reg: &Registry,
    r: &Resource,
    user: &Identity,
    spec: &Value,
) -> Result<Value, Status> {
    let (resource, non_resource) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let (info, verb, path) = match (resource.is_object(), non_resource.is_object()) {
        (true, false) => (
            Some(request_info(reg, resource)),
            text(resource, "verb"),
            String::new(),
        ),
        (false, true) => (None, text(non_resource, "verb"), text(non_resource, "path")),
        (both, _) => {
            let e = if both {
                FieldError::invalid(
                    "spec.nonResourceAttributes",
                    non_resource,
                    "cannot be specified in combination with resourceAttributes",
                )
            } else {
                FieldError::invalid(
                    "spec.resourceAttributes",
                    &Value::Null,
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            };
            return Err(Status::invalid(r, "", &[e]));
        }
    };
    let a = Attributes {
        user,
        verb: &verb,
        request: info.as_ref(),
        path: &path,
    };
    Ok(match chain.authorize(&a).await? {
        Decision::Allow(reason) if reason.is_empty() => json!({"allowed": true}),
        Decision::Allow(reason) => json!({"allowed": true, "reason": reason}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    })
}

/// The request a review's `resourceAttributes` describe: the served resource they name, or
/// one made up from their group, version and resource when none is served. The verb is
/// left empty; authorizers read it from the attributes.
fn request_info(reg: &Registry, attrs: &Value) -> RequestInfo {
    let text = |key: &str| {
        attrs[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (group, version) = (text("group").unwrap_or_default(), text("version"));
    let plural = text("resource").unwrap_or_default();
    let namespace = text("namespace");
    let snapshot = reg.served().snapshot();
    let served = snapshot.iter().find(|r| {
        r.group == group
            && r.plural == plural
            && version
                .as_deref()
                .is_none_or(|v| v == "*" || v == r.version)
    });
    let (name, subresource) = (text("name"), text("subresource"));
    match served {
        Some(resource) => RequestInfo {
            resource: resource.clone(),
            namespace,
            name,
            subresource,
            verb: "",
        },
        None => {
            let version = version.unwrap_or_default();
            let resource = Resource {
                group,
                version,
                plural,
                ..Resource::default()
            };
            super::made_up_request(resource, subresource, namespace, name)
        }
    }
}

/// What `who` may do in `spec.namespace`, from RBAC (upstream's rule resolvers: RBAC is the
/// one that can list its rules; `incomplete` says when a role could not be read).
async fn rules_review(reg: &Registry, who: &Identity, spec: &Value) -> Result<Value, Status> {
    let ns = spec["namespace"].as_str().filter(|s| !s.is_empty());
    let (rules, errors) = reg.rbac().rules_for(reg.store(), who, ns).await?;
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if rule
            .non_resource_urls
            .as_deref()
            .is_some_and(|u| !u.is_empty())
        {
            non_resource_rules
                .push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        } else {
            let mut out = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups.unwrap_or_default(),
                "resources": rule.resources.unwrap_or_default()});
            if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                out["resourceNames"] = json!(names);
            }
            resource_rules.push(out);
        }
    }
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty()});
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    Ok(status)
}
