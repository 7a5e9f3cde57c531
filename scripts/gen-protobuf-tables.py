#!/usr/bin/env python3
"""Generates crates/api/src/protobuf/tables.rs from a checkout of k8s.io/api.

The protobuf decoder (crates/api/src/protobuf/mod.rs) is table-driven: for every message it
needs the field numbers, the JSON names and how each value becomes JSON. Those are facts of
the wire format, stated in k8s.io/api's `generated.proto` files (numbers and types) and in the
Go structs of `types.go` (JSON names, `omitempty`, pointers, inlined structs). This script reads
both and writes one table per message reachable from a served kind.

    git clone --depth 1 https://github.com/kubernetes/api /tmp/k8sapi
    scripts/gen-protobuf-tables.py /tmp/k8sapi "$(git -C /tmp/k8sapi rev-parse HEAD)" \
        > crates/api/src/protobuf/tables.rs && cargo fmt

Messages of k8s.io/apimachinery (ObjectMeta, Time, Quantity, ...) are written by hand in
mod.rs; the script refers to them by the names listed in APIMACHINERY.
"""

import os
import re
import sys

# group dir -> apiVersion prefix, for every group/version Rudder serves.
GROUPS = {
    "core/v1": "v1",
    "apps/v1": "apps/v1",
    "batch/v1": "batch/v1",
    "autoscaling/v1": "autoscaling/v1",
    "autoscaling/v2": "autoscaling/v2",
    "policy/v1": "policy/v1",
    "networking/v1": "networking.k8s.io/v1",
    "storage/v1": "storage.k8s.io/v1",
    "rbac/v1": "rbac.authorization.k8s.io/v1",
    "coordination/v1": "coordination.k8s.io/v1",
    "scheduling/v1": "scheduling.k8s.io/v1",
    "discovery/v1": "discovery.k8s.io/v1",
    "events/v1": "events.k8s.io/v1",
    "flowcontrol/v1": "flowcontrol.apiserver.k8s.io/v1",
    "certificates/v1": "certificates.k8s.io/v1",
    "node/v1": "node.k8s.io/v1",
    "admissionregistration/v1": "admissionregistration.k8s.io/v1",
    "authentication/v1": "authentication.k8s.io/v1",
    "authorization/v1": "authorization.k8s.io/v1",
}

# Kinds sent to subresources, which have no list of their own.
EXTRA_ROOTS = {("core/v1", "Binding"), ("policy/v1", "Eviction"), ("autoscaling/v1", "Scale"),
               ("authentication/v1", "TokenRequest"),
               ("authentication/v1", "TokenReview"),
               ("authentication/v1", "SelfSubjectReview"),
               # The access reviews: only created, never listed.
               ("authorization/v1", "SubjectAccessReview"),
               ("authorization/v1", "SelfSubjectAccessReview"),
               ("authorization/v1", "LocalSubjectAccessReview"),
               ("authorization/v1", "SelfSubjectRulesReview")}

META = ".k8s.io.apimachinery.pkg.apis.meta.v1."
# apimachinery message -> the Rust expression of its kind, written by hand in mod.rs.
APIMACHINERY = {
    META + "ObjectMeta": "Msg(&OBJECT_META)",
    META + "LabelSelector": "Msg(&LABEL_SELECTOR)",
    META + "Condition": "Msg(&CONDITION)",
    META + "OwnerReference": "Msg(&OWNER_REFERENCE)",
    META + "DeleteOptions": "Msg(&DELETE_OPTIONS)",
    META + "Time": "Time",
    META + "MicroTime": "MicroTime",
    ".k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    ".k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    ".k8s.io.apimachinery.pkg.runtime.RawExtension": "Raw",
}

FIELD = re.compile(r"^\s*(optional|repeated)\s+(\S+)\s+(\w+)\s*=\s*(\d+);")
MAP = re.compile(r"^\s*map<\s*string\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+);")
GO_STRUCT = re.compile(r"^type (\w+) struct \{")
GO_FIELD = re.compile(r'^\s*(?:(\w+)\s+)?(\S+)\s+`json:"([^"]*)"[^`]*protobuf:"([^"]*)"')


def parse_proto(path, package):
    """message name -> [(label, type, name, number)] with types fully qualified."""
    messages, current = {}, None
    with open(path) as f:
        for line in f:
            line = line.split("//")[0]
            m = re.match(r"^message (\w+) \{", line)
            if m:
                current = package + m.group(1)
                messages[current] = []
                continue
            if current is None:
                continue
            m = FIELD.match(line)
            if m:
                label, ty, name, num = m.groups()
                messages[current].append((label, qualify(ty, package), name, int(num)))
                continue
            m = MAP.match(line)
            if m:
                ty, name, num = m.groups()
                messages[current].append(("map", qualify(ty, package), name, int(num)))
    return messages


def qualify(ty, package):
    if ty in ("string", "bool", "int32", "int64", "bytes") or ty.startswith("."):
        return ty
    return package + ty


