//! Streaming into pods end to end, as root: `kubectl exec`, `cp` and `port-forward` against
//! real containers, over WebSocket (the kubectl matching the server, 1.33) and over SPDY
//! (kubectl 1.28).

#[path = "support/pods.rs"]
mod pods;
mod support;
#[path = "../../image/tests/support/testimage.rs"]
mod testimage;

use std::path::Path;
use std::process::{Command, Stdio};

use pods::{busybox, get, jsonpath, node_ready, patiently};
use support::{Cluster, Run, free_port, terminate};

/// kubectl 1.28, which speaks SPDY only.
const KUBECTL_SPDY: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.28";

/// Runs a given kubectl binary against the cluster.
fn kubectl_bin(c: &Cluster, bin: &str, args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The exit code of a kubectl run (through `sh -c`, which keeps it).
fn exit_code(c: &Cluster, bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs kubectl on a terminal of its own (script(1)), typing `lines` into it a second apart;
/// what the terminal showed.
fn on_terminal(c: &Cluster, args: &[&str], lines: &[&str]) -> String {
    use std::io::Write;
    let command = format!(
        "kubectl --kubeconfig {} {}",
        c.kubeconfig().display(),
        args.join(" ")
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    for line in lines {
        std::thread::sleep(std::time::Duration::from_secs(2));
        keys.write_all(line.as_bytes()).unwrap();
        keys.write_all(b"\r").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn web_pod(image: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {image}
    command: [sh, -c, 'mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www']
    workingDir: /tmp
    env: [{{name: GREETING, value: bonjour}}]
    securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
  - name: side
    image: {image}
    command: [sleep, '3600']
"
    )
}

fn run_pod(c: &Cluster, manifest: &str, name: &str) {
    c.apply(manifest).out();
    patiently("the pod to run", 90, || {
        jsonpath(c, &["pod", name], "{.status.phase}") == "Running"
            && jsonpath(c, &["pod", name], "{.status.containerStatuses[*].ready}")
                .split(' ')
                .all(|r| r == "true")
    });
}

// conformance: 305
#[test]
fn exec_and_cp_over_websocket_and_spdy() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-s", 206, &[]);
    node_ready(&c, "node-s");
    service_links_in_the_environment(&c, &image.name);
    exec_over_websocket_and_spdy(&c);
    exec_refusals(&c, &image.name);
    terminal_and_debug(&c, &image.name);
    let dir = tempfile::tempdir().unwrap();
    cp_both_ways(&c, dir.path());
    a_client_going_away_kills_its_process(&c, dir.path());
    several_sessions_at_once(&c);
}

/// A Service created before the pod: its link variables are in the pod's environment.
fn service_links_in_the_environment(c: &Cluster, image: &str) {
    c.kubectl(&["create", "service", "clusterip", "my-db", "--tcp=5432:5432"])
        .out();
    run_pod(c, &web_pod(image), "web");
    let env = get(c, &["exec", "web", "-c", "httpd", "--", "env"]);
    let ip = jsonpath(c, &["service", "my-db"], "{.spec.clusterIP}");
    assert!(env.contains(&format!("MY_DB_SERVICE_HOST={ip}\n")), "{env}");
    assert!(
        env.contains(&format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432\n")),
        "{env}"
    );
    assert!(env.contains("KUBERNETES_SERVICE_PORT=443\n"), "{env}");
}

/// Exec over WebSocket and over SPDY: output, input, exit codes, either container.
fn exec_over_websocket_and_spdy(c: &Cluster) {
    for bin in ["kubectl", KUBECTL_SPDY] {
        let k = |args: &[&str], stdin: Option<&str>| kubectl_bin(c, bin, args, stdin);
        // Output, in the container's namespaces with its user, directory and environment.
        let out = k(
            &[
                "exec",
                "web",
                "-c",
                "httpd",
                "--",
                "sh",
                "-c",
                "id -u; pwd; echo $GREETING; hostname; echo oops >&2",
            ],
            None,
        );
        assert!(out.ok, "{bin}: {}", out.stderr);
        assert_eq!(out.stdout, "1000\n/tmp\nbonjour\nweb\n", "{bin}");
        assert_eq!(out.stderr, "oops\n", "{bin}");
        // Standard input, to its end.
        let out = k(
            &["exec", "-i", "web", "-c", "httpd", "--", "cat"],
            Some("one\ntwo\n"),
        );
        assert_eq!(out.stdout, "one\ntwo\n", "{bin}: {}", out.stderr);
        // The exit code comes back.
        let (code, err) = exit_code(
            c,
            bin,
            &["exec", "web", "-c", "httpd", "--", "sh", "-c", "exit 3"],
        );
        assert_eq!(code, 3, "{bin}: {err}");
        assert!(
            err.contains("command terminated with exit code 3"),
            "{bin}: {err}"
        );
        // A command that does not exist: 127, as upstream's runtimes.
        let (code, err) = exit_code(
            c,
            bin,
            &["exec", "web", "-c", "httpd", "--", "no-such-command"],
        );
        assert_eq!(code, 127, "{bin}: {err}");
        assert!(err.contains("no-such-command"), "{bin}: {err}");
        // The other container of the pod.
        let out = k(&["exec", "web", "-c", "side", "--", "id", "-u"], None);
        assert_eq!(out.stdout, "0\n", "{bin}: {}", out.stderr);
    }
}

/// Upstream's refusals: no such container or pod, a container not running, a finished pod.
fn exec_refusals(c: &Cluster, image: &str) {
    // Upstream's refusals.
    let err = c
        .kubectl(&["exec", "web", "-c", "nope", "--", "true"])
        .err()
        .to_string();
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = c
        .kubectl(&["exec", "absent", "--", "true"])
        .err()
        .to_string();
    assert!(err.contains("pods \"absent\" not found"), "{err}");
    // A pod whose container does not run (its image is missing), and a finished pod.
    c.kubectl(&["run", "stuck", "--image", "127.0.0.1:1/none:1"])
        .out();
    let err = c
        .kubectl(&["exec", "stuck", "--", "true"])
        .err()
        .to_string();
    assert!(err.contains("container not found (\"stuck\")"), "{err}");
    c.kubectl(&[
        "run",
        "done",
        "--image",
        image,
        "--restart=Never",
        "--",
        "true",
    ])
    .out();
    patiently("the pod to finish", 60, || {
        jsonpath(c, &["pod", "done"], "{.status.phase}") == "Succeeded"
    });
    let err = c.kubectl(&["exec", "done", "--", "true"]).err().to_string();
    assert!(
        err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{err}"
    );
}

/// A terminal, and `kubectl debug` with an ephemeral container sharing the target's processes.
fn terminal_and_debug(c: &Cluster, image: &str) {
    // A terminal: kubectl under a pseudo-terminal of its own (script(1)).
    let script = format!(
        "kubectl --kubeconfig {} exec -it web -c httpd -- busybox tty",
        c.kubeconfig().display()
    );
    let out = Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");

    // kubectl debug: an ephemeral container that sees the target container's processes.
    let text = on_terminal(
        c,
        &[
            "debug",
            "-it",
            "web",
            "--image",
            image,
            "--target=httpd",
            "-c",
            "dbg",
            "--",
            "sh",
        ],
        &["ps", "exit"],
    );
    assert!(text.contains("httpd -f -p 8080"), "{text}");
    patiently("the ephemeral container to end", 60, || {
        jsonpath(
            c,
            &["pod", "web"],
            "{.status.ephemeralContainerStatuses[0].state.terminated.exitCode}",
        ) == "0"
    });
}

/// `kubectl cp`, both ways (tar through exec).
fn cp_both_ways(c: &Cluster, dir: &Path) {
    let local = dir.join("note.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    let local_s = local.display().to_string();
    c.kubectl(&["cp", &local_s, "web:/tmp/note.txt", "-c", "httpd"])
        .out();
    let out = c.kubectl(&["exec", "web", "-c", "httpd", "--", "cat", "/tmp/note.txt"]);
    assert_eq!(out.out(), "copied in\n");
    let back = dir.join("back.txt");
    c.kubectl(&[
        "cp",
        "web:/tmp/note.txt",
        &back.display().to_string(),
        "-c",
        "httpd",
    ])
    .out();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");
}

/// A client that goes away: its process is killed.
fn a_client_going_away_kills_its_process(c: &Cluster, dir: &Path) {
    let log = dir.join("sleep.log");
    let child = c.kubectl_background(&["exec", "web", "-c", "side", "--", "sleep", "4321"], &log);
    patiently("the exec'd sleep to run", 30, || {
        get(c, &["exec", "web", "-c", "side", "--", "ps"]).contains("sleep 4321")
    });
    terminate(child);
    patiently("the exec'd sleep to be killed", 30, || {
        !get(c, &["exec", "web", "-c", "side", "--", "ps"]).contains("sleep 4321")
    });
}

/// Several kubectl sessions at once (kube-rs runs 100 in the port-forward test).
fn several_sessions_at_once(c: &Cluster) {
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let kubeconfig = c.kubeconfig();
            std::thread::spawn(move || {
                let out = Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .args(["exec", "web", "-c", "side", "--", "echo", &i.to_string()])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), i.to_string());
    }
}

/// Starts `kubectl port-forward` and waits until it listens on `local`.
fn port_forward(
    c: &Cluster,
    bin: &str,
    target: &str,
    ports: &[String],
    log: &Path,
) -> std::process::Child {
    let child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .arg("port-forward")
        .arg(target)
        .args(ports)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    patiently("kubectl port-forward to listen", 30, || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("Forwarding from")
            .count()
            >= ports.len()
    });
    child
}

// conformance: 360
#[test]
fn port_forward_over_websocket_and_spdy() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-p", 207, &[]);
    node_ready(&c, "node-p");
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: two}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: {image}
    command: [sh, -c, 'mkdir -p /w && echo port-a > /w/index.html && exec httpd -f -p 8080 -h /w']
  - name: b
    image: {image}
    command: [sh, -c, 'mkdir -p /w && seq 1 200000 > /w/index.html && exec httpd -f -p 9090 -h /w']
",
        image = image.name
    );
    run_pod(&c, &manifest, "two");
    let dir = tempfile::tempdir().unwrap();
    for (i, bin) in ["kubectl", KUBECTL_SPDY].into_iter().enumerate() {
        let (pa, pb) = (free_port(), free_port());
        let log = dir.path().join(format!("pf{i}.log"));
        let child = port_forward(
            &c,
            bin,
            "pod/two",
            &[format!("{pa}:8080"), format!("{pb}:9090")],
            &log,
        );
        // Several connections at once, on both ports.
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let port = if n % 2 == 0 { pa } else { pb };
                std::thread::spawn(move || pods::http_get_path("127.0.0.1", port, "/"))
            })
            .collect();
        for (n, t) in threads.into_iter().enumerate() {
            let body = t.join().unwrap().unwrap_or_default();
            if n % 2 == 0 {
                let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
                assert!(body.ends_with("port-a\n"), "{bin}: {body} {err}");
            } else {
                assert!(
                    body.ends_with("199999\n200000\n"),
                    "{bin}: {} bytes",
                    body.len()
                );
            }
        }
        terminate(child);
    }

    kube_rs_exec_and_port_forward(&c);
    logs_over_websocket(&c, &image.name);
    exec_over_every_websocket_protocol(&c);

    // The pod goes away: kubectl port-forward ends.
    let log = dir.path().join("gone.log");
    let port = free_port();
    let mut child = port_forward(&c, "kubectl", "pod/two", &[format!("{port}:8080")], &log);
    assert!(pods::http_get_path("127.0.0.1", port, "/").is_some_and(|b| b.ends_with("port-a\n")));
    c.kubectl(&["delete", "pod", "two", "--wait=false"]).out();
    patiently("kubectl port-forward to end", 60, || {
        child.try_wait().unwrap().is_some()
    });
}

