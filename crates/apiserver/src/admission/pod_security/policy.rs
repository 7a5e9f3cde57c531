//! A namespace's Pod Security policy: the level and version of each mode (enforce, audit,
//! warn), read from its `pod-security.kubernetes.io/*` labels over the cluster's defaults.

use std::collections::BTreeMap;
use std::fmt;

use api::validation::FieldError;
use serde_json::{Value, json};

/// The newest version of the standards this server knows; `latest` and anything newer
/// evaluate as this one.
pub(crate) const NEWEST_MINOR: u32 = 33;

const PREFIX: &str = "pod-security.kubernetes.io/";

/// A level of the Pod Security Standards, from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// A version of the standards: `latest`, or `v1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Latest,
    Minor(u32),
}

impl Version {
    fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        let canonical = minor == "0" || !minor.starts_with('0');
        let digits = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        (canonical && digits).then(|| minor.parse().ok().map(Version::Minor))?
    }

    /// The minor version whose checks apply.
    pub(crate) fn evaluated(self) -> u32 {
        match self {
            Version::Latest => NEWEST_MINOR,
            Version::Minor(m) => m.min(NEWEST_MINOR),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, shown as upstream shows it (`restricted:latest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LevelVersion {
    pub(crate) level: Level,
    pub(crate) version: Version,
}

impl LevelVersion {
    pub(crate) const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };

    /// Whether both allow the same pods (privileged at any version is privileged).
    fn equivalent(&self, other: &LevelVersion) -> bool {
        self == other || (self.level == Level::Privileged && other.level == Level::Privileged)
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// The three modes of a namespace's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) enforce: LevelVersion,
    pub(crate) audit: LevelVersion,
    pub(crate) warn: LevelVersion,
}

impl Default for Policy {
    /// Privileged in every mode: upstream's default when nothing is configured.
    fn default() -> Policy {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

/// What went wrong in a namespace's labels, as field errors of `metadata.labels`.
pub(crate) type LabelErrors = Vec<FieldError>;

impl Policy {
    /// Whether nothing is ever refused, reported or warned about.
    pub(crate) fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|m| m.level == Level::Privileged)
    }

    pub(crate) fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }

    /// The policy `labels` set over `defaults`, and the labels in error. A bad enforce level
    /// enforces `restricted`; a bad audit or warn level turns that mode off. With a valid
    /// enforce label and no warn label, warnings come at least at the enforced level.
    pub(crate) fn from_labels(labels: &Value, defaults: &Policy) -> (Policy, LabelErrors) {
        let mut p = *defaults;
        let mut errors = Vec::new();
        let enforce = read_mode(labels, "enforce", &mut p.enforce, &mut errors);
        read_mode(labels, "audit", &mut p.audit, &mut errors);
        let warn = read_mode(labels, "warn", &mut p.warn, &mut errors);
        let enforce_valid = enforce.0 == Some(true);
        if warn.0.is_none() && enforce_valid && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !warn.1 {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }

    /// The policy an AdmissionConfiguration's `defaults` (`enforce`, `enforce-version`, ...)
    /// set, with the same rules as namespace labels.
    pub(crate) fn from_defaults(defaults: &Value) -> Result<Policy, String> {
        let mut labels = BTreeMap::new();
        for (k, v) in defaults.as_object().into_iter().flatten() {
            labels.insert(format!("{PREFIX}{k}"), v.clone());
        }
        let (p, errors) = Policy::from_labels(&json!(labels), &Policy::default());
        match errors.first() {
            None => Ok(p),
            Some(e) => Err(format!("defaults: {}: {}", e.field, e.detail)),
        }
    }
}

/// Reads one mode's level and version labels into `lv`; says whether the level label is
/// there (and valid) and whether the version label is. A bad enforce level enforces
/// `restricted`, a bad audit or warn level is `privileged`; a bad version is `latest`.
fn read_mode(
    labels: &Value,
    mode: &str,
    lv: &mut LevelVersion,
    errors: &mut LabelErrors,
) -> (Option<bool>, bool) {
    let level = labels[format!("{PREFIX}{mode}")].as_str().map(|v| {
        let parsed = Level::parse(v);
        if parsed.is_none() {
            let why = "must be one of privileged, baseline, restricted";
            errors.push(invalid(mode, v, why));
        }
        let fallback = match mode {
            "enforce" => Level::Restricted,
            _ => Level::Privileged,
        };
        lv.level = parsed.unwrap_or(fallback);
        parsed.is_some()
    });
    let version_label = format!("{mode}-version");
    let version = labels[format!("{PREFIX}{version_label}")]
        .as_str()
        .map(|v| {
            let parsed = Version::parse(v);
            if parsed.is_none() {
                errors.push(invalid(&version_label, v, r#"must be "latest" or "v1.x""#));
            }
            lv.version = parsed.unwrap_or(Version::Latest);
        });
    (level, version.is_some())
}

fn invalid(label: &str, value: &str, why: &str) -> FieldError {
    FieldError::invalid(
        format!("metadata.labels[{PREFIX}{label}]"),
        &json!(value),
        why,
    )
}

/// Whether `labels` name any mode of the policy (for the exempt-namespace warning).
pub(crate) fn labelled(labels: &Value, mode: &str) -> bool {
    labels.get(format!("{PREFIX}{mode}")).is_some()
        || labels.get(format!("{PREFIX}{mode}-version")).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(labels: Value) -> (String, Vec<String>) {
        let (p, errors) = Policy::from_labels(&labels, &Policy::default());
        let shown = format!("{} {} {}", p.enforce, p.audit, p.warn);
        (shown, errors.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn labels_set_each_mode_and_warn_follows_enforce() {
        let (p, errors) = policy(json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.25",
        }));
        assert_eq!(p, "baseline:v1.25 privileged:latest baseline:v1.25");
        assert!(errors.is_empty());
        let (p, _) = policy(json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit-version": "v1.30",
        }));
        assert_eq!(p, "baseline:latest privileged:v1.30 restricted:latest");
    }

    #[test]
    fn bad_labels_are_errors_enforce_fails_closed_the_others_open() {
        let (p, errors) = policy(json!({
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn": "loud",
            "pod-security.kubernetes.io/audit-version": "v1.01",
        }));
        assert_eq!(p, "restricted:latest privileged:latest privileged:latest");
        assert_eq!(
            errors,
            [
                "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted",
                "metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: \"v1.01\": must be \"latest\" or \"v1.x\"",
                "metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: \"loud\": must be one of privileged, baseline, restricted",
            ]
        );
    }

    #[test]
    fn versions_past_the_newest_evaluate_as_the_newest() {
        assert_eq!(Version::parse("v1.99").unwrap().evaluated(), NEWEST_MINOR);
        assert_eq!(Version::parse("v1.0").unwrap().evaluated(), 0);
        assert_eq!(Version::parse("v2.1"), None);
    }
}
