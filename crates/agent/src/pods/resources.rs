//! The pod's and its containers' cgroups and resource limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::spec_containers;

/// The pod's cgroup under the QoS tiers, as the kubelet's cgroupfs layout.
pub(super) fn pod_cgroup(pod: &Pod, uid: &str) -> String {
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .unwrap_or("BestEffort");
    match qos {
        "Guaranteed" => format!("/rudder/pod{uid}"),
        "Burstable" => format!("/rudder/burstable/pod{uid}"),
        _ => format!("/rudder/besteffort/pod{uid}"),
    }
}

/// The pod group's limits, as upstream's `ResourceConfigForPod`: memory and CPU limits are
/// the sums of the app containers' (or the largest init container's, if larger) when every
/// container has one, CPU shares the sum of the requests.
pub(super) fn pod_limits(pod: &Pod) -> runtime::cgroups::Limits {
    let (inits, apps) = spec_containers(pod);
    let of =
        |cs: &[Container]| -> Vec<runtime::spec::Resources> { cs.iter().map(resources).collect() };
    let (inits, apps) = (of(&inits), of(&apps));
    let sum_or_none = |rs: &[runtime::spec::Resources],
                       f: &dyn Fn(&runtime::spec::Resources) -> Option<u64>| {
        rs.iter().map(f).sum::<Option<u64>>()
    };
    let need = |f: &dyn Fn(&runtime::spec::Resources) -> Option<u64>| -> Option<u64> {
        let apps = sum_or_none(&apps, f)?;
        let init = inits.iter().map(f).collect::<Option<Vec<u64>>>()?;
        Some(apps.max(init.into_iter().max().unwrap_or(0)))
    };
    let period = 100_000u64;
    // The RuntimeClass's overhead (`spec.overhead`) adds to each sum, as upstream's.
    let overhead = |k: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.overhead.as_ref())
            .and_then(|o| o.get(k))
            .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
    };
    let cpu_overhead = overhead("cpu").map_or(0, |q| q.milli().max(0) as u64);
    let memory_overhead = overhead("memory").map_or(0, |q| q.units().max(0) as u64);
    let memory = need(&|r| r.memory_limit.map(|m| m.max(0) as u64)).map(|m| m + memory_overhead);
    let quota =
        need(&|r| r.cpu_quota.map(|q| q.max(0) as u64)).map(|q| q + cpu_overhead * period / 1000);
    // Containers without a CPU request (the minimum 2 shares) add nothing.
    let overhead_shares = if cpu_overhead > 0 {
        runtime::spec::cpu_shares(cpu_overhead)
    } else {
        0
    };
    let shares = (need(&|r| Some(r.cpu_shares.filter(|s| *s > 2).unwrap_or(0))).unwrap_or(0)
        + overhead_shares)
        .max(2);
    runtime::cgroups::Limits {
        memory,
        cpu_shares: shares,
        cpu_quota: quota.map(|q| (q, period)),
    }
}

/// Limits from the container's resources.
pub(super) fn resources(c: &Container) -> runtime::spec::Resources {
    let r = c.resources.clone().unwrap_or_default();
    let get =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| {
            m.as_ref()
                .and_then(|m| m.get(k))
                .and_then(|q| api::quantity::Quantity::parse(&q.0).ok())
        };
    let cpu_req = get(&r.requests, "cpu").or_else(|| get(&r.limits, "cpu"));
    let cpu_lim = get(&r.limits, "cpu");
    let mem_lim = get(&r.limits, "memory");
    let period = 100_000u64;
    runtime::spec::Resources {
        cpu_shares: Some(
            cpu_req
                .map(|q| runtime::spec::cpu_shares(q.milli().max(0) as u64))
                .unwrap_or(2),
        ),
        cpu_quota: cpu_lim.map(|q| runtime::spec::cpu_quota(q.milli().max(0) as u64, period)),
        cpu_period: cpu_lim.map(|_| period),
        memory_limit: mem_lim.map(|q| q.units() as i64),
        pids_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_group_adds_the_runtime_class_overhead() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "overhead": {"cpu": "100m", "memory": "16Mi"},
                "containers": [{"name": "c", "resources": {
                    "limits": {"cpu": "250m", "memory": "32Mi"}}}]}}))
        .unwrap();
        let limits = pod_limits(&pod);
        assert_eq!(limits.memory, Some(48 << 20));
        assert_eq!(limits.cpu_quota, Some((35_000, 100_000)));
        assert_eq!(
            limits.cpu_shares,
            runtime::spec::cpu_shares(250) + runtime::spec::cpu_shares(100)
        );
    }
}
