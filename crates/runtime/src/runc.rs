//! The OCI runtime binary (`runc`, or `crun`): start, kill, delete, state. Creating is the
//! monitor's part ([`crate::shim`]), so that the container's parent outlives the agent.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use serde::Deserialize;

/// An OCI runtime binary and its state directory.
#[derive(Debug, Clone)]
pub struct Runc {
    /// The binary.
    pub binary: PathBuf,
    /// Its `--root`: where it keeps container state.
    pub root: PathBuf,
}

/// What `runc state` says of a container.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// The init process, on the host.
    pub pid: i32,
}

impl Runc {
    /// The runtime's name as nodeInfo shows it (`runc`, `crun`).
    pub fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runc".into())
    }

    /// `<binary> --version`'s first line, e.g. `runc version 1.1.5+ds1`.
    pub fn version(&self) -> Result<String> {
        let out = std::process::Command::new(&self.binary)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", self.binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or("").trim().to_string())
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }

    async fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "{} {}: {}",
                self.name(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a created container's process.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.run(&["start", id]).await.map(drop)
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the container's init process.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<()> {
        self.run(&["kill", id, signal]).await.map(drop)
    }

    /// Deletes the container's runtime state (and its cgroup), killing it if need be.
    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.run(&["delete", "--force", id]).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("does not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The container's state, or None when the runtime does not know it.
    pub async fn state(&self, id: &str) -> Option<State> {
        let out = self.run(&["state", id]).await.ok()?;
        serde_json::from_str(&out).ok()
    }

    /// The ids of the containers the runtime knows.
    pub async fn list(&self) -> Result<Vec<String>> {
        if !Path::new(&self.root).exists() {
            return Ok(Vec::new());
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let out = self.run(&["list", "--format", "json"]).await?;
        let items: Option<Vec<Item>> = serde_json::from_str(&out).unwrap_or_default();
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.id)
            .collect())
    }
}

/// Chooses the runtime for the host: crun on cgroup v2 when installed, else runc (crun 1.8
/// refuses the v1 hybrid layout). `wanted` overrides the choice.
pub fn choose(wanted: Option<&str>, mode: crate::cgroups::Mode) -> Result<PathBuf> {
    let find = |name: &str| -> Option<PathBuf> {
        if name.contains('/') {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    if let Some(name) = wanted {
        return find(name).with_context(|| {
            format!("the OCI runtime {name:?} is not installed (Debian: apt-get install {name})")
        });
    }
    let order: &[&str] = match mode {
        crate::cgroups::Mode::V2 => &["crun", "runc"],
        _ => &["runc"],
    };
    order
        .iter()
        .find_map(|n| find(n))
        .context("no OCI runtime found: install runc (Debian: apt-get install runc)")
}
