//! Pod networking through CNI plugins (the container network interface spec, version 1.0):
//! the agent writes a network configuration list, then runs its plugins in order for each
//! pod sandbox, as containerd and CRI-O do. Debian's `containernetworking-plugins` provide
//! `bridge`, `host-local`, `loopback` and `portmap` in `/usr/lib/cni`; another CNI network
//! can be dropped in by replacing the configuration file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The CNI version the agent speaks.
const VERSION: &str = "1.0.0";

/// A host port mapped to a pod port (the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u16,
    /// The port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The host address to bind, if not every address.
    pub host_ip: Option<String>,
}

/// A network configuration list and where its plugins are.
#[derive(Debug, Clone)]
pub struct Network {
    /// The `.conflist` file.
    pub config: PathBuf,
    /// Directories searched for plugin binaries.
    pub plugin_dirs: Vec<PathBuf>,
}

/// The default configuration: a node bridge with host-local addresses from `subnet`
/// (the node's podCIDR) and host ports. Traffic leaving the node is masqueraded by one rule
/// for the whole subnet ([`ensure_masquerade`]) rather than the bridge plugin's rule per pod,
/// which costs an iptables call under its global lock for every pod started or stopped.
pub fn default_config(bridge: &str, subnet: &str, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": VERSION,
        "name": "rudder",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    })
}

/// The node's masquerade rule: traffic from `subnet` to anywhere outside it leaves with the
/// node's address.
fn masquerade_rule(subnet: &str, bridge: &str) -> Vec<String> {
    let comment = format!("rudder pod network on {bridge}");
    [
        "POSTROUTING",
        "-s",
        subnet,
        "!",
        "-d",
        subnet,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "MASQUERADE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn iptables(op: &str, rule: &[String]) -> Result<bool> {
    let out = tokio::process::Command::new("iptables")
        .args(["-w", "-t", "nat", op])
        .args(rule)
        .output()
        .await
        .context("running iptables (Debian: apt-get install iptables)")?;
    Ok(out.status.success())
}

/// Adds the masquerade rule for the node's pod subnet unless it is there.
pub async fn ensure_masquerade(subnet: &str, bridge: &str) -> Result<()> {
    let rule = masquerade_rule(subnet, bridge);
    if !iptables("-C", &rule).await? && !iptables("-A", &rule).await? {
        bail!("iptables could not add the masquerade rule for {subnet}");
    }
    Ok(())
}

/// Removes the masquerade rule for `subnet` if present.
pub async fn remove_masquerade(subnet: &str, bridge: &str) -> Result<()> {
    let rule = masquerade_rule(subnet, bridge);
    while iptables("-C", &rule).await? {
        iptables("-D", &rule).await?;
    }
    Ok(())
}

/// The subnet of a configuration list written by [`default_config`], if it is one.
pub fn subnet_of(list: &Value) -> Option<String> {
    list["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
        .as_str()
        .map(str::to_string)
}

/// What ADD gave a pod.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The final result, kept for DEL.
    pub result: Value,
}

impl Network {
    /// Finds a plugin binary.
    fn plugin(&self, ty: &str) -> Result<PathBuf> {
        if ty.contains('/') {
            bail!("CNI plugin type {ty:?} is not a plain name");
        }
        self.plugin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "CNI plugin {ty:?} not found in {} (Debian: apt-get install containernetworking-plugins)",
                    self.plugin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                )
            })
    }

    fn read(&self) -> Result<Value> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", self.config.display()))
    }

    /// Runs one plugin; returns its result (ADD) or nothing (DEL).
    async fn exec(
        &self,
        command: &str,
        conf: &Value,
        id: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Option<Value>> {
        let ty = conf["type"]
            .as_str()
            .context("a CNI plugin configuration without type")?;
        let binary = self.plugin(ty)?;
        let path = std::env::join_paths(&self.plugin_dirs)?;
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", path)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let input = serde_json::to_vec(conf)?;
        let mut stdin = child.stdin.take().context("plugin stdin")?;
        stdin.write_all(&input).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let msg = err["msg"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            let details = err["details"].as_str().unwrap_or("");
            bail!(
                "plugin type={ty:?} failed ({command}): {msg}{}",
                if details.is_empty() {
                    String::new()
                } else {
                    format!(": {details}")
                }
            );
        }
        if command == "ADD" {
            Ok(Some(serde_json::from_slice(&out.stdout).with_context(
                || format!("plugin {ty:?} printed no CNI result"),
            )?))
        } else {
            Ok(None)
        }
    }

    /// The configuration of the list's plugin `conf` as it is handed to the plugin.
    fn plugin_conf(
        list: &Value,
        conf: &Value,
        prev: Option<&Value>,
        ports: &[PortMapping],
    ) -> Value {
        let mut c = conf.clone();
        c["cniVersion"] = list["cniVersion"].clone();
        c["name"] = list["name"].clone();
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        if conf["capabilities"]["portMappings"] == json!(true) {
            let mappings: Vec<Value> = ports
                .iter()
                .map(|p| {
                    let mut m = json!({"hostPort": p.host_port, "containerPort": p.container_port,
                        "protocol": p.protocol});
                    if let Some(ip) = &p.host_ip {
                        m["hostIP"] = json!(ip);
                    }
                    m
                })
                .collect();
            c["runtimeConfig"] = json!({"portMappings": mappings});
        }
        c
    }

    /// Brings up loopback, then runs the list's plugins in order (ADD).
    pub async fn add(&self, id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment> {
        let lo = json!({"cniVersion": VERSION, "name": "loopback", "type": "loopback"});
        self.exec("ADD", &lo, id, netns, "lo").await?;
        let list = self.read()?;
        let mut prev: Option<Value> = None;
        for conf in list["plugins"].as_array().into_iter().flatten() {
            if conf["capabilities"]["portMappings"] == json!(true) && ports.is_empty() {
                continue;
            }
            let c = Self::plugin_conf(&list, conf, prev.as_ref(), ports);
            prev = self.exec("ADD", &c, id, netns, "eth0").await?;
        }
        let result = prev.context("the CNI configuration has no plugins")?;
        let mut ips: Vec<IpAddr> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
            .collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        if ips.is_empty() {
            bail!("the CNI plugins gave the pod no address");
        }
        Ok(Attachment { ips, result })
    }

    /// Runs the list's plugins in reverse order (DEL), with the result ADD gave.
    pub async fn del(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortMapping],
        result: Option<&Value>,
    ) -> Result<()> {
        let list = self.read()?;
        let plugins: Vec<&Value> = list["plugins"].as_array().into_iter().flatten().collect();
        for conf in plugins.into_iter().rev() {
            if conf["capabilities"]["portMappings"] == json!(true) && ports.is_empty() {
                continue;
            }
            let c = Self::plugin_conf(&list, conf, result, ports);
            self.exec("DEL", &c, id, netns, "eth0").await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_the_list_name_version_and_port_mappings() {
        let list = default_config("rd0", "10.42.0.0/24", Path::new("/tmp/ipam"));
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
        }];
        let portmap = &list["plugins"][1];
        let c = Network::plugin_conf(&list, portmap, Some(&json!({"ips": []})), &ports);
        assert_eq!(c["name"], "rudder");
        assert_eq!(c["cniVersion"], VERSION);
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(
            c["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        );
        let bridge = Network::plugin_conf(&list, &list["plugins"][0], None, &ports);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(subnet_of(&list).as_deref(), Some("10.42.0.0/24"));
    }
}
