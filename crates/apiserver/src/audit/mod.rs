//! Auditing (upstream's `--audit-*`): every request the policy selects is recorded as
//! `audit.k8s.io/v1` `Event`s, one per stage (`RequestReceived`, `ResponseStarted` for watches
//! and streams, `ResponseComplete`), with the user, the impersonated user, the object
//! addressed, the answer's status, and at the `Request` and `RequestResponse` levels the
//! bodies, written by the log backend ([`log`]) and the webhook backend ([`webhook`]).
//!
//! How a request is followed: [`Auditor::audited`] wraps one request in a task-local record;
//! the request path reports what it learns as it goes ([`authenticated`], [`impersonating`],
//! [`addressed`], [`request_object`], [`response_object`], [`failed`], [`annotate`]; each a no-op
//! when auditing is off), and the events are written when the answer is ready, or, for a
//! watch, when its stream ends.

mod log;
mod policy;
mod webhook;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::Status;
use api::request::RequestInfo;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use futures::StreamExt;
use serde_json::{Value, json};

pub use log::LogOptions;
use policy::{Level, Policy, Stage};

use crate::authn::Identity;

/// What the server's `--audit-*` flags say.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `audit.k8s.io/v1` Policy file (YAML or JSON).
    pub policy_file: PathBuf,
    /// The log backend, if any.
    pub log: Option<LogOptions>,
    /// The webhook backend, if any.
    pub webhook: Option<webhook::WebhookOptions>,
}

pub use webhook::WebhookOptions;

/// The policy and the backends.
pub struct Auditor {
    policy: Policy,
    log: Option<log::Log>,
    webhook: Option<webhook::Webhook>,
}

impl Auditor {
    /// The auditor `opts` describe: the policy read, the log file opened, the webhook's
    /// kubeconfig read.
    pub fn new(opts: &Options) -> Result<Auditor, String> {
        let file = &opts.policy_file;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let policy = Policy::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Auditor {
            policy,
            log: opts.log.clone().map(log::Log::new).transpose()?,
            webhook: opts
                .webhook
                .clone()
                .map(webhook::Webhook::new)
                .transpose()?,
        })
    }

    /// Serves `req` with `serve`, recording what the request path reports, and writes the
    /// request's events. Every answer carries its `Audit-ID`.
    pub async fn audited<F, Fut>(self: &Arc<Self>, req: Request<Body>, serve: F) -> Response<Body>
    where
        F: FnOnce(Request<Body>) -> Fut,
        Fut: Future<Output = Response<Body>>,
    {
        let record = Record::new(self.clone(), &req);
        let mut scoped = std::pin::pin!(RECORD.scope(RefCell::new(record), serve(req)));
        let mut resp = scoped.as_mut().await;
        let record = scoped
            .as_mut()
            .take_value()
            .expect("a finished scope gives its value back")
            .into_inner();
        if let Ok(id) = HeaderValue::from_str(&record.id) {
            resp.headers_mut().insert("audit-id", id);
        }
        record.finish(resp)
    }

    fn write(&self, events: Vec<Value>) {
        if events.is_empty() {
            return;
        }
        if let Some(log) = &self.log {
            let mut lines = Vec::new();
            for e in &events {
                serde_json::to_writer(&mut lines, e).expect("JSON values encode");
                lines.push(b'\n');
            }
            log.write(&lines);
        }
        if let Some(webhook) = &self.webhook {
            webhook.send(events);
        }
    }
}

tokio::task_local! {
    static RECORD: RefCell<Record>;
}

/// What is known of the request being served.
struct Record {
    auditor: Arc<Auditor>,
    id: String,
    received: String,
    uri: String,
    method: String,
    source_ips: Vec<String>,
    user_agent: Option<String>,
    user: Option<Identity>,
    impersonated: Option<Identity>,
    verb: Option<String>,
    object_ref: Option<Value>,
    long_running: bool,
    /// The level and the stages left out, once the request is known.
    decided: Option<(Level, Vec<Stage>)>,
    annotations: BTreeMap<String, String>,
    request_object: Option<Value>,
    response_object: Option<Value>,
    status: Option<Value>,
}

