//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it
//! (kube-runtime 5 has no helper): of the replicas sharing a Lease name, the holder acts and
//! the others wait for it to expire.
//!
//! - A candidate reads the Lease (creating it when absent) and takes it when it is free: no
//!   holder, held by this identity already, or expired (`renewTime + leaseDurationSeconds` is
//!   past). Taking it is a replace guarded by the resourceVersion read, so of two candidates
//!   one wins and the other gets `409 Conflict` and waits again.
//! - The holder renews every third of the duration. When a renewal has not succeeded for two
//!   thirds of the duration (or the Lease is someone else's), it has lost: it must stop acting
//!   at once. The third left over is the margin for clock skew between the holder, which stamps
//!   `renewTime`, and the candidates, which compare it with their own clocks.
//! - On a clean stop the holder releases the Lease (no holder), so the next takes over at once.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::error::describe;

/// Who holds a Lease, as a candidate judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// No holder, this identity, or expired: the candidate may take it.
    Free,
    /// Someone else, until this instant (by the Lease's own times and this clock).
    Other { identity: String, until: Timestamp },
}

/// How `me` sees `lease` at `now`. A Lease without a duration uses `duration`.
pub fn judge(lease: &Lease, me: &str, duration: Duration, now: Timestamp) -> Holder {
    let Some(spec) = &lease.spec else { return Holder::Free };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return Holder::Free;
    }
    let seconds = spec.lease_duration_seconds.filter(|s| *s > 0).map_or(duration.as_secs() as i64, i64::from);
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    let Some(renewed) = renewed else { return Holder::Free };
    let until = renewed.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX);
    if until < now { Holder::Free } else { Holder::Other { identity: holder.to_string(), until } }
}

/// The Lease as `me` writes it to take or renew it at `now`: the acquire time and the
/// transition count move only when the holder changes.
pub fn claimed(
    current: Option<&Lease>,
    name: &str,
    namespace: &str,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> Lease {
    let spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(me);
    let transitions = spec.lease_transitions.unwrap_or(0);
    let transitions = if ours || current.is_none() { transitions } else { transitions + 1 };
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..current.map(|l| l.metadata.clone()).unwrap_or_default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.into()),
            lease_duration_seconds: Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32),
            acquire_time: if ours { spec.acquire_time } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..spec
        }),
    }
}

/// One replica's part in the election.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// The Lease as this replica last wrote it.
pub struct Held {
    lease: Lease,
}

impl Elector {
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn what(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }

    fn claim(&self, current: Option<&Lease>) -> Lease {
        claimed(current, &self.name, &self.namespace, &self.identity, self.duration, Timestamp::now())
    }

    /// Waits until this replica holds the Lease. API failures are logged and tried again.
    pub async fn acquire(&self) -> Held {
        let retry = (self.duration / 3).max(Duration::from_millis(200));
        let mut waiting_for = None;
        loop {
            match self.try_acquire().await {
                Ok(Ok(held)) => {
                    tracing::info!("{}: this replica ({}) leads", self.what(), self.identity);
                    return held;
                }
                Ok(Err(Holder::Other { identity, until })) => {
                    if waiting_for.as_ref() != Some(&identity) {
                        tracing::info!("{}: {identity} leads; waiting for it to stop renewing", self.what());
                        waiting_for = Some(identity);
                    }
                    // look again when it would expire (or sooner, in case it is released)
                    let left = Timestamp::now().duration_until(until).try_into().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left.min(self.duration) + Duration::from_millis(50)).await;
                }
                Ok(Err(Holder::Free)) => {} // someone else won the race: read it again
                Err(e) => {
                    tracing::warn!("{}: {}", self.what(), describe(&e));
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// One attempt: Ok(Ok) when taken, Ok(Err(holder)) when it is not free (or was taken by
    /// another in the meantime: `Holder::Free`).
    async fn try_acquire(&self) -> Result<Result<Held, Holder>> {
        let what = self.what();
        let current = self.api.get_opt(&self.name).await.with_context(|| format!("reading {what}"))?;
        let Some(current) = current else {
            return match self.api.create(&PostParams::default(), &self.claim(None)).await {
                Ok(lease) => Ok(Ok(Held { lease })),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(Err(Holder::Free)),
                Err(e) => Err(anyhow::Error::new(e).context(format!("creating {what}"))),
            };
        };
        match judge(&current, &self.identity, self.duration, Timestamp::now()) {
            Holder::Free => {
                match self.api.replace(&self.name, &PostParams::default(), &self.claim(Some(&current))).await {
                    Ok(lease) => Ok(Ok(Held { lease })),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(Err(Holder::Free)),
                    Err(e) => Err(anyhow::Error::new(e).context(format!("taking {what}"))),
                }
            }
            other => Ok(Err(other)),
        }
    }

    /// Renews the Lease every third of its duration; returns (why) once this replica lost it:
    /// someone else holds it, or no renewal succeeded for two thirds of the duration.
    pub async fn keep(&self, held: &mut Held) -> anyhow::Error {
        let period = self.duration / 3;
        let deadline = self.duration * 2 / 3;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep_until(renewed + period).await;
            loop {
                let left = deadline.saturating_sub(renewed.elapsed());
                if left.is_zero() {
                    return anyhow!("{}: not renewed for {} s; stepping down", self.what(), deadline.as_secs_f32());
                }
                match tokio::time::timeout(left, self.renew(held)).await {
                    Ok(Ok(lease)) => {
                        held.lease = lease;
                        renewed = tokio::time::Instant::now();
                        break;
                    }
                    Ok(Err(Renewal::Lost(why))) => return why,
                    Ok(Err(Renewal::Failed(e))) => {
                        tracing::warn!("{}", describe(&e));
                        tokio::time::sleep(Duration::from_millis(500).min(left)).await;
                    }
                    Err(_) => {} // timed out: the deadline check above ends it
                }
            }
        }
    }

    async fn renew(&self, held: &Held) -> Result<Lease, Renewal> {
        let what = self.what();
        let lease = self.claim(Some(&held.lease));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(lease) => Ok(lease),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
                // changed or deleted under us: ours still if it names us and is renewable
                let current = self.api.get_opt(&self.name).await.map_err(|e| Renewal::Failed(e.into()))?;
                match current {
                    Some(current)
                        if current.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.identity) =>
                    {
                        self.api
                            .replace(&self.name, &PostParams::default(), &self.claim(Some(&current)))
                            .await
                            .map_err(|e| Renewal::Failed(anyhow::Error::new(e).context(format!("renewing {what}"))))
                    }
                    Some(current) => {
                        let holder = current.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                        Err(Renewal::Lost(anyhow!("{what}: now held by {holder:?}; stepping down")))
                    }
                    None => Err(Renewal::Lost(anyhow!("{what}: deleted; stepping down"))),
                }
            }
            Err(e) => Err(Renewal::Failed(anyhow::Error::new(e).context(format!("renewing {what}")))),
        }
    }

    /// Gives the Lease up (no holder) so that another replica takes over at once; best effort.
    pub async fn release(&self, held: Held) {
        let mut lease = held.lease;
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("{}: released", self.what()),
            Err(e) => tracing::warn!("{}: not released: {}", self.what(), describe(&e.into())),
        }
    }
}

