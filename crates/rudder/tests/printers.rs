//! What `kubectl get` prints for the built-in kinds: upstream's columns (and `-o wide`'s), and
//! cells computed from the objects as upstream's printers compute them.

mod support;

use base64::Engine;
use support::Cluster;

/// One object of each kind whose table is checked below. None has a controller acting on it
/// here, so every cell is a function of what is applied.
const OBJECTS: &str = "
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl:5.34}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '0 3 * * *'
  timeZone: Etc/UTC
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: backup, image: busybox:1.36}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec:
  controller: k8s.io/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  tls: [{hosts: [web.example.com]}]
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec:
  podSelector: {matchLabels: {app: web}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: 'true'}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: hostpath.csi.k8s.io}
spec: {podInfoOnMount: true}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints: [{addresses: [10.42.0.7]}, {addresses: [10.42.0.8]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: local
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
  storageClassName: local
---
apiVersion: v1
kind: PodTemplate
metadata: {name: tpl}
template:
  metadata: {labels: {tier: web, app: tpl}}
  spec:
    containers: [{name: c, image: nginx}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: check}
webhooks: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules: []
";

/// A request for `CN=alice` (its key was thrown away).
const CSR_PEM: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHKMHICAQAwEDEOMAwGA1UEAwwFYWxpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAAQFcjg13/jschj/LtwzPIWl8Ve2VHaAjzCpZtkX5RaV9e1uU+EAVfC9PGmQ
l3M6dBHZRt3TRYmDHgmciYwYJUtzoAAwCgYIKoZIzj0EAwIDSAAwRQIhAMUKnj9K
J3Lk0sQLtRx6t31Ka+czyOuinhw6xVRpwZX2AiB1qZIHQh3nvfdrYe+Agvxc0JIS
S7eZmvW1Iej95f9dBg==
-----END CERTIFICATE REQUEST-----
";

/// Waits until the binder made `pv1` Available: the claim asks for more than the volume has,
/// so both stay unbound.
fn volume_available(c: &Cluster) {
    support::eventually("pv1 to be Available", || {
        c.kubectl(&["get", "pv", "pv1", "-o", "jsonpath={.status.phase}"])
            .stdout
            == "Available"
    });
}

/// Checks the header and the first row of `kubectl get <args>`, word by word (so column
/// widths do not matter; empty cells print as nothing). `AGE` in `row` stands for any age.
fn check(c: &Cluster, args: &[&str], header: &str, row: &str) {
    let mut full = vec!["get"];
    full.extend(args);
    let run = c.kubectl(&full);
    let mut lines = run.out().lines();
    let got_header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        got_header,
        header.split_whitespace().collect::<Vec<_>>(),
        "kubectl get {args:?}:\n{}",
        run.stdout
    );
    let got_row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let want_row: Vec<&str> = row.split_whitespace().collect();
    let same = got_row.len() == want_row.len()
        && got_row.iter().zip(&want_row).all(|(got, want)| {
            got == want || (*want == "AGE" && got.ends_with(['s', 'm', 'h', 'd', 'y']))
        });
    assert!(
        same,
        "kubectl get {args:?}: want row {want_row:?}, got\n{}",
        run.stdout
    );
}

#[test]
fn kubectl_get_prints_upstream_columns_for_each_kind() {
    // No Job or CronJob controller: the Job's status stays as applied; no CSR signer: the
    // approved request stays unissued.
    let c = Cluster::start(&["--disable-controller=job,cronjob,csrsigning"]);
    c.apply(OBJECTS).out();
    let request = base64::engine::general_purpose::STANDARD.encode(CSR_PEM);
    c.apply(&format!(
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: alice}}
spec:
  request: {request}
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 86400
  usages: [client auth]
"
    ))
    .out();

    check(
        &c,
        &["jobs"],
        "NAME STATUS COMPLETIONS DURATION AGE",
        "pi Running 0/2 AGE",
    );
    check(
        &c,
        &["jobs", "-o", "wide"],
        "NAME STATUS COMPLETIONS DURATION AGE CONTAINERS IMAGES SELECTOR",
        &format!(
            "pi Running 0/2 AGE pi perl:5.34 batch.kubernetes.io/controller-uid={}",
            c.kubectl(&["get", "job", "pi", "-o", "jsonpath={.metadata.uid}"])
                .out()
        ),
    );
    check(
        &c,
        &["cronjobs", "-o", "wide"],
        "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE CONTAINERS IMAGES SELECTOR",
        "nightly 0 3 * * * Etc/UTC False 0 <none> AGE backup busybox:1.36 <none>",
    );
    check(
        &c,
        &["hpa"],
        "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE",
        "web Deployment/web cpu: <unknown>/80% 2 10 0 AGE",
    );
    check(
        &c,
        &["pdb"],
        "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
        "web 1 N/A 0 AGE",
    );
    check(
        &c,
        &["ingressclasses"],
        "NAME CONTROLLER PARAMETERS AGE",
        "nginx k8s.io/ingress-nginx <none> AGE",
    );
    check(
        &c,
        &["ingresses"],
        "NAME CLASS HOSTS ADDRESS PORTS AGE",
        "web nginx web.example.com 80, 443 AGE",
    );
    check(
        &c,
        &["networkpolicies"],
        "NAME POD-SELECTOR AGE",
        "deny app=web AGE",
    );
    check(
        &c,
        &["storageclasses"],
        "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
        "local (default) rancher.io/local-path Delete WaitForFirstConsumer false AGE",
    );
    check(
        &c,
        &["csidrivers"],
        "NAME ATTACHREQUIRED PODINFOONMOUNT STORAGECAPACITY TOKENREQUESTS REQUIRESREPUBLISH MODES AGE",
        "hostpath.csi.k8s.io true true false <unset> false Persistent AGE",
    );
    check(
        &c,
        &["priorityclasses"],
        "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY",
        "high 1000 false AGE PreemptLowerPriority",
    );
    check(
        &c,
        &["runtimeclasses"],
        "NAME HANDLER AGE",
        "gvisor runsc AGE",
    );
    check(
        &c,
        &["endpointslices"],
        "NAME ADDRESSTYPE PORTS ENDPOINTS AGE",
        "web-abc IPv4 80 10.42.0.7,10.42.0.8 AGE",
    );
    volume_available(&c);
    check(
        &c,
        &["pv", "-o", "wide"],
        "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS \
         VOLUMEATTRIBUTESCLASS REASON AGE VOLUMEMODE",
        "pv1 1Gi RWO,ROX Retain Available local <unset> AGE Filesystem",
    );
    check(
        &c,
        &["pvc"],
        "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
        "data Pending local <unset> AGE",
    );
    check(
        &c,
        &["podtemplates"],
        "NAME CONTAINERS IMAGES POD LABELS",
        "tpl c nginx app=tpl,tier=web",
    );
    check(
        &c,
        &["validatingwebhookconfigurations"],
        "NAME WEBHOOKS AGE",
        "check 0 AGE",
    );
    check(
        &c,
        &["csr"],
        "NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION",
        "alice AGE kubernetes.io/kube-apiserver-client system:admin 24h Pending",
    );
    c.kubectl(&["certificate", "approve", "alice"]).out();
    check(
        &c,
        &["csr"],
        "NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION",
        "alice AGE kubernetes.io/kube-apiserver-client system:admin 24h Approved",
    );
    // No printer upstream: the default table, with the creation time itself.
    let created = c.kubectl(&[
        "get",
        "role",
        "reader",
        "-o",
        "jsonpath={.metadata.creationTimestamp}",
    ]);
    check(
        &c,
        &["roles"],
        "NAME CREATED AT",
        &format!("reader {}", created.out()),
    );
}