/// Now, as audit events write times: RFC 3339 with microseconds.
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Record {
    fn new(auditor: Arc<Auditor>, req: &Request<Body>) -> Record {
        let headers = req.headers();
        let id = headers
            .get("audit-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut source_ips: Vec<String> = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|ip| ip.trim().to_string())
            .filter(|ip| !ip.is_empty())
            .collect();
        let conn = req.extensions().get::<crate::handlers::Connection>();
        if let Some(peer) = conn.and_then(|c| c.peer) {
            source_ips.push(peer.to_string());
        }
        let uri = req.uri();
        Record {
            id,
            received: now(),
            uri: uri
                .path_and_query()
                .map_or(uri.path(), |p| p.as_str())
                .to_string(),
            method: req.method().as_str().to_ascii_lowercase(),
            source_ips,
            user_agent: headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            auditor,
            user: None,
            impersonated: None,
            verb: None,
            object_ref: None,
            long_running: false,
            decided: None,
            annotations: BTreeMap::new(),
            request_object: None,
            response_object: None,
            status: None,
        }
    }

    /// The level, deciding it from what is known if the request path has not.
    fn level(&mut self) -> Level {
        if self.decided.is_none() {
            let verb = self.verb.clone().unwrap_or_else(|| self.method.clone());
            let path = self.uri.split('?').next().unwrap_or_default().to_string();
            let r = policy::Request {
                user: self.user.as_ref(),
                verb: &verb,
                path: &path,
                resource: None,
            };
            self.decided = Some(self.auditor.policy.decide(&r));
        }
        self.decided.as_ref().map_or(Level::None, |d| d.0)
    }

    fn event(&self, stage: Stage, code: Option<u16>) -> Value {
        let (level, _) = self.decided.as_ref().expect("decided before events");
        let user = |who: &Identity| json!({"username": who.user, "groups": who.groups});
        let mut e = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level.name(),
            "auditID": self.id,
            "stage": stage.name(),
            "requestURI": self.uri,
            "verb": self.verb.as_deref().unwrap_or(&self.method),
            "user": self.user.as_ref().map_or(json!({}), user),
            "sourceIPs": self.source_ips,
            "requestReceivedTimestamp": self.received,
            "stageTimestamp": if stage == Stage::RequestReceived { self.received.clone() } else { now() },
        });
        let obj = e.as_object_mut().expect("an object");
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                obj.insert(k.to_string(), v);
            }
        };
        put("impersonatedUser", self.impersonated.as_ref().map(user));
        put("userAgent", self.user_agent.clone().map(Value::from));
        put("objectRef", self.object_ref.clone());
        if let Some(code) = code {
            let status = self.status.clone();
            put(
                "responseStatus",
                Some(status.unwrap_or(json!({"metadata": {}, "code": code}))),
            );
        }
        if *level >= Level::Request {
            put("requestObject", self.request_object.clone());
        }
        if *level >= Level::RequestResponse && stage == Stage::ResponseComplete {
            put("responseObject", self.response_object.clone());
        }
        if !self.annotations.is_empty() {
            put("annotations", Some(json!(self.annotations)));
        }
        e
    }

    /// Writes the events of the stages reached; a watch's `ResponseComplete` waits for the
    /// end of its stream.
    fn finish(mut self, resp: Response<Body>) -> Response<Body> {
        if self.level() == Level::None {
            return resp;
        }
        let code = resp.status().as_u16();
        let omitted = |s: Stage| self.decided.as_ref().is_some_and(|d| d.1.contains(&s));
        let mut events = Vec::new();
        if !omitted(Stage::RequestReceived) {
            events.push(self.event(Stage::RequestReceived, None));
        }
        if !self.long_running {
            if !omitted(Stage::ResponseComplete) {
                events.push(self.event(Stage::ResponseComplete, Some(code)));
            }
            self.auditor.write(events);
            return resp;
        }
        if !omitted(Stage::ResponseStarted) {
            events.push(self.event(Stage::ResponseStarted, Some(code)));
        }
        self.auditor.write(events);
        if omitted(Stage::ResponseComplete) {
            return resp;
        }
        let done = Completed(Some((self, code)));
        let (parts, body) = resp.into_parts();
        let stream = body.into_data_stream().map(move |chunk| {
            let _ = &done;
            chunk
        });
        Response::from_parts(parts, Body::from_stream(stream))
    }
}

/// Writes a long-running request's `ResponseComplete` when its stream is dropped.
struct Completed(Option<(Record, u16)>);

