//! `rudder bench store`: the store's throughput, latency and file growth on one backend.
//!
//! Phases, each on its own key prefix: sequential writes; concurrent writes; concurrent point
//! reads; a full range over `--range-keys` keys; watch delivery latency (time from issuing a
//! write to its event reaching a watcher, fsync included); then `--updates` updates over
//! `--update-keys` keys with periodic compaction, after which the database size is read (the
//! earlier phases' keys are deleted first, so the size is that of the growth run's keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use store::{Endpoint, RangeOptions, Store, WatchEvent, WatchOptions};

use super::{Report, per_second, quantile_ms};
use crate::cli::StoreBench;

pub(crate) async fn run(opts: StoreBench) -> Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let endpoint = Endpoint::parse(&opts.datastore_endpoint, scratch.path())?;
    let store = store::open(&endpoint, Duration::from_secs(30), None).await?;
    let prefix = format!(
        "/bench/{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let mut report = Report::new(format!("store benchmark on {}", store.describe()));
    let value = vec![b'x'; opts.value_size];
    let progress = |phase: &str| {
        if !opts.json {
            eprintln!("running: {phase}");
        }
    };

    progress("sequential writes");
    sequential_writes(&store, &prefix, &opts, &value, &mut report).await?;
    progress("concurrent writes");
    concurrent_writes(&store, &prefix, &opts, &value, &mut report).await?;
    progress("point reads");
    point_reads(&store, &prefix, &opts, &mut report).await?;
    progress("range");
    range(&store, &prefix, &opts, &value, &mut report).await?;
    progress("watch latency");
    watch(&store, &prefix, &opts, &value, &mut report).await?;
    progress("clearing the earlier phases' keys");
    clear(&store, &prefix, &opts).await?;
    progress("updates and compaction");
    growth(&store, &prefix, &opts, &value, &mut report).await?;

    store.close().await?;
    report.print(opts.json);
    Ok(())
}

/// Creates `opts.seq_writes` keys one after another.
async fn sequential_writes(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
    report: &mut Report,
) -> Result<()> {
    let started = Instant::now();
    for i in 0..opts.seq_writes {
        store
            .create(&format!("{prefix}/seq/{i}"), value.to_vec())
            .await?;
    }
    report.add(
        "seq_writes_per_s",
        "sequential writes/s",
        per_second(opts.seq_writes, started.elapsed()),
    );
    Ok(())
}

/// Creates `opts.concurrent_writes` keys from `opts.writers` tasks.
async fn concurrent_writes(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
    report: &mut Report,
) -> Result<()> {
    let elapsed = concurrently(opts.writers, opts.concurrent_writes, {
        let (store, prefix, value) = (store.clone(), prefix.to_string(), value.to_vec());
        move |i| {
            let (store, value) = (store.clone(), value.clone());
            let key = format!("{prefix}/con/{i}");
            async move { store.create(&key, value).await.map(|_| ()) }
        }
    })
    .await?;
    report.add(
        "concurrent_writes_per_s",
        "concurrent writes/s",
        per_second(opts.concurrent_writes, elapsed),
    );
    report.add(
        "concurrent_writers",
        "concurrent writers",
        opts.writers as f64,
    );
    Ok(())
}

/// Reads `opts.reads` of the concurrent phase's keys from `opts.writers` tasks.
async fn point_reads(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    report: &mut Report,
) -> Result<()> {
    let keys = opts.concurrent_writes.max(1);
    let elapsed = concurrently(opts.writers, opts.reads, {
        let (store, prefix) = (store.clone(), prefix.to_string());
        move |i| {
            let store = store.clone();
            // A scattered but deterministic key order.
            let key = format!("{prefix}/con/{}", (i * 7919) % keys);
            async move {
                store
                    .get(&key)
                    .await?
                    .map(|_| ())
                    .ok_or(store::Error::NotFound { key })
            }
        }
    })
    .await?;
    report.add(
        "point_reads_per_s",
        "point reads/s",
        per_second(opts.reads, elapsed),
    );
    Ok(())
}

/// Creates `opts.range_keys` keys, then times five full ranges over them.
async fn range(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
    report: &mut Report,
) -> Result<()> {
    let range_prefix = format!("{prefix}/range/");
    concurrently(opts.writers, opts.range_keys, {
        let (store, range_prefix, value) = (store.clone(), range_prefix.clone(), value.to_vec());
        move |i| {
            let (store, value) = (store.clone(), value.clone());
            let key = format!("{range_prefix}{i:06}");
            async move { store.create(&key, value).await.map(|_| ()) }
        }
    })
    .await?;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let got = store.range(&range_prefix, RangeOptions::default()).await?;
        samples.push(started.elapsed());
        anyhow::ensure!(
            got.kvs.len() == opts.range_keys,
            "range returned {} keys, expected {}",
            got.kvs.len(),
            opts.range_keys
        );
    }
    report.add(
        "range_10k_ms",
        "range over the keys (ms, median of 5)",
        quantile_ms(&mut samples, 0.5),
    );
    report.add("range_keys", "keys in that range", opts.range_keys as f64);
    Ok(())
}

