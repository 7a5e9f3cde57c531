//! The HTTP layer: authentication, routing by [`crate::request`], body decoding and limits,
//! content negotiation (JSON, Table, PartialObjectMetadata) and watch streaming.

use std::sync::Arc;
use std::time::Duration;

use api::patch::PatchType;
use api::selector::{FieldSelector, LabelSelector};
use api::table::{Include, table};
use api::{Resource, Status};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::admission;
use crate::authn::{Identity, Tokens};
use crate::authz;
use crate::connect;
use crate::discovery;
use crate::fieldcheck;
use crate::flowcontrol;
use crate::openapi;
use crate::registry::{
    Caller, DeleteOptions, ListOptions, ListResult, Registry, WatchRequest, apply_patch, with_type,
};
use api::request::{Query, RequestInfo, Target, parse};

/// The largest request body accepted (upstream's default, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the API handlers.
pub struct App {
    /// The registry.
    pub registry: Registry,
    /// Bearer tokens.
    pub tokens: Tokens,
    /// The service-account token key: issues tokens and checks them.
    pub service_accounts: Arc<crate::authn::serviceaccount::Signer>,
    /// ID tokens of an external issuer, when configured.
    pub oidc: Option<crate::authn::oidc::Oidc>,
    /// Who may do what.
    pub authorizer: authz::Chain,
    /// `host:port` clients reach the server at, for `/api`.
    pub address: String,
    /// How `pods/log` reaches node agents.
    pub kubelet: crate::podlogs::KubeletClient,
    /// The request metrics `/metrics` shows.
    pub metrics: crate::metrics::Metrics,
    /// The audit policy and backends, when auditing is on.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// The encrypting store, when encryption at rest is on.
    pub encryption: Option<Arc<crate::encryption::Encrypted>>,
    /// Whether a request without credentials runs as `system:anonymous` (in
    /// `system:unauthenticated`) instead of being refused with 401.
    pub anonymous: bool,
    /// API Priority and Fairness, unless turned off.
    pub flowcontrol: Option<Arc<crate::flowcontrol::FlowControl>>,
}

/// What the TLS layer learned about the connection.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// The identity from a verified client certificate.
    pub identity: Option<Identity>,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
}

/// A JSON response, written as upstream's encoder writes one: compact, ending with a newline.
pub fn json_response<T: serde::Serialize + ?Sized>(code: StatusCode, value: &T) -> Response {
    json_with_type(code, value, "application/json")
}

fn json_with_type<T: serde::Serialize + ?Sized>(
    code: StatusCode,
    value: &T,
    content_type: &str,
) -> Response {
    crate::audit::response_object(value);
    let mut body = serde_json::to_vec(value).expect("JSON values encode");
    body.push(b'\n');
    with_content_type(code, body, content_type)
}

/// A JSON document written whole, without the encoder's newline: upstream serves
/// `/version` and the OpenAPI documents this way.
pub fn json_document<T: serde::Serialize + ?Sized>(code: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("JSON values encode");
    with_content_type(code, body, "application/json")
}

fn with_content_type(code: StatusCode, body: Vec<u8>, content_type: &str) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("valid header"),
    );
    resp
}

/// A failed request's `Status`.
pub fn status_response(s: &Status) -> Response {
    crate::audit::failed(s);
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, s.to_wire()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let retry = s
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64());
    if let Some(secs) = retry.filter(|s| *s > 0) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// How the client wants objects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Table,
    Metadata,
}

fn negotiate(headers: &HeaderMap) -> Shape {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if params.contains(&"g=meta.k8s.io") {
            if params.contains(&"as=Table") {
                return Shape::Table;
            }
            if params.contains(&"as=PartialObjectMetadata")
                || params.contains(&"as=PartialObjectMetadataList")
            {
                return Shape::Metadata;
            }
        }
        if params
            .first()
            .is_some_and(|t| *t == "application/json" || *t == "*/*" || t.is_empty())
            && params.len() == 1
        {
            return Shape::Object;
        }
    }
    Shape::Object
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// The resource a request names, and the one whose storage serves it: the same one, except
/// for versions served by conversion (`api::convert`).
#[derive(Clone)]
struct Served {
    asked: Arc<Resource>,
    stored: Arc<Resource>,
}

impl Served {
    fn of(asked: Arc<Resource>) -> Served {
        let stored = match api::convert::storage_of(&asked) {
            Some(s) => Arc::new(s.clone()),
            None => asked.clone(),
        };
        Served { asked, stored }
    }

    fn converted(&self) -> bool {
        self.asked != self.stored
    }

    /// A stored object as the request's version shows it.
    fn show(&self, obj: Value) -> Value {
        with_type(&self.asked, api::convert::from_storage(&self.asked, obj))
    }

    /// A request body in the storage version, once it is checked to be of the asked version.
    fn store(&self, mut obj: Value) -> Result<Value, Status> {
        if !self.converted() {
            return Ok(obj);
        }
        crate::registry::check_type(&self.asked, &mut obj)?;
        Ok(api::convert::to_storage(&self.asked, obj))
    }
}

