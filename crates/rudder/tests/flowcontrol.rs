//! API Priority and Fairness end to end: upstream's bootstrap FlowSchemas and priority levels
//! are served and printed as kubectl prints them, answers name the schema and level that
//! classified them, a schema without its level is marked `Dangling`, the mandatory objects
//! keep their specs and deleted suggested ones come back; a level without queues turns a
//! request away with 429 and `Retry-After` while its seat is taken, and a noisy flow that
//! fills its queue neither gets more nor holds back a quiet flow's write.
//!
//! A request holds its seat while its body arrives (as upstream's filter runs before the
//! body is read), so the tests take seats with `curl` uploads whose input stays open.

mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};

use support::Cluster;
use testkit::blocking::eventually;

const GROUP: &str = "flowcontrol.apiserver.k8s.io/v1";

/// A cluster whose token file knows `noisy`, `quiet` and `rejected`, who may edit `default`.
struct Apf {
    c: Cluster,
    _tokens: tempfile::NamedTempFile,
}

impl Apf {
    fn start(extra: &[&str]) -> Apf {
        let tokens = tempfile::NamedTempFile::new().unwrap();
        let users = "noisytoken,noisy,1\nquiettoken,quiet,2\nrejectedtoken,rejected,3\n";
        std::fs::write(tokens.path(), users).unwrap();
        let mut args = vec!["--token-auth-file", tokens.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let c = Cluster::start(&args);
        let binding = [
            "create",
            "rolebinding",
            "team",
            "--clusterrole=edit",
            "--user=noisy",
            "--user=quiet",
            "--user=rejected",
        ];
        c.kubectl(&binding).out();
        Apf { c, _tokens: tokens }
    }

    /// A curl of `path` with `user`'s token, writing the answer's headers, body and code.
    fn curl(&self, user: &str, path: &str) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-D", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.c.dir.path().join("tls/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {user}token")])
            .arg(format!("https://127.0.0.1:{}{path}", self.c.port));
        cmd
    }

