//! The proxy's only contact with the kernel: applying an nftables script, forgetting tracked
//! UDP flows and setting a sysctl. [`Nft`] runs Debian's `nft` and `conntrack`; [`Recording`]
//! keeps what it is given, for tests without root.

use std::sync::Mutex;

use tokio::io::AsyncWriteExt;

use crate::conntrack::Flow;

/// What programming the kernel can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started.
    #[error("running nft (Debian: apt-get install nftables): {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` refused the script.
    #[error("nft refused the rules: {0}")]
    Refused(String),
    /// `conntrack` could not be run or failed.
    #[error("deleting tracked flows (Debian: apt-get install conntrack): {0}")]
    Conntrack(String),
    /// A sysctl could not be written.
    #[error("setting {0}: {1}")]
    Sysctl(String, #[source] std::io::Error),
}

/// Where the rules go.
#[async_trait::async_trait]
pub trait Host: Send + Sync {
    /// Applies an `nft -f` script, as one transaction.
    async fn apply(&self, script: &str) -> Result<(), Error>;
    /// Deletes the tracked flows `flow` describes (none found is no error).
    async fn forget(&self, flow: &Flow) -> Result<(), Error>;
    /// Writes `value` to `/proc/sys/<key>` (dots as slashes) if the key exists.
    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error>;
}

/// The real kernel, through `nft -f -`.
#[derive(Debug, Default)]
pub struct Nft;

#[async_trait::async_trait]
impl Host for Nft {
    async fn apply(&self, script: &str) -> Result<(), Error> {
        let mut child = tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::Spawn)?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(Error::Spawn)?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(Error::Spawn)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    async fn forget(&self, flow: &Flow) -> Result<(), Error> {
        let out = tokio::process::Command::new("conntrack")
            .args(flow.args())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::Conntrack(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // It exits 1 when nothing matched.
        if out.status.success() || stderr.contains("0 flow entries") {
            Ok(())
        } else {
            Err(Error::Conntrack(stderr.trim().to_string()))
        }
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        match std::fs::write(&path, value) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Sysctl(key.to_string(), e))
            }
            _ => Ok(()),
        }
    }
}

/// A fake host that records scripts and sysctls.
#[derive(Debug, Default)]
pub struct Recording {
    /// Every script applied, in order.
    pub scripts: Mutex<Vec<String>>,
    /// Every flow forgotten, in order.
    pub forgotten: Mutex<Vec<Flow>>,
    /// Every sysctl set, in order.
    pub sysctls: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl Host for Recording {
    async fn apply(&self, script: &str) -> Result<(), Error> {
        self.scripts.lock().expect("lock").push(script.to_string());
        Ok(())
    }

    async fn forget(&self, flow: &Flow) -> Result<(), Error> {
        self.forgotten.lock().expect("lock").push(flow.clone());
        Ok(())
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        self.sysctls
            .lock()
            .expect("lock")
            .push((key.to_string(), value.to_string()));
        Ok(())
    }
}
