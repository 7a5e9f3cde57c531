//! The generic REST store (upstream's `registry/generic`): every verb for every resource,
//! written once over the revisioned store, with per-resource behaviour from [`crate::strategy`].
//!
//! Objects are stored as JSON under upstream's keys. `metadata.resourceVersion` is never
//! stored: it is the key's `mod_revision`, set on the way out, and compared on the way in.
//! This is the one place where store errors become `Status`es.

use std::sync::Arc;
use std::time::Duration;

use api::patch::{JsonPatchError, PatchType, json_patch, merge_patch, strategic_merge};
use api::selector::{FieldSelector, LabelSelector};
use api::{Resource, Status};
use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use store::{KeyValue, RangeOptions, Revision, Store, WatchEvent, WatchOptions};

use crate::authn::Identity;
use crate::cacher::{Cacher, Item};
use crate::object::{finalizers, meta_mut, meta_str, name_suffix, now, set_pointer, spec_part};
use crate::strategy;
use crate::{admission, allocator};

/// How often an idle watch with bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// The generic registry over one store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    cacher: Cacher,
    /// The admission steps every create and update passes.
    admission: Arc<admission::Chain>,
    /// Where ClusterIPs come from.
    service_range: allocator::ServiceRange,
    /// The resources served now.
    served: Arc<api::resources::Catalog>,
    /// The roles and bindings, as RBAC and its escalation check read them.
    rbac: Arc<crate::authz::rbac::Policy>,
    /// The service accounts, as token authentication and the ServiceAccount step read them.
    accounts: Arc<crate::watched::Watched>,
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0: all).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion` with exact-match semantics, when asked for.
    pub exact_revision: Option<Revision>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult<T = Value> {
    /// The matching objects, each with its resourceVersion.
    pub items: Vec<T>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// The token for the next page.
    pub continue_token: Option<String>,
    /// `remainingItemCount`: how many items come after this page, when there is a next page
    /// and the list has no selector (as upstream, only when the count is exact).
    pub remaining_item_count: Option<i64>,
}

/// What a watch asks for.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`: None or 0 start with the current state as ADDED events.
    pub revision: Option<Revision>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents` (ends the initial state with a marked bookmark).
    pub initial_events: bool,
}

/// One watch event: its type and object, ready to encode.
pub type Event = (&'static str, Value);

/// Options of a delete (`DeleteOptions` and its query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// Who asks for a write, and whether it is only tried: what the admission chain learns of the
/// request besides the object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The requesting user; `None` for the server's own writes (its bootstrap objects).
    pub user: Option<&'a Identity>,
    /// `dryRun=All`: everything but the store write.
    pub dry_run: bool,
}

impl Caller<'_> {
    /// The server itself, writing for real.
    pub const SERVER: Caller<'static> = Caller {
        user: None,
        dry_run: false,
    };
}

/// How often a create with `generateName` tries a fresh name before giving up.
const GENERATE_NAME_ATTEMPTS: u32 = 8;

fn store_error(r: &Resource, name: &str, e: store::Error) -> Status {
    match e {
        store::Error::NotFound { .. } => Status::not_found(r, name),
        store::Error::AlreadyExists { .. } => Status::already_exists(r, name),
        store::Error::Conflict { .. } => Status::conflict(r, name),
        store::Error::Compacted {
            requested,
            compact_revision,
        } => Status::expired(requested, compact_revision),
        store::Error::ValueTooLarge { size, limit, .. } => Status::too_large(format!(
            "{} \"{name}\" is too large to store: {size} bytes, over the limit of {limit} bytes",
            r.qualified()
        )),
        store::Error::FutureRevision { requested, current } => Status::timeout(format!(
            "Too large resource version: {requested}, current resource version: {current}"
        )),
        store::Error::Unavailable { .. } | store::Error::Locked { .. } => {
            Status::unavailable(e.to_string())
        }
        other => Status::internal(other),
    }
}

/// Decodes a stored object and sets its resourceVersion.
fn decode(kv: &KeyValue) -> Result<Value, Status> {
    decode_at(&kv.value, kv.mod_revision)
}

fn decode_at(bytes: &[u8], revision: Revision) -> Result<Value, Status> {
    let mut obj: Value = serde_json::from_slice(bytes)
        .map_err(|e| Status::internal(format!("stored object is not valid JSON: {e}")))?;
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
    Ok(obj)
}

/// The stored form: `metadata` first and without `resourceVersion`, so that
/// [`raw_with_revision`] can add it without parsing the object.
fn encode(obj: &Value) -> Vec<u8> {
    let mut meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    let mut out = b"{\"metadata\":".to_vec();
    serde_json::to_writer(&mut out, &meta).expect("JSON values always encode");
    for (k, v) in obj
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "metadata")
    {
        out.push(b',');
        serde_json::to_writer(&mut out, k).expect("strings encode");
        out.push(b':');
        serde_json::to_writer(&mut out, v).expect("JSON values always encode");
    }
    out.push(b'}');
    out
}

/// A stored object's JSON with its resourceVersion, spliced in without parsing.
fn raw_with_revision(kv: &KeyValue) -> Result<Vec<u8>, Status> {
    const HEAD: &[u8] = b"{\"metadata\":{";
    let rv = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
    match kv.value.strip_prefix(HEAD) {
        Some(rest) => {
            let mut out = Vec::with_capacity(kv.value.len() + rv.len() + 1);
            out.extend_from_slice(HEAD);
            out.extend_from_slice(rv.as_bytes());
            if rest.first() != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(rest);
            Ok(out)
        }
        // Written in another layout: take the long way.
        None => Ok(serde_json::to_vec(&decode(kv)?).expect("JSON values always encode")),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
    /// How many keys follow `start` at `rv`, counted for the page before, so that the next
    /// pages need not count again (absent from a token that goes on at the latest revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remaining: Option<usize>,
}

fn encode_continue(rv: Revision, after_key: &str, remaining: Option<usize>) -> String {
    let token = serde_json::to_vec(&ContinueToken {
        rv,
        start: after_key.to_string(),
        remaining: remaining.filter(|_| rv != LATEST),
    })
    .expect("encodes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

/// The revision of a token that goes on at the latest revision: the one an expired token's
/// 410 hands out (upstream's `ResourceVersion: -1`, distinct from a bad token's 0).
const LATEST: Revision = -1;

fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken, Status> {
    let bad = |why: &str| Status::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad("malformed token"))?;
    if !t.start.starts_with(prefix) {
        return Err(bad("the token is for another list"));
    }
    Ok(t)
}

impl Registry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry {
            store,
            cacher: Cacher::default(),
            admission: Default::default(),
            service_range: Default::default(),
            served: Default::default(),
            rbac: Default::default(),
            accounts: Arc::new(crate::watched::Watched::new("/registry/serviceaccounts/")),
        }
    }

    /// The roles and bindings, followed by watches.
    pub fn rbac(&self) -> &crate::authz::rbac::Policy {
        &self.rbac
    }

    /// The service accounts, followed by a watch.
    pub(crate) fn accounts(&self) -> &crate::watched::Watched {
        &self.accounts
    }

    /// What writes reserve beside their objects (a Service's addresses and ports).
    fn reservations(&self) -> allocator::Reservations<'_> {
        allocator::Reservations {
            store: &*self.store,
            range: self.service_range,
        }
    }

    /// The resources served now: the built-in ones and those added at run time.
    pub fn served(&self) -> &api::resources::Catalog {
        &self.served
    }

    /// The same registry, handing out ClusterIPs from `range`.
    pub fn with_service_range(self, range: allocator::ServiceRange) -> Registry {
        Registry {
            service_range: range,
            ..self
        }
    }

    /// The same registry, with `chain` as its admission steps.
    pub fn with_admission(self, chain: admission::Chain) -> Registry {
        Registry {
            admission: Arc::new(chain),
            ..self
        }
    }

    /// The range ClusterIPs come from.
    pub fn service_range(&self) -> allocator::ServiceRange {
        self.service_range
    }

    /// The store underneath, for health checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// GET one object.
    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<Value, Status> {
        let kv = self
            .store
            .get(&r.key(ns, name))
            .await
            .map_err(|e| store_error(r, name, e))?;
        decode(&kv.ok_or_else(|| Status::not_found(r, name))?)
    }

    /// LIST, filtered by selectors, in pages.
    pub async fn list(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, Status> {
        self.list_map(r, ns, opts, |obj| obj).await
    }

    /// LIST, each object that passes the selectors kept as what `map` makes of it, at once:
    /// a Table LIST keeps rows, and no decoded object outlives its turn.
    pub async fn list_map<T>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        map: impl Fn(Value) -> T,
    ) -> Result<ListResult<T>, Status> {
        self.scan(r, ns, opts, |kv| {
            let obj = decode(kv)?;
            let keep =
                opts.labels.matches(obj["metadata"].get("labels")) && opts.fields.matches(&obj);
            Ok(keep.then(|| map(obj)))
        })
        .await
    }

    /// LIST without selectors, each item as its JSON bytes: no decoding and re-encoding of
    /// every object, the common case of clients that list everything.
    pub async fn list_raw(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult<Vec<u8>>, Status> {
        debug_assert!(opts.labels.is_empty() && opts.fields.0.is_empty());
        self.scan(r, ns, opts, |kv| raw_with_revision(kv).map(Some))
            .await
    }

    /// Reads `r`'s keys page by page at one revision, keeping what `keep` returns, until the
    /// limit is filled or the keys run out.
    async fn scan<T>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        keep: impl Fn(&KeyValue) -> Result<Option<T>, Status>,
    ) -> Result<ListResult<T>, Status> {
        let prefix = r.prefix(ns);
        let (mut after, mut revision) = (None, opts.exact_revision.unwrap_or(0));
        // The keys after `after` at `revision`, when an earlier page counted them.
        let mut known = None;
        if let Some(token) = &opts.continue_token {
            let t = decode_continue(token, &prefix)?;
            after = Some(t.start);
            revision = if t.rv == LATEST { 0 } else { t.rv };
            known = t.remaining.filter(|_| t.rv != LATEST);
        }
        // Where the client's token starts: an expired token's successor starts there too.
        let start = after.clone();
        let mut items = Vec::new();
        loop {
            let want = if opts.limit == 0 {
                0
            } else {
                (opts.limit - items.len()).max(1)
            };
            let page = self
                .store
                .range(
                    &prefix,
                    RangeOptions {
                        limit: want,
                        after: after.clone(),
                        revision,
                        skip_count: known.is_some(),
                    },
                )
                .await
                .map_err(|e| match e {
                    store::Error::Compacted { .. } if opts.continue_token.is_some() => {
                        Status::continue_expired(encode_continue(
                            LATEST,
                            start.as_deref().unwrap_or(&prefix),
                            None,
                        ))
                    }
                    store::Error::Compacted { .. } => Status::new(
                        410,
                        "Expired",
                        "The resourceVersion for the provided list is too old.",
                    ),
                    other => store_error(r, "", other),
                })?;
            revision = page.revision;
            let remaining = match known {
                Some(k) if page.more => k.saturating_sub(page.kvs.len()),
                _ => page.remaining,
            };
            known = page.more.then_some(remaining);
            for kv in &page.kvs {
                if let Some(item) = keep(kv)? {
                    items.push(item);
                }
            }
            after = page.kvs.last().map(|kv| kv.key.clone()).or(after);
            let full = opts.limit > 0 && items.len() >= opts.limit;
            if !page.more || full {
                let continue_token = (page.more && opts.limit > 0)
                    .then(|| encode_continue(revision, after.as_deref().unwrap_or(&prefix), known));
                // Without selectors every key is an item, so the keys after the page count
                // the items exactly; with one, upstream leaves the count out.
                let unfiltered = opts.labels.is_empty() && opts.fields.0.is_empty();
                let remaining_item_count =
                    (continue_token.is_some() && unfiltered).then_some(remaining as i64);
                return Ok(ListResult {
                    items,
                    revision,
                    continue_token,
                    remaining_item_count,
                });
            }
        }
    }

    /// CREATE: fills in system fields and defaults, validates, stores. A name generated from
    /// `generateName` that is taken already is generated again (upstream's
    /// RetryGenerateName), so clients never see that conflict.
    pub async fn create(
        &self,
        r: &Resource,
        ns: Option<&str>,
        obj: Value,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        let generated = meta_str(&obj, "name").is_empty()
            && obj["metadata"]["generateName"]
                .as_str()
                .is_some_and(|g| !g.is_empty());
        let mut attempts = if generated { GENERATE_NAME_ATTEMPTS } else { 1 };
        loop {
            attempts -= 1;
            match self.create_once(r, ns, obj.clone(), who).await {
                Err(s) if s.reason == "AlreadyExists" && attempts > 0 => continue,
                other => return other,
            }
        }
    }

    async fn create_once(
        &self,
        r: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        check_type(r, &mut obj)?;
        set_namespace(r, ns, &mut obj)?;
        let meta = meta_mut(&mut obj);
        let unnamed = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|g| unnamed && !g.is_empty())
        {
            let name = format!("{prefix}{}", name_suffix());
            meta.insert("name".into(), json!(name));
        }
        for system in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(system);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        if obj.get("spec").is_some() {
            meta_mut(&mut obj).insert("generation".into(), json!(1));
        }
        strategy::defaults(r, &mut obj);
        strategy::prepare_for_create(r, &mut obj);
        let attributes = admission::Attributes {
            operation: admission::Operation::Create,
            resource: r,
            subresource: None,
            namespace: ns,
            old: None,
            user: who.user,
            dry_run: who.dry_run,
        };
        self.admission.admit(self, &attributes, &mut obj).await?;
        let name = meta_str(&obj, "name").to_string();
        let errs = strategy::validate(r, &obj);
        if !errs.is_empty() {
            return Err(Status::invalid(r, &name, &errs));
        }
        self.admission.validate(self, &attributes, &obj).await?;
        if who.dry_run {
            if self
                .store
                .get(&r.key(ns, &name))
                .await
                .map_err(|e| store_error(r, &name, e))?
                .is_some()
            {
                return Err(Status::already_exists(r, &name));
            }
            return Ok(obj);
        }
        let key = r.key(ns, &name);
        let reserved = self.reservations().create(r, &mut obj, &key).await?;
        match self.store.create(&key, encode(&obj)).await {
            Ok(kv) => {
                meta_mut(&mut obj)
                    .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                Ok(obj)
            }
            Err(e) => {
                self.reservations().give_back(&reserved).await;
                Err(store_error(r, &name, e))
            }
        }
    }

    /// UPDATE (PUT) of the object or of its `status` subresource.
    pub async fn update(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        sub: Option<&str>,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        check_type(r, &mut obj)?;
        set_namespace(r, ns, &mut obj)?;
        let body_name = meta_str(&obj, "name");
        if body_name.is_empty() {
            meta_mut(&mut obj).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(Status::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let expected = meta_str(&obj, "resourceVersion").to_string();
        self.guaranteed_update(
            r,
            ns,
            name,
            who,
            |current| {
                if !expected.is_empty() && expected != meta_str(current, "resourceVersion") {
                    return Err(Status::conflict(r, name));
                }
                Ok(obj.clone())
            },
            sub,
        )
        .await
    }

    /// PATCH of the object or of a field-scoped subresource. `asked` is the resource the
    /// request names: the patch applies to the object as that version shows it, which for
    /// versions served by conversion differs from the stored form.
    pub async fn patch(
        &self,
        asked: &Resource,
        ns: Option<&str>,
        name: &str,
        (kind, patch): (PatchType, &Value),
        sub: Option<&str>,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        let precondition = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let r = api::convert::storage_of(asked).unwrap_or(asked);
        self.guaranteed_update(
            r,
            ns,
            name,
            who,
            |current| {
                if let Some(rv) = &precondition
                    && rv != meta_str(current, "resourceVersion")
                {
                    return Err(Status::conflict(r, name));
                }
                if r == asked {
                    return apply_patch(kind, current, patch);
                }
                let shown = api::convert::from_storage(asked, current.clone());
                let patched = apply_patch(kind, &shown, patch)?;
                Ok(api::convert::to_storage(asked, patched))
            },
            sub,
        )
        .await
    }

    /// Read, transform, write with compare-and-swap, retrying when someone else wrote in
    /// between (upstream's `GuaranteedUpdate`).
    pub(crate) async fn guaranteed_update(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        who: Caller<'_>,
        transform: impl Fn(&Value) -> Result<Value, Status>,
        sub: Option<&str>,
    ) -> Result<Value, Status> {
        let key = r.key(ns, name);
        loop {
            let kv = self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(r, name, e))?;
            let kv = kv.ok_or_else(|| Status::not_found(r, name))?;
            let current = decode(&kv)?;
            let new = transform(&current)?;
            let mut new = carry_over(r, &current, new, sub);
            let attributes = admission::Attributes {
                operation: admission::Operation::Update,
                resource: r,
                subresource: sub,
                namespace: ns,
                old: Some(&current),
                user: who.user,
                dry_run: who.dry_run,
            };
            self.admission.admit(self, &attributes, &mut new).await?;
            new = finish_update(r, &current, new, sub)?;
            self.admission.validate(self, &attributes, &new).await?;
            if who.dry_run || new == current {
                return Ok(new);
            }
            let reserved = self
                .reservations()
                .update(r, &current, &mut new, &key, sub)
                .await?;
            // As upstream's ShouldDeleteDuringUpdate: a graceful deletion in progress (a pod
            // whose kubelet still stops it) is not finished by an update, only by the
            // kubelet's delete with grace 0.
            let gone = new["metadata"].get("deletionTimestamp").is_some()
                && finalizers(&new).is_empty()
                && current["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0)
                    == 0
                && !strategy::of(r).holds_deletion(&new);
            let result = if gone {
                self.store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(|d| d.revision)
            } else {
                self.store
                    .update(&key, encode(&new), kv.mod_revision)
                    .await
                    .map(|kv| kv.mod_revision)
            };
            // Reserved for an object that is not kept: given back.
            if result.is_err() || gone {
                self.reservations().give_back(&reserved).await;
            }
            match result {
                Ok(rev) => {
                    let kept = (!gone).then_some(&new);
                    self.reservations().written(r, &current, kept).await;
                    meta_mut(&mut new).insert("resourceVersion".into(), json!(rev.to_string()));
                    return Ok(new);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(r, name, e)),
            }
        }
    }

    /// The `binding` subresource: assigns a pod to a node, once.
    pub async fn bind(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        binding: &Value,
        who: Caller<'_>,
    ) -> Result<(), Status> {
        let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            return Err(Status::invalid(
                r,
                name,
                &[api::validation::FieldError::required("target.name", "")],
            ));
        }
        self.guaranteed_update(
            r,
            ns,
            name,
            Caller {
                dry_run: false,
                ..who
            },
            |current| {
                if current["metadata"].get("deletionTimestamp").is_some() {
                    return Err(Status::conflict_because(
                        r,
                        name,
                        "pod is being deleted, cannot be assigned to a host",
                    ));
                }
                match current["spec"]["nodeName"].as_str() {
                    Some(existing) if !existing.is_empty() => Err(Status::conflict_because(
                        r,
                        name,
                        &format!("pod {name} is already assigned to node \"{existing}\""),
                    )),
                    _ => {
                        let mut new = current.clone();
                        new["spec"]["nodeName"] = json!(node);
                        Ok(new)
                    }
                }
            },
            Some("binding"),
        )
        .await
        .map(|_| ())
    }

    /// Passes a request that writes nothing itself (an eviction, a connect request) through
    /// the validating admission steps; `obj` is its body or its options.
    pub async fn admit_request(
        &self,
        a: &admission::Attributes<'_>,
        obj: &Value,
    ) -> Result<(), Status> {
        self.admission.validate(self, a, obj).await
    }

    /// DELETE: immediate, or marked with `deletionTimestamp` while finalizers or a graceful
    /// pod termination hold it.
    pub async fn delete(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        who: Caller<'_>,
    ) -> Result<Value, Status> {
        let key = r.key(ns, name);
        loop {
            let kv = self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(r, name, e))?;
            let kv = kv.ok_or_else(|| Status::not_found(r, name))?;
            let current = decode(&kv)?;
            let attributes = admission::Attributes {
                operation: admission::Operation::Delete,
                resource: r,
                subresource: None,
                namespace: ns,
                old: Some(&current),
                user: who.user,
                dry_run: who.dry_run,
            };
            self.admission.validate(self, &attributes, &current).await?;
            if let Some(uid) = &opts.uid
                && uid != meta_str(&current, "uid")
            {
                return Err(Status::conflict_because(
                    r,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid")
                    ),
                ));
            }
            if let Some(rv) = &opts.resource_version
                && rv != meta_str(&current, "resourceVersion")
            {
                return Err(Status::conflict_because(
                    r,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&current, "resourceVersion")
                    ),
                ));
            }
            let mut marked = current.clone();
            let mut fins = finalizers(&current);
            match opts.propagation.as_deref() {
                Some("Orphan") if !fins.contains(&"orphan".to_string()) => {
                    fins.push("orphan".into())
                }
                Some("Foreground") if !fins.contains(&"foregroundDeletion".to_string()) => {
                    fins.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let strategy = strategy::of(r);
            let grace = strategy.deletion_grace(&current, opts.grace_period);
            let hold = !fins.is_empty() || grace > 0 || strategy.holds_deletion(&current);
            if !hold {
                if who.dry_run {
                    return Ok(current);
                }
                return match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(_) => {
                        self.reservations().written(r, &current, None).await;
                        Ok(current)
                    }
                    Err(store::Error::Conflict { .. }) => continue,
                    Err(e) => Err(store_error(r, name, e)),
                };
            }
            if current["metadata"].get("deletionTimestamp").is_some() {
                // Already terminating: a shorter grace period could be applied; nothing else.
                return Ok(current);
            }
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            m.insert("finalizers".into(), json!(fins));
            if fins.is_empty() {
                m.remove("finalizers");
            }
            strategy.mark_deleting(&mut marked);
            if who.dry_run {
                return Ok(marked);
            }
            match self
                .store
                .update(&key, encode(&marked), kv.mod_revision)
                .await
            {
                Ok(kv) => {
                    meta_mut(&mut marked)
                        .insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                    return Ok(marked);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(r, name, e)),
            }
        }
    }

    /// WATCH: optionally the current state as ADDED events, then changes, filtered by the
    /// selectors (an object leaving the selection is DELETED, one entering it ADDED).
    pub async fn watch(
        &self,
        r: Arc<Resource>,
        ns: Option<&str>,
        req: WatchRequest,
    ) -> Result<futures::stream::BoxStream<'static, Event>, Status> {
        let prefix = r.prefix(ns);
        // From revision 0 or a recent revision, the watch cache serves it; a watch for the
        // current state (no revision) or with initial events reads the store.
        let cached_from = match req.revision {
            Some(rv) if rv >= 0 && !req.initial_events => Some(rv),
            _ => None,
        };
        if let Some(from) = cached_from
            && let Some(sub) = self
                .cacher
                .subscribe(&self.store, &r.prefix(None), from)
                .await
        {
            return Ok(cached_watch(r, prefix, req, sub));
        }
        let mut initial = Vec::new();
        let from = match req.revision {
            Some(rv) if rv > 0 && !req.initial_events => rv + 1,
            _ => {
                let list = self
                    .list(
                        &r,
                        ns,
                        &ListOptions {
                            labels: req.labels.clone(),
                            fields: req.fields.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                initial = list
                    .items
                    .into_iter()
                    .map(|o| ("ADDED", with_type(&r, o)))
                    .collect();
                if req.initial_events {
                    initial.push((
                        "BOOKMARK",
                        json!({
                            "kind": r.kind,
                            "apiVersion": r.api_version(),
                            "metadata": {
                                "resourceVersion": list.revision.to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        }),
                    ));
                }
                list.revision + 1
            }
        };
        let opts = WatchOptions {
            progress_interval: req.bookmarks.then_some(BOOKMARK_INTERVAL),
        };
        let events = self
            .store
            .watch(&prefix, from, opts)
            .await
            .map_err(|e| store_error(&r, "", e))?;
        let (labels, fields, bookmarks) = (req.labels, req.fields, req.bookmarks);
        let matches =
            move |o: &Value| labels.matches(o["metadata"].get("labels")) && fields.matches(o);
        let live = events.filter_map(move |ev| {
            let out = translate(&r, ev, &matches, bookmarks, from);
            async move { out }
        });
        Ok(futures::stream::iter(initial).chain(live).boxed())
    }
}

/// Keeps status or spec apart per subresource, fills in defaults, and keeps the fields
/// only another subresource writes.
fn carry_over(r: &Resource, current: &Value, mut new: Value, sub: Option<&str>) -> Value {
    if let Some(path) = sub.and_then(scoped_field) {
        // A field-scoped subresource changes its one field and nothing else, but for the
        // metadata a status or approval write brings: upstream's strategies for those reset
        // the rest of the object only (a kind keeping its metadata too says so in its
        // strategy's `prepare_for_update`).
        let value = new.pointer(path).cloned();
        let metadata = new.get("metadata").cloned();
        new = current.clone();
        set_pointer(&mut new, path, value);
        if let (Some("status" | "approval"), Some(metadata)) = (sub, metadata) {
            new["metadata"] = metadata;
        }
    } else if r.has_subresource("status") {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    strategy::defaults(r, &mut new);
    strategy::prepare_for_update(r, current, &mut new, sub);
    new
}

/// Carries system fields over, bumps `generation`, and validates.
fn finish_update(
    r: &Resource,
    current: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Value, Status> {
    let name = meta_str(current, "name").to_string();
    check_type(r, &mut new)?;
    let cm = current["metadata"].clone();
    let meta = meta_mut(&mut new);
    for system in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match cm.get(system) {
            Some(v) => meta.insert(system.into(), v.clone()),
            None => meta.remove(system),
        };
    }
    meta.insert("resourceVersion".into(), cm["resourceVersion"].clone());
    if cm.get("deletionTimestamp").is_some() {
        // A terminating object may lose finalizers, not gain them.
        let had = finalizers(current);
        if finalizers(&new).iter().any(|f| !had.contains(f)) {
            return Err(Status::invalid(
                r,
                &name,
                &[api::validation::FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }
    if spec_part(current) != spec_part(&new) && current["metadata"].get("generation").is_some() {
        let g = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut new).insert("generation".into(), json!(g));
    }
    let mut errs = strategy::validate(r, &new);
    if sub != Some("binding") {
        // Binding sets the one field updates may not: spec.nodeName.
        errs.extend(strategy::validate_update(r, current, &new, sub));
    }
    if !errs.is_empty() {
        return Err(Status::invalid(r, &name, &errs));
    }
    Ok(new)
}

/// A client watch fed by the watch cache: the snapshot or the replay, then the live feed,
/// filtered by namespace (key prefix) and selectors. A lagging client's watch ends.
fn cached_watch(
    r: Arc<Resource>,
    prefix: String,
    req: WatchRequest,
    sub: crate::cacher::Subscription,
) -> futures::stream::BoxStream<'static, Event> {
    let (labels, fields, bookmarks) = (req.labels, req.fields, req.bookmarks);
    let matches = move |o: &Value| labels.matches(o["metadata"].get("labels")) && fields.matches(o);
    let start = sub.revision;
    let initial: Vec<Event> = match sub.snapshot {
        Some(objects) => objects
            .iter()
            .filter(|(key, o)| key.starts_with(&prefix) && matches(o))
            .map(|(_, o)| ("ADDED", with_type(&r, (**o).clone())))
            .collect(),
        None => sub
            .replay
            .iter()
            .filter_map(|c| change_event(&r, &prefix, c, &matches))
            .collect(),
    };
    let live = tokio_stream::wrappers::BroadcastStream::new(sub.live)
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(move |item| {
            let out = match item {
                Ok(Item::Change(c)) if c.revision > start => {
                    change_event(&r, &prefix, &c, &matches)
                }
                Ok(Item::Progress(rev)) if bookmarks => Some((
                    "BOOKMARK",
                    json!({
                        "kind": r.kind,
                        "apiVersion": r.api_version(),
                        "metadata": {"resourceVersion": rev.to_string()},
                    }),
                )),
                _ => None,
            };
            std::future::ready(out)
        });
    futures::stream::iter(initial).chain(live).boxed()
}

/// The event a cached change is for one watcher, or nothing when its namespace or selectors
/// hide it (an object leaving the selection is DELETED, one entering it ADDED).
fn change_event(
    r: &Resource,
    prefix: &str,
    c: &crate::cacher::Change,
    matches: &impl Fn(&Value) -> bool,
) -> Option<Event> {
    if !c.key.starts_with(prefix) {
        return None;
    }
    let before = c.prev.as_ref().map(|p| matches(p));
    let kind = if c.deleted {
        (before == Some(true)).then_some("DELETED")?
    } else {
        match (before, matches(&c.object)) {
            (None | Some(false), true) => "ADDED",
            (Some(true), true) => "MODIFIED",
            (Some(true), false) => "DELETED",
            _ => return None,
        }
    };
    Some((kind, with_type(r, (*c.object).clone())))
}

/// The one field a field-scoped subresource writes, as a JSON pointer.
fn scoped_field(sub: &str) -> Option<&'static str> {
    Some(match sub {
        "status" => "/status",
        "finalize" => "/spec/finalizers",
        "approval" => "/status/conditions",
        "ephemeralcontainers" => "/spec/ephemeralContainers",
        _ => return None,
    })
}

/// Applies a patch of any type: the one place patch failures become `Status`es.
pub fn apply_patch(kind: PatchType, doc: &Value, patch: &Value) -> Result<Value, Status> {
    match kind {
        PatchType::Json => json_patch(doc, patch).map_err(|e| match e {
            JsonPatchError::Malformed(m) => Status::bad_request(m),
            JsonPatchError::Failed(cause) => Status::patch_failed(cause),
        }),
        PatchType::Merge => Ok(merge_patch(doc, patch)),
        PatchType::Strategic => strategic_merge(doc, patch).map_err(Status::bad_request),
        PatchType::Apply => Err(apply_unsupported()),
    }
}

/// Server-side apply is not served yet: 415 whatever the body (YAML or JSON).
pub fn apply_unsupported() -> Status {
    Status::new(
        415,
        "UnsupportedMediaType",
        "server-side apply is not supported yet",
    )
}

/// Turns one store event into a watch event, or nothing when the selectors hide it.
fn translate(
    r: &Resource,
    ev: store::Result<WatchEvent>,
    matches: &impl Fn(&Value) -> bool,
    bookmarks: bool,
    from: Revision,
) -> Option<Event> {
    let decoded = |bytes: &[u8], rev| decode_at(bytes, rev).ok().map(|o| with_type(r, o));
    match ev {
        Ok(WatchEvent::Put { kv, prev }) => {
            let obj = decoded(&kv.value, kv.mod_revision)?;
            let now = matches(&obj);
            let before = prev
                .and_then(|p| decoded(&p.value, p.mod_revision))
                .map(|p| matches(&p));
            match (before, now) {
                (None, true) => Some(("ADDED", obj)),
                (Some(true), true) => Some(("MODIFIED", obj)),
                (Some(false), true) => Some(("ADDED", obj)),
                (Some(true), false) => Some(("DELETED", obj)),
                _ => None,
            }
        }
        Ok(WatchEvent::Delete { revision, prev, .. }) => {
            let obj = decoded(&prev?.value, revision)?;
            matches(&obj).then_some(("DELETED", obj))
        }
        Ok(WatchEvent::Progress { revision }) => bookmarks.then(|| {
            (
                "BOOKMARK",
                json!({
                    "kind": r.kind,
                    "apiVersion": r.api_version(),
                    "metadata": {"resourceVersion": revision.to_string()},
                }),
            )
        }),
        Err(store::Error::Compacted {
            compact_revision, ..
        }) => Some((
            "ERROR",
            Status::expired(from - 1, compact_revision).to_json(),
        )),
        Err(e) => Some(("ERROR", Status::internal(e).to_json())),
    }
}

/// Sets `kind` and `apiVersion`, which every object on the wire carries.
pub fn with_type(r: &Resource, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(r.kind));
        m.insert("apiVersion".into(), json!(r.api_version()));
    }
    obj
}

/// Checks (or fills in) `kind` and `apiVersion` of a request body.
pub fn check_type(r: &Resource, obj: &mut Value) -> Result<(), Status> {
    let Some(m) = obj.as_object_mut() else {
        return Err(Status::bad_request(format!(
            "the object provided is unrecognized (must be of type {})",
            r.kind
        )));
    };
    let api_version = r.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(Status::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {}
        Some(k) if k == r.kind => {}
        Some(k) => {
            return Err(Status::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )));
        }
    }
    m.insert("kind".into(), json!(r.kind));
    m.insert("apiVersion".into(), json!(api_version));
    Ok(())
}

/// Checks the body's namespace against the URL's, filling it in when absent.
fn set_namespace(r: &Resource, ns: Option<&str>, obj: &mut Value) -> Result<(), Status> {
    let body_ns = meta_str(obj, "namespace").to_string();
    match (r.namespaced, ns) {
        (true, Some(url_ns)) => {
            if body_ns.is_empty() {
                meta_mut(obj).insert("namespace".into(), json!(url_ns));
            } else if body_ns != url_ns {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        (true, None) => {
            return Err(Status::bad_request(
                "a namespace is required to create or update this resource",
            ));
        }
        (false, _) => {
            meta_mut(obj).remove("namespace");
        }
    }
    Ok(())
}

/// A registry for unit tests, on a fresh store in a temporary directory (kept while the
/// directory lives), holding the namespaces `namespaces`.
#[cfg(test)]
pub(crate) async fn scratch(namespaces: &[&str]) -> (tempfile::TempDir, Registry) {
    use store::sqlite::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("db"), SqliteOptions { durable: false })
        .await
        .unwrap();
    // No controller makes the namespaces' `default` accounts here.
    let chain = admission::Chain::default().without(&["ServiceAccount".into()]);
    let reg = Registry::new(Arc::new(s)).with_admission(chain.unwrap());
    let ns = api::resources::find("", "v1", "namespaces").unwrap();
    for name in namespaces {
        let obj = json!({"metadata": {"name": name}});
        reg.create(ns, None, obj, Caller::SERVER).await.unwrap();
    }
    (dir, reg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Caller;

    /// A registry on a fresh store holding configmaps cm-00..cm-09 in `default`, the first
    /// three labelled `x=y`.
    async fn ten_configmaps() -> (tempfile::TempDir, Registry, &'static Resource) {
        let (dir, reg) = scratch(&["default"]).await;
        let cms = api::resources::find("", "v1", "configmaps").unwrap();
        for i in 0..10 {
            let labels = if i < 3 { json!({"x": "y"}) } else { json!({}) };
            let cm = json!({"metadata": {"name": format!("cm-{i:02}"), "labels": labels}});
            reg.create(cms, Some("default"), cm, Caller::SERVER)
                .await
                .unwrap();
        }
        (dir, reg, cms)
    }

    #[test]
    fn a_status_write_keeps_its_metadata_but_not_its_spec() {
        let jobs = api::resources::find("batch", "v1", "jobs").unwrap();
        let current = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 1}});
        let new = json!({"metadata": {"name": "j", "annotations": {"patchedstatus": "true"}},
            "spec": {"parallelism": 5}, "status": {"active": 1}});
        let kept = carry_over(jobs, &current, new, Some("status"));
        assert_eq!(kept["metadata"]["annotations"]["patchedstatus"], "true");
        assert_eq!(kept["spec"]["parallelism"], 1);
        assert_eq!(kept["status"]["active"], 1);
    }

    fn names(items: &[Value]) -> Vec<&str> {
        items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    // conformance: 154
    #[tokio::test]
    async fn paged_lists_count_the_items_after_the_page() {
        let (_dir, reg, cms) = ten_configmaps().await;
        let page = |limit, token: Option<&String>| ListOptions {
            limit,
            continue_token: token.cloned(),
            ..Default::default()
        };
        let first = reg
            .list(cms, Some("default"), &page(3, None))
            .await
            .unwrap();
        assert_eq!(names(&first.items), ["cm-00", "cm-01", "cm-02"]);
        assert_eq!(first.remaining_item_count, Some(7));
        let raw = reg
            .list_raw(cms, Some("default"), &page(3, None))
            .await
            .unwrap();
        assert_eq!(raw.remaining_item_count, Some(7));
        let second = reg
            .list_raw(
                cms,
                Some("default"),
                &page(4, first.continue_token.as_ref()),
            )
            .await
            .unwrap();
        assert_eq!(second.items.len(), 4);
        assert_eq!(second.remaining_item_count, Some(3));
        // The count travels in the token, so the next page need not count again.
        let carried = decode_continue(second.continue_token.as_ref().unwrap(), "").unwrap();
        assert_eq!(carried.remaining, Some(3));
        let last = reg
            .list(
                cms,
                Some("default"),
                &page(3, second.continue_token.as_ref()),
            )
            .await
            .unwrap();
        assert_eq!(names(&last.items), ["cm-07", "cm-08", "cm-09"]);
        assert_eq!(
            (last.continue_token, last.remaining_item_count),
            (None, None)
        );
        let all = reg
            .list(cms, Some("default"), &page(0, None))
            .await
            .unwrap();
        assert_eq!((all.items.len(), all.remaining_item_count), (10, None));

        // A selector makes the count inexact: upstream leaves it out.
        let selected = ListOptions {
            labels: LabelSelector::parse("x!=y").unwrap(),
            ..page(2, None)
        };
        let filtered = reg.list(cms, Some("default"), &selected).await.unwrap();
        assert_eq!(names(&filtered.items), ["cm-03", "cm-04"]);
        assert!(filtered.continue_token.is_some());
        assert_eq!(filtered.remaining_item_count, None);
    }

    // conformance: 155
    #[tokio::test]
    async fn an_expired_continue_token_offers_an_inconsistent_one() {
        let (_dir, reg, cms) = ten_configmaps().await;
        let page = |token: Option<String>| ListOptions {
            limit: 3,
            continue_token: token,
            ..Default::default()
        };
        let first = reg.list(cms, Some("default"), &page(None)).await.unwrap();
        // After the first page: one object added, one removed, then history compacted.
        reg.create(
            cms,
            Some("default"),
            json!({"metadata": {"name": "cm-10"}}),
            Caller::SERVER,
        )
        .await
        .unwrap();
        reg.delete(
            cms,
            Some("default"),
            "cm-04",
            &Default::default(),
            Caller::SERVER,
        )
        .await
        .unwrap();
        let now = reg.store().current_revision().await.unwrap();
        reg.store().compact(now).await.unwrap();

        let expired = reg
            .list(cms, Some("default"), &page(first.continue_token.clone()))
            .await
            .unwrap_err();
        assert_eq!((expired.code, expired.reason), (410, "Expired"));
        assert!(
            expired
                .message
                .starts_with("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response"),
            "{}",
            expired.message
        );
        let token = expired.continue_token.expect("a token to go on with");
        assert_eq!(
            reg.list_raw(cms, Some("default"), &page(first.continue_token))
                .await
                .unwrap_err()
                .continue_token
                .as_ref(),
            Some(&token)
        );

        // Going on with it: the rest at the latest revision, so the changes show.
        let mut rest = Vec::new();
        let mut next = Some(token);
        while next.is_some() {
            let p = reg.list(cms, Some("default"), &page(next)).await.unwrap();
            assert_eq!(p.revision, now);
            rest.extend(p.items);
            next = p.continue_token;
        }
        assert_eq!(
            names(&rest),
            [
                "cm-03", "cm-05", "cm-06", "cm-07", "cm-08", "cm-09", "cm-10"
            ]
        );
    }

    #[test]
    fn stored_objects_take_their_revision_without_parsing() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "9"}, "data": {"metadata": {"x": "y"}}});
        let kv = KeyValue {
            key: "k".into(),
            value: encode(&obj),
            create_revision: 5,
            mod_revision: 7,
            version: 1,
        };
        assert!(kv.value.starts_with(b"{\"metadata\":{\"name\""));
        let raw: Value = serde_json::from_slice(&raw_with_revision(&kv).unwrap()).unwrap();
        assert_eq!(raw, decode(&kv).unwrap());
        assert_eq!(raw["metadata"]["resourceVersion"], "7");
        assert_eq!(raw["data"]["metadata"]["x"], "y");
        let empty = KeyValue {
            value: encode(&json!({"kind": "X"})),
            ..kv.clone()
        };
        let raw: Value = serde_json::from_slice(&raw_with_revision(&empty).unwrap()).unwrap();
        assert_eq!(raw["metadata"], json!({"resourceVersion": "7"}));
        let legacy = KeyValue {
            value: br#"{"kind":"X","metadata":{"name":"n"}}"#.to_vec(),
            ..kv
        };
        let raw: Value = serde_json::from_slice(&raw_with_revision(&legacy).unwrap()).unwrap();
        assert_eq!(raw["metadata"]["resourceVersion"], "7");
    }
}