    /// A GET as `user`: the code and the whole answer (headers, then body).
    fn get(&self, user: &str, path: &str) -> (u16, String) {
        let out = self.curl(user, path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = text
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        (code, text)
    }

    /// A GET as `user` left running.
    fn get_in_background(&self, user: &str, path: &str) -> Child {
        self.curl(user, path).stdout(Stdio::null()).spawn().unwrap()
    }

    /// A ConfigMap create as `user` whose body has not been sent yet: it holds a seat of its
    /// level (once it has one) until [`finish`] sends the body.
    fn held_create(&self, user: &str) -> Child {
        self.curl(user, "/api/v1/namespaces/default/configmaps")
            .args([
                "-X",
                "POST",
                "-T",
                "-",
                "-H",
                "Content-Type: application/json",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A `apiserver_flowcontrol_*` gauge of the requests of `schema`.
    fn gauge(&self, metric: &str, schema: &str) -> i64 {
        let text = self
            .c
            .kubectl(&["get", "--raw", "/metrics"])
            .out()
            .to_string();
        let prefix = format!("apiserver_flowcontrol_{metric}{{flow_schema=\"{schema}\",");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    }

    fn uid(&self, kind: &str, name: &str) -> String {
        let args = ["get", kind, name, "-o", "jsonpath={.metadata.uid}"];
        self.c.kubectl(&args).out().to_string()
    }
}

/// Sends a ConfigMap named `name` as the held create's body; the answer's code.
fn finish(mut create: Child, name: &str) -> u16 {
    let body =
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    let mut stdin = create.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let out = create.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.rsplit('\n')
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A limited priority level of `nominalConcurrencyShares: 1`, with `response`, and a schema
/// sending `user`'s requests to it.
fn level_and_schema(name: &str, user: &str, response: &str) -> String {
    format!(
        "apiVersion: {GROUP}
kind: PriorityLevelConfiguration
metadata: {{name: {name}}}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    limitResponse: {response}
---
apiVersion: {GROUP}
kind: FlowSchema
metadata: {{name: {user}}}
spec:
  priorityLevelConfiguration: {{name: {name}}}
  matchingPrecedence: 500
  distinguisherMethod: {{type: ByUser}}
  rules:
  - subjects: [{{kind: User, user: {{name: {user}}}}}]
    resourceRules:
    - {{verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true}}
"
    )
}

/// The headers of kubectl's table.
fn columns(table: &str) -> Vec<&str> {
    let first = table.lines().next().unwrap_or_default();
    first.split_whitespace().collect()
}

/// The whitespace-separated cells of the row of `name` in kubectl's table.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

// conformance: 35, 36
#[test]
fn the_bootstrap_configuration_classifies_requests_and_is_kept_in_place() {
    let apf = Apf::start(&[]);
    let c = &apf.c;
    let resources = c.kubectl(&["api-resources", "--api-group=flowcontrol.apiserver.k8s.io"]);
    assert!(
        resources.out().contains("flowschemas"),
        "{}",
        resources.stdout
    );
    assert!(resources.out().contains("prioritylevelconfigurations"));

    let levels = c
        .kubectl(&["get", "prioritylevelconfigurations"])
        .out()
        .to_string();
    let header = [
        "NAME",
        "TYPE",
        "NOMINALCONCURRENCYSHARES",
        "QUEUES",
        "HANDSIZE",
        "QUEUELENGTHLIMIT",
        "AGE",
    ];
    assert_eq!(columns(&levels), header);
    assert_eq!(
        row(&levels, "exempt")[1..6],
        ["Exempt", "<none>", "<none>", "<none>", "<none>"]
    );
    assert_eq!(
        row(&levels, "catch-all")[1..6],
        ["Limited", "5", "<none>", "<none>", "<none>"]
    );
    assert_eq!(
        row(&levels, "workload-low")[1..6],
        ["Limited", "100", "128", "6", "50"]
    );

    eventually("the schemas' Dangling conditions", || {
        let schemas = c.kubectl(&["get", "flowschemas"]).out().to_string();
        row(&schemas, "exempt")[1..4] == ["exempt", "1", "<none>"]
            && row(&schemas, "exempt").last().map(String::as_str) == Some("False")
    });
    let schemas = c.kubectl(&["get", "flowschemas"]).out().to_string();
    let header = [
        "NAME",
        "PRIORITYLEVEL",
        "MATCHINGPRECEDENCE",
        "DISTINGUISHERMETHOD",
        "AGE",
        "MISSINGPL",
    ];
    assert_eq!(columns(&schemas), header);
    assert_eq!(
        row(&schemas, "service-accounts")[1..4],
        ["workload-low", "9000", "ByUser"]
    );
    let order: Vec<&str> = schemas
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        order[..2],
        ["exempt", "probes"],
        "sorted by precedence as upstream prints"
    );
    assert_eq!(order.last(), Some(&"catch-all"));

    // A schema of its own classifies quiet's requests; everyone else falls to global-default.
    let limited = "{type: Queue, queuing: {queues: 8, handSize: 2, queueLengthLimit: 10}}";
    c.apply(&level_and_schema("team", "quiet", limited)).out();
    let (code, answer) = apf.get("quiet", "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 200, "{answer}");
    let header = |name: &str| {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        let line = answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix));
        line.map(|l| l[prefix.len()..].trim().to_string())
    };
    assert_eq!(
        header("X-Kubernetes-PF-FlowSchema-UID"),
        Some(apf.uid("flowschema", "quiet"))
    );
    assert_eq!(
        header("X-Kubernetes-PF-PriorityLevel-UID"),
        Some(apf.uid("prioritylevelconfiguration", "team"))
    );
    let (_, answer) = apf.get("noisy", "/api/v1/namespaces/default/configmaps");
    let global = apf.uid("flowschema", "global-default");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("x-kubernetes-pf-flowschema-uid: {global}")),
        "{answer}"
    );

    // A schema whose level does not exist is marked, and not used.
    let orphan = format!(
        "apiVersion: {GROUP}\nkind: FlowSchema\nmetadata: {{name: orphan}}\nspec:\n  priorityLevelConfiguration: {{name: nope}}\n  rules:\n  - subjects: [{{kind: Group, group: {{name: '*'}}}}]\n    nonResourceRules: [{{verbs: ['*'], nonResourceURLs: ['*']}}]\n"
    );
    c.apply(&orphan).out();
    c.kubectl(&[
        "wait",
        "--for=condition=Dangling",
        "flowschema/orphan",
        "--timeout=60s",
    ])
    .out();
    let printed = c
        .kubectl(&["get", "flowschema", "orphan"])
        .out()
        .to_string();
    assert_eq!(row(&printed, "orphan")[1..4], ["nope", "1000", "<none>"]);
    assert_eq!(
        row(&printed, "orphan").last().map(String::as_str),
        Some("True")
    );

    // The mandatory schemas' specs are fixed; a deleted suggested schema comes back.
    let patch = [
        "patch",
        "flowschema",
        "catch-all",
        "--type=merge",
        "-p",
        r#"{"spec":{"matchingPrecedence":9000}}"#,
    ];
    let refused = c.kubectl(&patch);
    assert!(
        refused
            .err()
            .contains("spec of 'catch-all' must equal the fixed value"),
        "{}",
        refused.stderr
    );
    let before = apf.uid("flowschema", "global-default");
    c.kubectl(&["delete", "flowschema", "global-default"]).out();
    eventually("global-default made again", || {
        let again = c.kubectl(&[
            "get",
            "flowschema",
            "global-default",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        again.ok && !again.stdout.is_empty() && again.stdout != before
    });
}

#[test]
fn a_full_level_turns_requests_away_and_a_noisy_flow_does_not_starve_a_quiet_one() {
    // One seat for the whole server: every limited level gets one.
    let apf = Apf::start(&[
        "--max-requests-inflight=1",
        "--max-mutating-requests-inflight=0",
    ]);
    let c = &apf.c;
    c.apply(&level_and_schema("no-queues", "rejected", "{type: Reject}"))
        .out();
    let queued = "{type: Queue, queuing: {queues: 8, handSize: 1, queueLengthLimit: 3}}";
    c.apply(&level_and_schema("shared", "noisy", queued)).out();
    c.apply(&level_and_schema("shared", "quiet", queued)).out();
    let list = "/api/v1/namespaces/default/configmaps";

    // Without queues: a second request while the seat is taken is turned away.
    let holder = apf.held_create("rejected");
    eventually("the create holding no-queues' seat", || {
        apf.gauge("current_executing_requests", "rejected") == 1
    });
    let (code, answer) = apf.get("rejected", list);
    assert_eq!(code, 429, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        answer.contains("Too many requests, please try again later."),
        "{answer}"
    );
    let watch = apf.get("rejected", &format!("{list}?watch=1&timeoutSeconds=1"));
    assert_eq!(watch.0, 429, "a watch needs a seat to start: {}", watch.1);
    assert_eq!(finish(holder, "first"), 201);
    assert_eq!(apf.get("rejected", list).0, 200);

    // With queues: noisy holds the seat and fills its queue; a fourth is turned away.
    let holder = apf.held_create("noisy");
    eventually("noisy holding shared's seat", || {
        apf.gauge("current_executing_requests", "noisy") == 1
    });
    let backlog: Vec<Child> = (0..3)
        .map(|_| apf.get_in_background("noisy", list))
        .collect();
    eventually("noisy's three LISTs queued", || {
        apf.gauge("current_inqueue_requests", "noisy") == 3
    });
    assert_eq!(apf.get("noisy", list).0, 429, "noisy's queue is full");

    // Quiet's write waits in a queue of its own and is served before noisy's backlog.
    let write = apf.held_create("quiet");
    eventually("quiet's create queued", || {
        apf.gauge("current_inqueue_requests", "quiet") == 1
    });
    assert_eq!(finish(holder, "noisy"), 201);
    eventually("quiet's create holding the seat", || {
        apf.gauge("current_executing_requests", "quiet") == 1
    });
    assert_eq!(
        apf.gauge("current_inqueue_requests", "noisy"),
        3,
        "noisy's backlog still waits"
    );
    assert_eq!(finish(write, "quiet"), 201);
    for mut list in backlog {
        list.wait().unwrap();
    }
    let rejected = c.kubectl(&["get", "--raw", "/metrics"]).out().to_string();
    let queue_full = "apiserver_flowcontrol_rejected_requests_total{flow_schema=\"noisy\",priority_level=\"shared\",reason=\"queue-full\"} 1";
    assert!(rejected.contains(queue_full), "{rejected}");
}
