//! The etcd v3 backend: a thin adapter from [`Store`] to a real etcd cluster.
//!
//! Every operation is the transaction the Kubernetes API server itself sends: create is
//! "if create_revision == 0 then put else get", update and delete compare `mod_revision`.
//! The compaction revision is also recorded under `compact_rev_key`, as kube-apiserver does,
//! because etcd's own "compacted" error on a read does not say up to where.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::kv::{
    Deleted, Error, KeyValue, RangeOptions, RangeResponse, Result, Revision, Store, WatchEvent,
    WatchOptions, WatchStream, check_value, prefix_end,
};

/// The key holding the last compaction revision (kube-apiserver's name for it).
const COMPACT_KEY: &str = "compact_rev_key";
/// How long one unary request may take before it counts as a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses may be large (a LIST of every pod); etcd itself caps them.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// How to reach etcd over TLS (`https://` endpoints): the CA its serving certificate chains
/// to and, when it asks for client certificates (`--client-cert-auth`), ours. All PEM.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA (k3s' `--datastore-cafile`).
    pub ca: String,
    /// Our certificate and key (`--datastore-certfile`, `--datastore-keyfile`).
    pub identity: Option<(String, String)>,
}

impl EtcdTls {
    fn options(&self) -> TlsOptions {
        let options = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
            None => options,
        }
    }
}

/// A store kept in an etcd v3 cluster.
pub struct EtcdStore {
    client: Client,
    endpoints: String,
}

impl EtcdStore {
    /// Connects to `endpoints` (`host:port`, `http://host:port`, or `https://host:port` with
    /// `tls`), retrying with exponential back-off for up to `wait`, and logging each failed
    /// attempt with the endpoint.
    pub async fn connect(
        endpoints: &[String],
        wait: Duration,
        tls: Option<&EtcdTls>,
    ) -> Result<EtcdStore> {
        let names = endpoints.join(",");
        let deadline = tokio::time::Instant::now() + wait;
        let mut delay = Duration::from_millis(100);
        loop {
            match Self::try_connect(endpoints, tls).await {
                Ok(client) => {
                    return Ok(EtcdStore {
                        client,
                        endpoints: names,
                    });
                }
                Err(detail) => {
                    if tokio::time::Instant::now() + delay > deadline {
                        return Err(Error::Unavailable {
                            endpoint: names,
                            detail: format!("gave up after {wait:?}: {detail}"),
                        });
                    }
                    tracing::warn!(endpoint = %names, %detail, retry_in = ?delay, "etcd is not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_connect(
        endpoints: &[String],
        tls: Option<&EtcdTls>,
    ) -> std::result::Result<Client, String> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            opts = opts.with_tls(tls.options());
        }
        let mut client =
            tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, Some(opts)))
                .await
                .map_err(|_| "connection timed out".to_string())?
                .map_err(|e| e.to_string())?;
        // The channel connects lazily; one real request proves the endpoint answers.
        tokio::time::timeout(REQUEST_TIMEOUT, client.status())
            .await
            .map_err(|_| "status request timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(client)
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    fn error(&self, e: etcd_client::Error) -> Error {
        let text = e.to_string();
        if text.contains("request is too large") {
            // Our own limit normally answers first; etcd's counts the whole request.
            return Error::ValueTooLarge {
                key: String::new(),
                size: 0,
                limit: crate::MAX_VALUE_BYTES,
            };
        }
        Error::Unavailable {
            endpoint: self.endpoints.clone(),
            detail: text,
        }
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(Error::Unavailable {
                endpoint: self.endpoints.clone(),
                detail: format!("no answer within {REQUEST_TIMEOUT:?}"),
            }),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<(bool, Revision, Vec<TxnOpResponse>)> {
        let resp = self.call(self.kv().txn(txn)).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.succeeded(), rev, resp.op_responses()))
    }

    /// The compaction revision recorded by [`Store::compact`], for error reports.
    async fn recorded_compaction(&self) -> Revision {
        let resp = self.call(self.kv().get(COMPACT_KEY, None)).await;
        resp.ok()
            .and_then(|r| r.kvs().first().map(|kv| kv.value().to_vec()))
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    }

    /// What a failed compare found: the key's state from the `or_else` get.
    fn current(key: &str, responses: Vec<TxnOpResponse>) -> Option<KeyValue> {
        responses
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(convert),
                _ => None,
            })
            .filter(|kv| kv.key == key)
    }
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    }
}

