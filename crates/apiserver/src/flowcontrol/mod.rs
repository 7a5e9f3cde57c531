//! API Priority and Fairness (upstream's APF filter and its configuration controller): every
//! `/api` and `/apis` request is classified by the FlowSchemas (the first that matches, by
//! `matchingPrecedence` then name) into a priority level and a flow. An `Exempt` level runs
//! what it gets at once; a `Limited` level has a share of the server's seats
//! (`--max-requests-inflight` plus `--max-mutating-requests-inflight`, 600 by default) in
//! proportion to its `nominalConcurrencyShares`, and queues or turns away (429 with
//! `Retry-After`) what finds no free seat ([`queueset`]). Answers carry the
//! `X-Kubernetes-PF-FlowSchema-UID` and `X-Kubernetes-PF-PriorityLevel-UID` headers.
//!
//! The configuration is derived from watched copies of the FlowSchemas and
//! PriorityLevelConfigurations, again whenever they change; [`maintain`] keeps upstream's
//! bootstrap objects in place and the schemas' `Dangling` conditions current.
//!
//! Not here (as upstream has it): levels lending and borrowing seats (each level keeps its
//! nominal limit), and requests wider than one seat (a LIST costs what a GET does).

mod bootstrap;
mod classify;
mod dropped;
mod maintain;
mod queueset;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::flowcontrol::v1 as fc;
use serde_json::Value;
use sha2::Digest as _;
use store::Store;

pub(crate) use classify::{Request, Target};
pub(crate) use maintain::{ensure, maintain};

use crate::watched::Watched;

/// The subresources whose requests run long (upstream's long-running check, with the verb
/// `watch`).
const LONG_RUNNING: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// What a request asks, as the handlers parsed it.
pub(crate) struct Asked<'a> {
    /// The caller, after impersonation.
    pub user: &'a crate::authn::Identity,
    /// Its verb.
    pub verb: &'a str,
    /// What it addresses.
    pub target: &'a api::request::Target,
    /// Its path.
    pub path: &'a str,
}

/// How long a request may wait in a queue: a quarter of upstream's default request timeout.
const QUEUE_WAIT: Duration = Duration::from_secs(15);

