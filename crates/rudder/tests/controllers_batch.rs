//! The batch controllers inside `rudder server`, driven through kubectl on simulated nodes:
//! Jobs run their pods to completion (in parallel, indexed, suspended and resumed), fail at
//! their backoff limit or deadline, CronJobs create Jobs on schedule, and finished Jobs with
//! a TTL are deleted.

mod support;

use std::time::{Duration, Instant};

use support::{Cluster, Simulator};

fn get(c: &Cluster, args: &[&str]) -> String {
    c.kubectl(args).stdout.trim().to_string()
}

/// Polls `cond` every 100 ms for up to `secs` seconds.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jsonpath(c: &Cluster, kind: &str, name: &str, path: &str) -> String {
    get(c, &["get", kind, name, "-o", &format!("jsonpath={path}")])
}

fn condition(c: &Cluster, job: &str, ty: &str, field: &str) -> String {
    jsonpath(
        c,
        "job",
        job,
        &format!("{{.status.conditions[?(@.type==\"{ty}\")].{field}}}"),
    )
}

/// The messages of the events about `name` with `reason`.
fn events(c: &Cluster, name: &str, reason: &str) -> String {
    get(
        c,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason={reason}"),
            "-o",
            "jsonpath={.items[*].message}",
        ],
    )
}

/// The columns `kubectl get` prints for one object.
fn columns(c: &Cluster, kind: &str, name: &str) -> Vec<String> {
    get(c, &["get", kind, name, "--no-headers"])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A Job of busybox pods that never restart, with `spec` (YAML lines at spec level) and pod
/// `annotations` (for the simulator).
fn job(name: &str, spec: &str, annotations: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    \
         metadata: {{annotations: {{{annotations}}}}}\n    spec:\n      restartPolicy: Never\n      \
         containers: [{{name: main, image: busybox}}]\n"
    )
}

// conformance: 229
#[test]
fn jobs_complete_their_pods_with_bounded_parallelism_and_indexes() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    // Every change to the pods of `pi`, to check how many ran at once.
    let watched = c.dir.path().join("pods.txt");
    let mut watch = c.kubectl_background(
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=pi",
            "-w",
            "-o",
            "jsonpath={.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}",
        ],
        &watched,
    );
    std::thread::sleep(Duration::from_millis(500));
    c.apply(&job("pi", "  completions: 5\n  parallelism: 2\n", ""))
        .out();
    c.apply(&job(
        "idx",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "",
    ))
    .out();
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{} {}", waited.stdout, waited.stderr);
    let _ = watch.kill();
    let _ = watch.wait();

    let cols = columns(&c, "job", "pi");
    assert_eq!(&cols[..3], ["pi", "Complete", "5/5"], "{cols:?}");
    assert_eq!(jsonpath(&c, "job", "pi", "{.status.succeeded}"), "5");
    assert!(!jsonpath(&c, "job", "pi", "{.status.completionTime}").is_empty());
    for ty in ["SuccessCriteriaMet", "Complete"] {
        assert_eq!(condition(&c, "pi", ty, "reason"), "CompletionsReached");
        assert_eq!(
            condition(&c, "pi", ty, "message"),
            "Reached expected number of succeeded pods"
        );
    }
    // The API server generated the selector and the pods' labels.
    let uid = jsonpath(&c, "job", "pi", "{.metadata.uid}");
    assert_eq!(
        jsonpath(
            &c,
            "job",
            "pi",
            "{.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}"
        ),
        uid
    );
    assert!(events(&c, "pi", "SuccessfulCreate").contains("Created pod: pi-"));
    assert_eq!(events(&c, "pi", "Completed"), "Job completed");

    // Never more than two running at once, by the watch.
    let mut running = std::collections::HashSet::new();
    let mut most = 0;
    let mut seen = std::collections::HashSet::new();
    for line in std::fs::read_to_string(&watched).unwrap().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = f.first() else { continue };
        seen.insert(name.to_string());
        let active = matches!(f.get(1), Some(&"Pending" | &"Running")) && f.len() == 2;
        if active {
            running.insert(name.to_string());
        } else {
            running.remove(*name);
        }
        most = most.max(running.len());
    }
    assert_eq!(seen.len(), 5, "pods seen: {seen:?}");
    assert!(most <= 2, "{most} pods ran at once");

    // Counted pods lose the tracking finalizer.
    wait_for("the finalizers removed", 30, || {
        get(
            &c,
            &[
                "get",
                "pods",
                "-l",
                "job-name=pi",
                "-o",
                "jsonpath={.items[*].metadata.finalizers}",
            ],
        )
        .is_empty()
    });

    // The Indexed Job's pods carry their index, hostname and variable.
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    assert_eq!(
        jsonpath(&c, "job", "idx", "{.status.completedIndexes}"),
        "0-2"
    );
    let pods = get(
        &c,
        &[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=idx",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} \
             {.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index} \
             {.metadata.labels.batch\\.kubernetes\\.io/job-completion-index} {.spec.hostname} \
             {.spec.containers[0].env[0].name}{\"\\n\"}{end}",
        ],
    );
    let mut indexes: Vec<String> = Vec::new();
    for line in pods.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "{line}");
        let ix = f[1];
        assert!(f[0].starts_with(&format!("idx-{ix}-")), "{line}");
        assert_eq!(f[2], ix, "{line}");
        assert_eq!(f[3], format!("idx-{ix}"), "{line}");
        assert_eq!(f[4], "JOB_COMPLETION_INDEX", "{line}");
        indexes.push(ix.to_string());
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
}

