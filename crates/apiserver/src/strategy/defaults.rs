//! Upstream's plain field defaults (`SetDefaults_*`): values an object gets when it leaves
//! them out. A strategy passes its own list to [`set_absent`]; a kind with nothing else to
//! its behaviour is a [`Plain`].

use serde_json::{Value, json};

use super::Strategy;

/// A kind whose only behaviour is its plain defaults: (JSON pointer, value) pairs.
pub(super) struct Plain(pub(super) fn() -> Vec<(&'static str, Value)>);

impl Strategy for Plain {
    fn defaults(&self, obj: &mut Value) {
        set_absent(obj, (self.0)());
    }
}

/// Sets each (JSON pointer, value) pair where the field is absent; parents are created as
/// needed, and a parent that is not an object is left alone.
pub(super) fn set_absent(obj: &mut Value, defaults: Vec<(&'static str, Value)>) {
    for (path, value) in defaults {
        let mut at = &mut *obj;
        let mut keys = path.split('/').skip(1).peekable();
        while let Some(key) = keys.next() {
            let Some(map) = at.as_object_mut() else {
                break;
            };
            if keys.peek().is_none() {
                map.entry(key).or_insert(value);
                break;
            }
            at = map.entry(key).or_insert_with(|| json!({}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::defaults as apply;
    use super::*;
    use api::resources::find;

    #[test]
    fn absent_fields_get_defaults_and_given_ones_stay() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut job = json!({"spec": {"completions": 3}});
        apply(jobs, &mut job);
        assert_eq!(job["spec"]["completions"], 3);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["backoffLimit"], 6);
        let mut queue = json!({"spec": {"parallelism": 2}});
        apply(jobs, &mut queue);
        assert!(queue["spec"].get("completions").is_none());
        let mut one = json!({"spec": {}});
        apply(jobs, &mut one);
        assert_eq!(one["spec"]["completions"], 1);
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        let mut pv = json!({"metadata": {"name": "v"}});
        apply(pvs, &mut pv);
        assert_eq!(pv["status"]["phase"], "Pending");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    }
}
