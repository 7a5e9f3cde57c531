//! The audit `Policy` (`audit.k8s.io/v1`): rules tried in order, the first that matches a
//! request deciding how much of it is recorded, with upstream's matching.

use serde::Deserialize;

use crate::authn::Identity;

/// How much of a request an event carries, from nothing to both bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub(crate) enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// A stage of a request at which an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

/// The policy file's content.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Policy {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<Stage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// What a rule looks at in a request.
pub(crate) struct Request<'a> {
    pub(crate) user: Option<&'a Identity>,
    pub(crate) verb: &'a str,
    pub(crate) path: &'a str,
    /// For a resource request: its group, `resource[/subresource]`, namespace and name.
    pub(crate) resource: Option<Target<'a>>,
}

/// The resource a request addresses.
pub(crate) struct Target<'a> {
    pub(crate) group: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
}

impl Policy {
    /// The policy in `text` (YAML or JSON).
    pub(crate) fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if policy.kind != "Policy" {
            return Err(format!("expected kind Policy, got {:?}", policy.kind));
        }
        Ok(policy)
    }

    /// The level of the first rule matching `r` (`None` when none does), and the stages not
    /// to write: the policy's and the rule's.
    pub(crate) fn decide(&self, r: &Request<'_>) -> (Level, Vec<Stage>) {
        match self.rules.iter().find(|rule| rule.matches(r)) {
            Some(rule) => {
                let mut omit = self.omit_stages.clone();
                omit.extend(&rule.omit_stages);
                (rule.level, omit)
            }
            None => (Level::None, Vec::new()),
        }
    }
}

impl Rule {
    fn matches(&self, r: &Request<'_>) -> bool {
        let user = r.user.map(|u| u.user.as_str());
        let groups = r.user.map(|u| u.groups.as_slice()).unwrap_or_default();
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.iter().any(|x| x == u)) {
            return false;
        }
        if !self.user_groups.is_empty() && !groups.iter().any(|g| self.user_groups.contains(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == r.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return r
                .resource
                .as_ref()
                .is_some_and(|t| self.matches_resource(t));
        }
        if !self.non_resource_urls.is_empty() {
            return r.resource.is_none()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|u| path_matches(u, r.path));
        }
        true
    }

    fn matches_resource(&self, t: &Target<'_>) -> bool {
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == t.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = match t.subresource {
            Some(sub) => format!("{}/{sub}", t.resource),
            None => t.resource.to_string(),
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == t.group)
            .any(|gr| {
                let named =
                    gr.resource_names.is_empty() || gr.resource_names.iter().any(|n| n == t.name);
                let listed = |res: &String| {
                    res == "*"
                        || *res == combined
                        || t.subresource.is_some_and(|sub| *res == format!("*/{sub}"))
                        || res.strip_suffix("/*") == Some(t.resource)
                };
                gr.resources.is_empty() || (named && gr.resources.iter().any(listed))
            })
    }
}

/// A non-resource URL rule: the path itself, or a prefix ending in `*`.
fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/status"]
  - group: apps
    resources: ["deployments"]
    resourceNames: ["web"]
- level: Request
  verbs: ["create", "update", "patch", "delete"]
  namespaces: ["team"]
  omitStages: [ResponseStarted]
- level: Metadata
"#;

    fn decide(
        user: &str,
        verb: &str,
        path: &str,
        target: Option<Target<'_>>,
    ) -> (Level, Vec<Stage>) {
        let who = Identity::new(user.into(), vec![]);
        let policy = Policy::parse(POLICY).unwrap();
        policy.decide(&Request {
            user: Some(&who),
            verb,
            path,
            resource: target,
        })
    }

    fn target<'a>(
        group: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        ns: &'a str,
        name: &'a str,
    ) -> Option<Target<'a>> {
        Some(Target {
            group,
            resource,
            subresource: sub,
            namespace: ns,
            name,
        })
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let level = |user, verb, path, t| decide(user, verb, path, t).0;
        assert_eq!(
            level("system:kube-proxy", "get", "/healthz", None),
            Level::None
        );
        assert_eq!(level("bob", "get", "/healthz/ready", None), Level::None);
        assert_eq!(level("bob", "get", "/metrics", None), Level::Metadata);
        let secret = target("", "secrets", None, "team", "s");
        assert_eq!(
            level("bob", "create", "/api/v1/...", secret),
            Level::Metadata
        );
        let status = target("", "pods", Some("status"), "x", "p");
        assert_eq!(
            level("bob", "update", "/api", status),
            Level::RequestResponse
        );
        let web = target("apps", "deployments", None, "x", "web");
        assert_eq!(level("bob", "get", "/apis", web), Level::RequestResponse);
        let other = target("apps", "deployments", None, "x", "other");
        assert_eq!(level("bob", "get", "/apis", other), Level::Metadata);
        let (l, omit) = decide(
            "bob",
            "create",
            "/api",
            target("", "pods", None, "team", "p"),
        );
        assert_eq!(
            (l, omit),
            (
                Level::Request,
                vec![Stage::RequestReceived, Stage::ResponseStarted]
            )
        );
        assert_eq!(
            level("bob", "get", "/api", target("", "pods", None, "team", "p")),
            Level::Metadata
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(Policy::parse("kind: Policy\nrules:\n- level: Loud\n").is_err());
        assert!(Policy::parse("kind: Other\n").is_err());
    }
}
