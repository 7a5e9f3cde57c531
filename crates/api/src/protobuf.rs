//! Decoding Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the
//! JSON form the rest of Rudder works with.
//!
//! kubectl's typed commands (`kubectl create configmap|secret|namespace|service|...`) send
//! protobuf: the magic `k8s\0`, then a `runtime.Unknown` envelope holding the apiVersion, the
//! kind and the object's own message. The decoder is table-driven: one [`Msg`] per message type
//! lists its field numbers with their JSON names and wire kinds (the numbers are upstream's, from
//! its `generated.proto` files). Kinds without a table are refused with a message naming them.
//!
//! Zero values (empty strings, 0, false, empty lists and maps) are left out of the JSON, as
//! upstream's JSON encoding leaves out `omitempty` fields; the few fields whose zero matters are
//! marked [`Kind::IntAlways`].

use base64::Engine;
use serde_json::{Map, Value};

/// What a field holds on the wire and how it becomes JSON.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A UTF-8 string.
    Str,
    /// Bytes, base64 in JSON.
    Bytes,
    /// A varint integer (int32 or int64), left out when 0.
    Int,
    /// A varint integer kept even when 0.
    IntAlways,
    /// A varint boolean.
    Bool,
    /// A nested message.
    Msg(&'static Msg),
    /// `meta.v1.Time`: seconds since the epoch, RFC 3339 in JSON.
    Time,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `meta.v1.FieldsV1`: raw JSON bytes.
    FieldsV1,
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, base64 values in JSON.
    MapBytes,
    /// `map<string, resource.Quantity>`.
    MapQuantity,
    /// `repeated string`.
    RepStr,
    /// `repeated` message.
    RepMsg(&'static Msg),
}

/// A message type: its fields by number.
#[derive(Debug)]
pub struct Msg {
    /// (field number, JSON name, kind).
    pub fields: &'static [(u32, &'static str, Kind)],
}

use Kind::*;

macro_rules! msg {
    ($name:ident { $($num:literal $json:literal $kind:expr),* $(,)? }) => {
        static $name: Msg = Msg { fields: &[$(($num, $json, $kind)),*] };
    };
}

msg!(OWNER_REFERENCE { 1 "kind" Str, 3 "name" Str, 4 "uid" Str, 5 "apiVersion" Str, 6 "controller" Bool, 7 "blockOwnerDeletion" Bool });
msg!(MANAGED_FIELDS_ENTRY { 1 "manager" Str, 2 "operation" Str, 3 "apiVersion" Str, 4 "time" Time, 6 "fieldsType" Str, 7 "fieldsV1" FieldsV1, 8 "subresource" Str });
msg!(OBJECT_META {
    1 "name" Str, 2 "generateName" Str, 3 "namespace" Str, 4 "selfLink" Str, 5 "uid" Str,
    6 "resourceVersion" Str, 7 "generation" Int, 8 "creationTimestamp" Time, 9 "deletionTimestamp" Time,
    10 "deletionGracePeriodSeconds" Int, 11 "labels" MapStr, 12 "annotations" MapStr,
    13 "ownerReferences" RepMsg(&OWNER_REFERENCE), 14 "finalizers" RepStr, 17 "managedFields" RepMsg(&MANAGED_FIELDS_ENTRY),
});
msg!(LABEL_SELECTOR_REQUIREMENT { 1 "key" Str, 2 "operator" Str, 3 "values" RepStr });
msg!(LABEL_SELECTOR { 1 "matchLabels" MapStr, 2 "matchExpressions" RepMsg(&LABEL_SELECTOR_REQUIREMENT) });
msg!(CONDITION { 1 "type" Str, 2 "status" Str, 3 "observedGeneration" Int, 4 "lastTransitionTime" Time, 5 "reason" Str, 6 "message" Str });