#[test]
fn attach_and_run_interactively() {
    let image = busybox();
    let c = Cluster::start_with_agent("node-i", 208, &[]);
    node_ready(&c, "node-i");

    // kubectl run -i: stdin reaches the container (stdinOnce), its output comes back, and the
    // pod is deleted after.
    for bin in ["kubectl", KUBECTL_SPDY] {
        let out = kubectl_bin(
            &c,
            bin,
            &[
                "run",
                "asks",
                "-i",
                "--rm",
                "--restart=Never",
                "--image",
                &image.name,
                "--",
                "sh",
                "-c",
                "read x; echo got $x",
            ],
            Some("hello\n"),
        );
        assert!(out.ok, "{bin}: {}", out.stderr);
        // kubectl says on stderr when it fell back to the logs, and why.
        assert!(
            out.stdout.contains("got hello"),
            "{bin}: {} (stderr: {})",
            out.stdout,
            out.stderr
        );
        patiently("the pod to go", 60, || {
            !get(&c, &["get", "pods", "-o", "name"]).contains("asks")
        });
    }

    // A container on a terminal: kubectl attach -it from a terminal of its own (script(1)).
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: shell}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: {}
    stdin: true
    tty: true
    command: [sh]
",
        image.name
    );
    run_pod(&c, &manifest, "shell");
    let text = on_terminal(
        &c,
        &["attach", "-it", "shell"],
        &["echo attached-$((6*7))", "exit"],
    );
    assert!(text.contains("attached-42"), "{text}");
    // The shell exited: the container completed, and its terminal output is in its log.
    patiently("the shell to end", 60, || {
        jsonpath(&c, &["pod", "shell"], "{.status.phase}") == "Succeeded"
    });
    assert!(get(&c, &["logs", "shell"]).contains("attached-42"));
}