fn render_one(sv: &Served, obj: Value, shape: Shape, query: &Query) -> Result<Value, Status> {
    let r = &sv.stored;
    Ok(match shape {
        Shape::Object => sv.show(obj),
        Shape::Metadata => partial(&obj),
        Shape::Table => {
            let meta = row_meta(&obj);
            table(r, vec![obj], include(query)?, meta, jiff::Timestamp::now())
        }
    })
}

fn include(query: &Query) -> Result<Include, Status> {
    match query.get("includeObject") {
        None | Some("Metadata") => Ok(Include::Metadata),
        Some("Object") => Ok(Include::Object),
        Some("None") => Ok(Include::None),
        Some(other) => Err(Status::bad_request(format!(
            "unrecognized includeObject value: {other:?}"
        ))),
    }
}

/// Reads a request body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, Status> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Status::too_large(format!(
                "Request entity too large: limit is {MAX_BODY_BYTES}"
            )))
        }
        Err(e) => Err(Status::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Upstream's short summary of a body that failed to decode.
fn body_summary(body: &[u8]) -> String {
    if body.is_empty() {
        return "<empty>".into();
    }
    let head = &body[..body.len().min(30)];
    let more = if body.len() > 30 { " ..." } else { "" };
    if body.first() == Some(&b'{') {
        format!("{}{more}", String::from_utf8_lossy(head))
    } else {
        format!(
            "{}{more}",
            head.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// Upstream's 400 for a body that does not decode, with a summary of its start.
fn unrecognized(kind: &str, body: &[u8], detail: &str) -> Status {
    Status::bad_request(format!(
        "the object provided is unrecognized (must be of type {kind}): {detail} ({})",
        body_summary(body)
    ))
}

/// Decodes a JSON or YAML request body into an object.
fn decode_body(headers: &HeaderMap, body: &[u8], kind: &str) -> Result<Value, Status> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let unrecognized = |detail: String| unrecognized(kind, body, &detail);
    let decoded = match media {
        "application/json"
        | ""
        | "*/*"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| unrecognized(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|e| unrecognized(format!("error converting YAML to JSON: {e}")))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| unrecognized(format!("error converting YAML to JSON: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => api::protobuf::decode(body).map_err(|e| match e {
            api::protobuf::Error::Unsupported { .. } => {
                Status::new(415, "UnsupportedMediaType", e.to_string())
            }
            api::protobuf::Error::Malformed(_) => unrecognized(e.to_string()),
        }),
        other => Err(Status::unsupported_media_type(other)),
    };
    decoded.inspect(crate::audit::request_object)
}

/// Who sent a request: the client certificate's identity, else the bearer token's.
pub(crate) async fn authenticate(
    app: &App,
    conn: &Connection,
    headers: &HeaderMap,
) -> Option<Identity> {
    if let Some(who) = &conn.identity {
        return Some(who.clone());
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return app.anonymous.then(|| Identity {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        });
    };
    let auth = auth.to_str().ok()?;
    if let Some(who) = app.tokens.authenticate(auth) {
        return Some(who);
    }
    let token = crate::authn::bearer(auth)?;
    let audiences = [crate::authn::serviceaccount::ISSUER];
    let (signer, reg) = (&app.service_accounts, &app.registry);
    if let Some((who, _)) =
        crate::authn::authenticate_service_account(signer, reg, token, &audiences).await
    {
        return Some(who);
    }
    if let Some(who) = crate::authn::secret_token::authenticate(signer, reg, token).await {
        return Some(who);
    }
    app.oidc.as_ref()?.authenticate(token).await
}

/// Authenticates a request for a non-resource path (`/metrics`, the OIDC documents) and asks
/// the authorizers whether the caller may use it with the request's method (`get`, `post`,
/// as upstream names non-resource verbs): the caller, or the refusal to send.
pub(crate) async fn allowed_path(app: &App, req: Request) -> Result<Identity, Response> {
    let conn = req
        .extensions()
        .get::<Connection>()
        .cloned()
        .unwrap_or_default();
    let Some(who) = authenticate(app, &conn, req.headers()).await else {
        return Err(status_response(&Status::unauthorized()));
    };
    let who = crate::authn::impersonation::impersonate(&app.authorizer, who, req.headers())
        .await
        .map_err(|s| status_response(&s))?;
    let path = req.uri().path();
    let verb = req.method().as_str().to_ascii_lowercase();
    let attributes = authz::Attributes {
        user: &who,
        verb: &verb,
        request: None,
        path,
    };
    match app.authorizer.authorize(&attributes).await {
        Ok(authz::Decision::Allow(_)) => Ok(who),
        Ok(authz::Decision::Deny(reason) | authz::Decision::NoOpinion(reason)) => {
            let refusal = authz::forbidden(&attributes, &reason);
            Err(status_response(&refusal))
        }
        Err(s) => Err(status_response(&s)),
    }
}

/// Every `/api` and `/apis` request, in a `request` span (method, path, then the user and the
/// answer's code) that whatever is logged while serving it carries, and recorded in the
/// request metrics ([`crate::metrics`]).
pub async fn api(State(app): State<Arc<App>>, req: Request) -> Response {
    use tracing::Instrument as _;
    let span = tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        user = tracing::field::Empty,
        code = tracing::field::Empty,
    );
    let started = crate::metrics::start(&app, &req);
    let auditor = app.audit.clone();
    let served = async move {
        match auditor {
            Some(a) => a.audited(req, |req| serve(app, req)).await,
            None => serve(app, req).await,
        }
    }
    .instrument(span.clone());
    let (resp, warnings) = crate::warning::recording(served).await;
    let resp = with_warnings(resp, &warnings);
    started.finish(resp.status().as_u16());
    span.record("code", resp.status().as_u16());
    tracing::debug!(parent: &span, "answered");
    resp
}

async fn serve(app: Arc<App>, req: Request) -> Response {
    let conn = req
        .extensions()
        .get::<Connection>()
        .cloned()
        .unwrap_or_default();
    let Some(who) = authenticate(&app, &conn, req.headers()).await else {
        return status_response(&Status::unauthorized());
    };
    crate::audit::authenticated(&who);
    let who =
        match crate::authn::impersonation::impersonate(&app.authorizer, who, req.headers()).await {
            Ok(who) => who,
            Err(s) => return status_response(&s),
        };
    crate::audit::impersonating(&who);
    tracing::Span::current().record("user", who.user.as_str());
    let query = Query::parse(req.uri().query());
    let served = app.registry.served();
    let path = req.uri().path().to_string();
    let target = match parse(&path, req.method().as_str(), query.flag("watch"), served) {
        Ok(t) => t,
        Err(s) => return status_response(&s),
    };
    let verb = match &target {
        Target::Resource(info) => info.verb.to_string(),
        _ => req.method().as_str().to_ascii_lowercase(),
    };
    let request = match &target {
        Target::Resource(info) => Some(info),
        _ => None,
    };
    crate::audit::addressed(&verb, request, &path);
    let authorized = authorized(&app, &who, &verb, target.clone(), query, req);
    let store = app.registry.store();
    let asked = flowcontrol::Asked {
        user: &who,
        verb: &verb,
        target: &target,
        path: &path,
    };
    match &app.flowcontrol {
        Some(fc) => fc.admit(store, &app.metrics, asked, authorized).await,
        None => authorized.await,
    }
}

/// A request its caller may make, or the refusal: asks the authorizers, then serves it.
async fn authorized(
    app: &App,
    who: &Identity,
    verb: &str,
    target: Target,
    query: Query,
    req: Request,
) -> Response {
    let path = req.uri().path();
    let request = match &target {
        Target::Resource(info) => Some(info),
        _ => None,
    };
    let attributes = authz::Attributes {
        user: who,
        verb,
        request,
        path,
    };
    match app.authorizer.authorize(&attributes).await {
        Ok(authz::Decision::Allow(reason)) => audit_decision("allow", &reason),
        Ok(authz::Decision::Deny(reason) | authz::Decision::NoOpinion(reason)) => {
            audit_decision("forbid", &reason);
            return status_response(&authz::forbidden(&attributes, &reason));
        }
        Err(s) => return status_response(&s),
    }
    let served = app.registry.served();
    let aggregated = discovery::wants_aggregated(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    match target {
        Target::CoreVersions if aggregated => json_with_type(
            StatusCode::OK,
            &discovery::aggregated(served, true),
            discovery::AGGREGATED_CONTENT_TYPE,
        ),
        Target::CoreVersions => {
            json_response(StatusCode::OK, &discovery::core_versions(&app.address))
        }
        Target::Groups if aggregated => json_with_type(
            StatusCode::OK,
            &discovery::aggregated(served, false),
            discovery::AGGREGATED_CONTENT_TYPE,
        ),
        Target::Groups => json_response(StatusCode::OK, &discovery::group_list(served)),
        Target::Group(g) => match discovery::group(served, &g) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => status_response(&Status::path_not_found()),
        },
        Target::ResourceList(g, v) => match discovery::resource_list(served, &g, &v) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => status_response(&Status::path_not_found()),
        },
        Target::Resource(info) => match resource(app, info, query, req, who).await {
            Ok(resp) => resp,
            Err(s) => status_response(&s),
        },
    }
}

/// The authorizers' answer, for the audit log (upstream's annotations).
fn audit_decision(decision: &str, reason: &str) {
    crate::audit::annotate("authorization.k8s.io/decision", decision);
    crate::audit::annotate("authorization.k8s.io/reason", reason);
}

/// Runs field validation on a create or update body (JSON bodies are also checked for
/// duplicate keys); returns the warnings to send.
fn field_check(
    r: &Resource,
    query: &Query,
    obj: &mut Value,
    duplicates: &[String],
) -> Result<Vec<String>, Status> {
    let directive = fieldcheck::Directive::parse(query.get("fieldValidation"))?;
    fieldcheck::check(r, directive, obj, duplicates)
}

/// Decodes a create or update body; JSON bodies are read in one pass that also notes
/// duplicate keys, for field validation.
fn decode_object(
    headers: &HeaderMap,
    body: &[u8],
    kind: &str,
) -> Result<(Value, Vec<String>), Status> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.starts_with("application/json") {
        let parsed = fieldcheck::parse_json(body);
        if let Ok((obj, _)) = &parsed {
            crate::audit::request_object(obj);
        }
        return parsed.map_err(|e| {
            unrecognized(
                kind,
                body,
                &format!("couldn't get version/kind; json parse error: {e}"),
            )
        });
    }
    Ok((decode_body(headers, body, kind)?, Vec::new()))
}