impl Drop for Completed {
    fn drop(&mut self) {
        if let Some((record, code)) = self.0.take() {
            let event = record.event(Stage::ResponseComplete, Some(code));
            record.auditor.write(vec![event]);
        }
    }
}

/// Runs `f` on the request's record, when the request is audited.
fn with_record(f: impl FnOnce(&mut Record)) {
    let _ = RECORD.try_with(|r| f(&mut r.borrow_mut()));
}

/// The authenticated user.
pub fn authenticated(who: &Identity) {
    with_record(|r| r.user = Some(who.clone()));
}

/// The user the request acts as, when it impersonates another.
pub fn impersonating(who: &Identity) {
    with_record(|r| {
        if r.user.as_ref() != Some(who) {
            r.impersonated = Some(who.clone());
        }
    });
}

/// What the request addresses: its verb, and the resource for a resource request. The
/// policy decides the level here, for the authenticated user.
pub fn addressed(verb: &str, info: Option<&RequestInfo>, path: &str) {
    with_record(|r| {
        r.verb = Some(verb.to_string());
        let target = info.map(|i| policy::Target {
            group: &i.resource.group,
            resource: &i.resource.plural,
            subresource: i.subresource.as_deref(),
            namespace: i.namespace.as_deref().unwrap_or_default(),
            name: i.name.as_deref().unwrap_or_default(),
        });
        let request = policy::Request {
            user: r.user.as_ref(),
            verb,
            path,
            resource: target,
        };
        r.decided = Some(r.auditor.policy.decide(&request));
        if let Some(i) = info {
            r.object_ref = Some(object_ref(i));
            let streams = ["exec", "attach", "portforward", "proxy"];
            r.long_running = verb == "watch"
                || i.subresource
                    .as_deref()
                    .is_some_and(|s| streams.contains(&s));
        }
    });
}

fn object_ref(i: &RequestInfo) -> Value {
    let mut o = json!({"resource": i.resource.plural, "apiVersion": i.resource.version});
    let obj = o.as_object_mut().expect("an object");
    if !i.resource.group.is_empty() {
        obj.insert("apiGroup".into(), json!(i.resource.group));
    }
    for (k, v) in [
        ("namespace", &i.namespace),
        ("name", &i.name),
        ("subresource", &i.subresource),
    ] {
        if let Some(v) = v {
            obj.insert(k.into(), json!(v));
        }
    }
    o
}

/// An annotation for the request's events (`authorization.k8s.io/decision`, ...).
pub fn annotate(key: &str, value: impl Into<String>) {
    with_record(|r| {
        r.annotations.insert(key.to_string(), value.into());
    });
}

/// The request's object, decoded (or its patch): its name, namespace and UID fill in what
/// the URL did not say; it is kept at the `Request` level and above.
pub fn request_object(obj: &Value) {
    with_record(|r| {
        if r.level() == Level::None {
            return;
        }
        if let Some(Value::Object(o)) = r.object_ref.as_mut() {
            let meta = &obj["metadata"];
            for (k, field) in [("name", "name"), ("namespace", "namespace"), ("uid", "uid")] {
                if let (false, Some(v)) = (o.contains_key(k), meta[field].as_str()) {
                    o.insert(k.into(), json!(v));
                }
            }
        }
        if r.level() >= Level::Request {
            r.request_object = Some(obj.clone());
        }
    });
}

/// The object the answer carries: kept at the `RequestResponse` level.
pub fn response_object<T: serde::Serialize + ?Sized>(value: &T) {
    with_record(|r| {
        if r.level() >= Level::RequestResponse {
            r.response_object = serde_json::to_value(value).ok();
        }
    });
}

/// The request failed with `s`: the event's `responseStatus`.
pub fn failed(s: &Status) {
    with_record(|r| {
        let mut status = s.to_json();
        if let Some(o) = status.as_object_mut() {
            o.remove("kind");
            o.remove("apiVersion");
        }
        r.status = Some(status);
    });
}

/// How long a webhook batch waits before it is sent, unless it fills first (upstream's
/// default).
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_secs(30);

/// How many events a webhook batch holds at most (upstream's default).
pub const DEFAULT_BATCH_SIZE: usize = 400;

#[cfg(test)]
mod tests;
