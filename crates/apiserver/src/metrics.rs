//! The API server's Prometheus metrics under upstream's names (apiserver's
//! `endpoints/metrics`): every request counted by `apiserver_request_total` and timed by
//! `apiserver_request_duration_seconds`, the requests being served now in
//! `apiserver_current_inflight_requests`, what priority and fairness let run or turned away
//! (`apiserver_flowcontrol_dispatched_requests_total`, `..._rejected_requests_total`), and
//! the `/metrics` endpoint that shows them.
//!
//! A request is recorded once, where every `/api` and `/apis` request passes
//! ([`crate::handlers::api`]): [`start`] before it is served, [`Started::finish`]
//! with its answer's code. The labels are upstream's: the verb as its metrics name it
//! (`LIST` for a collection GET, `WATCH`, `APPLY`, `CONNECT` for streaming and proxy
//! subresources), the dry-run value, group, version, resource, subresource, scope
//! (`resource`, `namespace`, `cluster`) and component.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::request::{Query, Target, parse};
use api::resources::Catalog;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::handlers::App;

/// The `component` label of the requests this server serves itself.
const COMPONENT: &str = "apiserver";

/// Upstream's buckets for `apiserver_request_duration_seconds`, in seconds.
const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The subresources upstream's metrics report as `CONNECT`.
const CONNECT_SUBRESOURCES: &[&str] = &["log", "exec", "portforward", "attach", "proxy"];

/// The verbs upstream's metrics report; any other method is `other`.
const KNOWN_VERBS: &[&str] = &[
    "APPLY", "CONNECT", "CREATE", "DELETE", "GET", "LIST", "PATCH", "POST", "PROXY", "PUT",
    "UPDATE", "WATCH",
];

/// What a request is, for both request metrics. The fields are in the order Prometheus'
/// Go client writes labels (sorted by name), so the text reads as upstream's.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `apiserver` for the requests this server serves.
    pub component: String,
    /// `All` for a dry run, empty otherwise (`invalid` for another value).
    pub dry_run: String,
    /// The API group; empty for the core group and non-resource paths.
    pub group: String,
    /// The resource; empty for a non-resource path.
    pub resource: String,
    /// `resource`, `namespace`, `cluster`, or empty for a non-resource path.
    pub scope: String,
    /// The subresource, or a non-resource request's path.
    pub subresource: String,
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `CONNECT`, ...
    pub verb: String,
    /// The API version; empty for a non-resource path.
    pub version: String,
}

/// [`RequestLabels`] with the answer's code, for `apiserver_request_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
    #[prometheus(flatten)]
    request: RequestLabels,
}

/// `readOnly` or `mutating`, for `apiserver_current_inflight_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

/// A priority level and flow schema, for upstream's `apiserver_flowcontrol_*` metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    flow_schema: String,
    priority_level: String,
}

/// [`FlowLabels`] with why a request was turned away.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    flow_schema: String,
    priority_level: String,
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The API server's metrics, shared by every request.
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    inflight: Family<KindLabels, Gauge>,
    dispatched: Family<FlowLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    inqueue: Family<FlowLabels, Gauge>,
    executing: Family<FlowLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let inflight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "apiserver_request",
            "Requests served, by verb, dry run, group, version, resource, subresource, scope, component and response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Time taken to answer requests, in seconds, by verb, dry run, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Requests being served now (watches and connections excepted), read-only or mutating",
            inflight.clone(),
        );
        for request_kind in [READ_ONLY, MUTATING] {
            let _ = inflight.get_or_create(&KindLabels { request_kind });
        }
        let dispatched = Family::<FlowLabels, Counter>::default();
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "apiserver_flowcontrol_dispatched_requests",
            "Number of requests executed by API Priority and Fairness subsystem",
            dispatched.clone(),
        );
        registry.register(
            "apiserver_flowcontrol_rejected_requests",
            "Number of requests rejected by API Priority and Fairness subsystem",
            rejected.clone(),
        );
        let inqueue = Family::<FlowLabels, Gauge>::default();
        let executing = Family::<FlowLabels, Gauge>::default();
        registry.register(
            "apiserver_flowcontrol_current_inqueue_requests",
            "Number of requests currently pending in queues of the API Priority and Fairness subsystem",
            inqueue.clone(),
        );
        registry.register(
            "apiserver_flowcontrol_current_executing_requests",
            "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution stage in the API Priority and Fairness subsystem",
            executing.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            inflight,
            dispatched,
            rejected,
            inqueue,
            executing,
        }
    }
}

