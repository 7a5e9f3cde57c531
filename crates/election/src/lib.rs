//! Leader election on a `coordination.k8s.io` Lease, as upstream's components do it: several
//! scheduler (or controller-manager) processes may run, one holds the Lease and works, the
//! others wait and take over once it stops renewing.
//!
//! Owns: the Lease protocol (take, renew, give up). Must not: know what the elected process
//! does. Start reading at [`acquire`] and [`keep`].
//!
//! The holder renews `renewTime` every retry period; a candidate takes the Lease when the
//! holder has not renewed it for `leaseDurationSeconds`. Writes carry the resourceVersion
//! read, so two candidates cannot both win. A holder that cannot renew within the renew
//! deadline gives up leadership.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Timing of the election (upstream's `--leader-elect-*` flags).
#[derive(Debug, Clone)]
pub struct Election {
    /// `kube-system/<name>`.
    pub name: String,
    /// This process's identity in `holderIdentity`.
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up.
    pub renew_deadline: Duration,
    /// How often candidates try and holders renew.
    pub retry_period: Duration,
}

impl Election {
    /// Upstream's defaults (15 s, 10 s, 2 s) for the Lease `kube-system/<name>`.
    pub fn new(name: &str) -> Election {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "rudder".into());
        Election {
            name: name.into(),
            identity: format!("{host}_{}", std::process::id()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Whether the Lease is free for `me`: unheld, mine, or not renewed for its duration.
fn free_for(lease: &Lease, me: &str) -> bool {
    let Some(spec) = &lease.spec else {
        return true;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    jiff::Timestamp::now().as_second() > renewed + duration
}

/// One attempt to take or renew the Lease; whether this process holds it afterwards.
async fn try_hold(api: &Api<Lease>, e: &Election) -> Result<bool, kube::Error> {
    let me = e.identity.as_str();
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(e.lease_duration.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(&e.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(e.name.clone()),
                ..Default::default()
            },
            spec: Some(spec(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        };
    };
    if !free_for(&lease, me) {
        return Ok(false);
    }
    let old = lease.spec.clone().unwrap_or_default();
    let ours = old.holder_identity.as_deref() == Some(me);
    let transitions = old.lease_transitions.unwrap_or(0) + i32::from(!ours);
    lease.spec = Some(spec(
        transitions,
        if ours { old.acquire_time } else { None },
    ));
    match api.replace(&e.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Waits until this process holds the Lease.
pub async fn acquire(client: &kube::Client, e: &Election) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    loop {
        match try_hold(&api, e).await {
            Ok(true) => {
                tracing::info!("{} acquired the lease kube-system/{}", e.identity, e.name);
                return;
            }
            Ok(false) => {}
            Err(err) => tracing::debug!("leader election: {err}"),
        }
        tokio::time::sleep(e.retry_period).await;
    }
}

/// Renews the Lease until renewing fails for longer than the renew deadline, or someone else
/// holds it; then returns (leadership is lost).
pub async fn keep(client: &kube::Client, e: &Election) {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(e.retry_period).await;
        match try_hold(&api, e).await {
            Ok(true) => last = Instant::now(),
            Ok(false) => {
                tracing::warn!("{} lost the lease kube-system/{}", e.identity, e.name);
                return;
            }
            Err(err) => {
                tracing::warn!("renewing the lease: {err}");
                if last.elapsed() > e.renew_deadline {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_ago: i64, duration: i32) -> Lease {
        let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_ago);
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_free_when_unheld_mine_or_expired() {
        assert!(free_for(&lease("", 0, 15), "me"));
        assert!(free_for(&lease("me", 0, 15), "me"));
        assert!(!free_for(&lease("other", 3, 15), "me"));
        assert!(free_for(&lease("other", 20, 15), "me"));
    }
}
