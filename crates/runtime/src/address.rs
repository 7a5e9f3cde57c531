//! Addresses the node holds for a service of its own (cluster DNS listens on its Service's
//! address), put on the loopback device so that they are local whatever interface a packet
//! comes in by.

use std::net::IpAddr;

use crate::error::{Context, Result, bail};

async fn ip(args: &[&str]) -> Result<std::process::Output> {
    tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip (Debian: apt-get install iproute2)")
}

fn host_prefix(address: IpAddr) -> String {
    let bits = if address.is_ipv4() { 32 } else { 128 };
    format!("{address}/{bits}")
}

/// Adds `address` to the loopback device (nothing changes if it is there already).
pub async fn add_local(address: IpAddr) -> Result<()> {
    let out = ip(&["addr", "replace", &host_prefix(address), "dev", "lo"]).await?;
    if !out.status.success() {
        bail!(
            "adding {address} to lo: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes `address` from the loopback device; `Ok(false)` if it was not there.
pub async fn remove_local(address: IpAddr) -> Result<bool> {
    let out = ip(&["addr", "del", &host_prefix(address), "dev", "lo"]).await?;
    Ok(out.status.success())
}