const READ_ONLY: &str = "readOnly";
const MUTATING: &str = "mutating";

/// A request being served: recorded when [`Started::finish`] gets its code. A request
/// dropped before it is answered leaves the in-flight gauge all the same.
pub struct Started {
    labels: RequestLabels,
    at: Instant,
    inflight: Option<Gauge>,
    app: Arc<App>,
}

/// Starts recording `req` on `app`'s metrics.
pub fn start(app: &Arc<App>, req: &Request) -> Started {
    let labels = labels_of(req, app.registry.served());
    let inflight = in_flight_kind(&labels.verb).map(|request_kind| {
        let kind = KindLabels { request_kind };
        let gauge = app.metrics.inflight.get_or_create(&kind).clone();
        gauge.inc();
        gauge
    });
    Started {
        labels,
        at: Instant::now(),
        inflight,
        app: app.clone(),
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn record(&self, labels: &RequestLabels, code: u16, took: Duration) {
        let with_code = CodeLabels {
            code: code.to_string(),
            request: labels.clone(),
        };
        self.requests.get_or_create(&with_code).inc();
        self.durations
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a request priority and fairness let run, by `(flow schema, priority level)`.
    pub(crate) fn flow_dispatched(&self, (schema, level): (&str, &str)) {
        let labels = FlowLabels {
            flow_schema: schema.into(),
            priority_level: level.into(),
        };
        self.dispatched.get_or_create(&labels).inc();
    }

    /// Counts a request waiting for a seat of its priority level until the guard is dropped.
    pub(crate) fn flow_waiting(&self, labels: (&str, &str)) -> Counted {
        Counted::on(&self.inqueue, labels)
    }

    /// Counts a request holding a seat of its priority level until the guard is dropped.
    pub(crate) fn flow_executing(&self, labels: (&str, &str)) -> Counted {
        Counted::on(&self.executing, labels)
    }

    /// Counts a request priority and fairness turned away, and why.
    pub(crate) fn flow_rejected(&self, (schema, level): (&str, &str), reason: &'static str) {
        let labels = RejectLabels {
            flow_schema: schema.into(),
            priority_level: level.into(),
            reason,
        };
        self.rejected.get_or_create(&labels).inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Started {
    /// Records the request as answered with `code`. A non-resource path that was not served
    /// is recorded without its path, so that unknown paths add no label values.
    pub fn finish(mut self, code: u16) {
        if self.labels.resource.is_empty() && code >= 400 {
            self.labels.subresource.clear();
        }
        let took = self.at.elapsed();
        self.app.metrics.record(&self.labels, code, took);
    }
}

/// One request counted in a gauge, until dropped.
pub(crate) struct Counted(Gauge);

impl Counted {
    fn on(family: &Family<FlowLabels, Gauge>, (schema, level): (&str, &str)) -> Counted {
        let labels = FlowLabels {
            flow_schema: schema.into(),
            priority_level: level.into(),
        };
        let gauge = family.get_or_create(&labels).clone();
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(gauge) = &self.inflight {
            gauge.dec();
        }
    }
}

/// Which in-flight count a request is in: none for long-running ones (watches, connections),
/// as upstream's limit leaves them out.
fn in_flight_kind(verb: &str) -> Option<&'static str> {
    match verb {
        "WATCH" | "CONNECT" => None,
        "GET" | "LIST" => Some(READ_ONLY),
        _ => Some(MUTATING),
    }
}

/// The labels of `req` against the resources `served` now.
pub fn labels_of(req: &Request, served: &Catalog) -> RequestLabels {
    let (path, method) = (req.uri().path(), req.method().as_str());
    let query = Query::parse(req.uri().query());
    let dry_run = match query.get("dryRun") {
        None => "",
        Some("All") => "All",
        Some(_) => "invalid",
    };
    let base = RequestLabels {
        component: COMPONENT.into(),
        dry_run: dry_run.into(),
        ..RequestLabels::default()
    };
    let Ok(Target::Resource(info)) = parse(path, method, query.flag("watch"), served) else {
        return RequestLabels {
            verb: known(method.to_ascii_uppercase()),
            subresource: path.into(),
            ..base
        };
    };
    let scope = if info.name.is_some() || info.verb == "create" {
        "resource"
    } else if info.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    let subresource = info.subresource.clone().unwrap_or_default();
    let apply = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/apply-patch"));
    let verb = match method.to_ascii_uppercase() {
        _ if CONNECT_SUBRESOURCES.contains(&subresource.as_str()) => "CONNECT".to_string(),
        _ if info.verb == "watch" => "WATCH".to_string(),
        m if m == "GET" || m == "HEAD" => {
            if scope == "resource" { "GET" } else { "LIST" }.to_string()
        }
        m if m == "PATCH" && apply => "APPLY".to_string(),
        m => known(m),
    };
    RequestLabels {
        verb,
        group: info.resource.group.clone(),
        version: info.resource.version.clone(),
        resource: info.resource.plural.clone(),
        subresource,
        scope: scope.into(),
        ..base
    }
}

/// `verb` if upstream's metrics know it, else `other`.
fn known(verb: String) -> String {
    if KNOWN_VERBS.contains(&verb.as_str()) {
        verb
    } else {
        "other".into()
    }
}

/// `/metrics`: the metrics as Prometheus text, for users allowed to `get` that path.
pub async fn serve(State(app): State<Arc<App>>, req: Request) -> Response {
    if let Err(refusal) = crate::handlers::allowed_path(&app, req).await {
        return refusal;
    }
    let mut resp = (StatusCode::OK, app.metrics.encode()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: &str, uri: &str, content_type: &str) -> RequestLabels {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::empty())
            .unwrap();
        labels_of(&req, &Catalog::new())
    }

    fn short(l: &RequestLabels) -> String {
        format!(
            "{} {}/{} {} {} {} {}",
            l.verb, l.group, l.version, l.resource, l.subresource, l.scope, l.dry_run
        )
    }

    #[test]
    fn requests_are_labelled_as_upstream_labels_them() {
        let json = "application/json";
        for (method, uri, content_type, want) in [
            ("GET", "/api/v1/pods", json, "LIST /v1 pods  cluster "),
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                json,
                "LIST /v1 pods  namespace ",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/web",
                json,
                "GET /v1 pods  resource ",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods?watch=true",
                json,
                "WATCH /v1 pods  namespace ",
            ),
            (
                "POST",
                "/apis/apps/v1/namespaces/default/deployments?dryRun=All",
                json,
                "POST apps/v1 deployments  resource All",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
                "application/apply-patch+yaml",
                "APPLY apps/v1 deployments scale resource ",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/web/log",
                json,
                "CONNECT /v1 pods log resource ",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/configmaps",
                json,
                "DELETE /v1 configmaps  namespace ",
            ),
            ("GET", "/apis/apps/v1", json, "GET /  /apis/apps/v1  "),
        ] {
            assert_eq!(
                short(&labels(method, uri, content_type)),
                want,
                "{method} {uri}"
            );
        }
        assert_eq!(labels("GET", "/api", json).component, "apiserver");
    }

    #[test]
    fn metrics_read_as_prometheus_text_under_upstream_names() {
        let m = Metrics::default();
        let req = Request::builder()
            .uri("/api/v1/namespaces/default/pods")
            .body(axum::body::Body::empty())
            .unwrap();
        let l = labels_of(&req, &Catalog::new());
        m.record(&l, 200, Duration::from_millis(30));
        let text = m.encode();
        for line in [
            r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#,
            // The client library writes `le` first.
            r#"apiserver_request_duration_seconds_bucket{le="0.025",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 0"#,
            r#"apiserver_request_duration_seconds_bucket{le="0.05",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#,
            r#"apiserver_request_duration_seconds_bucket{le="60.0",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#,
            r#"apiserver_current_inflight_requests{request_kind="readOnly"} 0"#,
            r#"apiserver_current_inflight_requests{request_kind="mutating"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