/// Adds one `Warning` header per message, as upstream does (`299 - "<message>"`).
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn list_options(sv: &Served, query: &Query) -> Result<ListOptions, Status> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(Status::bad_request)?;
    let mut fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
        .map_err(Status::bad_request)?;
    if let Some(f) = fields.fields().find(|f| !sv.asked.selectable(f)) {
        return Err(Status::bad_request(format!(
            "field label not supported: {f}"
        )));
    }
    // Filtering happens on stored objects, under the storage version's field names.
    for (field, _, _) in &mut fields.0 {
        if let Some(stored) = api::convert::field_label(&sv.asked, field) {
            *field = stored;
        }
    }
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| Status::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let rv = parse_rv(query.get("resourceVersion"))?;
    let exact = match (query.get("resourceVersionMatch"), rv) {
        (Some("Exact"), Some(rv)) if rv > 0 => Some(rv),
        (Some("Exact"), _) => {
            return Err(Status::bad_request(
                "resourceVersionMatch: Exact requires a resourceVersion",
            ));
        }
        (None, Some(rv)) if rv > 0 && limit > 0 => Some(rv),
        (Some("NotOlderThan") | None, _) => None,
        (Some(other), _) => {
            return Err(Status::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}"
            )));
        }
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        exact_revision: exact,
    })
}