#[test]
fn jobs_fail_at_their_backoff_limit_or_deadline() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    c.apply(&job(
        "crash",
        "  backoffLimit: 1\n",
        "simulate.rudder.dev/exit-code: \"1\"",
    ))
    .out();
    c.apply(&job(
        "slow",
        "  activeDeadlineSeconds: 3\n",
        "simulate.rudder.dev/duration: 60s",
    ))
    .out();

    // Two failures (the second after a 10 s back-off) exceed a limit of one.
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/crash",
        "--timeout=90s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    assert_eq!(jsonpath(&c, "job", "crash", "{.status.failed}"), "2");
    for ty in ["FailureTarget", "Failed"] {
        assert_eq!(condition(&c, "crash", ty, "reason"), "BackoffLimitExceeded");
        assert_eq!(
            condition(&c, "crash", ty, "message"),
            "Job has reached the specified backoff limit"
        );
    }
    let cols = columns(&c, "job", "crash");
    assert_eq!(&cols[..3], ["crash", "Failed", "0/1"], "{cols:?}");
    assert_eq!(
        events(&c, "crash", "BackoffLimitExceeded"),
        "Job has reached the specified backoff limit"
    );
    let created = events(&c, "crash", "SuccessfulCreate");
    assert_eq!(created.matches("Created pod").count(), 2, "{created}");

    // The long pod outlives the deadline: deleted, counted as failed, the Job failed.
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=failed",
        "job/slow",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    assert_eq!(
        condition(&c, "slow", "Failed", "reason"),
        "DeadlineExceeded"
    );
    assert_eq!(
        condition(&c, "slow", "Failed", "message"),
        "Job was active longer than specified deadline"
    );
    assert_eq!(jsonpath(&c, "job", "slow", "{.status.failed}"), "1");
    assert_eq!(jsonpath(&c, "job", "slow", "{.status.active}"), "");
    assert!(events(&c, "slow", "SuccessfulDelete").contains("Deleted pod: slow-"));
    wait_for("the deadline job's pod gone", 30, || {
        get(&c, &["get", "pods", "-l", "job-name=slow", "-o", "name"]).is_empty()
    });
}

#[test]
fn suspended_jobs_delete_their_pods_and_resume() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "2"]);
    c.apply(&job(
        "pause",
        "  completions: 2\n  parallelism: 2\n",
        "simulate.rudder.dev/duration: 3s",
    ))
    .out();
    wait_for("two running pods", 30, || {
        jsonpath(&c, "job", "pause", "{.status.ready}") == "2"
    });
    c.kubectl(&[
        "patch",
        "job",
        "pause",
        "--type=merge",
        "-p",
        "{\"spec\":{\"suspend\":true}}",
    ])
    .out();
    wait_for("the Suspended condition", 30, || {
        condition(&c, "pause", "Suspended", "status") == "True"
    });
    assert_eq!(
        condition(&c, "pause", "Suspended", "reason"),
        "JobSuspended"
    );
    wait_for("the pods deleted", 30, || {
        get(&c, &["get", "pods", "-l", "job-name=pause", "-o", "name"]).is_empty()
    });
    assert_eq!(columns(&c, "job", "pause")[1], "Suspended");
    // Pods deleted for a suspension are not failures.
    assert_eq!(jsonpath(&c, "job", "pause", "{.status.failed}"), "");
    assert_eq!(jsonpath(&c, "job", "pause", "{.status.active}"), "");
    assert_eq!(events(&c, "pause", "Suspended"), "Job suspended");
    let started = jsonpath(&c, "job", "pause", "{.status.startTime}");

    std::thread::sleep(Duration::from_millis(1100));
    c.kubectl(&[
        "patch",
        "job",
        "pause",
        "--type=merge",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ])
    .out();
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/pause",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    assert_eq!(condition(&c, "pause", "Suspended", "status"), "False");
    assert_eq!(condition(&c, "pause", "Suspended", "reason"), "JobResumed");
    assert_eq!(events(&c, "pause", "Resumed"), "Job resumed");
    assert_ne!(jsonpath(&c, "job", "pause", "{.status.startTime}"), started);
    assert_eq!(jsonpath(&c, "job", "pause", "{.status.succeeded}"), "2");
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(&job("brief", "  ttlSecondsAfterFinished: 2\n", ""))
        .out();
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/brief",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    let finished = Instant::now();
    wait_for("the job deleted", 60, || {
        c.kubectl(&["get", "job", "brief"])
            .stderr
            .contains("not found")
    });
    assert!(
        finished.elapsed() >= Duration::from_secs(1),
        "deleted before its TTL"
    );
    wait_for("its pod deleted", 30, || {
        get(&c, &["get", "pods", "-l", "job-name=brief", "-o", "name"]).is_empty()
    });
}

