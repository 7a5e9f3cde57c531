//! Rows written from an object's JSON text: what [`super::row`] makes of the decoded object,
//! without decoding all of it. The cells are computed from a copy holding only the fields
//! the resource's printer reads (where it says which, [`super::fields_read`]); the object or
//! its metadata is written from the text itself, its keys put in order, not decoded and
//! encoded again.
//!
//! The text must be as the store keeps objects: written by `serde_json` from a `Value`
//! (compact, every object's keys in order), except that the object's own keys and those of
//! its `metadata` may come in any order (the API server splices `resourceVersion` in front).
//! Decoding such text and encoding it again gives the same bytes, which is what makes the
//! rows written here the same as [`super::row`]'s. (One exception: `serde_json` reads floats
//! to within a unit in the last place, so a rare float in an object's fields can come back
//! changed from decoding; here it is written as stored, as the JSON LIST writes it.)

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::{Include, cells, fields_read};
use crate::resources::Resource;

/// What of a value to decode: all of it, or some of its members (of each element, for an
/// array).
#[derive(Debug, Default)]
pub(super) struct Wanted {
    all: bool,
    members: Vec<(&'static [u8], Wanted)>,
}

/// All of a value.
static ALL: Wanted = Wanted {
    all: true,
    members: Vec::new(),
};

impl Wanted {
    /// What the dotted `paths` name (`""`: all).
    pub(super) fn new(paths: &[&'static str]) -> Wanted {
        let mut wanted = Wanted::default();
        for path in paths {
            wanted.add(path);
        }
        wanted
    }

    fn add(&mut self, path: &'static str) {
        if path.is_empty() {
            self.all = true;
            return;
        }
        let (head, rest) = path.split_once('.').unwrap_or((path, ""));
        let i = match self.members.iter().position(|(k, _)| *k == head.as_bytes()) {
            Some(i) => i,
            None => {
                self.members.push((head.as_bytes(), Wanted::default()));
                self.members.len() - 1
            }
        };
        self.members[i].1.add(rest);
    }

    /// What of member `key` is wanted, if anything.
    fn member(&self, key: &[u8]) -> Option<&Wanted> {
        if self.all {
            return Some(&ALL);
        }
        self.members.iter().find(|(k, _)| *k == key).map(|(_, w)| w)
    }
}

/// Reads JSON text, skipping over values without decoding them.
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

/// Flags the bytes of `word` (read little-endian) that are `byte`: the high bit of each such
/// byte, and maybe of bytes above one.
const fn has_byte(word: u64, byte: u8) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let x = word ^ (ONES * byte as u64);
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Where the string whose text starts at `at` (past its opening quote) ends, past its
/// closing quote; whether it holds escapes.
fn string_end(text: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        // Eight bytes at a time while none ends the string or escapes.
        while let Some(word) = text.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let found = has_byte(word, b'"') | has_byte(word, b'\\');
            if found != 0 {
                // The lowest flag is always a true one.
                at += (found.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        match *text.get(at)? {
            b'"' => return Some((at + 1, escaped)),
            b'\\' => {
                escaped = true;
                at += 2;
            }
            _ => at += 1,
        }
    }
}

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8]) -> Self {
        Scanner { text, at: 0 }
    }

