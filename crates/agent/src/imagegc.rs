//! Image garbage collection, as the kubelet's: every `period`, when the image store's
//! filesystem is fuller than `high` percent, images that no container (running or exited) was
//! made from are removed, least recently pulled first and none pulled within `min_age`, until
//! use is down to `low` percent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::ImageGc;
use crate::pods::Ctx;

/// Runs the collector until the task is dropped.
pub(crate) async fn run(ctx: Arc<Ctx>, policy: ImageGc) {
    loop {
        tokio::time::sleep(policy.period).await;
        let ctx = ctx.clone();
        match tokio::task::spawn_blocking(move || collect(&ctx, &policy)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(freed)) => tracing::info!(bytes = freed, "image garbage collection freed space"),
            Ok(Err(e)) => tracing::warn!("image garbage collection: {e:#}"),
            Err(e) => tracing::warn!("image garbage collection: {e}"),
        }
    }
}

/// Disk use of the filesystem holding `path`: (used bytes, capacity bytes).
fn disk_use(path: &std::path::Path) -> crate::Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let unit = st.fragment_size();
    let capacity = st.blocks() * unit;
    let available = st.blocks_available() * unit;
    Ok((capacity.saturating_sub(available), capacity))
}

/// One pass; the bytes of the images removed.
fn collect(ctx: &Ctx, policy: &ImageGc) -> crate::Result<u64> {
    let (used, capacity) = disk_use(ctx.images.root())?;
    if capacity == 0 || used * 100 < capacity * u64::from(policy.high) {
        return Ok(0);
    }
    let goal = used.saturating_sub(capacity * u64::from(policy.low) / 100);
    let in_use: BTreeSet<String> = crate::containers::load_all(&*ctx.host, &ctx.config.data_dir)
        .into_iter()
        .map(|r| r.meta.image_id)
        .collect();
    let now = SystemTime::now();
    let mut unused: Vec<(SystemTime, image::Image)> = ctx
        .images
        .list()
        .into_iter()
        .filter(|i| {
            !in_use.contains(&i.id) && !i.repo_digest.as_ref().is_some_and(|d| in_use.contains(d))
        })
        .filter_map(|i| Some((ctx.images.stored_at(&i.id)?, i)))
        .filter(|(at, _)| now.duration_since(*at).unwrap_or_default() >= policy.min_age)
        .collect();
    unused.sort_by_key(|(at, _)| *at);
    let mut freed = 0;
    for (_, img) in unused {
        if freed >= goal {
            break;
        }
        ctx.images.remove(&img.id)?;
        tracing::info!(image = %img.id, names = ?img.references, "removed an unused image");
        freed += img.size;
    }
    Ok(freed)
}