fn failed_compare(key: &str, expected: Revision, current: Option<KeyValue>) -> Error {
    match current {
        Some(current) => Error::Conflict {
            key: key.to_string(),
            expected,
            current: Box::new(current),
        },
        None => Error::NotFound {
            key: key.to_string(),
        },
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.call(self.kv().get(key, None)).await?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResponse> {
        let mut start = prefix.as_bytes().to_vec();
        if let Some(after) = &opts.after {
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            start = start.max(next);
        }
        if start.is_empty() {
            // etcd needs a key; "\0" up to the end is every key.
            start.push(0);
        }
        let mut get =
            GetOptions::new().with_range(prefix_end(prefix.as_bytes()).unwrap_or(vec![0]));
        if opts.limit > 0 {
            get = get.with_limit(opts.limit as i64);
        }
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        let resp = match self.call(self.kv().get(start, Some(get))).await {
            Ok(resp) => resp,
            Err(Error::Unavailable { detail, .. })
                if detail.contains("revision has been compacted") =>
            {
                return Err(Error::Compacted {
                    requested: opts.revision,
                    compact_revision: self.recorded_compaction().await,
                });
            }
            Err(Error::Unavailable { detail, .. }) if detail.contains("future revision") => {
                return Err(Error::FutureRevision {
                    requested: opts.revision,
                    current: self.current_revision().await?,
                });
            }
            Err(e) => return Err(e),
        };
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        let kvs: Vec<KeyValue> = resp.kvs().iter().map(convert).collect();
        // `count` is every key in the range at the revision, whatever the limit.
        let remaining = if resp.more() {
            (resp.count().max(0) as usize).saturating_sub(kvs.len())
        } else {
            0
        };
        Ok(RangeResponse {
            kvs,
            revision,
            more: resp.more(),
            remaining,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        check_value(key, &value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let (ok, rev, _) = self.txn(txn).await?;
        if !ok {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        check_value(key, &value)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let (ok, rev, responses) = self.txn(txn).await?;
        if !ok {
            return Err(failed_compare(key, expected, Self::current(key, responses)));
        }
        let prev = responses.into_iter().find_map(|r| match r {
            TxnOpResponse::Put(p) => p.prev_key().map(convert),
            _ => None,
        });
        let prev = prev.ok_or_else(|| {
            Error::Internal(format!("etcd returned no previous value for {key:?}"))
        })?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
            version: prev.version + 1,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        let delete = TxnOp::delete(key, Some(etcd_client::DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(expected) => Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                .and_then([delete])
                .or_else([TxnOp::get(key, None)]),
            None => Txn::new().and_then([delete]),
        };
        let (ok, rev, responses) = self.txn(txn).await?;
        if !ok {
            return Err(failed_compare(
                key,
                expected.unwrap_or(0),
                Self::current(key, responses),
            ));
        }
        let prev = responses.into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().map(convert),
            _ => None,
        });
        match prev {
            Some(prev) => Ok(Deleted {
                revision: rev,
                prev,
            }),
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .call(
                self.kv()
                    .get(COMPACT_KEY, Some(GetOptions::new().with_count_only())),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        match self.call(self.kv().compact(revision, None)).await {
            Ok(_) => {}
            Err(Error::Unavailable { detail, .. })
                if detail.contains("revision has been compacted") =>
            {
                return Err(Error::Compacted {
                    requested: revision,
                    compact_revision: self.recorded_compaction().await,
                });
            }
            Err(e) => return Err(e),
        }
        let record = TxnOp::put(COMPACT_KEY, revision.to_string(), None);
        self.txn(Txn::new().and_then([record])).await?;
        Ok(())
    }

    async fn watch(&self, prefix: &str, from: Revision, opts: WatchOptions) -> Result<WatchStream> {
        let mut wopts = etcd_client::WatchOptions::new()
            .with_prev_key()
            .with_progress_notify()
            .with_range(prefix_end(prefix.as_bytes()).unwrap_or(vec![0]));
        // "From now" is fixed here, so a write made right after this call is never missed.
        let from = if from > 0 {
            from
        } else {
            self.current_revision().await? + 1
        };
        wopts = wopts.with_start_revision(from);
        let mut client = self.client.watch_client();
        let key = if prefix.is_empty() { "\0" } else { prefix };
        let stream = self.call(client.watch(key, Some(wopts))).await?;
        let (out, rx) = mpsc::channel(256);
        let endpoints = self.endpoints.clone();
        tokio::spawn(forward_watch(stream, from, opts, out, endpoints));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn db_size(&self) -> Result<u64> {
        let mut maintenance = self.client.maintenance_client();
        let status = self.call(maintenance.status()).await?;
        Ok(status.db_size().max(0) as u64)
    }

    async fn close(&self) -> Result<()> {
        // The gRPC channel closes when the last client handle is dropped.
        Ok(())
    }

    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints)
    }
}

/// Turns etcd watch responses into [`WatchEvent`]s, asking etcd for a progress report whenever
/// the watch has been idle for the requested interval.
async fn forward_watch(
    mut stream: etcd_client::WatchStream,
    from: Revision,
    opts: WatchOptions,
    out: mpsc::Sender<Result<WatchEvent>>,
    endpoints: String,
) {
    let interval = opts.progress_interval.unwrap_or(Duration::from_secs(3600));
    let idle = tokio::time::sleep(interval);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            () = out.closed() => return,
            () = &mut idle, if opts.progress_interval.is_some() => {
                if let Err(e) = stream.request_progress().await {
                    let _ = out.send(Err(Error::Unavailable { endpoint: endpoints, detail: e.to_string() })).await;
                    return;
                }
                idle.as_mut().reset(tokio::time::Instant::now() + interval);
            }
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = out.send(Err(Error::Unavailable { endpoint: endpoints, detail: "watch stream ended".into() })).await;
                        return;
                    }
                    Err(e) => {
                        let _ = out.send(Err(Error::Unavailable { endpoint: endpoints, detail: e.to_string() })).await;
                        return;
                    }
                };
                if resp.canceled() || resp.compact_revision() > 0 {
                    let err = if resp.compact_revision() > 0 {
                        Error::Compacted { requested: from, compact_revision: resp.compact_revision() }
                    } else {
                        Error::Internal(format!("etcd canceled the watch: {}", resp.cancel_reason()))
                    };
                    let _ = out.send(Err(err)).await;
                    return;
                }
                if resp.created() {
                    continue;
                }
                if resp.events().is_empty() {
                    if opts.progress_interval.is_some() {
                        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                        if out.send(Ok(WatchEvent::Progress { revision })).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let prev = ev.prev_kv().map(convert);
                    let item = match ev.event_type() {
                        EventType::Put => WatchEvent::Put { kv: convert(kv), prev },
                        EventType::Delete => WatchEvent::Delete {
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            revision: kv.mod_revision(),
                            prev,
                        },
                    };
                    if out.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                idle.as_mut().reset(tokio::time::Instant::now() + interval);
            }
        }
    }
}
