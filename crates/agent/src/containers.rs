//! Containers on disk: each has a directory `<data>/containers/<id>/` holding its bundle
//! (`config.json`, the overlay `rootfs`), `meta.json` (which pod and container it is, which
//! attempt) and, once it has ended, the monitor's `exit.json`. That is all the agent needs to
//! pick its containers up again after a restart.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};
use runtime::host::Host;
use runtime::shim::Exit;
use serde::{Deserialize, Serialize};

/// What the agent knows of one container, kept in `meta.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    pub(crate) id: String,
    pub(crate) pod_uid: String,
    pub(crate) name: String,
    pub(crate) init: bool,
    /// 0 for the first run, then one more per restart (the restartCount).
    pub(crate) attempt: u32,
    pub(crate) image: String,
    pub(crate) image_id: String,
    pub(crate) created_at: String,
    #[serde(default)]
    pub(crate) started_at: Option<String>,
    pub(crate) cgroup: String,
    pub(crate) log: PathBuf,
    /// Why the runtime could not start it (reason StartError, exit code 128).
    #[serde(default)]
    pub(crate) start_error: Option<String>,
}

/// A container and how it ended, if it has.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) meta: Meta,
    pub(crate) exit: Option<Exit>,
    pub(crate) oom: bool,
    /// Runtime state and root filesystem released.
    pub(crate) released: bool,
}

/// A fresh container id: 64 hex digits, as containerd's.
pub(crate) fn new_id() -> String {
    let uuid = || {
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .unwrap_or_default()
            .trim()
            .replace('-', "")
    };
    format!("{}{}", uuid(), uuid())
}

pub(crate) fn dir(data: &Path, id: &str) -> PathBuf {
    data.join("containers").join(id)
}

pub(crate) fn exit_file(data: &Path, id: &str) -> PathBuf {
    dir(data, id).join("exit.json")
}

impl Record {
    pub(crate) fn new(meta: Meta) -> Record {
        Record {
            meta,
            exit: None,
            oom: false,
            released: false,
        }
    }

    /// Writes `meta.json`.
    pub(crate) fn save(&self, data: &Path) -> Result<()> {
        let d = dir(data, &self.meta.id);
        std::fs::create_dir_all(&d)?;
        let tmp = d.join("meta.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.meta)?)?;
        std::fs::rename(&tmp, d.join("meta.json")).context("saving container metadata")
    }

    pub(crate) fn running(&self) -> bool {
        self.exit.is_none() && self.meta.start_error.is_none() && self.meta.started_at.is_some()
    }

    pub(crate) fn exit_code(&self) -> Option<i32> {
        if self.meta.start_error.is_some() {
            return Some(128);
        }
        self.exit.as_ref().map(|e| e.exit_code)
    }
}

/// Every container recorded under `data`, for recovery after a restart.
pub(crate) fn load_all(host: &dyn Host, data: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(bytes) = std::fs::read(e.path().join("meta.json")) else {
            // Never got as far as its metadata: nothing was started from it.
            let _ = host.remove_rootfs(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<Meta>(&bytes) else {
            continue;
        };
        let exit = host.exit(&exit_file(data, &meta.id));
        let released = !dir(data, &meta.id).join("rootfs").exists();
        out.push(Record {
            meta,
            exit,
            oom: false,
            released,
        });
    }
    out.sort_by_key(|r| (r.meta.pod_uid.clone(), r.meta.name.clone(), r.meta.attempt));
    out
}