msg!(CONFIG_MAP { 1 "metadata" Msg(&OBJECT_META), 2 "data" MapStr, 3 "binaryData" MapBytes, 4 "immutable" Bool });
msg!(SECRET { 1 "metadata" Msg(&OBJECT_META), 2 "data" MapBytes, 3 "type" Str, 4 "stringData" MapStr, 5 "immutable" Bool });
msg!(NAMESPACE_SPEC { 1 "finalizers" RepStr });
msg!(NAMESPACE_CONDITION { 1 "type" Str, 2 "status" Str, 4 "lastTransitionTime" Time, 5 "reason" Str, 6 "message" Str });
msg!(NAMESPACE_STATUS { 1 "phase" Str, 2 "conditions" RepMsg(&NAMESPACE_CONDITION) });
msg!(NAMESPACE { 1 "metadata" Msg(&OBJECT_META), 2 "spec" Msg(&NAMESPACE_SPEC), 3 "status" Msg(&NAMESPACE_STATUS) });
msg!(OBJECT_REFERENCE { 1 "kind" Str, 2 "namespace" Str, 3 "name" Str, 4 "uid" Str, 5 "apiVersion" Str, 6 "resourceVersion" Str, 7 "fieldPath" Str });
msg!(LOCAL_OBJECT_REFERENCE { 1 "name" Str });
msg!(SERVICE_ACCOUNT { 1 "metadata" Msg(&OBJECT_META), 2 "secrets" RepMsg(&OBJECT_REFERENCE), 3 "imagePullSecrets" RepMsg(&LOCAL_OBJECT_REFERENCE), 4 "automountServiceAccountToken" Bool });
msg!(SERVICE_PORT { 1 "name" Str, 2 "protocol" Str, 3 "port" IntAlways, 4 "targetPort" IntOrString, 5 "nodePort" Int, 6 "appProtocol" Str });
msg!(CLIENT_IP_CONFIG { 1 "timeoutSeconds" Int });
msg!(SESSION_AFFINITY_CONFIG { 1 "clientIP" Msg(&CLIENT_IP_CONFIG) });
msg!(SERVICE_SPEC {
    1 "ports" RepMsg(&SERVICE_PORT), 2 "selector" MapStr, 3 "clusterIP" Str, 4 "type" Str, 5 "externalIPs" RepStr,
    7 "sessionAffinity" Str, 8 "loadBalancerIP" Str, 9 "loadBalancerSourceRanges" RepStr, 10 "externalName" Str,
    11 "externalTrafficPolicy" Str, 12 "healthCheckNodePort" Int, 13 "publishNotReadyAddresses" Bool,
    14 "sessionAffinityConfig" Msg(&SESSION_AFFINITY_CONFIG), 17 "ipFamilyPolicy" Str, 18 "clusterIPs" RepStr,
    19 "ipFamilies" RepStr, 20 "allocateLoadBalancerNodePorts" Bool, 21 "loadBalancerClass" Str,
    22 "internalTrafficPolicy" Str, 23 "trafficDistribution" Str,
});
msg!(PORT_STATUS { 1 "port" IntAlways, 2 "protocol" Str, 3 "error" Str });
msg!(LOAD_BALANCER_INGRESS { 1 "ip" Str, 2 "hostname" Str, 3 "ipMode" Str, 4 "ports" RepMsg(&PORT_STATUS) });
msg!(LOAD_BALANCER_STATUS { 1 "ingress" RepMsg(&LOAD_BALANCER_INGRESS) });
msg!(SERVICE_STATUS { 1 "loadBalancer" Msg(&LOAD_BALANCER_STATUS), 2 "conditions" RepMsg(&CONDITION) });
msg!(SERVICE { 1 "metadata" Msg(&OBJECT_META), 2 "spec" Msg(&SERVICE_SPEC), 3 "status" Msg(&SERVICE_STATUS) });
msg!(SCOPED_REQUIREMENT { 1 "scopeName" Str, 2 "operator" Str, 3 "values" RepStr });
msg!(SCOPE_SELECTOR { 1 "matchExpressions" RepMsg(&SCOPED_REQUIREMENT) });
msg!(RESOURCE_QUOTA_SPEC { 1 "hard" MapQuantity, 2 "scopes" RepStr, 3 "scopeSelector" Msg(&SCOPE_SELECTOR) });
msg!(RESOURCE_QUOTA_STATUS { 1 "hard" MapQuantity, 2 "used" MapQuantity });
msg!(RESOURCE_QUOTA { 1 "metadata" Msg(&OBJECT_META), 2 "spec" Msg(&RESOURCE_QUOTA_SPEC), 3 "status" Msg(&RESOURCE_QUOTA_STATUS) });