/// The seats every limited level shares (upstream's two in-flight flags, added up).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--max-requests-inflight`.
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight`.
    pub max_mutating_requests_inflight: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
        }
    }
}

/// The classifier and the priority levels, shared by every request.
pub struct FlowControl {
    server_limit: usize,
    schemas: Watched,
    levels: Watched,
    current: RwLock<Arc<Config>>,
    rebuilding: tokio::sync::Mutex<()>,
}

/// The configuration derived from the stored objects at two generations of their copies.
#[derive(Default)]
struct Config {
    generations: Option<(u64, u64)>,
    /// The schemas whose level exists, in matching order.
    schemas: Vec<Schema>,
    levels: HashMap<String, Arc<Level>>,
}

struct Schema {
    name: String,
    uid: String,
    spec: fc::FlowSchemaSpec,
    level: Arc<Level>,
}

/// A priority level: its seats and queues (`None` for an exempt one).
struct Level {
    name: String,
    uid: String,
    seats: Option<Arc<queueset::Level>>,
    /// Its recent rejections (kept across changes of the configuration, as its seats are).
    dropped: Arc<Mutex<dropped::Tracker>>,
}

impl FlowControl {
    /// Priority and fairness over `options`' seats.
    pub fn new(options: Options) -> Result<FlowControl, String> {
        let (reads, writes) = (
            options.max_requests_inflight,
            options.max_mutating_requests_inflight,
        );
        if reads + writes == 0 {
            return Err(format!(
                "invalid configuration: MaxRequestsInFlight={reads} and MaxMutatingRequestsInFlight={writes}; they must add up to something positive"
            ));
        }
        Ok(FlowControl {
            server_limit: reads + writes,
            schemas: Watched::new("/registry/flowschemas/"),
            levels: Watched::new("/registry/prioritylevelconfigurations/"),
            current: RwLock::new(Arc::default()),
            rebuilding: tokio::sync::Mutex::new(()),
        })
    }

    /// Serves a request with `serve` as priority and fairness say: long-running requests
    /// other than watches at once and unclassified (as upstream), the rest by [`handle`].
    ///
    /// [`handle`]: FlowControl::handle
    pub(crate) async fn admit(
        &self,
        store: &Arc<dyn Store>,
        metrics: &crate::metrics::Metrics,
        asked: Asked<'_>,
        serve: impl Future<Output = Response>,
    ) -> Response {
        let info = match asked.target {
            api::request::Target::Resource(info) => Some(info),
            _ => None,
        };
        let sub = info.and_then(|i| i.subresource.as_deref());
        let watch = asked.verb == "watch";
        if !watch && sub.is_some_and(|s| LONG_RUNNING.contains(&s)) {
            return serve.await;
        }
        let resource = info.map(|i| match sub {
            Some(sub) => format!("{}/{sub}", i.resource.plural),
            None => i.resource.plural.clone(),
        });
        let target = match (info, &resource) {
            (Some(info), Some(resource)) => Target::Resource {
                group: &info.resource.group,
                resource,
                namespace: info.namespace.as_deref(),
            },
            _ => Target::Path(asked.path),
        };
        let req = Request {
            user: asked.user,
            verb: asked.verb,
            target,
        };
        self.handle(store, metrics, &req, serve).await
    }

    /// Serves `req` with `serve` when its level lets it: at once, after a wait in a queue, or
    /// not at all (429). The seat is held until `serve` has the answer ready: for a watch,
    /// while it starts (its events then stream without one), as upstream's.
    async fn handle(
        &self,
        store: &Arc<dyn Store>,
        metrics: &crate::metrics::Metrics,
        req: &Request<'_>,
        serve: impl Future<Output = Response>,
    ) -> Response {
        let config = match self.config(store).await {
            Ok(config) => config,
            Err(s) => {
                tracing::warn!(error = %s.message, "priority and fairness: no configuration");
                return serve.await;
            }
        };
        let Some(schema) = config
            .schemas
            .iter()
            .find(|s| classify::matches(&s.spec, req))
        else {
            return serve.await;
        };
        let level = &schema.level;
        let labels = (schema.name.as_str(), level.name.as_str());
        let resp = match &level.seats {
            Some(seats) => {
                let flow = flow_hash(&schema.name, &classify::distinguisher(&schema.spec, req));
                let waiting = metrics.flow_waiting(labels);
                let acquired = seats.acquire(flow, QUEUE_WAIT).await;
                drop(waiting);
                match acquired {
                    Ok(held) => {
                        metrics.flow_dispatched(labels);
                        let executing = metrics.flow_executing(labels);
                        let resp = serve.await;
                        drop((held, executing));
                        resp
                    }
                    Err(rejection) => {
                        metrics.flow_rejected(labels, rejection.reason());
                        too_many_requests(level.retry_after())
                    }
                }
            }
            None => {
                metrics.flow_dispatched(labels);
                serve.await
            }
        };
        with_headers(resp, &schema.uid, &level.uid)
    }

    /// The configuration for the copies' current generations, derived again if they moved.
    async fn config(&self, store: &Arc<dyn Store>) -> Result<Arc<Config>, api::Status> {
        let (schemas, gs) = self.schemas.tracked(store).await?;
        let (levels, gl) = self.levels.tracked(store).await?;
        let current = self.current();
        if current.generations == Some((gs, gl)) {
            return Ok(current);
        }
        let _one = self.rebuilding.lock().await;
        let current = self.current();
        if current.generations == Some((gs, gl)) {
            return Ok(current);
        }
        let values = |objects: &crate::watched::Objects| -> Vec<Value> {
            let map = objects.read().unwrap_or_else(|e| e.into_inner());
            map.values().map(|(_, v)| v.clone()).collect()
        };
        let mut config = self.derive(&values(&schemas), &values(&levels), &current);
        config.generations = Some((gs, gl));
        let config = Arc::new(config);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        Ok(config)
    }

    fn current(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration of the stored objects (upstream's built-in copies standing in for a
    /// mandatory object that is missing), reusing `previous`'s levels whose queues did not
    /// change, so that what waits there keeps its place.
    fn derive(&self, schemas: &[Value], levels: &[Value], previous: &Config) -> Config {
        let mut levels =
            parsed::<fc::PriorityLevelConfiguration>(levels, bootstrap::priority_levels());
        let mut schemas = parsed::<fc::FlowSchema>(schemas, bootstrap::flow_schemas());
        let shares: Vec<usize> = levels
            .iter()
            .map(|(_, _, spec)| nominal_shares(spec))
            .collect();
        let total: usize = shares.iter().sum::<usize>().max(1);
        let mut config = Config::default();
        for ((name, uid, spec), share) in levels.drain(..).zip(shares) {
            let limit = (self.server_limit * share).div_ceil(total);
            let level = Level::derive(name, uid, &spec, limit, previous);
            config.levels.insert(level.name.clone(), Arc::new(level));
        }
        schemas.sort_by_key(|(name, _, spec)| {
            (spec.matching_precedence.unwrap_or(1000), name.clone())
        });
        for (name, uid, spec) in schemas {
            let Some(level) = config.levels.get(&spec.priority_level_configuration.name) else {
                continue;
            };
            let level = level.clone();
            config.schemas.push(Schema {
                name,
                uid,
                spec,
                level,
            });
        }
        config
    }
}

impl Level {
    fn derive(
        name: String,
        uid: String,
        spec: &fc::PriorityLevelConfigurationSpec,
        limit: usize,
        previous: &Config,
    ) -> Level {
        let queuing = queuing(spec);
        let seats = (spec.type_ != "Exempt").then(|| {
            match previous.levels.get(&name).and_then(|l| l.seats.as_ref()) {
                Some(seats) if seats.queuing() == queuing => {
                    seats.set_limit(limit);
                    seats.clone()
                }
                _ => queueset::Level::new(limit, queuing),
            }
        });
        let dropped = previous.levels.get(&name).map(|l| l.dropped.clone());
        Level {
            name,
            uid,
            seats,
            dropped: dropped.unwrap_or_default(),
        }
    }

    /// Records a rejection; the `Retry-After` to send with it.
    fn retry_after(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(now)
    }
}

/// `(name, uid, spec)` of each stored object that parses, and of each mandatory one of
/// `bootstrap` missing among them.
fn parsed<T: serde::de::DeserializeOwned + SpecOf>(
    stored: &[Value],
    bootstrap: Vec<(Value, bool)>,
) -> Vec<(String, String, T::Spec)> {
    let mut out: Vec<(String, String, T::Spec)> = stored
        .iter()
        .filter_map(|v| serde_json::from_value::<T>(v.clone()).ok())
        .map(|o| o.parts())
        .collect();
    for (v, mandatory) in bootstrap {
        let name = v["metadata"]["name"].as_str().unwrap_or_default();
        if mandatory && !out.iter().any(|(n, _, _)| n == name) {
            out.extend(serde_json::from_value::<T>(v).ok().map(|o| o.parts()));
        }
    }
    out
}

/// The parts of a FlowSchema or PriorityLevelConfiguration classification reads.
trait SpecOf {
    type Spec;
    fn parts(self) -> (String, String, Self::Spec);
}

impl SpecOf for fc::FlowSchema {
    type Spec = fc::FlowSchemaSpec;
    fn parts(self) -> (String, String, fc::FlowSchemaSpec) {
        (
            self.metadata.name.unwrap_or_default(),
            self.metadata.uid.unwrap_or_default(),
            self.spec.unwrap_or_default(),
        )
    }
}

impl SpecOf for fc::PriorityLevelConfiguration {
    type Spec = fc::PriorityLevelConfigurationSpec;
    fn parts(self) -> (String, String, fc::PriorityLevelConfigurationSpec) {
        (
            self.metadata.name.unwrap_or_default(),
            self.metadata.uid.unwrap_or_default(),
            self.spec.unwrap_or_default(),
        )
    }
}

/// The fixed spec of a mandatory FlowSchema (`exempt`, `catch-all`).
pub(crate) fn mandatory_schema(name: &str) -> Option<Value> {
    mandatory(bootstrap::flow_schemas(), name)
}

/// The fixed spec of a mandatory PriorityLevelConfiguration (`exempt`, `catch-all`).
pub(crate) fn mandatory_level(name: &str) -> Option<Value> {
    mandatory(bootstrap::priority_levels(), name)
}

fn mandatory(shipped: Vec<(Value, bool)>, name: &str) -> Option<Value> {
    shipped
        .into_iter()
        .find(|(v, m)| *m && v["metadata"]["name"] == name)
        .map(|(v, _)| v["spec"].clone())
}

/// A level's `nominalConcurrencyShares` (upstream's defaults: 30 for a limited level, 0 for
/// an exempt one).
fn nominal_shares(spec: &fc::PriorityLevelConfigurationSpec) -> usize {
    let shares = match (&spec.limited, &spec.exempt) {
        (Some(l), _) => l.nominal_concurrency_shares.unwrap_or(30),
        (None, Some(e)) => e.nominal_concurrency_shares.unwrap_or(0),
        (None, None) => 0,
    };
    usize::try_from(shares).unwrap_or(0)
}

/// A limited level's queues (upstream's defaults for what is unset); `None` for `Reject`.
fn queuing(spec: &fc::PriorityLevelConfigurationSpec) -> Option<queueset::Queuing> {
    let response = spec.limited.as_ref()?.limit_response.as_ref()?;
    if response.type_ != "Queue" {
        return None;
    }
    let q = response.queuing.clone().unwrap_or_default();
    let size = |v: Option<i32>, default: usize| {
        v.and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    Some(queueset::Queuing {
        queues: size(q.queues, 64),
        hand_size: size(q.hand_size, 8),
        queue_length_limit: size(q.queue_length_limit, 50),
    })
}

/// A flow's hash for shuffle sharding: upstream's (the first 8 bytes, little-endian, of the
/// SHA-256 of the schema's name, a zero byte and the distinguisher).
fn flow_hash(schema: &str, distinguisher: &str) -> u64 {
    let mut h = sha2::Sha256::new();
    h.update(schema.as_bytes());
    h.update([0]);
    h.update(distinguisher.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Upstream's answer to a request its level turned away: plain text, not a Status.
fn too_many_requests(retry_after: u64) -> Response {
    let body = "Too many requests, please try again later.\n";
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

fn with_headers(mut resp: Response, schema: &str, level: &str) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in [
        ("x-kubernetes-pf-flowschema-uid", schema),
        ("x-kubernetes-pf-prioritylevel-uid", level),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests;