def parse_go(directory):
    """(struct, protobuf name) -> (json name, omitempty, pointer, inline)."""
    out = {}
    for file in sorted(os.listdir(directory)):
        if not file.endswith(".go") or file.startswith(("zz_", "generated")):
            continue
        struct = None
        with open(os.path.join(directory, file)) as f:
            for line in f:
                m = GO_STRUCT.match(line)
                if m:
                    struct = m.group(1)
                    continue
                if line.startswith("}"):
                    struct = None
                    continue
                m = GO_FIELD.match(line)
                if struct and m:
                    _, gotype, json, proto = m.groups()
                    named = re.search(r"name=(\w+)", proto)
                    # An embedded struct may carry no name= ; proto names it after its type.
                    pname = named.group(1) if named else gotype[0].lower() + gotype[1:]
                    parts = json.split(",")
                    out[(struct, pname)] = (
                        parts[0],
                        "omitempty" in parts[1:],
                        gotype.startswith("*"),
                        parts[0] == "" or "inline" in parts[1:],
                    )
    return out


def const_name(qualified):
    # .k8s.io.api.core.v1.PodSpec -> CORE_V1_POD_SPEC
    parts = qualified.split(".")
    group, version, name = parts[-3], parts[-2], parts[-1]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()
    return f"{group.upper()}_{version.upper()}_{snake}"


def main():
    root = sys.argv[1]
    messages, gofields, roots = {}, {}, []
    for group in GROUPS:
        package = ".k8s.io.api." + group.replace("/", ".") + "."
        messages.update(parse_proto(os.path.join(root, group, "generated.proto"), package))
        for (struct, pname), info in parse_go(os.path.join(root, group)).items():
            gofields[(package + struct, pname)] = info
    for group, api_version in GROUPS.items():
        package = ".k8s.io.api." + group.replace("/", ".") + "."
        for name, fields in messages.items():
            if not name.startswith(package):
                continue
            kind = name[len(package):]
            has_meta = any(f[2] == "metadata" and f[1] == META + "ObjectMeta" for f in fields)
            listed = name + "List" in messages
            if (has_meta and listed) or (group, kind) in EXTRA_ROOTS:
                roots.append((api_version, kind, name))

    reachable, todo = [], [r[2] for r in roots]
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.append(name)
        for _, ty, _, _ in messages[name]:
            # ExtraValue is a list of strings in JSON (MapRepStr), not a table of its own.
            if ty in messages and not ty.endswith(".ExtraValue"):
                todo.append(ty)

    body = []
    for name in sorted(reachable, key=const_name):
        body.append(f"pub(super) static {const_name(name)}: Msg = Msg {{ fields: &[")
        for label, ty, pname, num in messages[name]:
            json, omitempty, pointer, inline = gofields.get((name, pname), (pname, True, False, False))
            keep = pointer or not omitempty
            kind = field_kind(label, ty, keep, inline, messages)
            if kind is None:
                # A type of a group or version Rudder does not serve: the field is skipped.
                body.append(f"    // {num} {json}: {ty} is not decoded")
            else:
                body.append(f'    ({num}, "{json}", {kind}),')
        body.append("] };")
    used = sorted({m.group(1) for m in re.finditer(r"&([A-Z_]+)\)", "\n".join(body))
                   if not m.group(1).startswith(tuple(g.split("/")[0].upper() + "_" for g in GROUPS))})
    out = [
        "//! Message tables generated by `scripts/gen-protobuf-tables.py` from k8s.io/api",
        f"//! (commit {sys.argv[2] if len(sys.argv) > 2 else 'unknown'}). Do not edit by hand.",
        "",
        "use super::Kind::*;",
        "use super::{" + ", ".join(["Msg"] + used) + "};",
        "",
    ] + body
    out.append("")
    out.append("/// The table of a served apiVersion and kind.")
    out.append("pub(super) fn root(api_version: &str, kind: &str) -> Option<&'static Msg> {")
    out.append("    Some(match (api_version, kind) {")
    for api_version, kind, name in sorted(roots):
        out.append(f'        ("{api_version}", "{kind}") => &{const_name(name)},')
    out.append("        _ => return None,")
    out.append("    })")
    out.append("}")
    print("\n".join(out))


def field_kind(label, ty, keep, inline, messages):
    scalar = {"string": "Str", "bool": "Bool", "int32": "Int", "int64": "Int", "bytes": "Bytes"}
    if label == "map":
        values = {"string": "MapStr", "bytes": "MapBytes",
                  ".k8s.io.apimachinery.pkg.api.resource.Quantity": "MapQuantity",
                  META + "Time": "MapTime"}
        if ty in values:
            return values[ty]
        if ty.endswith(".ExtraValue"):
            return "MapRepStr"
        if ty in messages:
            return f"MapMsg(&{const_name(ty)})"
        return None
    if label == "repeated":
        if ty == "string":
            return "RepStr"
        if ty in ("int32", "int64"):
            return "RepInt"
        if ty in messages:
            return f"RepMsg(&{const_name(ty)})"
        if ty in APIMACHINERY and APIMACHINERY[ty].startswith("Msg("):
            return "Rep" + APIMACHINERY[ty]
        if ty in APIMACHINERY:
            return "RepRaw" if APIMACHINERY[ty] == "Raw" else None
        return None
    if ty in scalar:
        base = scalar[ty]
        return base + "Always" if keep and base in ("Str", "Bool", "Int") else base
    if ty in messages:
        return f"{'Inline' if inline else 'Msg'}(&{const_name(ty)})"
    if ty in APIMACHINERY:
        return APIMACHINERY[ty]
    return None


if __name__ == "__main__":
    main()