msg!(POLICY_RULE { 1 "verbs" RepStr, 2 "apiGroups" RepStr, 3 "resources" RepStr, 4 "resourceNames" RepStr, 5 "nonResourceURLs" RepStr });
msg!(SUBJECT { 1 "kind" Str, 2 "apiGroup" Str, 3 "name" Str, 4 "namespace" Str });
msg!(ROLE_REF { 1 "apiGroup" Str, 2 "kind" Str, 3 "name" Str });
msg!(AGGREGATION_RULE { 1 "clusterRoleSelectors" RepMsg(&LABEL_SELECTOR) });
msg!(ROLE { 1 "metadata" Msg(&OBJECT_META), 2 "rules" RepMsg(&POLICY_RULE) });
msg!(CLUSTER_ROLE { 1 "metadata" Msg(&OBJECT_META), 2 "rules" RepMsg(&POLICY_RULE), 3 "aggregationRule" Msg(&AGGREGATION_RULE) });
msg!(ROLE_BINDING { 1 "metadata" Msg(&OBJECT_META), 2 "subjects" RepMsg(&SUBJECT), 3 "roleRef" Msg(&ROLE_REF) });
msg!(PRIORITY_CLASS { 1 "metadata" Msg(&OBJECT_META), 2 "value" IntAlways, 3 "globalDefault" Bool, 4 "description" Str, 5 "preemptionPolicy" Str });

/// The message table of an apiVersion and kind, if Rudder can decode it.
fn schema(api_version: &str, kind: &str) -> Option<&'static Msg> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("v1", "ResourceQuota") => &RESOURCE_QUOTA,
        ("rbac.authorization.k8s.io/v1", "Role") => &ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => &ROLE_BINDING,
        ("scheduling.k8s.io/v1", "PriorityClass") => &PRIORITY_CLASS,
        _ => return None,
    })
}

/// The protobuf magic prefix.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a Kubernetes protobuf body, or a damaged one.
    Malformed(String),
    /// A well-formed body of a kind Rudder has no table for.
    Unsupported {
        /// The body's apiVersion.
        api_version: String,
        /// The body's kind.
        kind: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed protobuf body: {why}"),
            Error::Unsupported { api_version, kind } => write!(
                f,
                "protobuf bodies of {api_version} {kind} are not supported yet; send JSON or YAML instead"
            ),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| Error::Malformed("truncated varint".into()))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed("varint too long".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = usize::try_from(self.varint()?)
            .map_err(|_| Error::Malformed("length overflow".into()))?;
        if len > self.buf.len() {
            return Err(Error::Malformed("truncated field".into()));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// The next field: (number, wire type, varint value or payload).
    fn field(&mut self) -> Result<(u32, Wire<'a>), Error> {
        let key = self.varint()?;
        let num = u32::try_from(key >> 3)
            .map_err(|_| Error::Malformed("field number overflow".into()))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => self.take(8).map(|_| Wire::Fixed)?,
            2 => Wire::Len(self.bytes()?),
            5 => self.take(4).map(|_| Wire::Fixed)?,
            t => return Err(Error::Malformed(format!("unsupported wire type {t}"))),
        };
        Ok((num, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Malformed("truncated field".into()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    /// A fixed32/fixed64 value; no Kubernetes type in the tables uses one, so it is skipped.
    Fixed,
}

fn len_payload<'a>(w: Wire<'a>, name: &str) -> Result<&'a [u8], Error> {
    match w {
        Wire::Len(b) => Ok(b),
        _ => Err(Error::Malformed(format!(
            "field {name}: expected a length-delimited value"
        ))),
    }
}

fn varint_payload(w: Wire<'_>, name: &str) -> Result<u64, Error> {
    match w {
        Wire::Varint(v) => Ok(v),
        _ => Err(Error::Malformed(format!("field {name}: expected a varint"))),
    }
}

fn string(bytes: &[u8], name: &str) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::Malformed(format!("field {name}: not UTF-8")))
}

/// Every field of a small message, as (number, wire).
fn fields(bytes: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, Error> {
    let mut r = Reader { buf: bytes };
    let mut out = Vec::new();
    while !r.buf.is_empty() {
        out.push(r.field()?);
    }
    Ok(out)
}

fn map_entry<'a>(bytes: &'a [u8], name: &str) -> Result<(String, Option<Wire<'a>>), Error> {
    let (mut key, mut value) = (String::new(), None);
    for (num, w) in fields(bytes)? {
        match num {
            1 => key = string(len_payload(w, name)?, name)?,
            2 => value = Some(w),
            _ => {}
        }
    }
    Ok((key, value))
}