    /// The next byte that is not white space, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    /// Consumes `byte`, the next one that is not white space.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Past the string that comes next; whether it holds escapes.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let (end, escaped) = string_end(self.text, self.at)?;
        self.at = end;
        Some(escaped)
    }

    /// Past the value that comes next, not decoded.
    fn skip(&mut self) -> Option<()> {
        let text = self.text;
        let mut at = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
                return Some(());
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let byte = *text.get(at)?;
                    at += 1;
                    match byte {
                        b'"' => at = string_end(text, at)?.0,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                let scalar = at;
                while let Some(b) = text.get(at) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    at += 1;
                }
                if at == scalar {
                    return None;
                }
            }
        }
        self.at = at;
        Some(())
    }

    /// The value that comes next, decoded.
    fn decode(&mut self) -> Option<Value> {
        self.peek()?;
        let mut values =
            serde_json::Deserializer::from_slice(&self.text[self.at..]).into_iter::<Value>();
        let value = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(value)
    }

    /// The key of the member that comes next, and past the colon after it.
    fn key(&mut self) -> Option<Cow<'a, [u8]>> {
        self.peek()?;
        let start = self.at;
        let escaped = self.string()?;
        let written = &self.text[start..self.at];
        self.eat(b':')?;
        Some(if escaped {
            Cow::Owned(serde_json::from_slice::<String>(written).ok()?.into_bytes())
        } else {
            Cow::Borrowed(&written[1..written.len() - 1])
        })
    }

    /// Calls `each` on every member of the object that comes next, with the scanner before
    /// the member's value; `each` must take the scanner past the value.
    fn members(
        &mut self,
        mut each: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            each(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `each` on every element of the array that comes next, with the scanner before
    /// the element; `each` must take the scanner past it.
    fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Past the value that comes next, decoded as far as `wanted` asks: an object keeps the
    /// members wanted, an array applies `wanted` to each element, anything else is decoded
    /// whole.
    fn pruned(&mut self, wanted: &Wanted) -> Option<Value> {
        if wanted.all {
            return self.decode();
        }
        match self.peek()? {
            b'{' => {
                let mut map = Map::new();
                self.members(|s, key| match wanted.member(&key) {
                    None => s.skip(),
                    Some(below) => {
                        let value = s.pruned(below)?;
                        map.insert(String::from_utf8(key.into_owned()).ok()?, value);
                        Some(())
                    }
                })?;
                Some(Value::Object(map))
            }
            b'[' => {
                let mut items = Vec::new();
                self.elements(|s| {
                    items.push(s.pruned(wanted)?);
                    Some(())
                })?;
                Some(Value::Array(items))
            }
            _ => self.decode(),
        }
    }
}

/// The value of `text` decoded as far as `wanted` asks.
#[cfg(test)]
pub(super) fn pruned(text: &[u8], wanted: &Wanted) -> Option<Value> {
    let mut s = Scanner::new(text);
    let value = s.pruned(wanted)?;
    s.peek().is_none().then_some(value)
}

/// One member of a JSON object.
struct Member<'a> {
    /// The key (its text unescaped).
    key: Cow<'a, [u8]>,
    /// The value's text.
    value: &'a [u8],
}

/// The members of the object `text`, in the order written; `None` when `text` is no object.
fn members(text: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut s = Scanner::new(text);
    let mut out = Vec::new();
    s.members(|s, key| {
        s.peek()?;
        let start = s.at;
        s.skip()?;
        out.push(Member {
            key,
            value: &text[start..s.at],
        });
        Some(())
    })?;
    s.peek().is_none().then_some(out)
}

/// The members of the object `text` and the object decoded as far as `wanted` asks, in
/// one pass.
fn members_and_pruned<'a>(text: &'a [u8], wanted: &Wanted) -> Option<(Vec<Member<'a>>, Value)> {
    let mut s = Scanner::new(text);
    let (mut out, mut map) = (Vec::new(), Map::new());
    s.members(|s, key| {
        s.peek()?;
        let start = s.at;
        match wanted.member(&key) {
            None => s.skip()?,
            Some(below) => {
                let value = s.pruned(below)?;
                map.insert(String::from_utf8(key.to_vec()).ok()?, value);
            }
        }
        out.push(Member {
            key,
            value: &text[start..s.at],
        });
        Some(())
    })?;
    s.peek().is_none().then_some((out, Value::Object(map)))
}

/// The members sorted by key, as a `serde_json::Map` holds them; `None` if a key repeats.
fn sorted(mut members: Vec<Member<'_>>) -> Option<Vec<Member<'_>>> {
    members.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let repeats = members.windows(2).any(|w| w[0].key == w[1].key);
    (!repeats).then_some(members)
}

/// Writes an object of `members`, already in key order.
fn write_object(out: &mut Vec<u8>, members: &[Member<'_>]) {
    out.push(b'{');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if m.key.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
            let key = String::from_utf8_lossy(&m.key);
            serde_json::to_writer(&mut *out, &*key).expect("strings encode");
        } else {
            out.push(b'"');
            out.extend_from_slice(&m.key);
            out.push(b'"');
        }
        out.push(b':');
        out.extend_from_slice(m.value);
    }
    out.push(b'}');
}

/// The `metadata` object written in key order.
fn metadata_text(metadata: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(metadata.len() + 2);
    write_object(&mut out, &sorted(members(metadata)?)?);
    Some(out)
}

