//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`: the `Impersonate-User`,
//! `-Group`, `-Uid` and `-Extra-<key>` headers), as upstream's filter: the caller must be
//! allowed the `impersonate` verb on each thing asked for (`users`, or `serviceaccounts` in
//! its namespace for `system:serviceaccount:<ns>:<name>`; `groups`; `uids`;
//! `userextras/<key>` in `authentication.k8s.io`), checked in that order, and the request
//! then runs as that user, in the groups asked for (a service account in its own two groups
//! when none are asked for) and `system:authenticated` (unless the groups asked for name it or
//! `system:unauthenticated`).

use api::{Resource, Status};
use axum::http::HeaderMap;

use super::Identity;
use crate::authz::{self, Attributes, Chain, Decision};

/// What the headers ask to act as, if anything.
struct Asked {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    extras: Vec<(String, String)>,
}

fn asked(headers: &HeaderMap) -> Asked {
    let text = |v: &axum::http::HeaderValue| v.to_str().unwrap_or_default().to_string();
    let mut a = Asked {
        user: headers.get("impersonate-user").map(text),
        groups: headers
            .get_all("impersonate-group")
            .iter()
            .map(text)
            .collect(),
        uid: headers.get("impersonate-uid").map(text),
        extras: Vec::new(),
    };
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            a.extras.push((key.to_string(), text(value)));
        }
    }
    a
}

/// Who the request runs as: `who`, or whom the headers ask for when the chain lets `who`
/// impersonate each part of it; else upstream's refusal.
pub async fn impersonate(
    chain: &Chain,
    who: Identity,
    headers: &HeaderMap,
) -> Result<Identity, Status> {
    let asked = asked(headers);
    let Some(user) = asked.user.clone() else {
        if asked.groups.is_empty() && asked.uid.is_none() && asked.extras.is_empty() {
            return Ok(who);
        }
        return Err(Status::internal(
            "requested impersonation of groups, a UID or extras without impersonating a user",
        ));
    };
    let account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    // What is asked for, as requests to authorize: `impersonate` on each.
    let on = |group: &str, plural: &str, sub: Option<&String>, ns: Option<&str>, name: &str| {
        let resource = Resource {
            group: group.into(),
            plural: plural.into(),
            ..Resource::default()
        };
        let (sub, ns) = (sub.cloned(), ns.map(str::to_string));
        authz::made_up_request(resource, sub, ns, Some(name.to_string()))
    };
    let mut checks = vec![match account {
        Some((ns, name)) => on("", "serviceaccounts", None, Some(ns), name),
        None => on("", "users", None, None, &user),
    }];
    checks.extend(asked.groups.iter().map(|g| on("", "groups", None, None, g)));
    for (key, value) in &asked.extras {
        checks.push(on(
            "authentication.k8s.io",
            "userextras",
            Some(key),
            None,
            value,
        ));
    }
    if let Some(uid) = &asked.uid {
        checks.push(on("authentication.k8s.io", "uids", None, None, uid));
    }
    for info in &checks {
        let a = Attributes {
            user: &who,
            verb: "impersonate",
            request: Some(info),
            path: "",
        };
        match chain.authorize(&a).await? {
            Decision::Allow(_) => {}
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                return Err(authz::forbidden(&a, &reason));
            }
        }
    }
    let mut groups = asked.groups;
    if groups.is_empty()
        && let Some((ns, _)) = account
    {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    // `system:authenticated` is added unless the groups asked for say either way.
    let said = |g: &String| g == "system:authenticated" || g == "system:unauthenticated";
    if !groups.iter().any(said) {
        groups.push("system:authenticated".into());
    }
    Ok(Identity { user, groups })
}