fn time(bytes: &[u8]) -> Result<Value, Error> {
    let mut seconds = 0i64;
    for (num, w) in fields(bytes)? {
        if num == 1 {
            seconds = varint_payload(w, "seconds")? as i64;
        }
    }
    if seconds == 0 {
        return Ok(Value::Null);
    }
    let t = jiff::Timestamp::from_second(seconds)
        .map_err(|e| Error::Malformed(format!("time: {e}")))?;
    Ok(Value::from(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn quantity(bytes: &[u8]) -> Result<Value, Error> {
    for (num, w) in fields(bytes)? {
        if num == 1 {
            return Ok(Value::from(string(
                len_payload(w, "quantity")?,
                "quantity",
            )?));
        }
    }
    Ok(Value::from("0"))
}

fn int_or_string(bytes: &[u8]) -> Result<Value, Error> {
    let (mut ty, mut int, mut text) = (0u64, 0i64, String::new());
    for (num, w) in fields(bytes)? {
        match num {
            1 => ty = varint_payload(w, "type")?,
            2 => int = varint_payload(w, "intVal")? as i64 as i32 as i64,
            3 => text = string(len_payload(w, "strVal")?, "strVal")?,
            _ => {}
        }
    }
    Ok(if ty == 1 {
        Value::from(text)
    } else {
        Value::from(int)
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Decodes one message into a JSON object.
fn message(schema: &Msg, bytes: &[u8]) -> Result<Value, Error> {
    let mut out = Map::new();
    for (num, w) in fields(bytes)? {
        // Fields this table does not know (newer than it) are skipped, as protobuf intends.
        let Some(&(_, name, kind)) = schema.fields.iter().find(|f| f.0 == num) else {
            continue;
        };
        let value = match kind {
            Str => Value::from(string(len_payload(w, name)?, name)?),
            Bytes => {
                Value::from(base64::engine::general_purpose::STANDARD.encode(len_payload(w, name)?))
            }
            Int | IntAlways => Value::from(varint_payload(w, name)? as i64),
            Bool => Value::from(varint_payload(w, name)? != 0),
            Msg(m) => message(m, len_payload(w, name)?)?,
            Time => time(len_payload(w, name)?)?,
            Quantity => quantity(len_payload(w, name)?)?,
            IntOrString => int_or_string(len_payload(w, name)?)?,
            FieldsV1 => {
                let raw = fields(len_payload(w, name)?)?
                    .into_iter()
                    .find(|(n, _)| *n == 1)
                    .map(|(_, w)| len_payload(w, name))
                    .transpose()?
                    .unwrap_or(b"{}");
                serde_json::from_slice(raw)
                    .map_err(|e| Error::Malformed(format!("field {name}: {e}")))?
            }
            MapStr | MapBytes | MapQuantity => {
                let (key, value) = map_entry(len_payload(w, name)?, name)?;
                let value = match (kind, value) {
                    (_, None) => match kind {
                        MapQuantity => Value::from("0"),
                        _ => Value::from(""),
                    },
                    (MapStr, Some(v)) => Value::from(string(len_payload(v, name)?, name)?),
                    (MapBytes, Some(v)) => Value::from(
                        base64::engine::general_purpose::STANDARD.encode(len_payload(v, name)?),
                    ),
                    (_, Some(v)) => quantity(len_payload(v, name)?)?,
                };
                let map = out.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, value);
                }
                continue;
            }
            RepStr | RepMsg(_) => {
                let item = match kind {
                    RepMsg(m) => message(m, len_payload(w, name)?)?,
                    _ => Value::from(string(len_payload(w, name)?, name)?),
                };
                let list = out.entry(name).or_insert_with(|| Value::Array(Vec::new()));
                if let Some(l) = list.as_array_mut() {
                    l.push(item);
                }
                continue;
            }
        };
        if matches!(kind, IntAlways) || !is_zero(&value) {
            out.insert(name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a whole request body: magic, envelope, object. The result carries `apiVersion`
/// and `kind` from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        Error::Malformed("the body does not start with the k8s protobuf magic".into())
    })?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (num, w) in fields(envelope)? {
        match num {
            1 => {
                for (n, w) in fields(len_payload(w, "typeMeta")?)? {
                    match n {
                        1 => api_version = string(len_payload(w, "apiVersion")?, "apiVersion")?,
                        2 => kind = string(len_payload(w, "kind")?, "kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = len_payload(w, "raw")?,
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| Error::Unsupported {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut obj = message(schema, raw)?;
    obj["apiVersion"] = Value::from(api_version);
    obj["kind"] = Value::from(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Minimal protobuf writer for building test bodies.
    fn key(num: u32, wire: u8, out: &mut Vec<u8>) {
        varint(u64::from(num) << 3 | u64::from(wire), out);
    }
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes(num: u32, payload: &[u8], out: &mut Vec<u8>) {
        key(num, 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }
    fn int(num: u32, v: i64, out: &mut Vec<u8>) {
        key(num, 0, out);
        varint(v as u64, out);
    }
    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes(1, k.as_bytes(), &mut e);
        bytes(2, v, &mut e);
        e
    }
    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes(1, api_version.as_bytes(), &mut tm);
        bytes(2, kind.as_bytes(), &mut tm);
        let mut body = MAGIC.to_vec();
        bytes(1, &tm, &mut body);
        bytes(2, raw, &mut body);
        bytes(3, b"", &mut body);
        bytes(4, b"", &mut body);
        body
    }

    #[test]
    fn config_maps_and_secrets_decode_as_kubectl_sends_them() {
        let mut meta = Vec::new();
        bytes(1, b"cm1", &mut meta);
        bytes(2, b"", &mut meta); // Go writes empty non-pointer strings
        bytes(8, b"", &mut meta); // and a zero creationTimestamp
        bytes(11, &entry("app", b"web"), &mut meta);
        let mut cm = Vec::new();
        bytes(1, &meta, &mut cm);
        bytes(2, &entry("a", b"1"), &mut cm);
        bytes(2, &entry("b", b"2"), &mut cm);
        let v = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm1", "labels": {"app": "web"}}, "data": {"a": "1", "b": "2"}})
        );

        let mut secret = Vec::new();
        bytes(1, &meta, &mut secret);
        bytes(2, &entry("pw", b"\x00\xffhi"), &mut secret);
        bytes(3, b"Opaque", &mut secret);
        let v = decode(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(v["data"]["pw"], "AP9oaQ==");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn services_with_int_or_string_ports_and_times() {
        let mut port = Vec::new();
        bytes(2, b"TCP", &mut port);
        int(3, 80, &mut port);
        let mut target = Vec::new();
        int(1, 1, &mut target);
        int(2, 0, &mut target);
        bytes(3, b"http", &mut target);
        bytes(4, &target, &mut port);
        let mut spec = Vec::new();
        bytes(1, &port, &mut spec);
        bytes(4, b"ClusterIP", &mut spec);
        let mut meta = Vec::new();
        bytes(1, b"web", &mut meta);
        let mut ts = Vec::new();
        int(1, 1_700_000_000, &mut ts);
        int(2, 0, &mut ts);
        bytes(9, &ts, &mut meta);
        let mut svc = Vec::new();
        bytes(1, &meta, &mut svc);
        bytes(2, &spec, &mut svc);
        let v = decode(&envelope("v1", "Service", &svc)).unwrap();
        assert_eq!(
            v["spec"]["ports"],
            json!([{"protocol": "TCP", "port": 80, "targetPort": "http"}])
        );
        assert_eq!(v["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn priority_class_value_zero_is_kept_and_negative_ints_decode() {
        let mut meta = Vec::new();
        bytes(1, b"low", &mut meta);
        let mut pc = Vec::new();
        bytes(1, &meta, &mut pc);
        int(2, 0, &mut pc);
        let v = decode(&envelope("scheduling.k8s.io/v1", "PriorityClass", &pc)).unwrap();
        assert_eq!(v["value"], 0);
        let mut pc = Vec::new();
        int(2, -5, &mut pc);
        assert_eq!(
            decode(&envelope("scheduling.k8s.io/v1", "PriorityClass", &pc)).unwrap()["value"],
            -5
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(matches!(decode(b"{}"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"k8s\0\x0a\xff"), Err(Error::Malformed(_))));
        let e = decode(&envelope("apps/v1", "Deployment", b"")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "protobuf bodies of apps/v1 Deployment are not supported yet; send JSON or YAML instead"
        );
    }
}