const HELLO: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: hello}\nspec:\n  \
    schedule: \"* * * * *\"\n  timeZone: Europe/Paris\n  successfulJobsHistoryLimit: 1\n  \
    jobTemplate:\n    metadata: {labels: {app: hello}}\n    spec:\n      template:\n        \
    spec:\n          restartPolicy: Never\n          \
    containers: [{name: main, image: busybox}]\n";

#[test]
fn cron_jobs_create_jobs_on_schedule() {
    let c = Cluster::start(&[]);
    let _sim = Simulator::start(&c, &["--nodes", "1"]);
    c.apply(HELLO).out();
    let cols = columns(&c, "cronjob", "hello");
    assert_eq!(
        &cols[..10],
        [
            "hello",
            "*",
            "*",
            "*",
            "*",
            "*",
            "Europe/Paris",
            "False",
            "0",
            "<none>"
        ],
        "{cols:?}"
    );

    // A Job made by hand from the CronJob's template runs at once.
    c.kubectl(&["create", "job", "--from=cronjob/hello", "manual"])
        .out();
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/manual",
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);

    // The next minute's Job: within about a minute.
    let scheduled = || {
        get(
            &c,
            &[
                "get",
                "jobs",
                "-l",
                "app=hello",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
            ],
        )
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .find(|n| n.starts_with("hello-"))
    };
    wait_for("a scheduled job", 75, || scheduled().is_some());
    let name = scheduled().unwrap();
    let minutes: i64 = name["hello-".len()..].parse().unwrap();
    let at = jsonpath(
        &c,
        "job",
        &name,
        "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    // RFC 3339 in Paris time, at the minute the name counts.
    assert!(
        at.ends_with(":00+01:00") || at.ends_with(":00+02:00"),
        "{at}"
    );
    assert!(
        events(&c, "hello", "SuccessfulCreate").contains(&format!("Created job {name}")),
        "{}",
        events(&c, "hello", "SuccessfulCreate")
    );
    let last = jsonpath(&c, "cronjob", "hello", "{.status.lastScheduleTime}");
    let last: k8s_openapi::jiff::Timestamp = last.parse().unwrap();
    assert_eq!(last.as_second(), minutes * 60);
    // The first whole minute after the CronJob was created.
    let created = jsonpath(&c, "cronjob", "hello", "{.metadata.creationTimestamp}");
    let created: k8s_openapi::jiff::Timestamp = created.parse().unwrap();
    assert_eq!(minutes, created.as_second() / 60 + 1);

    // It completes: seen, recorded, and the older of the two finished Jobs goes (history
    // limit one).
    let waited = c.kubectl(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=60s",
    ]);
    assert!(waited.ok, "{}", waited.stderr);
    wait_for("the completed job seen", 30, || {
        events(&c, "hello", "SawCompletedJob")
            .contains(&format!("Saw completed job: {name}, status: Complete"))
    });
    wait_for("the last successful time", 30, || {
        !jsonpath(&c, "cronjob", "hello", "{.status.lastSuccessfulTime}").is_empty()
    });
    assert_eq!(jsonpath(&c, "cronjob", "hello", "{.status.active}"), "");
    wait_for("the manual job deleted", 30, || {
        c.kubectl(&["get", "job", "manual"])
            .stderr
            .contains("not found")
    });
    assert!(events(&c, "hello", "SuccessfulDelete").contains("Deleted job manual"));
}
