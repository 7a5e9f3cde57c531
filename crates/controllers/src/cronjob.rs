//! The CronJob controller (`cronjob-controller`): creates a batch/v1 CronJob's Jobs on its
//! schedule, as upstream's `cronjob` controller (v2) does.
//!
//! Schedules are read as upstream reads them (robfig/cron's standard parser): five fields
//! (minute, hour, day of month, month, day of week) of numbers, ranges (`1-5`), steps (`*/15`,
//! `1-30/5`, `5/10`), lists (`1,3,5`), `*` or `?`, month names (`JAN`-`DEC`) and day names
//! (`SUN`-`SAT`), case-insensitive; or the macros `@yearly` (`@annually`), `@monthly`,
//! `@weekly`, `@daily` (`@midnight`), `@hourly` and `@every <duration>`. When both day fields
//! are restricted a day matching either runs. Times are read in `spec.timeZone` (an IANA
//! name from the host's `/usr/share/zoneinfo`), else in the controller manager's local zone;
//! across daylight-saving changes a time that does not exist is skipped and one that exists
//! twice runs twice, as upstream's.
//!
//! Each sync forgets finished Jobs from `status.active` (event `SawCompletedJob`), records
//! `lastSuccessfulTime`, deletes the oldest finished Jobs beyond
//! `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, then, unless suspended, starts
//! the most recent missed schedule if it is within `startingDeadlineSeconds`: a Job named
//! `<cronjob>-<scheduled time in minutes since the epoch>` from the Job template, annotated
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`, honouring `concurrencyPolicy` (`Allow`,
//! `Forbid`: skip while one runs, `Replace`: delete the running ones first). It then sets
//! `status.active` and `lastScheduleTime` and syncs again at the next scheduled time.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::events::{Recorder, Type, reference};
use crate::job::finished_condition;
use crate::pods;
use crate::runtime::{self, Informers, Result, Shared};

/// The controller's name, and its events' component.
const NAME: &str = "cronjob-controller";
/// The annotation with a Job's scheduled time (RFC 3339, in the CronJob's zone).
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed schedules beyond which a warning is recorded.
const TOO_MANY_MISSED: i64 = 100;
/// Added to each wait for the next schedule, against clock skew.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Marks a day field written `*` or `?`: with one of the two day fields so, both must match.
const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Schedule {
    /// Cron fields as bit sets (bit `n` set: value `n` matches).
    Cron {
        /// Minutes, 0-59.
        minute: u64,
        /// Hours, 0-23.
        hour: u64,
        /// Days of the month, 1-31 (and [`STAR`]).
        dom: u64,
        /// Months, 1-12.
        month: u64,
        /// Days of the week, 0 (Sunday)-6 (and [`STAR`]).
        dow: u64,
    },
    /// `@every <duration>`: a fixed interval, whole seconds, at least one.
    Every(Duration),
}

/// One cron field's bounds and names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |b, i| b | 1 << i)
}

fn all(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1) | STAR
}

impl Schedule {
    /// Parses `spec`, with the zone a `TZ=` or `CRON_TZ=` prefix names (upstream accepts
    /// it, warning that it is unsupported).
    fn parse(spec: &str) -> Result<(Schedule, Option<String>), String> {
        let mut spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            let name = tz.split_once('=').map_or("", |(_, n)| n);
            TimeZone::get(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
            zone = Some(name.to_string());
            spec = rest.trim();
        }
        if spec.starts_with('@') {
            return Schedule::descriptor(spec).map(|s| (s, zone));
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        Ok((
            Schedule::Cron {
                minute: field(fields[0], &MINUTES)?,
                hour: field(fields[1], &HOURS)?,
                dom: field(fields[2], &DOM)?,
                month: field(fields[3], &MONTHS)?,
                dow: field(fields[4], &DOW)?,
            },
            zone,
        ))
    }

    fn descriptor(spec: &str) -> Result<Schedule, String> {
        let cron = |minute, hour, dom, month, dow| Schedule::Cron {
            minute,
            hour,
            dom,
            month,
            dow,
        };
        let (min, hour) = (1 << 0, 1 << 0);
        Ok(match spec {
            "@yearly" | "@annually" => cron(min, hour, 1 << 1, 1 << 1, all(&DOW)),
            "@monthly" => cron(min, hour, 1 << 1, all(&MONTHS), all(&DOW)),
            "@weekly" => cron(min, hour, all(&DOM), all(&MONTHS), 1 << 0),
            "@daily" | "@midnight" => cron(min, hour, all(&DOM), all(&MONTHS), all(&DOW)),
            "@hourly" => cron(min, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
            _ => match spec.strip_prefix("@every ") {
                Some(d) => {
                    let d = go_duration(d.trim())
                        .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                    // Whole seconds, at least one, as upstream's `Every`.
                    let secs = d.as_secs().max(1);
                    Schedule::Every(Duration::from_secs(secs))
                }
                None => return Err(format!("unrecognized descriptor: {spec}")),
            },
        })
    }

    /// The first scheduled time strictly after `after`, read in `tz`; none within five
    /// years (a schedule such as February 30th).
    fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let secs = i64::try_from(d.as_secs()).ok()?;
                Timestamp::from_second(after.as_second().checked_add(secs)?).ok()
            }
            Schedule::Cron {
                minute,
                hour,
                dom,
                month,
                dow,
            } => next_cron(after, tz, [*minute, *hour, *dom, *month, *dow]),
        }
    }
}

/// Parses one cron field: comma-separated ranges.
fn field(s: &str, b: &Bounds) -> Result<u64, String> {
    s.split(',').try_fold(0, |acc, r| Ok(acc | range(r, b)?))
}

/// Parses `*`, `?`, `N`, `N-M`, each optionally `/step` (`N/step` runs from N to the end).
fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let (span, step) = match expr.split_once('/') {
        Some((span, step)) => {
            if step.contains('/') {
                return Err(format!("too many slashes: {expr}"));
            }
            (span, Some(step))
        }
        None => (expr, None),
    };
    let parts: Vec<&str> = span.split('-').collect();
    let (start, mut end, mut extra) = if parts[0] == "*" || parts[0] == "?" {
        (b.min, b.max, STAR)
    } else {
        let start = number_or_name(parts[0], b)?;
        let end = match parts.len() {
            1 => start,
            2 => number_or_name(parts[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, 0)
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let step = number(s)?;
            if parts.len() == 1 && extra == 0 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn number_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + b.min),
        None => number(s),
    }
}

fn number(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .parse()
        .map_err(|e| format!("failed to parse int from {s}: {e}"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|e| format!("failed to parse int from {s}: {e}"))
}

/// Parses a Go duration (`1h30m`, `90s`, `1.5h`, `500ms`).
fn go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        // Negative intervals become the one-second minimum.
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let value: f64 = rest[..n].parse().map_err(|_| invalid())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        rest = &rest[u..];
        total += value * unit;
    }
    if s.starts_with('-') {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_secs_f64(total))
}

/// The next time after `after` matching the cron fields `[minute, hour, dom, month, dow]`
/// in `tz`. This follows upstream's search field by field (months, days, hours, minutes),
/// moving hours and minutes by elapsed time, so a time skipped by a daylight-saving change
/// never matches and one repeated matches twice.
fn next_cron(after: Timestamp, tz: &TimeZone, f: [u64; 5]) -> Option<Timestamp> {
    let [minute, hour, dom, month, dow] = f;
    let has = |set: u64, v: i64| (0..63).contains(&v) && set & (1 << v) != 0;
    let day_matches = |t: &jiff::Zoned| {
        let d = has(dom, i64::from(t.day()));
        let w = has(dow, i64::from(t.weekday().to_sunday_zero_offset()));
        if dom & STAR != 0 || dow & STAR != 0 {
            d && w
        } else {
            d || w
        }
    };
    let at = |date: Date, h: i8, m: i8| date.at(h, m, 0, 0).to_zoned(tz.clone()).ok();
    // The next whole minute strictly after `after`.
    let start = Timestamp::from_second((after.as_second().div_euclid(60) + 1) * 60).ok()?;
    let mut t = start.to_zoned(tz.clone());
    let limit = t.year() + 5;
    let mut added = false;
    'wrap: loop {
        if t.year() > limit {
            return None;
        }
        while !has(month, i64::from(t.month())) {
            if !added {
                added = true;
                t = at(t.date().first_of_month(), 0, 0)?;
            }
            t = at(
                t.date()
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?,
                0,
                0,
            )?;
            if t.month() == 1 {
                continue 'wrap;
            }
        }
        while !day_matches(&t) {
            if !added {
                added = true;
                t = at(t.date(), 0, 0)?;
            }
            t = at(t.date().tomorrow().ok()?, 0, 0)?;
            if t.day() == 1 {
                continue 'wrap;
            }
        }
        while !has(hour, i64::from(t.hour())) {
            if !added {
                added = true;
                t = at(t.date(), t.hour(), 0)?;
            }
            t = t.checked_add(jiff::SignedDuration::from_hours(1)).ok()?;
            if t.hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(minute, i64::from(t.minute())) {
            added = true;
            t = t.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
            if t.minute() == 0 {
                continue 'wrap;
            }
        }
        let found = t.timestamp();
        if found > after {
            return Some(found);
        }
        // Truncating an hour inside a repeated hour went back in time: go on from there.
        t = start
            .max(found + jiff::SignedDuration::from_mins(1))
            .to_zoned(tz.clone());
    }
}

/// How many schedules were missed (upstream's `missedSchedulesType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    /// None, or only the most recent.
    None,
    /// A few.
    Few,
    /// More than [`TOO_MANY_MISSED`].
    Many,
}