/// Measures watch delivery of `opts.watch_events` writes.
async fn watch(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
    report: &mut Report,
) -> Result<()> {
    let mut latencies =
        watch_latency(store, &format!("{prefix}/watch/"), opts.watch_events, value).await?;
    report.add(
        "watch_p50_ms",
        "watch delivery p50 (ms)",
        quantile_ms(&mut latencies, 0.5),
    );
    report.add(
        "watch_p99_ms",
        "watch delivery p99 (ms)",
        quantile_ms(&mut latencies, 0.99),
    );
    Ok(())
}

/// Deletes every key the earlier phases wrote, so the growth run's size is its own.
async fn clear(store: &Arc<dyn Store>, prefix: &str, opts: &StoreBench) -> Result<()> {
    let earlier = store
        .range(&format!("{prefix}/"), RangeOptions::default())
        .await?;
    let earlier: Arc<Vec<String>> = Arc::new(earlier.kvs.into_iter().map(|kv| kv.key).collect());
    concurrently(opts.writers, earlier.len(), {
        let (store, earlier) = (store.clone(), earlier.clone());
        move |i| {
            let (store, earlier) = (store.clone(), earlier.clone());
            async move { store.delete(&earlier[i], None).await.map(|_| ()) }
        }
    })
    .await?;
    Ok(())
}

/// The growth run: updates with periodic compaction, then the database's size.
async fn growth(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
    report: &mut Report,
) -> Result<()> {
    let started = Instant::now();
    update_run(store, &format!("{prefix}/upd/"), opts, value).await?;
    let elapsed = started.elapsed();
    report.add(
        "updates_per_s",
        "updates/s during the growth run",
        per_second(opts.updates, elapsed),
    );
    report.add("updates", "updates in the growth run", opts.updates as f64);
    report.add(
        "db_bytes_after_compaction",
        "database bytes after it and compaction",
        store.db_size().await? as f64,
    );
    Ok(())
}

/// Runs `op(0..count)` from `tasks` concurrent tasks and returns the wall time.
async fn concurrently<F, Fut>(tasks: usize, count: usize, op: F) -> Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = store::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks.max(1))
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, store::Error>(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    Ok(started.elapsed())
}

/// Writes `count` keys one at a time, each carrying its send time, and measures when a
/// watcher receives them.
async fn watch_latency(
    store: &Arc<dyn Store>,
    prefix: &str,
    count: usize,
    value: &[u8],
) -> Result<Vec<Duration>> {
    let base = Instant::now();
    let mut watch = store.watch(prefix, 0, WatchOptions::default()).await?;
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let event = tokio::time::timeout(Duration::from_secs(60), watch.next())
                .await
                .context("no watch event within 60 s")?
                .context("the watch ended")??;
            if let WatchEvent::Put { kv, .. } = event {
                let sent = u64::from_le_bytes(kv.value[..8].try_into()?);
                latencies.push(base.elapsed() - Duration::from_nanos(sent));
            }
        }
        anyhow::Ok(latencies)
    });
    for i in 0..count {
        let mut v = value.to_vec();
        v.resize(v.len().max(8), 0);
        v[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_le_bytes());
        store.create(&format!("{prefix}{i}"), v).await?;
        // Paced, so the latency measured is delivery, not queueing behind our own writes.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    receiver.await?
}

/// `opts.updates` compare-and-swap updates spread over `opts.update_keys` keys from
/// `opts.writers` tasks, compacting every `opts.compact_every` updates and once at the end.
async fn update_run(
    store: &Arc<dyn Store>,
    prefix: &str,
    opts: &StoreBench,
    value: &[u8],
) -> Result<()> {
    let keys = opts.update_keys.max(1);
    let mut revisions = Vec::with_capacity(keys);
    for k in 0..keys {
        revisions.push(
            store
                .create(&format!("{prefix}{k}"), value.to_vec())
                .await?
                .mod_revision,
        );
    }
    // Each writer owns a slice of the keys, so updates never conflict.
    let writers = opts.writers.clamp(1, keys);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let compactor = {
        let (store, done) = (store.clone(), done.clone());
        let (every, total) = (opts.compact_every.max(1), opts.updates);
        tokio::spawn(async move {
            let mut next = every;
            while next < total {
                if done.load(std::sync::atomic::Ordering::Relaxed) >= next {
                    compact_to_current(&store).await?;
                    next += every;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            anyhow::Ok(())
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let mine: Vec<(usize, i64)> = revisions
                .iter()
                .enumerate()
                .filter(|(k, _)| k % writers == w)
                .map(|(k, r)| (k, *r))
                .collect();
            let count = opts.updates / writers + usize::from(w < opts.updates % writers);
            let (prefix, value, done) = (prefix.to_string(), value.to_vec(), done.clone());
            tokio::spawn(async move {
                let mut mine = mine;
                for i in 0..count {
                    let slot = i % mine.len();
                    let (k, rev) = mine[slot];
                    let kv = store
                        .update(&format!("{prefix}{k}"), value.clone(), rev)
                        .await?;
                    mine[slot].1 = kv.mod_revision;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    compactor.await??;
    compact_to_current(store).await
}

/// Compacts up to the current revision; already compacted there (no write since) is fine.
async fn compact_to_current(store: &Arc<dyn Store>) -> Result<()> {
    let rev = store.current_revision().await?;
    match store.compact(rev).await {
        Ok(()) | Err(store::Error::Compacted { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
