use serde_json::json;

use super::*;
use crate::authn::Identity;

fn stored(shipped: Vec<(Value, bool)>) -> Vec<Value> {
    shipped
        .into_iter()
        .enumerate()
        .map(|(i, (mut v, _))| {
            v["metadata"]["uid"] = json!(format!("uid-{i}"));
            v
        })
        .collect()
}

fn derived(schemas: &[Value], levels: &[Value]) -> Config {
    let fc = FlowControl::new(Options::default()).unwrap();
    fc.derive(schemas, levels, &Config::default())
}

fn classify<'a>(config: &'a Config, user: &Identity, verb: &str) -> &'a Schema {
    let req = Request {
        user,
        verb,
        target: Target::Resource {
            group: "",
            resource: "pods",
            namespace: Some("default"),
        },
    };
    config
        .schemas
        .iter()
        .find(|s| classify::matches(&s.spec, &req))
        .expect("catch-all matches everyone")
}

#[test]
fn the_bootstrap_levels_share_the_servers_600_seats_by_their_shares() {
    let config = derived(
        &stored(bootstrap::flow_schemas()),
        &stored(bootstrap::priority_levels()),
    );
    // Shares: exempt 0, catch-all 5, system 30, node-high 40, leader-election 10,
    // workload-high 40, workload-low 100, global-default 20: 245 in all.
    let limit = |name: &str| {
        let level = &config.levels[name];
        level
            .seats
            .as_ref()
            .map(|_| (600 * nominal(name)).div_ceil(245))
    };
    fn nominal(name: &str) -> usize {
        match name {
            "catch-all" => 5,
            "workload-low" => 100,
            _ => 20,
        }
    }
    assert_eq!(limit("exempt"), None, "the exempt level has no seats");
    assert_eq!(limit("catch-all"), Some(13));
    assert_eq!(limit("workload-low"), Some(245));
    assert_eq!(
        config.schemas.first().map(|s| s.name.as_str()),
        Some("exempt")
    );
    assert_eq!(
        config.schemas.last().map(|s| s.name.as_str()),
        Some("catch-all")
    );
}

#[test]
fn requests_fall_under_the_first_matching_schema() {
    let config = derived(
        &stored(bootstrap::flow_schemas()),
        &stored(bootstrap::priority_levels()),
    );
    let admin = Identity::new("admin".into(), vec!["system:masters".into()]);
    assert_eq!(classify(&config, &admin, "get").name, "exempt");
    let node = Identity::new("system:node:a".into(), vec!["system:nodes".into()]);
    assert_eq!(classify(&config, &node, "get").name, "system-nodes");
    let robot = Identity::new(
        "system:serviceaccount:kube-system:builder".into(),
        vec!["system:serviceaccounts".into()],
    );
    assert_eq!(
        classify(&config, &robot, "list").name,
        "kube-system-service-accounts"
    );
    let ann = Identity::new("ann".into(), vec![]);
    let schema = classify(&config, &ann, "delete");
    assert_eq!(
        (schema.name.as_str(), schema.level.name.as_str()),
        ("global-default", "global-default")
    );
    assert!(!schema.uid.is_empty());
}

#[test]
fn a_schema_without_its_level_is_skipped_and_missing_mandatory_objects_stand_in() {
    let orphan = json!({"metadata": {"name": "orphan", "uid": "u"}, "spec": {
        "priorityLevelConfiguration": {"name": "gone"}, "matchingPrecedence": 5,
        "rules": [{"subjects": [{"kind": "Group", "group": {"name": "*"}}],
                   "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"]}]}]}});
    let config = derived(&[orphan], &[]);
    let names: Vec<&str> = config.schemas.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["exempt", "catch-all"]);
    let ann = Identity::new("ann".into(), vec![]);
    let schema = classify(&config, &ann, "get");
    assert_eq!(schema.uid, "", "the built-in copy has no uid");
    assert!(schema.level.seats.is_some());
}

#[test]
fn a_level_keeps_its_queues_and_rejections_when_only_its_seats_change() {
    let fc = FlowControl::new(Options::default()).unwrap();
    let levels = stored(bootstrap::priority_levels());
    let first = fc.derive(&[], &levels, &Config::default());
    let second = fc.derive(&[], &levels[..3], &first);
    let seats = |c: &Config, n: &str| c.levels[n].seats.clone().unwrap();
    assert!(Arc::ptr_eq(
        &seats(&first, "system"),
        &seats(&second, "system")
    ));
    let dropped = |c: &Config, n: &str| c.levels[n].dropped.clone();
    assert!(
        Arc::ptr_eq(&dropped(&first, "system"), &dropped(&second, "system")),
        "nor its rejections"
    );
}

#[test]
fn flows_hash_by_schema_and_distinguisher() {
    assert_eq!(flow_hash("s", "ann"), flow_hash("s", "ann"));
    assert_ne!(flow_hash("s", "ann"), flow_hash("s", "bob"));
    assert_ne!(flow_hash("sa", "nn"), flow_hash("s", "ann"));
}

#[test]
fn a_turned_away_request_gets_upstreams_plain_answer() {
    let resp = too_many_requests(3);
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
}