/// kube-rs' AttachedProcess (WebSocket v5: stdin closed, the status) and port-forward
/// (WebSocket channels), and 100 exec sessions at once, against pod `two`.
fn kube_rs_exec_and_port_forward(c: &Cluster) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pods: Api<Pod> = Api::namespaced(c.kube_client().await, "default");
        let params = AttachParams::default()
            .container("a")
            .stdin(true)
            .stdout(true)
            .stderr(false);
        let mut cat = pods.exec("two", ["cat"], &params).await.unwrap();
        let mut stdin = cat.stdin().unwrap();
        stdin.write_all(b"through kube-rs\n").await.unwrap();
        // The end of stdin (v5's close signal); dropping the writer half would not say it.
        stdin.shutdown().await.unwrap();
        let mut out = String::new();
        cat.stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "through kube-rs\n");
        let status = cat.take_status().unwrap().await.unwrap();
        assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

        let params = AttachParams::default().container("a").stderr(false);
        let mut failing = pods
            .exec("two", ["sh", "-c", "exit 5"], &params)
            .await
            .unwrap();
        let status = failing.take_status().unwrap().await.unwrap();
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
        assert_eq!(causes[0].message.as_deref(), Some("5"));

        // 100 sessions at once.
        let sessions = (0..100).map(|i| {
            let pods = pods.clone();
            async move {
                let params = AttachParams::default().container("a").stderr(false);
                let mut p = pods
                    .exec("two", ["echo", &i.to_string()], &params)
                    .await
                    .unwrap();
                let mut out = String::new();
                p.stdout().unwrap().read_to_string(&mut out).await.unwrap();
                let status = p.take_status().unwrap().await.unwrap();
                (out, status.status)
            }
        });
        for (i, (out, status)) in futures::future::join_all(sessions)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(out, format!("{i}\n"));
            assert_eq!(status.as_deref(), Some("Success"));
        }

        // Both ports at once: the session ends when every port's connection has.
        let mut pf = pods.portforward("two", &[8080, 9090]).await.unwrap();
        let fetch = |mut conn: tokio::io::DuplexStream| async move {
            conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut body = String::new();
            conn.read_to_string(&mut body).await.unwrap();
            body
        };
        let (a, b) = tokio::join!(
            fetch(pf.take_stream(8080).unwrap()),
            fetch(pf.take_stream(9090).unwrap())
        );
        assert!(a.ends_with("port-a\n"), "{a}");
        assert!(b.ends_with("199999\n200000\n"), "{} bytes", b.len());
    });
}