enum Renewal {
    /// Someone else holds it now.
    Lost(anyhow::Error),
    /// Try again (until the deadline).
    Failed(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn lease(holder: Option<&str>, renewed: &str, seconds: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: seconds,
                renew_time: Some(MicroTime(at(renewed))),
                acquire_time: Some(MicroTime(at("2026-11-23T00:00:00Z"))),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_free_without_a_holder_for_its_holder_and_once_expired() {
        let now = at("2026-11-23T01:00:00Z");
        assert_eq!(judge(&lease(None, "2026-11-23T00:59:59Z", Some(15)), "a", D, now), Holder::Free);
        assert_eq!(judge(&lease(Some(""), "2026-11-23T00:59:59Z", Some(15)), "a", D, now), Holder::Free);
        assert_eq!(judge(&lease(Some("a"), "2026-11-23T00:59:59Z", Some(15)), "a", D, now), Holder::Free);
        assert_eq!(
            judge(&lease(Some("b"), "2026-11-23T00:59:50Z", Some(15)), "a", D, now),
            Holder::Other { identity: "b".into(), until: at("2026-11-23T01:00:05Z") }
        );
        // its own duration counts, not the candidate's
        assert_eq!(judge(&lease(Some("b"), "2026-11-23T00:59:50Z", Some(5)), "a", D, now), Holder::Free);
        assert_eq!(
            judge(&lease(Some("b"), "2026-11-23T00:59:50Z", None), "a", D, now),
            Holder::Other { identity: "b".into(), until: at("2026-11-23T01:00:05Z") },
            "none written: the candidate's"
        );
        assert_eq!(judge(&Lease::default(), "a", D, now), Holder::Free);
    }

    #[test]
    fn claims_are_guarded_and_count_transitions_when_the_holder_changes() {
        let now = at("2026-11-23T01:00:00Z");
        let taken = claimed(Some(&lease(Some("b"), "2026-11-23T00:00:00Z", Some(15))), "l", "ns", "a", D, now);
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"), "replaced only if unchanged");
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!((spec.lease_transitions, spec.lease_duration_seconds), (Some(3), Some(15)));
        assert_eq!((spec.acquire_time.unwrap().0, spec.renew_time.unwrap().0), (now, now));

        let renewed = claimed(Some(&lease(Some("a"), "2026-11-23T00:59:55Z", Some(15))), "l", "ns", "a", D, now);
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.lease_transitions, Some(2), "a renewal is no transition");
        assert_eq!(spec.acquire_time.unwrap().0, at("2026-11-23T00:00:00Z"));
        assert_eq!(spec.renew_time.unwrap().0, now);

        let created = claimed(None, "l", "ns", "a", D, now);
        assert_eq!(created.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!((created.metadata.resource_version, created.spec.unwrap().lease_transitions), (None, Some(0)));
    }
}
