//! `ResourceQuota`: an object that would take a namespace's ResourceQuota beyond its `hard`
//! limits is refused (`exceeded quota: ...`); one admitted is added to the quota's
//! `status.used` at once (a compare-and-swap on the quota), so concurrent creates cannot
//! overshoot it; the quota controller recounts from the objects.

use api::{Resource, Status};
use futures::future::BoxFuture;
use serde_json::Value;
use store::RangeOptions;

use super::{Attributes, Operation, Validating, forbidden_as, name_of};
use crate::registry::Registry;
use crate::watched::Watched;

/// How often the quotas are read again when they change under a charge.
const ATTEMPTS: usize = 10;

/// The step, with its copy of the ResourceQuotas.
pub(super) struct ResourceQuota {
    quotas: Watched,
}

impl Default for ResourceQuota {
    fn default() -> ResourceQuota {
        ResourceQuota {
            quotas: Watched::new("/registry/resourcequotas/"),
        }
    }
}

impl Validating for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn validate<'a>(
        &'a self,
        reg: &'a Registry,
        a: &'a Attributes<'a>,
        obj: &'a Value,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            match a.namespace {
                Some(ns)
                    if a.resource.namespaced
                        && a.operation == Operation::Create
                        && a.subresource.is_none() =>
                {
                    self.charge(reg, a.resource, ns, obj, a.dry_run).await
                }
                _ => Ok(()),
            }
        })
    }
}

/// A quota with the key and revision it was read at.
type Quota = (String, i64, Value);

impl ResourceQuota {
    /// Refuses `obj` if a quota of `ns` cannot take it, else adds it to their usage.
    async fn charge(
        &self,
        reg: &Registry,
        r: &Resource,
        ns: &str,
        obj: &Value,
        dry_run: bool,
    ) -> Result<(), Status> {
        // A quota changed meanwhile is read again.
        for attempt in 0..ATTEMPTS {
            let found = self.quotas_of(reg, ns, attempt == 0).await?;
            let writes = charged(&found, r, obj)?;
            if dry_run || writes.is_empty() || write(reg, writes).await? {
                return Ok(());
            }
        }
        Err(Status::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on resourcequotas: the quotas of namespace {ns} keep changing, try again"
            ),
        ))
    }

    /// The quotas of `ns`: from the watch-fed copy first; after a conflict, from the store.
    async fn quotas_of(
        &self,
        reg: &Registry,
        ns: &str,
        cached: bool,
    ) -> Result<Vec<Quota>, Status> {
        let quotas = api::resources::find("", "v1", "resourcequotas").expect("served");
        let prefix = quotas.prefix(Some(ns));
        if cached {
            return self.quotas.under(reg.store(), &prefix).await;
        }
        let listed = reg
            .store()
            .range(&prefix, RangeOptions::default())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(listed
            .kvs
            .into_iter()
            .filter_map(|kv| {
                let v = serde_json::from_slice::<Value>(&kv.value).ok()?;
                Some((kv.key, kv.mod_revision, v))
            })
            .collect())
    }
}

/// The quotas that cover `obj`, with its usage added; a refusal if one cannot take it.
fn charged(found: &[Quota], r: &Resource, obj: &Value) -> Result<Vec<Quota>, Status> {
    // Most namespaces have no quota: nothing to work out then.
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let usage = api::quota::usage(&r.group, &r.plural, obj);
    let mut writes = Vec::new();
    for (key, revision, quota) in found {
        let scopes: Vec<String> = quota["spec"]["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        if !api::quota::covers(&scopes, &r.plural, obj) {
            continue;
        }
        let refuse = |why: String| forbidden_as(r, &name_of(obj), &why);
        let qname = quota["metadata"]["name"].as_str().unwrap_or("");
        let hard = api::quota::parse(&quota["spec"]["hard"]);
        if r.plural == "pods" && r.group.is_empty() {
            let missing = missing_resources(&hard, obj);
            if !missing.is_empty() {
                return Err(refuse(format!(
                    "failed quota: {qname}: must specify {}",
                    missing.join(",")
                )));
            }
        }
        let mut used = api::quota::parse(&quota["status"]["used"]);
        let relevant: Vec<&String> = hard.keys().filter(|k| usage.contains_key(*k)).collect();
        if relevant.is_empty() {
            continue;
        }
        let over: Vec<&String> = relevant
            .iter()
            .copied()
            .filter(|k| used.get(*k).copied().unwrap_or(0) + usage[*k] > hard[*k])
            .collect();
        if !over.is_empty() {
            let list = |m: &dyn Fn(&String) -> i128| {
                over.iter()
                    .map(|k| format!("{k}={}", api::quota::format(k, m(k))))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(refuse(format!(
                "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                list(&|k| usage[k]),
                list(&|k| used.get(k).copied().unwrap_or(0)),
                list(&|k| hard[k]),
            )));
        }
        for k in relevant {
            *used.entry(k.clone()).or_default() += usage[k];
        }
        let mut updated = quota.clone();
        updated["status"]["hard"] = quota["spec"]["hard"].clone();
        updated["status"]["used"] = api::quota::to_list(&used);
        writes.push((key.clone(), *revision, updated));
    }
    Ok(writes)
}

/// Writes the charged quotas, each only if unchanged since read: false when one had changed.
async fn write(reg: &Registry, writes: Vec<Quota>) -> Result<bool, Status> {
    for (key, revision, updated) in writes {
        let bytes = serde_json::to_vec(&updated).unwrap_or_default();
        match reg.store().update(&key, bytes, revision).await {
            Ok(_) => {}
            Err(store::Error::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(Status::unavailable(e.to_string())),
        }
    }
    Ok(true)
}

/// The compute resources a quota limits that some container of the pod does not state.
fn missing_resources(hard: &api::quota::Usage, pod: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (key, field, resource) in [
        ("requests.cpu", "requests", "cpu"),
        ("cpu", "requests", "cpu"),
        ("requests.memory", "requests", "memory"),
        ("memory", "requests", "memory"),
        ("limits.cpu", "limits", "cpu"),
        ("limits.memory", "limits", "memory"),
    ] {
        if !hard.contains_key(key) || missing.contains(&key.to_string()) {
            continue;
        }
        let lacking = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["resources"][field][resource].is_null());
        if lacking {
            missing.push(key.to_string());
        }
    }
    missing
}
