//! CustomResourceDefinitions with the real kubectl: a definition is served once established
//! (discovery, `api-resources`, get as a table, the scale subresource), survives a restart,
//! is refused with upstream's words when malformed, and takes its objects with it when
//! deleted; its objects are pruned, defaulted and validated by its schema and printed with
//! its columns.

mod support;

use support::Cluster;

const WIDGETS: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
";

const WIDGET: &str = "\
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: default}
spec: {replicas: 1, color: blue}
";

#[test]
fn custom_resources_are_served_while_their_definition_is() {
    let mut c = Cluster::start(&[]);
    assert_eq!(
        c.apply(WIDGETS).out().trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"
    );
    let established = c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    assert_eq!(
        established.out().trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com condition met"
    );
    let resources = c.kubectl(&["api-resources", "--api-group=example.com", "--no-headers"]);
    let row: Vec<&str> = resources.out().split_whitespace().collect();
    assert_eq!(row, ["widgets", "wd", "example.com/v1", "true", "Widget"]);

    assert_eq!(c.apply(WIDGET).out().trim(), "widget.example.com/w created");
    let table = c.kubectl(&["get", "wd"]);
    let lines: Vec<&str> = table.out().lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "AGE"]
    );
    assert!(lines[1].starts_with("w "), "{}", table.stdout);
    assert_eq!(
        c.kubectl(&["scale", "widget", "w", "--replicas=3"])
            .out()
            .trim(),
        "widget.example.com/w scaled"
    );
    let replicas = c.kubectl(&["get", "widget", "w", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas.out(), "3");
    // The `all` category takes it in.
    assert!(
        c.kubectl(&["get", "all", "-o", "name"])
            .out()
            .contains("widget.example.com/w")
    );

    // Served again as soon as the server is back.
    c.restart();
    let color = c.kubectl(&["get", "widgets", "w", "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color.out(), "blue");

    let definitions = c.kubectl(&["get", "crd"]);
    let header: Vec<&str> = definitions
        .out()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CREATED", "AT"]);

    let wrong = WIDGETS.replace("name: widgets.example.com", "name: gadgets.example.com");
    let refused = c.apply(&wrong);
    assert!(
        refused.err().contains(
            "metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"
        ),
        "{}",
        refused.stderr
    );

    // kubectl waits until the definition, and with it the widget, is gone.
    assert_eq!(
        c.kubectl(&["delete", "crd", "widgets.example.com"])
            .out()
            .trim(),
        "customresourcedefinition.apiextensions.k8s.io \"widgets.example.com\" deleted"
    );
    let gone = c.kubectl(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets",
    ]);
    assert!(gone.err().contains("NotFound"), "{}", gone.stderr);
    // Defined again, it starts empty.
    c.apply(WIDGETS).out();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ])
    .out();
    let none = c.kubectl(&["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(none.out(), "");
}

const GADGETS: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            properties:
              replicas: {type: integer, minimum: 0}
              color: {type: string, default: red, enum: [red, blue]}
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
";

#[test]
fn custom_objects_follow_their_schema() {
    let c = Cluster::start(&[]);
    c.apply(GADGETS).out();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
    ])
    .out();
    let gadget = |spec: &str| {
        format!("apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec: {spec}\n")
    };
    let refused = c.apply(&gadget("{replicas: many}"));
    assert!(
        refused.err().contains(
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        ),
        "{}",
        refused.stderr
    );
    let refused = c.apply(&gadget("{replicas: -1, color: green}"));
    let err = refused.err();
    assert!(
        err.contains("spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\""
        ),
        "{err}"
    );
    let refused = c.apply(&gadget("{color: blue}"));
    assert!(
        refused.err().contains("spec.replicas: Required value"),
        "{}",
        refused.stderr
    );

    // Defaults filled in; what the schema does not know is dropped.
    c.kubectl_in(
        &["create", "--validate=false", "-f", "-"],
        Some(&gadget("{replicas: 2, size: 9}")),
    )
    .out();
    let spec = c.kubectl(&["get", "gadget", "g", "-o", "jsonpath={.spec}"]);
    assert_eq!(spec.out(), r#"{"color":"red","replicas":2}"#);
    // The definition's printer columns.
    let table = c.kubectl(&["get", "gadgets"]);
    let rows: Vec<Vec<&str>> = table
        .out()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "REPLICAS", "COLOR", "AGE"]);
    assert_eq!(rows[1][..3], ["g", "2", "red"]);

    // The schema is published: kubectl explain reads it.
    let explain = c.kubectl(&["explain", "gadgets.spec.replicas"]);
    let text = explain.out();
    assert!(text.contains("KIND:       Gadget"), "{text}");
    assert!(text.contains("FIELD: replicas <integer>"), "{text}");

    let structural = GADGETS.replace(
        "replicas: {type: integer, minimum: 0}",
        "replicas: {minimum: 0}",
    );
    let refused = c.apply(&structural);
    assert!(
        refused.err().contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].type: Required value: must not be empty for specified object fields"
        ),
        "{}",
        refused.stderr
    );
}