/// `pods/{name}/log` over a WebSocket, as upstream's conformance test reads it: binary
/// messages (`binary.k8s.io`) or base64 text (`base64.binary.k8s.io`).
fn logs_over_websocket(c: &Cluster, image: &str) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'echo container is alive; sleep 3600']
"
    );
    run_pod(c, &manifest, "talker");
    patiently("the log line", 30, || {
        get(c, &["logs", "talker"]) == "container is alive"
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.kube_client().await;
        for protocol in ["binary.k8s.io", "base64.binary.k8s.io"] {
            let mut ws = open_websocket(
                &client,
                "/api/v1/namespaces/default/pods/talker/log?container=main",
                protocol,
            )
            .await;
            let mut got = Vec::new();
            while let Some(msg) = ws.next().await {
                match msg.unwrap() {
                    Message::Binary(b) => got.extend_from_slice(&b),
                    Message::Text(t) => {
                        use base64::Engine as _;
                        got.extend(
                            base64::engine::general_purpose::STANDARD
                                .decode(t.as_str())
                                .unwrap(),
                        )
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            assert_eq!(
                String::from_utf8(got).unwrap(),
                "container is alive\n",
                "{protocol}"
            );
        }
    });
}

/// `pods/{name}/exec` over a raw WebSocket in each protocol upstream serves: the legacy
/// `channel.k8s.io` and `base64.channel.k8s.io` as upstream's conformance test uses them, and
/// v4 with stdin sent as a text frame, as the Python client sends it. Runs in `talker`.
// conformance: 359
fn exec_over_every_websocket_protocol(c: &Cluster) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let decode = |protocol: &str, msg: Message| -> Option<(u8, Vec<u8>)> {
        use base64::Engine as _;
        match msg {
            Message::Binary(b) if !b.is_empty() => Some((b[0], b[1..].to_vec())),
            Message::Text(t) if protocol.starts_with("base64.") && !t.is_empty() => Some((
                t.as_bytes()[0] - b'0',
                base64::engine::general_purpose::STANDARD
                    .decode(&t.as_bytes()[1..])
                    .unwrap(),
            )),
            _ => None,
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = c.kube_client().await;
        for (protocol, command, stdin) in [
            (
                "channel.k8s.io",
                "command=echo&command=remote&stdout=true",
                None,
            ),
            (
                "base64.channel.k8s.io",
                "command=echo&command=remote&stdout=true",
                None,
            ),
            (
                "v4.channel.k8s.io",
                "command=head&command=-c&command=6&stdin=true&stdout=true",
                Some("\u{0}remote"),
            ),
        ] {
            let uri =
                format!("/api/v1/namespaces/default/pods/talker/exec?container=main&{command}");
            let mut ws = open_websocket(&client, &uri, protocol).await;
            if let Some(text) = stdin {
                ws.send(Message::Text(text.into())).await.unwrap();
            }
            let (mut stdout, mut errors) = (Vec::new(), Vec::new());
            while let Some(msg) = ws.next().await {
                let msg = msg.unwrap();
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                match decode(protocol, msg) {
                    Some((1, data)) => stdout.extend(data),
                    Some((3, data)) => errors.extend(data),
                    _ => {}
                }
            }
            let expected = if stdin.is_some() {
                "remote"
            } else {
                "remote\n"
            };
            assert_eq!(String::from_utf8(stdout).unwrap(), expected, "{protocol}");
            let errors = String::from_utf8(errors).unwrap();
            if protocol.starts_with("v4") {
                assert!(errors.contains("\"Success\""), "{protocol}: {errors}");
            } else {
                assert_eq!(
                    errors, "",
                    "{protocol}: a success writes nothing on the error channel"
                );
            }
        }
    });
}

/// A WebSocket to `uri` through the API server, in `protocol`, checked to be the one agreed.
async fn open_websocket(
    client: &kube::Client,
    uri: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    let req = hyper::Request::get(uri)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .header("sec-websocket-protocol", protocol)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status(), 101, "{protocol}");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    let io = hyper::upgrade::on(resp).await.unwrap();
    tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(io),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await
}
