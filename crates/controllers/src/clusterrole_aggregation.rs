//! The ClusterRole aggregator (`clusterrole-aggregation-controller`, upstream's
//! `clusterrole-aggregation`, `pkg/controller/clusterroleaggregation`): a ClusterRole with an
//! `aggregationRule` has the rules of the ClusterRoles its `clusterRoleSelectors` select, as
//! the built-in `admin`, `edit` and `view` roles gather those labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`.
//!
//! Owns the `rules` of aggregated ClusterRoles, and nothing else. They become the union of the
//! selected roles' rules: selectors in order, each one's roles by name, the role itself left
//! out, a rule added unless an equal one is already there (upstream's semantic equality: an
//! absent list equals an empty one). When that differs from what is stored, the role is
//! written back (an update from the cached role, so a stale cache fails with a conflict and
//! the role is tried again); a role whose selectors select nothing gets `rules: []`. Any
//! change to any ClusterRole (created, updated, deleted) wakes every aggregated one, as
//! upstream's controller enqueues them all: roles are few and which selects which is not
//! worth tracking.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name, also the field manager of what it writes.
const NAME: &str = "clusterrole-aggregation-controller";

/// When a role whose update met a conflict is tried again (the newer version's own change
/// wakes it too, once the cache has it).
const CONFLICT_RETRY: Duration = Duration::from_secs(1);

struct Ctx {
    client: kube::Client,
    roles: Store<ClusterRole>,
}

/// Starts the aggregator: a loop over ClusterRoles, every aggregated one woken by any
/// ClusterRole's change.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let roles = informers.store::<ClusterRole>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        roles: roles.clone(),
    });
    let all = roles.clone();
    let controller = Controller::for_stream(informers.subscribe::<ClusterRole>(), roles)
        .watches_stream(
            informers.subscribe::<ClusterRole>(),
            move |_: ClusterRole| aggregated(&all.state()),
        );
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

