//! Manifests, indexes and image configs as the wire has them (OCI and Docker v2 schema 2
//! media types), parsed leniently: only what a node needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types a pull asks for.
pub(crate) const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) size: i64,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
    #[serde(default)]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub(crate) fn to_oci(&self) -> oci_client::manifest::OciDescriptor {
        oci_client::manifest::OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

/// A manifest or an index: which one it is shows in `manifests` vs `layers`.
#[derive(Debug, Deserialize)]
pub(crate) struct Parsed {
    #[serde(rename = "schemaVersion", default)]
    pub(crate) schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Option<Vec<Descriptor>>,
}

/// What a manifest turned out to be.
pub(crate) enum Manifest {
    Index(Vec<Descriptor>),
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest or index; errors name what is unsupported.
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let p: Parsed = serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest: {e}"))?;
    if p.schema_version == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    match p.media_type.as_deref() {
        None | Some(OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST) => {}
        Some(other) => return Err(format!("unsupported manifest media type {other:?}")),
    }
    if let Some(list) = p.manifests {
        return Ok(Manifest::Index(list));
    }
    let Some(config) = p.config else {
        return Err("manifest has no config".into());
    };
    for l in &p.layers {
        let mt = l.media_type.as_str();
        if mt.contains("foreign") || mt.contains("nondistributable") {
            // Windows base layers: never for linux nodes.
            return Err(format!("unsupported layer media type {mt:?}"));
        }
    }
    Ok(Manifest::Image {
        config,
        layers: p.layers,
    })
}

/// This node's platform as OCI names it: (architecture, variant).
pub(crate) fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

/// The index entry for linux on this machine's architecture.
pub(crate) fn select_platform(list: &[Descriptor]) -> Option<&Descriptor> {
    let (arch, variant) = host_platform();
    let candidates: Vec<&Descriptor> = list
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|d| {
            let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
            v.is_none() || v == variant
        })
        .or(candidates.first())
        .copied()
}

/// What a node needs from an image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `User`: `name`, `uid`, `uid:gid`, `name:group`; empty means root.
    pub user: Option<String>,
    /// `Env`: `NAME=value` strings.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `ExposedPorts` keys: `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
}

/// An image config blob's content.
pub(crate) struct ParsedConfig {
    pub(crate) config: ImageConfig,
    pub(crate) diff_ids: Vec<String>,
}

pub(crate) fn parse_config(bytes: &[u8]) -> Result<ParsedConfig, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        config: Option<Run>,
        #[serde(default)]
        rootfs: Option<RootFs>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Run {
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        env: Option<Vec<String>>,
        #[serde(default)]
        entrypoint: Option<Vec<String>>,
        #[serde(default)]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        working_dir: Option<String>,
        #[serde(default)]
        exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
        #[serde(default)]
        labels: Option<BTreeMap<String, String>>,
        #[serde(default)]
        stop_signal: Option<String>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid image config: {e}"))?;
    let run = raw.config.unwrap_or_default();
    Ok(ParsedConfig {
        config: ImageConfig {
            user: run.user.filter(|u| !u.is_empty()),
            env: run.env.unwrap_or_default(),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            working_dir: run.working_dir.filter(|w| !w.is_empty()),
            exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: run.labels.unwrap_or_default(),
            stop_signal: run.stop_signal.filter(|s| !s.is_empty()),
        },
        diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_host_platform() {
        let (arch, _) = host_platform();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"sha256:1","size":1,"platform":{{"architecture":"s390x-not","os":"linux"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"sha256:2","size":1,"platform":{{"architecture":"{arch}","os":"windows"}}}},
              {{"mediaType":"{DOCKER_MANIFEST}","digest":"sha256:3","size":1,"platform":{{"architecture":"{arch}","os":"linux"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:4","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}
            ]}}"#
        );
        let Ok(Manifest::Index(list)) = parse(json.as_bytes()) else {
            panic!("an index")
        };
        assert_eq!(select_platform(&list).unwrap().digest, "sha256:3");
        assert!(select_platform(&list[..2]).is_none());
    }

    #[test]
    fn parses_config() {
        let c = parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin"],
            "Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w","ExposedPorts":{"80/tcp":{}},
            "Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        assert_eq!(c.config.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.config.cmd, ["sh"]);
        assert!(c.config.entrypoint.is_empty());
        assert_eq!(c.config.exposed_ports, ["80/tcp"]);
        assert_eq!(c.diff_ids, ["sha256:x"]);
        assert!(parse(br#"{"schemaVersion":1,"name":"x"}"#).is_err());
    }
}