/// The most recent scheduled time at or before `now` since the last one (or the creation),
/// no earlier than `deadline` when given (upstream's `mostRecentScheduleTime`): the start of
/// the search, the time if any, and how many were missed. Many missed schedules are counted
/// by the interval between the first two, as upstream estimates them.
fn most_recent(
    schedule: &Schedule,
    tz: &TimeZone,
    created: Timestamp,
    last: Option<Timestamp>,
    deadline: Option<i64>,
    now: Timestamp,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = last.unwrap_or(created);
    if let Some(secs) = deadline {
        let cutoff = now - jiff::SignedDuration::from_secs(secs);
        if cutoff > earliest {
            earliest = cutoff;
        }
    }
    let Some(t1) = schedule.next(earliest, tz) else {
        return Ok((earliest, None, Missed::None));
    };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = schedule.next(t1, tz).filter(|t2| now >= *t2) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    let mut recent = None;
    let mut t = t1 + jiff::SignedDuration::from_secs((missed - 2) * between);
    while let Some(next) = schedule.next(t, tz).filter(|n| *n <= now) {
        recent = Some(next);
        t = next;
    }
    let kind = if missed > TOO_MANY_MISSED {
        Missed::Many
    } else if missed > 1 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok((earliest, recent, kind))
}

/// How long until the next schedule after the most recent one (or after `now` when
/// schedules were missed), plus [`NEXT_SCHEDULE_DELTA`] (upstream's `nextScheduleTimeDuration`).
fn until_next(
    schedule: &Schedule,
    tz: &TimeZone,
    created: Timestamp,
    last: Option<Timestamp>,
    now: Timestamp,
) -> Option<Duration> {
    let from = match most_recent(schedule, tz, created, last, None, now) {
        Err(_) => now,
        Ok((_, Some(recent), _)) => recent,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = schedule.next(from, tz)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// A Job's name for a scheduled time: the CronJob's and the minutes since the epoch.
fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in `tz`, as Go writes it (`Z` for a zero offset).
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job to create for the time `scheduled`.
fn job_for(cj: &CronJob, spec: &CronJobSpec, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = &spec.job_template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The CronJob's zone: `spec.timeZone`, else the controller manager's local one.
fn zone_of(spec: &CronJobSpec) -> Result<TimeZone, String> {
    match spec.time_zone.as_deref() {
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
        None => Ok(TimeZone::system()),
    }
}

struct Ctx {
    client: kube::Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    events: Recorder,
}

/// Starts the CronJob controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let cronjobs = informers.store::<CronJob>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        cronjobs: cronjobs.clone(),
        jobs: informers.store::<Job>(),
        events: shared.recorder(NAME),
    });
    let controller = Controller::for_stream(informers.subscribe::<CronJob>(), cronjobs)
        .owns_stream(informers.subscribe::<Job>());
    runtime::run(NAME, controller, shared, ctx, reconcile)
}