/// Appends to `out` the row of the object whose JSON text is `text`: the bytes
/// `serde_json::to_vec(&row(r, object, include, now))` gives for the object decoded. `None`
/// (and `out` as it was) when the text is not in the form this needs (see the module's
/// comment; a `metadata` that is not an object, say): decode it and use [`super::row`].
pub fn row_json(
    r: &Resource,
    text: &[u8],
    include: Include,
    now: Timestamp,
    out: &mut Vec<u8>,
) -> Option<()> {
    let len = out.len();
    let written = write_row(r, text, include, now, out);
    if written.is_none() {
        out.truncate(len);
    }
    written
}

fn write_row(
    r: &Resource,
    text: &[u8],
    include: Include,
    now: Timestamp,
    out: &mut Vec<u8>,
) -> Option<()> {
    let (top, slim) = members_and_pruned(text, fields_read(r).unwrap_or(&ALL))?;
    let top = sorted(top)?;
    let metadata = top.iter().find(|m| *m.key == *b"metadata")?.value;
    if !metadata.starts_with(b"{") {
        return None;
    }
    let metadata = match include {
        Include::None => None,
        Include::Metadata | Include::Object => Some(metadata_text(metadata)?),
    };
    out.extend_from_slice(b"{\"cells\":");
    serde_json::to_writer(&mut *out, &cells(r, &slim, now)).expect("JSON values always encode");
    match include {
        Include::None => {}
        Include::Metadata => {
            out.extend_from_slice(
                b",\"object\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
            );
            out.extend_from_slice(&metadata?);
            out.push(b'}');
        }
        Include::Object => {
            let string = |s: &str| serde_json::to_vec(s).expect("strings encode");
            let metadata = metadata?;
            let (kind, api_version) = (string(&r.kind), string(&r.api_version()));
            let mut object: Vec<Member<'_>> = top
                .into_iter()
                .filter(|m| !matches!(&*m.key, b"kind" | b"apiVersion"))
                .map(|m| match &*m.key {
                    b"metadata" => Member {
                        key: m.key,
                        value: &metadata,
                    },
                    _ => m,
                })
                .collect();
            object.push(Member {
                key: Cow::Borrowed(b"kind"),
                value: &kind,
            });
            object.push(Member {
                key: Cow::Borrowed(b"apiVersion"),
                value: &api_version,
            });
            object.sort_by(|a, b| a.key.cmp(&b.key));
            out.extend_from_slice(b",\"object\":");
            write_object(out, &object);
        }
    }
    out.push(b'}');
    Some(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::NOW;
    use super::super::{row, table, table_json};
    use super::*;
    use crate::resources::find;

    /// An object's text as the API server reads it from the store: `metadata` first, with
    /// `resourceVersion` spliced in front of the other metadata, the rest in key order.
    fn stored(obj: &Value, rv: u64) -> Vec<u8> {
        let mut obj = obj.clone();
        let meta = obj.as_object_mut().unwrap().remove("metadata").unwrap();
        let meta = serde_json::to_vec(&meta).unwrap();
        let mut out = format!("{{\"metadata\":{{\"resourceVersion\":\"{rv}\"").into_bytes();
        if meta.len() > 2 {
            out.push(b',');
        }
        out.extend_from_slice(&meta[1..meta.len() - 1]);
        out.push(b'}');
        for (k, v) in obj.as_object().unwrap() {
            out.push(b',');
            out.extend(serde_json::to_vec(k).unwrap());
            out.push(b':');
            out.extend(serde_json::to_vec(v).unwrap());
        }
        out.push(b'}');
        out
    }

    fn pods() -> Vec<Value> {
        vec![
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                    "labels": {"app": "bench", "shard": "1"}, "name": "pod-000001",
                    "namespace": "default", "uid": "b96331d7-b82f-4aff-8255-bd85d05dc082"},
                "spec": {"containers": [{"env": [{"name": "MODE", "value": "benchmark"}],
                    "image": "registry.example/app:1.0", "imagePullPolicy": "IfNotPresent",
                    "name": "app", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log"}],
                    "dnsPolicy": "ClusterFirst", "priority": 0, "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                    "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists", "tolerationSeconds": 300}]},
                "status": {"phase": "Pending", "qosClass": "Burstable"}}),
            json!({"metadata": {"name": "init", "namespace": "d",
                    "creationTimestamp": "2025-12-30T00:00:00Z",
                    "deletionTimestamp": "2026-01-01T00:59:00Z",
                    "annotations": {"a b": "x", "a": "y", "a\"q": "z", "é☃": "\u{1}\n\t\"\\/"},
                    "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
                "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"},
                        {"name": "setup", "image": "busybox"}],
                    "containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1",
                    "readinessGates": [{"conditionType": "example.com/ready"}],
                    "weights": [1.5, -0.25, 1e300, 18446744073709551615u64, -9223372036854775808i64, [], {}, null, true]},
                "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.7"}], "podIP": "10.42.0.7",
                    "nominatedNodeName": "n2",
                    "conditions": [{"type": "Ready", "status": "True"},
                        {"type": "example.com/ready", "status": "True"}],
                    "initContainerStatuses": [
                        {"name": "side", "started": true, "ready": true, "restartCount": 2,
                         "lastState": {"terminated": {"finishedAt": "2026-01-01T00:30:00Z"}}},
                        {"name": "setup", "state": {"terminated": {"exitCode": 0}}}],
                    "containerStatuses": [
                        {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}}},
                        {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            json!({"metadata": {"name": "bare"}}),
        ]
    }

    /// The Table the rows written from the stored text make, against [`table`]'s.
    fn same_table(group: &str, version: &str, plural: &str, objects: Vec<Value>) {
        let r = find(group, version, plural).unwrap();
        let now: Timestamp = NOW.parse().unwrap();
        let meta = json!({"resourceVersion": "99"});
        let texts: Vec<Vec<u8>> = objects
            .iter()
            .enumerate()
            .map(|(i, o)| stored(o, 10 + i as u64))
            .collect();
        let decoded: Vec<Value> = texts
            .iter()
            .map(|t| serde_json::from_slice(t).unwrap())
            .collect();
        for include in [Include::None, Include::Metadata, Include::Object] {
            let whole = table(r, decoded.clone(), include, meta.clone(), now);
            let mut rows = Vec::new();
            for (i, text) in texts.iter().enumerate() {
                if i > 0 {
                    rows.push(b',');
                }
                row_json(r, text, include, now, &mut rows).expect("written from the text");
            }
            assert_eq!(
                String::from_utf8(table_json(r, meta.clone(), &[rows])).unwrap(),
                serde_json::to_string(&whole).unwrap(),
                "{plural} {include:?}"
            );
        }
    }

    #[test]
    fn rows_from_stored_text_are_the_rows_of_the_decoded_objects() {
        same_table("", "v1", "pods", pods());
        let mut deploy = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        same_table("apps", "v1", "deployments", vec![deploy.clone()]);
        deploy["kind"] = json!("Deployment");
        deploy["apiVersion"] = json!("apps/v1beta9");
        same_table("apps", "v1", "deployments", vec![deploy]);
        let svc = json!({"metadata": {"name": "web", "namespace": "d"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"}}});
        same_table("", "v1", "services", vec![svc]);
        let cm =
            json!({"metadata": {"name": "cm", "namespace": "d"}, "data": {"k": "v", "k2": "é"}});
        same_table("", "v1", "configmaps", vec![cm.clone(), cm]);
        let lr = json!({"metadata": {"name": "lr", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}}]}});
        same_table("", "v1", "limitranges", vec![lr]);
        same_table(
            "",
            "v1",
            "nodes",
            vec![json!({"metadata": {"name": "n1"}, "status": {}})],
        );
        same_table("", "v1", "pods", vec![]);
    }

    #[test]
    fn text_in_another_form_is_left_to_the_decoded_object() {
        let pods = find("", "v1", "pods").unwrap();
        let now: Timestamp = NOW.parse().unwrap();
        for text in [
            &br#"{"spec":{}}"#[..],
            br#"{"metadata":null}"#,
            br#"{"metadata":{"name":"a","name":"b"}}"#,
            br#"["metadata"]"#,
            br#"{"metadata":{"name":"a"}"#,
        ] {
            let mut out = b"x".to_vec();
            assert!(row_json(pods, text, Include::Metadata, now, &mut out).is_none());
            assert_eq!(out, b"x");
        }
        let mut out = Vec::new();
        let text = br#" { "metadata" : { "name" : "a" } , "status" : { "phase" : "Running" } } "#;
        row_json(pods, text, Include::None, now, &mut out).unwrap();
        let obj: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(
            out,
            serde_json::to_vec(&row(pods, obj, Include::None, now)).unwrap()
        );
    }
}