fn parse_rv(rv: Option<&str>) -> Result<Option<i64>, Status> {
    match rv {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            Status::bad_request(format!(
                "resourceVersion: Invalid value: {v:?}: must be a valid resource version"
            ))
        }),
    }
}

/// DeleteOptions from the body (JSON or protobuf) and the query, and whether it is a dry run:
/// a body's `dryRun` counts as upstream's handler reads it (`kubectl delete --dry-run=server`
/// sends it there, not in the URL).
fn delete_options(
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(DeleteOptions, bool), Status> {
    let protobuf = headers.get(header::CONTENT_TYPE).is_some_and(|ct| {
        ct.as_bytes()
            .starts_with(b"application/vnd.kubernetes.protobuf")
    });
    let doc: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if protobuf {
        api::protobuf::decode(body)
            .map_err(|e| Status::bad_request(format!("invalid DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Status::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let in_body = dry_run_values(&doc);
    let dry_run = if in_body.is_empty() {
        query.dry_run()
    } else {
        in_body.contains(&"All")
    };
    Ok((delete_options_of(query, &doc)?, dry_run))
}

/// The `dryRun` values of options in a body (DeleteOptions, an Eviction's `deleteOptions`).
fn dry_run_values(doc: &Value) -> Vec<&str> {
    doc["dryRun"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// An eviction's dry run, as upstream's `propagateDryRun`: the query's and the body's
/// `dryRun` stand in for each other, and when both are given they must agree.
fn eviction_dry_run(query: &Query, doc: &Value) -> Result<bool, Status> {
    let in_query: Vec<&str> = query.get("dryRun").into_iter().collect();
    let in_body = dry_run_values(doc);
    if !in_query.is_empty() && !in_body.is_empty() && in_body != in_query {
        return Err(Status::new(
            500,
            "",
            format!(
                "Non-matching dry-run options in request and content: [{}] and [{}]",
                in_query.join(" "),
                in_body.join(" ")
            ),
        ));
    }
    Ok(in_query.contains(&"All") || in_body.contains(&"All"))
}

/// DeleteOptions from a decoded body (or an Eviction's `deleteOptions`) and the query.
fn delete_options_of(query: &Query, doc: &Value) -> Result<DeleteOptions, Status> {
    let grace = doc["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let mut propagation = doc["propagationPolicy"]
        .as_str()
        .or(query.get("propagationPolicy"))
        .map(str::to_string);
    if propagation.is_none()
        && (doc["orphanDependents"] == json!(true) || query.flag("orphanDependents"))
    {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(Status::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(DeleteOptions {
        grace_period: grace,
        propagation,
        uid: doc["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: doc["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    })
}

/// What every verb's handler needs to know of one resource request.
struct Call<'a> {
    app: &'a App,
    sv: Served,
    ns: Option<&'a str>,
    name: String,
    query: Query,
    headers: HeaderMap,
    shape: Shape,
    dry_run: bool,
    who: &'a Identity,
}

impl Call<'_> {
    fn reg(&self) -> &Registry {
        &self.app.registry
    }

    /// The stored resource.
    fn r(&self) -> &Resource {
        &self.sv.stored
    }

    /// Who writes, and whether only as a dry run.
    fn caller(&self) -> Caller<'_> {
        self.caller_dry(self.dry_run)
    }

    /// Who writes, with the dry run a delete or eviction body decided.
    fn caller_dry(&self, dry_run: bool) -> Caller<'_> {
        Caller {
            user: Some(self.who),
            dry_run,
        }
    }
}

fn ok(v: &Value) -> Result<Response, Status> {
    Ok(json_response(StatusCode::OK, v))
}

/// The `Status` a successful binding or eviction answers with.
fn created_status() -> Result<Response, Status> {
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// One resource request, handed to the handler of its verb and subresource.
async fn resource(
    app: &App,
    info: RequestInfo,
    query: Query,
    req: Request,
    who: &Identity,
) -> Result<Response, Status> {
    let c = Call {
        app,
        sv: Served::of(info.resource),
        ns: info.namespace.as_deref(),
        name: info.name.clone().unwrap_or_default(),
        shape: negotiate(req.headers()),
        dry_run: query.dry_run(),
        who,
        headers: req.headers().clone(),
        query,
    };
    let (r, reg, name) = (c.r(), c.reg(), c.name.as_str());
    if let Some(sub) = info.subresource.as_deref()
        && let Some(kind) = connect::of(r, info.verb, sub)
    {
        let (ns, query) = (c.ns, &c.query);
        let target = connect::Target {
            r,
            ns,
            name,
            sub,
            query,
            who,
        };
        return connect::serve(app, kind, target, req).await;
    }
    if r.create_only {
        return match info.verb {
            "create" => create_only(&c, req).await,
            verb => Err(Status::method_not_supported(r, verb)),
        };
    }
    match (info.verb, info.subresource.as_deref()) {
        ("get", None) => ok(&render_one(
            &c.sv,
            reg.get(r, c.ns, name).await?,
            c.shape,
            &c.query,
        )?),
        ("get", Some("status" | "approval" | "ephemeralcontainers")) => {
            ok(&c.sv.show(reg.get(r, c.ns, name).await?))
        }
        ("get", Some("scale")) => ok(&crate::scale::scale_of(r, &reg.get(r, c.ns, name).await?)?),
        ("list", None) if raw_list(&c) => list_raw(&c).await,
        ("list", None) if c.shape == Shape::Table => list_table(&c).await,
        ("list", None) => list(c).await,
        ("watch", None) => {
            let (ns, name) = (info.namespace.clone(), info.name.clone());
            watch(app, c.sv.clone(), ns, name, &c.query, c.shape).await
        }
        ("create", None) => create(&c, req).await,
        ("create", Some("binding")) => bind(&c, req).await,
        ("create", Some("token")) => token_request(&c, req).await,
        ("create", Some("eviction")) => evict(&c, req).await,
        (
            "update",
            sub @ (None | Some("status" | "finalize" | "approval" | "ephemeralcontainers")),
        ) => update(&c, req, sub).await,
        ("update", Some("scale")) => update_scale(&c, req).await,
        ("patch", sub) => patch(&c, req, sub).await,
        ("delete", None) => {
            let body = read_body(req.into_body()).await?;
            let (opts, dry_run) = delete_options(&c.query, &c.headers, &body)?;
            ok(&c.sv.show(
                reg.delete(r, c.ns, name, &opts, c.caller_dry(dry_run))
                    .await?,
            ))
        }
        ("deletecollection", None) => delete_collection(&c, req).await,
        (verb, _) => Err(Status::method_not_supported(r, verb)),
    }
}

/// Whether a LIST can be answered from the stored bytes: JSON objects of the stored version,
/// no selectors.
fn raw_list(c: &Call<'_>) -> bool {
    c.shape == Shape::Object
        && !c.sv.converted()
        && !c.query.0.contains_key("labelSelector")
        && !c.query.0.contains_key("fieldSelector")
}

/// The `metadata` of a one-object Table: the object's resourceVersion.
fn row_meta(obj: &Value) -> Value {
    let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
    json!({"resourceVersion": rv})
}

/// A list's `metadata`: its revision and, for a page with more after it, the `continue` token
/// and `remainingItemCount`.
fn list_meta<T>(list: &ListResult<T>) -> Value {
    let mut meta = json!({"resourceVersion": list.revision.to_string()});
    if let Some(token) = &list.continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(n) = list.remaining_item_count {
        meta["remainingItemCount"] = json!(n);
    }
    meta
}

/// A LIST spliced from the stored objects' bytes, none decoded.
async fn list_raw(c: &Call<'_>) -> Result<Response, Status> {
    let r = c.r();
    let list = c
        .reg()
        .list_raw(r, c.ns, &list_options(&c.sv, &c.query)?)
        .await?;
    let meta = list_meta(&list);
    let head = json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": meta});
    let mut body = serde_json::to_vec(&head).expect("encodes");
    body.pop();
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in list.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Ok(json_bytes(body))
}

/// A 200 answer with a JSON body already written; the encoder's newline is added.
fn json_bytes(mut body: Vec<u8>) -> Response {
    body.push(b'\n');
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A LIST as a Table. Without selectors the rows are written from the stored objects' text,
/// split over the cores ([`table_rows`]); with them, each object becomes its row's JSON as it
/// is read, so that the objects are never all decoded at once.
async fn list_table(c: &Call<'_>) -> Result<Response, Status> {
    let r = c.r();
    let (include, now) = (include(&c.query)?, jiff::Timestamp::now());
    let opts = list_options(&c.sv, &c.query)?;
    if let Some(order) = api::table::row_order(r) {
        let mut list = c.reg().list(r, c.ns, &opts).await?;
        let meta = list_meta(&list);
        list.items.sort_by_cached_key(order);
        let rows: Vec<Vec<u8>> = (list.items.into_iter())
            .map(|o| {
                serde_json::to_vec(&api::table::row(r, o, include, now)).expect("JSON encodes")
            })
            .collect();
        return Ok(json_bytes(api::table::table_json(r, meta, &rows)));
    }
    if opts.labels.is_empty() && opts.fields.0.is_empty() {
        let list = c.reg().list_raw(r, c.ns, &opts).await?;
        let meta = list_meta(&list);
        let rows = table_rows(r, list.items, include, now).await?;
        return Ok(json_bytes(api::table::table_json(r, meta, &rows)));
    }
    let rows = c
        .reg()
        .list_map(r, c.ns, &opts, |obj| {
            serde_json::to_vec(&api::table::row(r, obj, include, now)).expect("JSON encodes")
        })
        .await?;
    Ok(json_bytes(api::table::table_json(
        r,
        list_meta(&rows),
        &rows.items,
    )))
}

/// Fewest objects worth a thread of their own when writing a Table's rows.
const ROWS_PER_THREAD: usize = 256;

/// The rows of the objects whose JSON text `items` holds, in their order, as entries for
/// [`api::table::table_json`]: runs of rows joined by commas, the runs written on the
/// blocking pool's threads, one per core.
async fn table_rows(
    r: &Resource,
    items: Vec<Vec<u8>>,
    include: Include,
    now: jiff::Timestamp,
) -> Result<Vec<Vec<u8>>, Status> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = items.len().div_ceil(threads).max(ROWS_PER_THREAD);
    if items.len() <= per_thread {
        return Ok(vec![rows_text(r, &items, include, now)?]);
    }
    let mut items = items.into_iter();
    let mut runs = Vec::new();
    loop {
        let run: Vec<Vec<u8>> = items.by_ref().take(per_thread).collect();
        if run.is_empty() {
            break;
        }
        let r = r.clone();
        runs.push(tokio::task::spawn_blocking(move || {
            rows_text(&r, &run, include, now)
        }));
    }
    let mut rows = Vec::with_capacity(runs.len());
    for run in runs {
        rows.push(run.await.map_err(Status::internal)??);
    }
    Ok(rows)
}

/// The rows of `items` (objects' JSON text) joined by commas. Text [`api::table::row_json`]
/// cannot write from is decoded and takes [`api::table::row`].
fn rows_text(
    r: &Resource,
    items: &[Vec<u8>],
    include: Include,
    now: jiff::Timestamp,
) -> Result<Vec<u8>, Status> {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() / 2 + 64).sum());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if api::table::row_json(r, item, include, now, &mut out).is_none() {
            let obj: Value = serde_json::from_slice(item)
                .map_err(|e| Status::internal(format!("stored object is not valid JSON: {e}")))?;
            serde_json::to_writer(&mut out, &api::table::row(r, obj, include, now))
                .expect("JSON encodes");
        }
    }
    Ok(out)
}

/// A LIST of objects or of their partial metadata (a Table: [`list_table`]).
async fn list(c: Call<'_>) -> Result<Response, Status> {
    let (r, sv) = (c.r(), &c.sv);
    let list = c.reg().list(r, c.ns, &list_options(sv, &c.query)?).await?;
    let meta = list_meta(&list);
    let body = if c.shape == Shape::Metadata {
        let items: Vec<Value> = list.items.iter().map(partial).collect();
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items})
    } else {
        let items: Vec<Value> = if sv.converted() {
            list.items.into_iter().map(|i| sv.show(i)).collect()
        } else {
            list.items
        };
        json!({"kind": sv.asked.list_kind(), "apiVersion": sv.asked.api_version(), "metadata": meta, "items": items})
    };
    ok(&body)
}

/// CREATE. A CertificateSigningRequest's requestor is whoever sent it, whatever the body says.
async fn create(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let who = c.who;
    let r = c.r();
    let body = read_body(req.into_body()).await?;
    let (mut obj, duplicates) = decode_object(&c.headers, &body, &r.kind)?;
    let warnings = field_check(&c.sv.asked, &c.query, &mut obj, &duplicates)?;
    let mut obj = c.sv.store(obj)?;
    if r.kind == "CertificateSigningRequest" && obj["spec"].is_object() {
        obj["spec"]["username"] = json!(who.user);
        obj["spec"]["groups"] = json!(who.groups);
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("uid");
            spec.remove("extra");
        }
    }
    let created = c.reg().create(r, c.ns, obj, c.caller()).await?;
    Ok(with_warnings(
        json_response(StatusCode::CREATED, &c.sv.show(created)),
        &warnings,
    ))
}

/// A create of a resource that is only created (the access and token reviews): answered
/// from the body, nothing stored.
async fn create_only(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let body = read_body(req.into_body()).await?;
    let review = decode_body(&c.headers, &body, &c.r().kind)?;
    let (chain, reg) = (&c.app.authorizer, c.reg());
    let answer = if c.r().group == "authentication.k8s.io" {
        let auth = crate::authn::review::Authenticators {
            tokens: &c.app.tokens,
            signer: &c.app.service_accounts,
            registry: reg,
        };
        crate::authn::review::answer(&auth, c.who, &c.r().plural, review).await
    } else {
        authz::review::answer(chain, reg, c.who, c.r(), c.ns, review).await?
    };
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `serviceaccounts/token`: a token for the account (`kubectl create token`).
async fn token_request(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let body = read_body(req.into_body()).await?;
    let request = decode_body(&c.headers, &body, "TokenRequest")?;
    let (signer, ns) = (&c.app.service_accounts, c.ns.unwrap_or("default"));
    let node = authz::node::node_name(c.who);
    let answer =
        crate::authn::token_request::issue(signer, c.reg(), ns, &c.name, node, request).await?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// `pods/binding`.
async fn bind(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let body = read_body(req.into_body()).await?;
    let binding = decode_body(&c.headers, &body, "Binding")?;
    c.reg()
        .bind(c.r(), c.ns, &c.name, &binding, c.caller())
        .await?;
    created_status()
}

/// `pods/eviction`.
async fn evict(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let body = read_body(req.into_body()).await?;
    let eviction = decode_body(&c.headers, &body, "Eviction")?;
    crate::eviction::check_body(&c.name, &eviction)?;
    let doc = &eviction["deleteOptions"];
    let ev = crate::eviction::Eviction {
        options: delete_options_of(&Query::default(), doc)?,
        caller: c.caller_dry(eviction_dry_run(&c.query, doc)?),
    };
    let attributes = admission::Attributes {
        operation: admission::Operation::Create,
        resource: c.r(),
        subresource: Some("eviction"),
        namespace: c.ns,
        old: None,
        user: Some(c.who),
        dry_run: ev.caller.dry_run,
    };
    c.reg().admit_request(&attributes, &eviction).await?;
    crate::eviction::evict(c.reg(), c.ns.unwrap_or("default"), &c.name, ev).await?;
    created_status()
}

/// UPDATE of the object or of a subresource that holds part of it.
async fn update(c: &Call<'_>, req: Request, sub: Option<&str>) -> Result<Response, Status> {
    let r = c.r();
    let body = read_body(req.into_body()).await?;
    let (mut obj, duplicates) = decode_object(&c.headers, &body, &r.kind)?;
    let warnings = field_check(&c.sv.asked, &c.query, &mut obj, &duplicates)?;
    let obj = c.sv.store(obj)?;
    let updated = c
        .reg()
        .update(r, c.ns, &c.name, obj, sub, c.caller())
        .await?;
    Ok(with_warnings(
        json_response(StatusCode::OK, &c.sv.show(updated)),
        &warnings,
    ))
}

/// UPDATE of the `scale` subresource.
async fn update_scale(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let body = read_body(req.into_body()).await?;
    let scale = decode_body(&c.headers, &body, "Scale")?;
    let set = |_: &Value| Ok(scale.clone());
    ok(&c
        .reg()
        .set_scale(c.r(), c.ns, &c.name, set, c.caller())
        .await?)
}

/// PATCH of the object, a subresource that holds part of it, or `scale`.
async fn patch(c: &Call<'_>, req: Request, sub: Option<&str>) -> Result<Response, Status> {
    let ct = c
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind =
        PatchType::from_content_type(ct).ok_or_else(|| Status::unsupported_media_type(ct))?;
    if matches!(kind, PatchType::Apply) {
        return Err(crate::registry::apply_unsupported());
    }
    let body = read_body(req.into_body()).await?;
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
    crate::audit::request_object(&patch);
    match sub {
        None | Some("status" | "approval" | "ephemeralcontainers") => {
            let warnings = patch_warnings(c, kind, &patch).await?;
            let patched = c
                .reg()
                .patch(&c.sv.asked, c.ns, &c.name, (kind, &patch), sub, c.caller())
                .await?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &c.sv.show(patched)),
                &warnings,
            ))
        }
        Some("scale") => {
            let apply = |scale: &Value| apply_patch(kind, scale, &patch);
            ok(&c
                .reg()
                .set_scale(c.r(), c.ns, &c.name, apply, c.caller())
                .await?)
        }
        Some(_) => Err(Status::method_not_supported(c.r(), "patch")),
    }
}

/// Field validation of a patch, which looks at the object the patch would produce.
async fn patch_warnings(
    c: &Call<'_>,
    kind: PatchType,
    patch: &Value,
) -> Result<Vec<String>, Status> {
    let directive = fieldcheck::Directive::parse(c.query.get("fieldValidation"))?;
    if directive == fieldcheck::Directive::Ignore {
        return Ok(Vec::new());
    }
    let current = c.reg().get(c.r(), c.ns, &c.name).await?;
    let current = api::convert::from_storage(&c.sv.asked, current);
    let mut patched = apply_patch(kind, &current, patch)?;
    fieldcheck::check(&c.sv.asked, directive, &mut patched, &[]).map_err(|s| {
        Status::invalid(
            c.r(),
            &c.name,
            &[api::validation::FieldError::invalid(
                "patch",
                &json!(patch.to_string()),
                s.message,
            )],
        )
    })
}

/// DELETECOLLECTION: every listed object deleted with the same options; one gone meanwhile
/// is skipped.
async fn delete_collection(c: &Call<'_>, req: Request) -> Result<Response, Status> {
    let (r, reg, sv) = (c.r(), c.reg(), &c.sv);
    let body = read_body(req.into_body()).await?;
    let (opts, dry_run) = delete_options(&c.query, &c.headers, &body)?;
    let list = reg.list(r, c.ns, &list_options(sv, &c.query)?).await?;
    let mut deleted = Vec::new();
    for item in list.items {
        let item_ns = item["metadata"]["namespace"].as_str();
        let item_name = item["metadata"]["name"].as_str().unwrap_or("");
        match reg
            .delete(r, item_ns, item_name, &opts, c.caller_dry(dry_run))
            .await
        {
            Ok(obj) => deleted.push(sv.show(obj)),
            Err(s) if s.code == 404 => {}
            Err(s) => return Err(s),
        }
    }
    ok(
        &json!({"kind": sv.asked.list_kind(), "apiVersion": sv.asked.api_version(), "metadata": {"resourceVersion": list.revision.to_string()}, "items": deleted}),
    )
}

/// `pods/log`, over plain HTTP or a WebSocket.
async fn watch(
    app: &App,
    sv: Served,
    ns: Option<String>,
    name: Option<String>,
    query: &Query,
    shape: Shape,
) -> Result<Response, Status> {
    let mut opts = list_options(&sv, query)?;
    if let Some(name) = name {
        opts.fields.0.push(("metadata.name".into(), true, name));
    }
    let req = WatchRequest {
        labels: opts.labels,
        fields: opts.fields,
        revision: parse_rv(query.get("resourceVersion"))?,
        bookmarks: query.flag("allowWatchBookmarks"),
        initial_events: query.flag("sendInitialEvents"),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let r = sv.stored.clone();
    let events = app.registry.watch(r.clone(), ns.as_deref(), req).await?;
    let include = include(query)?;
    let mut first = true;
    let lines = events
        .map(move |(kind, obj)| {
            let object = if shape == Shape::Table && kind != "ERROR" && kind != "BOOKMARK" {
                let meta = row_meta(&obj);
                let mut t = table(&r, vec![obj], include, meta, jiff::Timestamp::now());
                if !first {
                    t["columnDefinitions"] = Value::Null;
                }
                first = false;
                t
            } else if kind == "ERROR" || kind == "BOOKMARK" || !sv.converted() {
                obj
            } else {
                sv.show(obj)
            };
            let mut line =
                serde_json::to_vec(&json!({"type": kind, "object": object})).expect("encodes");
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        })
        .take_until(tokio::time::sleep(timeout));
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group-version>`.
pub async fn openapi(State(app): State<Arc<App>>, req: Request) -> Response {
    let conn = req
        .extensions()
        .get::<Connection>()
        .cloned()
        .unwrap_or_default();
    if authenticate(&app, &conn, req.headers()).await.is_none() {
        return status_response(&Status::unauthorized());
    }
    let path = req.uri().path().trim_end_matches('/');
    if path == "/openapi/v2" {
        // client-go asks for the protobuf (gnostic) form first; Rudder serves JSON only.
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*/*");
        if !accept.contains("json") && !accept.contains("*/*") {
            return status_response(&Status::new(
                406,
                "NotAcceptable",
                "only application/json is served for /openapi/v2",
            ));
        }
        return json_document(StatusCode::OK, openapi::v2(app.registry.served()).as_ref());
    }
    if path == "/openapi/v3" {
        return json_document(StatusCode::OK, &openapi::index(app.registry.served()));
    }
    match path
        .strip_prefix("/openapi/v3/")
        .and_then(|key| openapi::document(app.registry.served(), key))
    {
        Some(doc) => json_document(StatusCode::OK, doc.as_ref()),
        None => status_response(&Status::path_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert_eq!(negotiate(&h), Shape::Table);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
            ),
        );
        assert_eq!(negotiate(&h), Shape::Metadata);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, */*"),
        );
        assert_eq!(negotiate(&h), Shape::Object);
    }

    #[test]
    fn malformed_bodies_are_described_like_upstream() {
        let h = HeaderMap::new();
        let e = decode_body(&h, b"{\"kind\": ", "Pod").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.starts_with("the object provided is unrecognized (must be of type Pod): couldn't get version/kind; json parse error: "), "{}", e.message);
        assert!(e.message.ends_with("({\"kind\": )"), "{}", e.message);
        let mut y = HeaderMap::new();
        y.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        let v = decode_body(&y, b"kind: Pod\nmetadata:\n  name: p\n", "Pod").unwrap();
        assert_eq!(v["metadata"]["name"], "p");
        assert!(decode_body(&y, b"a: [b\n", "Pod").is_err());
        assert_eq!(body_summary(b""), "<empty>");
    }
}