fn active(cj: &CronJob) -> &[ObjectReference] {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_deref())
        .unwrap_or(&[])
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == Some(uid))
}

fn drop_active(cj: &mut CronJob, uid: &str) {
    let status = cj.status.get_or_insert_with(Default::default);
    if let Some(list) = status.active.as_mut() {
        list.retain(|r| r.uid.as_deref() != Some(uid));
        if list.is_empty() {
            status.active = None;
        }
    }
}

fn job_uid(job: &Job) -> &str {
    job.metadata.uid.as_deref().unwrap_or("")
}

/// The type of a finished Job's final condition (Complete, Failed).
fn finished_as(job: &Job) -> Option<&str> {
    finished_condition(job).map(|c| c.type_.as_str())
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action> {
    let Some(cj) = ctx.cronjobs.get(&ObjectRef::from_obj(cj.as_ref())) else {
        return Ok(Action::await_change());
    };
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let children: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|j| {
            pods::controller_of(&j.metadata).is_some_and(|c| c.kind == "CronJob" && c.uid == uid)
        })
        .collect();
    let mut work = (*cj).clone();
    let before = work.status.clone();
    let sync = Sync {
        ctx: &ctx,
        jobs: Api::namespaced(ctx.client.clone(), &ns),
        now: Timestamp::now(),
    };
    sync.clean_up(&mut work, &children).await;
    let outcome = sync.run(&mut work, &children).await;
    if normalized(&work.status) != normalized(&before) {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .replace_status(&work.name_any(), &PostParams::default(), &work)
            .await
        {
            Ok(_) => {}
            // Changed since read: the change brings another sync.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match outcome {
        Ok(Some(wait)) => Ok(Action::requeue(wait)),
        Ok(None) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}

/// A status with an empty active list written as none.
fn normalized(status: &Option<CronJobStatus>) -> Option<CronJobStatus> {
    let mut s = status.clone().unwrap_or_default();
    if s.active.as_ref().is_some_and(Vec::is_empty) {
        s.active = None;
    }
    Some(s).filter(|s| *s != CronJobStatus::default())
}

/// One sync of one CronJob.
struct Sync<'a> {
    ctx: &'a Ctx,
    jobs: Api<Job>,
    now: Timestamp,
}

impl Sync<'_> {
    async fn event(&self, cj: &CronJob, ty: Type, reason: &str, message: &str) {
        self.ctx
            .events
            .publish(&reference(cj), ty, reason, message)
            .await;
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn clean_up(&self, cj: &mut CronJob, children: &[Arc<Job>]) {
        let Some(spec) = cj.spec.clone() else {
            return;
        };
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else {
                continue;
            };
            let mut done: Vec<&Arc<Job>> = children
                .iter()
                .filter(|j| finished_as(j) == Some(kind))
                .collect();
            let extra = done.len().saturating_sub(limit.max(0) as usize);
            if extra == 0 {
                continue;
            }
            // Oldest first by start time (unstarted last), then by name.
            done.sort_by(|a, b| {
                let start = |j: &Job| {
                    j.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map(|t| t.0)
                };
                match (start(a), start(b)) {
                    (Some(x), Some(y)) if x != y => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    _ => a.name_any().cmp(&b.name_any()),
                }
            });
            for job in done.into_iter().take(extra) {
                self.delete_job(cj, job).await;
            }
        }
    }

    /// Deletes `job` and its pods (background propagation), forgets it from the active list;
    /// returns whether it went.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.jobs.delete(&job.name_any(), &params).await {
            Ok(_) => {
                drop_active(cj, job_uid(job));
                self.event(
                    cj,
                    Type::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted job {}", job.name_any()),
                )
                .await;
                true
            }
            Err(e) => {
                self.event(
                    cj,
                    Type::Warning,
                    "FailedDelete",
                    &format!("Deleted job: {e}"),
                )
                .await;
                false
            }
        }
    }

    /// Reconciles the active list with the Jobs, then starts the due schedule if any.
    /// Returns when to sync again.
    async fn run(&self, cj: &mut CronJob, children: &[Arc<Job>]) -> Result<Option<Duration>> {
        self.note_children(cj, children).await?;
        self.drop_missing(cj, children).await?;
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(spec) = cj.spec.clone() else {
            return Ok(None);
        };
        let Some((schedule, tz)) = self.schedule(cj, &spec).await else {
            return Ok(None);
        };
        let scheduled = match self.due(cj, &spec, &schedule, &tz).await {
            ControlFlow::Continue(t) => t,
            ControlFlow::Break(then) => return Ok(then),
        };
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active(cj).is_empty() {
            self.event(
                cj,
                Type::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            .await;
            return Ok(self.next_sync(cj, &schedule, &tz));
        }
        if policy == "Replace" {
            self.replace_active(cj).await?;
        }
        let Some(job) = self.create_job(cj, &spec, scheduled, &tz).await? else {
            return Ok(None);
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(ObjectReference {
                resource_version: job.metadata.resource_version.clone(),
                ..job.object_ref(&())
            });
        status.last_schedule_time = Some(Time(scheduled));
        Ok(self.next_sync(cj, &schedule, &tz))
    }

    /// Takes note of the CronJob's Jobs: a finished one leaves the active list (its
    /// completion may be the last successful time), an unfinished one not in the list is
    /// reported unless a fresh read of the CronJob lists it.
    async fn note_children(&self, cj: &mut CronJob, children: &[Arc<Job>]) -> Result<()> {
        let cronjobs: Api<CronJob> =
            Api::namespaced(self.ctx.client.clone(), &cj.namespace().unwrap_or_default());
        for job in children {
            let (uid, finished) = (job_uid(job), finished_as(job));
            let found = in_active(cj, uid);
            if !found && finished.is_none() {
                let fresh = cronjobs.get(&cj.name_any()).await?;
                if in_active(&fresh, uid) {
                    *cj = fresh;
                    continue;
                }
                self.event(
                    cj,
                    Type::Warning,
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        job.name_any()
                    ),
                )
                .await;
            } else if let (true, Some(how)) = (found, finished) {
                drop_active(cj, uid);
                self.event(
                    cj,
                    Type::Normal,
                    "SawCompletedJob",
                    &format!("Saw completed job: {}, status: {how}", job.name_any()),
                )
                .await;
            }
            if finished == Some("Complete")
                && let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone())
            {
                let status = cj.status.get_or_insert_with(Default::default);
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| done.0 > t.0)
                {
                    status.last_successful_time = Some(done);
                }
            }
        }
        Ok(())
    }

    /// Drops from the active list the Jobs neither in the cache nor in the API: they are
    /// gone.
    async fn drop_missing(&self, cj: &mut CronJob, children: &[Arc<Job>]) -> Result<()> {
        let known: Vec<String> = children.iter().map(|j| job_uid(j).to_string()).collect();
        for r in active(cj).to_vec() {
            let uid = r.uid.clone().unwrap_or_default();
            if known.contains(&uid) {
                continue;
            }
            if self
                .jobs
                .get_opt(r.name.as_deref().unwrap_or(""))
                .await?
                .is_none()
            {
                self.event(
                    cj,
                    Type::Normal,
                    "MissingJob",
                    &format!(
                        "Active job went missing: {}",
                        r.name.as_deref().unwrap_or("")
                    ),
                )
                .await;
                drop_active(cj, &uid);
            }
        }
        Ok(())
    }

    /// The schedule and its time zone, or None when nothing is to be scheduled: the
    /// CronJob is suspended, or its time zone or schedule cannot be read (a warning event
    /// says which).
    async fn schedule(&self, cj: &CronJob, spec: &CronJobSpec) -> Option<(Schedule, TimeZone)> {
        let tz = match zone_of(spec) {
            Ok(tz) => tz,
            Err(e) => {
                let name = spec.time_zone.clone().unwrap_or_default();
                self.event(
                    cj,
                    Type::Warning,
                    "UnknownTimeZone",
                    &format!("invalid timeZone: {name:?}: {e}"),
                )
                .await;
                return None;
            }
        };
        if spec.suspend == Some(true) {
            return None;
        }
        let parsed = Schedule::parse(&spec.schedule);
        if spec.schedule.contains("TZ") {
            self.event(
                cj,
                Type::Warning,
                "UnsupportedSchedule",
                &format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            )
            .await;
        }
        match parsed {
            Ok((s, Some(zone))) => Some((s, TimeZone::get(&zone).unwrap_or(tz))),
            Ok((s, None)) => Some((s, tz)),
            Err(e) => {
                self.event(
                    cj,
                    Type::Warning,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
                None
            }
        }
    }

    /// The scheduled time a Job is due for (`Continue`), or when to sync again instead
    /// (`Break`): no time is due, the time is past the starting deadline, or its Job was
    /// started already.
    async fn due(
        &self,
        cj: &CronJob,
        spec: &CronJobSpec,
        schedule: &Schedule,
        tz: &TimeZone,
    ) -> ControlFlow<Option<Duration>, Timestamp> {
        let last = last_scheduled(cj);
        let scheduled = match most_recent(
            schedule,
            tz,
            created_at(cj, self.now),
            last,
            spec.starting_deadline_seconds,
            self.now,
        ) {
            Err(e) => {
                self.event(
                    cj,
                    Type::Warning,
                    "InvalidSchedule",
                    &format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
                return ControlFlow::Break(None);
            }
            Ok((_, None, _)) => return ControlFlow::Break(self.next_sync(cj, schedule, tz)),
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.event(
                        cj,
                        Type::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    )
                    .await;
                }
                t
            }
        };
        if let Some(secs) = spec.starting_deadline_seconds
            && scheduled + jiff::SignedDuration::from_secs(secs) < self.now
        {
            let at = scheduled.to_zoned(TimeZone::UTC);
            self.event(
                cj,
                Type::Warning,
                "MissSchedule",
                &format!(
                    "Missed scheduled time to start a job: {}",
                    at.strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            )
            .await;
            return ControlFlow::Break(self.next_sync(cj, schedule, tz));
        }
        let name = job_name(&cj.name_any(), scheduled);
        if active(cj)
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || last == Some(scheduled)
        {
            return ControlFlow::Break(self.next_sync(cj, schedule, tz));
        }
        ControlFlow::Continue(scheduled)
    }

    /// When to sync again: at the schedule's next time (upstream's
    /// `nextScheduleTimeDuration`).
    fn next_sync(&self, cj: &CronJob, schedule: &Schedule, tz: &TimeZone) -> Option<Duration> {
        until_next(
            schedule,
            tz,
            created_at(cj, self.now),
            last_scheduled(cj),
            self.now,
        )
    }

    /// Deletes the active Jobs, for `concurrencyPolicy: Replace`.
    async fn replace_active(&self, cj: &mut CronJob) -> Result<()> {
        for r in active(cj).to_vec() {
            let job = match self.jobs.get(r.name.as_deref().unwrap_or("")).await {
                Ok(j) => j,
                Err(e) => {
                    self.event(cj, Type::Warning, "FailedGet", &format!("Get job: {e}"))
                        .await;
                    return Err(e.into());
                }
            };
            if !self.delete_job(cj, &job).await {
                return Err(runtime::Error::Failed(format!(
                    "could not replace job {}/{}",
                    job.namespace().unwrap_or_default(),
                    job.name_any()
                )));
            }
        }
        Ok(())
    }

    /// Creates the Job for `scheduled`. A Job of its name made before (the status not
    /// written then) is taken if it is ours and not yet active; None when there is nothing
    /// to record.
    async fn create_job(
        &self,
        cj: &CronJob,
        spec: &CronJobSpec,
        scheduled: Timestamp,
        tz: &TimeZone,
    ) -> Result<Option<Job>> {
        let wanted = job_for(cj, spec, scheduled, tz);
        match self.jobs.create(&PostParams::default(), &wanted).await {
            Ok(job) => {
                self.event(
                    cj,
                    Type::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {}", job.name_any()),
                )
                .await;
                Ok(Some(job))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created before, and the status not written then: take it if it is ours.
                let job = self.jobs.get(&job_name(&cj.name_any(), scheduled)).await?;
                let ours = pods::controller_of(&job.metadata)
                    .is_some_and(|c| Some(&c.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active(cj, job_uid(&job)) {
                    return Ok(None);
                }
                Ok(Some(job))
            }
            Err(kube::Error::Api(s)) if s.message.contains("being terminated") => {
                Err(kube::Error::Api(s).into())
            }
            Err(e) => {
                self.event(
                    cj,
                    Type::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }
}

/// When the CronJob was created (`now` when it does not say).
fn created_at(cj: &CronJob, now: Timestamp) -> Timestamp {
    cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0)
}

/// The CronJob's last scheduled time (`status.lastScheduleTime`).
fn last_scheduled(cj: &CronJob) -> Option<Timestamp> {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str, zone: &str) -> String {
        let (s, _) = Schedule::parse(spec).unwrap();
        let tz = TimeZone::get(zone).unwrap();
        s.next(at(after), &tz)
            .map(|t| rfc3339(t, &tz))
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn fields_parse_ranges_steps_lists_and_names() {
        let (s, zone) = Schedule::parse("*/15 9-17 1,15 JAN-mar mon-FRI").unwrap();
        assert_eq!(zone, None);
        let Schedule::Cron {
            minute,
            hour,
            dom,
            month,
            dow,
        } = s
        else {
            panic!("not cron");
        };
        assert_eq!(minute, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(hour, bits(9, 17, 1));
        assert_eq!(dom, 1 << 1 | 1 << 15);
        assert_eq!(month, 0b1110);
        assert_eq!(dow, 0b111110);
        let (s, _) = Schedule::parse("5/20 * ? * *").unwrap();
        let Schedule::Cron { minute, dom, .. } = s else {
            panic!("not cron");
        };
        assert_eq!(minute, 1 << 5 | 1 << 25 | 1 << 45);
        assert_ne!(dom & STAR, 0);
        assert_eq!(
            Schedule::parse("@every 1h30m").unwrap().0,
            Schedule::Every(Duration::from_secs(5400))
        );
        assert_eq!(
            Schedule::parse("@weekly").unwrap().0,
            Schedule::parse("0 0 * * 0").unwrap().0
        );
        let (_, zone) = Schedule::parse("CRON_TZ=Europe/Paris 0 9 * * *").unwrap();
        assert_eq!(zone.as_deref(), Some("Europe/Paris"));
    }

    #[test]
    fn bad_schedules_are_refused_as_upstream_words_it() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert!(err("x * * * *").starts_with("failed to parse int from x"));
        assert!(err("@every soon").starts_with("failed to parse duration @every soon"));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn next_times_follow_the_fields() {
        assert_eq!(
            next("* * * * *", "2026-03-01T10:00:00Z", "UTC"),
            "2026-03-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-03-01T10:00:30Z", "UTC"),
            "2026-03-01T10:01:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2026-03-01T10:00:00Z", "UTC"),
            "2026-03-02T02:30:00Z"
        );
        assert_eq!(
            next("0 0 1 1 *", "2026-03-01T10:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-12-15T00:00:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        // 2026-03-01 is a Sunday; both day fields restricted: either matches.
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-06T00:00:00Z"
        );
        // One of them `*`: both must.
        assert_eq!(
            next("0 0 * * 5", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * *", "2026-03-01T00:00:00Z", "UTC"),
            "2026-03-13T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z", "UTC"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(next("0 0 30 2 *", "2026-03-01T00:00:00Z", "UTC"), "none");
        assert_eq!(
            next("@every 90s", "2026-03-01T00:00:00.5Z", "UTC"),
            "2026-03-01T00:01:30Z"
        );
    }

    #[test]
    fn time_zones_and_daylight_saving_changes() {
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            next("0 9 * * *", "2026-03-01T00:00:00Z", "Asia/Tokyo"),
            "2026-03-02T09:00:00+09:00"
        );
        // New York springs forward on 2026-03-08 at 02:00: 02:30 does not exist that day.
        assert_eq!(
            next("30 2 * * *", "2026-03-07T12:00:00Z", "America/New_York"),
            "2026-03-09T02:30:00-04:00"
        );
        assert_eq!(
            next("0 3 * * *", "2026-03-08T05:00:00Z", "America/New_York"),
            "2026-03-08T03:00:00-04:00"
        );
        // It falls back on 2026-11-01 at 02:00: 01:30 happens twice, and runs twice.
        let first = next("30 1 * * *", "2026-11-01T04:00:00Z", "America/New_York");
        assert_eq!(first, "2026-11-01T01:30:00-04:00");
        let tz = TimeZone::get("America/New_York").unwrap();
        let (s, _) = Schedule::parse("30 1 * * *").unwrap();
        let again = s.next(at("2026-11-01T05:30:00Z"), &tz).unwrap();
        assert_eq!(rfc3339(again, &tz), "2026-11-01T01:30:00-05:00");
        let after = s.next(again, &tz).unwrap();
        assert_eq!(rfc3339(after, &tz), "2026-11-02T01:30:00-05:00");
        // Hourly keeps its pace through the repeated hour.
        assert_eq!(
            next("0 * * * *", "2026-11-01T05:00:00Z", "America/New_York"),
            "2026-11-01T01:00:00-05:00"
        );
    }

    #[test]
    fn missed_schedules_and_the_starting_deadline() {
        let (s, _) = Schedule::parse("*/10 * * * *").unwrap();
        let utc = TimeZone::UTC;
        let created = at("2026-03-01T10:00:00Z");
        // Nothing due yet.
        let r = most_recent(&s, &utc, created, None, None, at("2026-03-01T10:05:00Z")).unwrap();
        assert_eq!(r, (created, None, Missed::None));
        // One due.
        let r = most_recent(&s, &utc, created, None, None, at("2026-03-01T10:12:00Z")).unwrap();
        assert_eq!(r.1, Some(at("2026-03-01T10:10:00Z")));
        assert_eq!(r.2, Missed::None);
        // Several missed: the most recent is started.
        let r = most_recent(&s, &utc, created, None, None, at("2026-03-01T10:45:00Z")).unwrap();
        assert_eq!((r.1, r.2), (Some(at("2026-03-01T10:40:00Z")), Missed::Few));
        // Far too many.
        let r = most_recent(&s, &utc, created, None, None, at("2026-03-05T10:45:00Z")).unwrap();
        assert_eq!((r.1, r.2), (Some(at("2026-03-05T10:40:00Z")), Missed::Many));
        // The deadline bounds the search: from 10:44:30 on, only 10:50 would count.
        let r = most_recent(
            &s,
            &utc,
            created,
            None,
            Some(30),
            at("2026-03-01T10:45:00Z"),
        )
        .unwrap();
        assert_eq!(r.1, None);
        let r = most_recent(
            &s,
            &utc,
            created,
            None,
            Some(301),
            at("2026-03-01T10:45:00Z"),
        )
        .unwrap();
        assert_eq!(r.1, Some(at("2026-03-01T10:40:00Z")));
        // The last schedule time is where the search starts.
        let last = Some(at("2026-03-01T10:40:00Z"));
        let r = most_recent(&s, &utc, created, last, None, at("2026-03-01T10:45:00Z")).unwrap();
        assert_eq!(r.1, None);
        let wait = until_next(&s, &utc, created, last, at("2026-03-01T10:45:00Z")).unwrap();
        assert_eq!(wait, Duration::from_secs(300) + NEXT_SCHEDULE_DELTA);
        // After missed runs, the wait is to the next one from now.
        let wait = until_next(&s, &utc, created, None, at("2026-03-01T10:45:00Z")).unwrap();
        assert_eq!(wait, Duration::from_secs(300) + NEXT_SCHEDULE_DELTA);
    }

    #[test]
    fn jobs_are_named_and_annotated_by_their_scheduled_time() {
        let cj: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hello", "namespace": "d", "uid": "cj-uid"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}}
        }))
        .unwrap();
        let t = at("2026-03-01T10:01:00Z");
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let job = job_for(&cj, cj.spec.as_ref().unwrap(), t, &tz);
        assert_eq!(job.name_any(), format!("hello-{}", t.as_second() / 60));
        assert_eq!(job.annotations()[SCHEDULED_AT], "2026-03-01T11:01:00+01:00");
        assert_eq!(job.labels()["app"], "hello");
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
        assert_eq!(rfc3339(t, &TimeZone::UTC), "2026-03-01T10:01:00Z");
    }
}