/// The roles among `roles` that have an aggregation rule.
fn aggregated(roles: &[Arc<ClusterRole>]) -> Vec<ObjectRef<ClusterRole>> {
    roles
        .iter()
        .filter(|r| r.aggregation_rule.is_some())
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(rules) = desired(&role, &ctx.roles.state()).map_err(runtime::Error::Failed)? else {
        return Ok(Action::await_change());
    };
    let name = role.name_any();
    let count = rules.len();
    let mut want = (*role).clone();
    want.rules = Some(rules);
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let params = PostParams {
        field_manager: Some(NAME.into()),
        ..PostParams::default()
    };
    match api.replace(&name, &params, &want).await {
        Ok(_) => {
            tracing::info!("{NAME}: {name} now has {count} aggregated rules");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::debug!("{NAME}: {name} changed meanwhile; trying again");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        Err(e) => Err(e.into()),
    }
}

/// The rules `role` should have, when it has an aggregation rule and they differ from its
/// own; nothing otherwise. `roles` is every ClusterRole (`role` among them or not). A
/// selector that does not convert is an error, and nothing is written.
fn desired(
    role: &ClusterRole,
    roles: &[Arc<ClusterRole>],
) -> Result<Option<Vec<PolicyRule>>, String> {
    let Some(rule) = &role.aggregation_rule else {
        return Ok(None);
    };
    let mut sorted: Vec<&ClusterRole> = roles.iter().map(AsRef::as_ref).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for (i, selector) in rule.cluster_role_selectors.iter().flatten().enumerate() {
        let selector = serde_json::to_value(selector)
            .map_err(|e| e.to_string())
            .and_then(|s| api::selector::LabelSelector::from_object(&s))
            .map_err(|e| format!("aggregationRule.clusterRoleSelectors[{i}]: {e}"))?;
        let selected = sorted.iter().filter(|other| {
            other.metadata.name != role.metadata.name
                && selector.matches(Some(&serde_json::json!(other.labels())))
        });
        for r in selected.flat_map(|other| other.rules.iter().flatten()) {
            let r = normalized(r);
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
    }
    let current: Vec<PolicyRule> = role.rules.iter().flatten().map(normalized).collect();
    Ok((rules != current).then_some(rules))
}

/// `rule` with empty lists left out, so that rules compare as upstream's semantic equality
/// does (an absent list and an empty one are equal) and are written as its apply leaves
/// them.
fn normalized(rule: &PolicyRule) -> PolicyRule {
    let list = |l: &Option<Vec<String>>| l.clone().filter(|l| !l.is_empty());
    PolicyRule {
        api_groups: list(&rule.api_groups),
        non_resource_urls: list(&rule.non_resource_urls),
        resource_names: list(&rule.resource_names),
        resources: list(&rule.resources),
        verbs: rule.verbs.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::merge;
    use serde_json::{Value, json};

    /// A ClusterRole `name`, plain unless `extra` says more.
    fn role(name: &str, extra: Value) -> Arc<ClusterRole> {
        let mut base = json!({"metadata": {"name": name, "uid": format!("uid-{name}")}});
        merge(&mut base, extra);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    /// A rule granting `verbs` on `resources` of the core group.
    fn rule(resources: &[&str], verbs: &[&str]) -> Value {
        json!({"apiGroups": [""], "resources": resources, "verbs": verbs})
    }

    fn rules(v: Value) -> Vec<PolicyRule> {
        serde_json::from_value(v).unwrap()
    }

    /// The `admin`-like role aggregating `aggregate-to-admin` roles.
    fn admin(extra: Value) -> Arc<ClusterRole> {
        let mut v = json!({"aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"aggregate-to-admin": "true"}}]}});
        merge(&mut v, extra);
        role("admin", v)
    }

    #[test]
    fn selected_rules_are_joined_by_role_name_without_repeats_or_the_role_itself() {
        let admin = admin(json!({
            "metadata": {"labels": {"aggregate-to-admin": "true"}},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"aggregate-to-admin": "true"}},
                {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["extra"]}]}]},
            "rules": [rule(&["itself"], &["*"])]}));
        let roles = [
            admin.clone(),
            role(
                "b-pods",
                json!({"metadata": {"labels": {"aggregate-to-admin": "true"}},
                       "rules": [rule(&["pods"], &["get"]), rule(&["pods"], &["list"])]}),
            ),
            role(
                "a-secrets",
                json!({"metadata": {"labels": {"aggregate-to-admin": "true"}},
                       "rules": [rule(&["secrets"], &["get"]), rule(&["pods"], &["list"])]}),
            ),
            role(
                "c-extra",
                json!({"metadata": {"labels": {"tier": "extra"}},
                       "rules": [rule(&["nodes"], &["get"]), rule(&["pods"], &["get"])]}),
            ),
            role(
                "d-unlabelled",
                json!({"rules": [rule(&["configmaps"], &["get"])]}),
            ),
            role(
                "e-other",
                json!({"metadata": {"labels": {"aggregate-to-admin": "false"}},
                       "rules": [rule(&["services"], &["get"])]}),
            ),
        ];
        let want = rules(json!([
            rule(&["secrets"], &["get"]),
            rule(&["pods"], &["list"]),
            rule(&["pods"], &["get"]),
            rule(&["nodes"], &["get"]),
        ]));
        assert_eq!(desired(&admin, &roles), Ok(Some(want.clone())));
        // Once written, nothing more to do; the cache's order does not matter.
        let mut written = (*admin).clone();
        written.rules = Some(want);
        let mut shuffled = roles.to_vec();
        shuffled.reverse();
        assert_eq!(desired(&written, &shuffled), Ok(None));
    }

    #[test]
    fn roles_without_an_aggregation_rule_are_left_alone() {
        let plain = role(
            "plain",
            json!({"metadata": {"labels": {"aggregate-to-admin": "true"}},
                   "rules": [rule(&["pods"], &["get"])]}),
        );
        let roles = [plain.clone(), admin(json!({}))];
        assert_eq!(desired(&plain, &roles), Ok(None));
    }

    #[test]
    fn a_role_selecting_nothing_gets_an_empty_list() {
        let stale = admin(json!({"rules": [rule(&["pods"], &["get"])]}));
        assert_eq!(
            desired(&stale, std::slice::from_ref(&stale)),
            Ok(Some(vec![]))
        );
        // No rules and an empty list are the same: nothing to write.
        let bare = admin(json!({}));
        assert_eq!(desired(&bare, std::slice::from_ref(&bare)), Ok(None));
        let empty = admin(json!({"rules": []}));
        assert_eq!(desired(&empty, std::slice::from_ref(&empty)), Ok(None));
        // An aggregation rule without selectors aggregates nothing too.
        let none = role(
            "none",
            json!({"aggregationRule": {}, "rules": [rule(&["pods"], &["get"])]}),
        );
        assert_eq!(
            desired(&none, std::slice::from_ref(&none)),
            Ok(Some(vec![]))
        );
    }

    #[test]
    fn rules_compare_with_absent_and_empty_lists_equal() {
        let pods = role(
            "pods",
            json!({"metadata": {"labels": {"aggregate-to-admin": "true"}},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "resourceNames": [],
                              "verbs": ["get"]},
                             rule(&["pods"], &["get"])]}),
        );
        let same = admin(json!({"rules": [rule(&["pods"], &["get"])]}));
        assert_eq!(desired(&same, &[same.clone(), pods.clone()]), Ok(None));
        let other = admin(json!({"rules": [rule(&["pods"], &["list"])]}));
        assert_eq!(
            desired(&other, &[other.clone(), pods]),
            Ok(Some(rules(json!([rule(&["pods"], &["get"])]))))
        );
    }

    #[test]
    fn an_empty_selector_selects_every_other_role() {
        let all = role(
            "all",
            json!({"aggregationRule": {"clusterRoleSelectors": [{}]}}),
        );
        let roles = [
            all.clone(),
            role("x", json!({"rules": [rule(&["pods"], &["get"])]})),
            role(
                "y",
                json!({"metadata": {"labels": {"any": "thing"}},
                       "rules": [rule(&["nodes"], &["get"])]}),
            ),
        ];
        assert_eq!(
            desired(&all, &roles),
            Ok(Some(rules(json!([
                rule(&["pods"], &["get"]),
                rule(&["nodes"], &["get"])
            ]))))
        );
    }

    #[test]
    fn a_selector_that_does_not_convert_writes_nothing() {
        let bad = role(
            "bad",
            json!({"aggregationRule": {"clusterRoleSelectors": [
                {"matchExpressions": [{"key": "a", "operator": "Near"}]}]},
                   "rules": [rule(&["pods"], &["get"])]}),
        );
        let err = desired(&bad, std::slice::from_ref(&bad)).unwrap_err();
        assert!(
            err.starts_with("aggregationRule.clusterRoleSelectors[0]: "),
            "{err}"
        );
    }

    #[test]
    fn any_change_wakes_every_aggregated_role() {
        let roles = [
            role("plain", json!({})),
            admin(json!({})),
            role(
                "view",
                json!({"aggregationRule": {"clusterRoleSelectors": []}}),
            ),
        ];
        let mut woken: Vec<String> = aggregated(&roles).into_iter().map(|r| r.name).collect();
        woken.sort();
        assert_eq!(woken, ["admin", "view"]);
    }
}
