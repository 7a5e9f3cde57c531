//! Node IPAM, as upstream's `node-ipam` controller does it with the range allocator: every
//! node without a `spec.podCIDR` gets the lowest free block of the cluster CIDR
//! (10.42.0.0/16 in /24s by default), in `podCIDR` and `podCIDRs`. Blocks are free when no
//! node holds them; a node's block is never changed once given.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::runtime::{self, Error, Informers, Result, Shared};

/// The cluster CIDR cut into blocks of one prefix length.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    base: u32,
    /// The cluster CIDR's prefix length.
    prefix: u8,
    /// Each block's.
    mask: u8,
}

impl Blocks {
    fn parse(cidr: &str, mask: u8) -> Result<Blocks> {
        let (ip, prefix) = cidr.split_once('/').ok_or_else(|| {
            Error::Options(format!("--cluster-cidr {cidr:?} is not an IPv4 CIDR"))
        })?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| Error::Options(format!("--cluster-cidr {cidr:?} is not an IPv4 CIDR")))?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
            Error::Options(format!("--cluster-cidr {cidr:?} has no valid prefix"))
        })?;
        if mask < prefix || mask > 30 {
            return Err(Error::Options(format!(
                "--node-cidr-mask-size {mask} must lie between the cluster CIDR's prefix {prefix} and 30"
            )));
        }
        let bits = u32::from(ip);
        let base = if prefix == 0 {
            0
        } else {
            bits & (u32::MAX << (32 - prefix))
        };
        Ok(Blocks { base, prefix, mask })
    }

    fn count(&self) -> u64 {
        1u64 << (self.mask - self.prefix)
    }

    fn block(&self, i: u64) -> String {
        let ip = self.base + (i << (32 - self.mask)) as u32;
        format!("{}/{}", Ipv4Addr::from(ip), self.mask)
    }

    fn index_of(&self, cidr: &str) -> Option<u64> {
        let (ip, mask) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if mask.parse::<u8>().ok()? != self.mask {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.base)?;
        let i = u64::from(offset >> (32 - self.mask));
        (i < self.count()).then_some(i)
    }

    /// The lowest block not in `used`.
    fn first_free(&self, used: &BTreeSet<u64>) -> Option<String> {
        (0..self.count())
            .find(|i| !used.contains(i))
            .map(|i| self.block(i))
    }
}

/// Checks `--cluster-cidr` and `--node-cidr-mask-size`.
pub(crate) fn check(options: &crate::Options) -> Result<()> {
    Blocks::parse(&options.cluster_cidr, options.node_cidr_mask_size).map(|_| ())
}

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
    blocks: Blocks,
    /// Blocks handed out by this controller not yet seen in the cache, by node: a node synced
    /// again before the cache shows its block gets the same one.
    given: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// Starts the node IPAM controller.
pub(crate) fn start(shared: &Shared, informers: &mut Informers) -> BoxFuture<'static, ()> {
    let options = &shared.options;
    let blocks = match Blocks::parse(&options.cluster_cidr, options.node_cidr_mask_size) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("node-ipam-controller does not run: {e}");
            return futures::future::pending().boxed();
        }
    };
    let nodes = informers.store::<Node>();
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        nodes: nodes.clone(),
        blocks,
        given: Default::default(),
    });
    let controller = Controller::for_stream(informers.subscribe::<Node>(), nodes);
    runtime::run("node-ipam-controller", controller, shared, ctx, reconcile)
}

fn has_cidr(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action> {
    // The event that triggered this may be older than the cache: read the node from there.
    let node = ctx.nodes.get(&ObjectRef::from_obj(&*node)).unwrap_or(node);
    if has_cidr(&node) {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let block = {
        let mut given = ctx.given.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: BTreeSet<u64> = ctx
            .nodes
            .state()
            .iter()
            .filter_map(|n| ctx.blocks.index_of(n.spec.as_ref()?.pod_cidr.as_deref()?))
            .collect();
        // Given ones stay taken until the cache shows their node with a block (or gone).
        given.retain(|n, _| {
            ctx.nodes
                .get(&ObjectRef::new(n))
                .is_some_and(|n| !has_cidr(&n))
        });
        match given.get(&name) {
            Some(i) => ctx.blocks.block(*i),
            None => {
                used.extend(given.values().copied());
                let Some(block) = ctx.blocks.first_free(&used) else {
                    return Err(Error::Failed(format!(
                        "no podCIDR left in {} for node {name}",
                        ctx.blocks.block(0),
                    )));
                };
                if let Some(i) = ctx.blocks.index_of(&block) {
                    given.insert(name.clone(), i);
                }
                block
            }
        }
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    tracing::info!("node {} gets podCIDR {block}", node.name_any());
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_lowest_first() {
        let b = Blocks::parse("10.42.0.0/16", 24).unwrap();
        assert_eq!(b.count(), 256);
        assert_eq!(b.block(0), "10.42.0.0/24");
        assert_eq!(b.block(255), "10.42.255.0/24");
        assert_eq!(b.index_of("10.42.7.0/24"), Some(7));
        assert_eq!(b.index_of("10.43.0.0/24"), None);
        let used: BTreeSet<u64> = [0, 1, 3].into();
        assert_eq!(b.first_free(&used).as_deref(), Some("10.42.2.0/24"));
        let full: BTreeSet<u64> = (0..256).collect();
        assert_eq!(b.first_free(&full), None);
        assert!(Blocks::parse("10.42.0.0/16", 8).is_err());
        assert!(Blocks::parse("nonsense", 24).is_err());
    }
}
