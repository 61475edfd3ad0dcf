//! The sharded pipeline between receivers and SLI state.
//!
//! Receivers hold a [`Pipeline`] handle and call [`Pipeline::ingest_traces`] with the raw
//! request bytes. The request is scanned in the caller's task, split into per-shard batches
//! by series-key hash, and handed to shard threads through lock-free queues. Each queue is
//! bounded by a reservation counter: a request is admitted only if every shard it touches has
//! room, so a refused request (to be retried by the client) never counts partially.
//! Shards publish snapshots that [`Pipeline::view`] combines for readers.

pub mod batch;
pub mod pool;
pub mod query;
pub mod shard;
pub mod snapshot;

use crate::clock::SharedClock;
use crate::completeness::traces::{TraceTracker, TrackerConfig};
use crate::otlp::scan::{
    log_records_by_resource, metric_points_by_resource, scan_request_points, scan_traces, AttrsRef,
    ScanError,
};
use crate::sli::classify::Classifier;
use crate::sli::flag::FlagRules;
use crate::sli::flag_table::{FlagLimits, FlagTable};
use crate::sli::series::MetricPoint;
use crate::sli::series::{SeriesSettings, SeriesTable};
use crate::slo::def::{SloDef, SloSettings};
use crate::slo::engine::SloEngine;
use crate::slo::tally::SloTally;
use crate::telemetry::Signal;
use arc_swap::ArcSwap;
use batch::{Batch, Collector, Tally};
use crossbeam::channel::{self, Sender};
use crossbeam::utils::CachePadded;
use pool::BatchPool;
use shard::Msg;
pub use shard::Worker;
use snapshot::{ShardSnapshot, View};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;

/// Validated pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Number of shard threads.
    pub shards: usize,
    /// Batches each shard may have queued.
    pub queue_capacity: usize,
    /// Time between snapshots.
    pub flush_interval: Duration,
    /// Retry delay suggested to clients when queues are full.
    pub retry_after: Duration,
    /// Trace-structure tracking per shard (limits already divided by the shard count);
    /// `None` when completeness tracking is off.
    pub traces: Option<TrackerConfig>,
    /// Spans whose end time is further than this from their arrival are clock-skewed.
    pub max_clock_skew: Duration,
    /// Settings shared by the SLOs (the SLOs themselves are in the series settings).
    pub slo: SloSettings,
    /// Feature-flag cohorts; `None` when flag evaluations are not read.
    pub flags: Option<FlagOptions>,
}

/// Validated `flags:` settings for the pipeline.
#[derive(Clone, Debug, Default)]
pub struct FlagOptions {
    /// Which evaluations count, and toward which requests.
    pub rules: FlagRules,
    /// Most flags (service and flag key) tracked at once.
    pub max_flags: usize,
    /// Most variants per flag.
    pub max_variants: usize,
    /// Most flag series (service, feature, flag, variant).
    pub max_series: usize,
    /// Export the flag series on `/metrics` (`flags.metrics`).
    pub metrics: bool,
    /// The statistics of flag verdicts and tied-error tests (`canary:`'s, defaults when
    /// canary analysis is off).
    pub stats: crate::slo::def::CanaryConfig,
}

/// Flag evaluations the receivers could not count toward a cohort, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlagCounts {
    /// Evaluations counted toward a request (one per request and flag).
    pub evaluations: u64,
    /// Evaluations naming neither a variant nor a value.
    pub no_variant: u64,
    /// Evaluations on other spans whose entry span was not in the same export request.
    pub unattributed: u64,
    /// Evaluations of keys outside `flags.keys`.
    pub not_listed: u64,
    /// Evaluations beyond the per-request limits (64 flags per request, two flag
    /// observations per span of the export request).
    pub request_limit: u64,
}

/// Settings of flag series: those of the SLI series (buckets, expiry, exemplars), keyed by
/// service, feature, flag and variant, with window histograms kept so readers can add up a
/// variant over features.
fn flag_settings(sli: &SeriesSettings, max_series: usize) -> SeriesSettings {
    let bounds: Vec<f64> = sli.bounds_ns.iter().map(|&b| b as f64 / 1e9).collect();
    let mut s = SeriesSettings::new(sli.layout, &bounds, max_series, 4)
        .with_exemplars(sli.exemplars)
        .with_start(sli.started_unix_nanos)
        .with_window_hists(true);
    s.expiry_slots = sli.expiry_slots;
    s
}

/// Why a request was not ingested.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The body is not a valid OTLP protobuf message.
    #[error("request is not a valid ExportTraceServiceRequest: {0}")]
    Malformed(#[from] ScanError),
    /// A shard queue is full; retry after `retry_after`. Nothing of the request was recorded.
    #[error("pipeline is full, retry in {retry_after:?}")]
    Busy {
        /// Suggested delay.
        retry_after: Duration,
        /// Spans in the refused request.
        spans: u64,
    },
    /// The request expands to more series-key data than one request may.
    #[error("request produces more than {} MiB of series keys; split it", batch::MAX_KEY_BYTES_PER_REQUEST >> 20)]
    TooLarge,
    /// The pipeline is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

struct ShardHandle {
    tx: Sender<Msg>,
    queued: Arc<CachePadded<AtomicUsize>>,
    snapshot: Arc<ArcSwap<ShardSnapshot>>,
}

struct Inner {
    classifier: Classifier,
    settings: Arc<SeriesSettings>,
    shards: Vec<ShardHandle>,
    capacity: usize,
    retry_after: Duration,
    track_traces: bool,
    max_clock_skew: u64,
    clock: SharedClock,
    /// The SLO engine; `None` without SLOs.
    slo: Option<Arc<Mutex<SloEngine>>>,
    /// Cohort queries in progress.
    queries: AtomicUsize,
    /// Flag settings; `None` when flags are not read.
    flags: Option<FlagOptions>,
    /// Flag evaluations received: counted, without variant, unattributed, not listed, over
    /// the per-request limits.
    flag_counts: [AtomicU64; 5],
    closed: AtomicBool,
    /// Ingest calls in progress; shutdown waits for them before stopping the shards, so no
    /// accepted request is answered OK and then dropped.
    in_flight: CachePadded<AtomicUsize>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Emptied batches the shards gave back, for the next requests.
    pool: Arc<BatchPool>,
}

/// Batches kept for reuse per shard ([`BatchPool`]).
const POOLED_BATCHES_PER_SHARD: usize = 4;

/// Counts an ingest call in progress for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> Option<Self> {
        inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&inner.in_flight);
        (!inner.closed.load(Ordering::SeqCst)).then_some(guard)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Handle to the running pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

impl Pipeline {
    /// Starts the shard threads.
    pub fn start(
        opts: &PipelineOptions,
        classifier: Classifier,
        settings: Arc<SeriesSettings>,
        slos: Arc<[SloDef]>,
        clock: SharedClock,
    ) -> std::io::Result<Self> {
        let (pipeline, workers) = Self::build(opts, classifier, settings, slos, clock);
        let mut threads = Vec::with_capacity(workers.len());
        for (i, worker) in workers.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("otel-sli-shard-{i}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    pipeline.shutdown();
                    return Err(e);
                }
            }
        }
        if let Ok(mut t) = pipeline.inner.threads.lock() {
            *t = threads;
        }
        Ok(pipeline)
    }

    /// Builds the pipeline and its shard workers without starting them. The caller runs each
    /// [`Worker`] on a thread of its own; until then the shard queues only fill up, which is
    /// how tests hold a shard still.
    pub fn build(
        opts: &PipelineOptions,
        classifier: Classifier,
        settings: Arc<SeriesSettings>,
        slos: Arc<[SloDef]>,
        clock: SharedClock,
    ) -> (Self, Vec<Worker>) {
        let n = opts.shards.max(1);
        let engine = (!slos.is_empty()).then(|| {
            Arc::new(Mutex::new(SloEngine::new(
                Arc::clone(&slos),
                opts.slo.clone(),
            )))
        });
        let mut shards = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        let flag_tables = opts.flags.as_ref().map(|f| {
            (
                Arc::new(flag_settings(&settings, f.max_series)),
                Arc::new(FlagLimits::new(f.max_flags, f.max_variants)),
            )
        });
        let pool = Arc::new(BatchPool::new(POOLED_BATCHES_PER_SHARD * n + 4));
        for _ in 0..n {
            let (tx, rx) = channel::unbounded();
            let queued = Arc::new(CachePadded::new(AtomicUsize::new(0)));
            let publish = Arc::new(ArcSwap::from_pointee(ShardSnapshot::default()));
            workers.push(Worker {
                rx,
                queued: Arc::clone(&queued),
                table: SeriesTable::new(Arc::clone(&settings)),
                flags: flag_tables
                    .as_ref()
                    .map(|(s, l)| FlagTable::new(Arc::clone(s), Arc::clone(l))),
                gaps: crate::completeness::GapState::new(opts.traces.map(TraceTracker::new)),
                clock: Arc::clone(&clock),
                publish: Arc::clone(&publish),
                flush_interval: opts.flush_interval,
                slo: engine
                    .as_ref()
                    .map(|e| (SloTally::new(&slos, opts.slo.max_lateness), Arc::clone(e))),
                pool: Arc::clone(&pool),
            });
            shards.push(ShardHandle {
                tx,
                queued,
                snapshot: publish,
            });
        }
        let pipeline = Self {
            inner: Arc::new(Inner {
                classifier,
                settings,
                shards,
                capacity: opts.queue_capacity.max(1),
                retry_after: opts.retry_after,
                track_traces: opts.traces.is_some(),
                max_clock_skew: u64::try_from(opts.max_clock_skew.as_nanos()).unwrap_or(u64::MAX),
                clock: Arc::clone(&clock),
                slo: engine,
                queries: AtomicUsize::new(0),
                flags: opts.flags.clone(),
                flag_counts: Default::default(),
                closed: AtomicBool::new(false),
                in_flight: CachePadded::new(AtomicUsize::new(0)),
                threads: Mutex::new(Vec::new()),
                pool,
            }),
        };
        (pipeline, workers)
    }

    /// Scans an `ExportTraceServiceRequest` and queues its observations.
    ///
    /// On `Ok`, the returned tally says how many spans were rejected (for
    /// `partial_success`). On `Err`, nothing of the request was recorded.
    pub fn ingest_traces(&self, body: &[u8]) -> Result<Tally, IngestError> {
        let inner = &*self.inner;
        let Some(_in_flight) = InFlight::enter(inner) else {
            return Err(IngestError::ShuttingDown);
        };
        let now = inner.clock.now_unix_nanos();
        let mut collector = Collector::new(&inner.classifier, inner.shards.len())
            .with_traces(inner.track_traces, now, inner.max_clock_skew)
            .with_flags(inner.flags.as_ref().map(|f| &f.rules))
            .with_pool(&inner.pool)
            .with_size_hint(body.len());
        scan_traces(body, &mut collector)?;
        collector.finish();
        if collector.too_large {
            return Err(IngestError::TooLarge);
        }
        let tally = collector.tally;
        self.dispatch(collector.batches)
            .map_err(|retry_after| IngestError::Busy {
                retry_after,
                spans: tally.spans,
            })?;
        let flags = [
            tally.flag_evaluations,
            tally.flag_no_variant,
            tally.flag_unattributed,
            tally.flag_not_listed,
            tally.flag_over_limit,
        ];
        for (counter, n) in inner.flag_counts.iter().zip(flags) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(tally)
    }

    /// Counts the items of a metrics or logs request per service and, when completeness
    /// tracking is on, tells the shard owning each service that it reported (for silence
    /// and metrics-without-traces detection). Returns the item count.
    pub fn ingest_signal(&self, signal: Signal, body: &[u8]) -> Result<u64, IngestError> {
        let inner = &*self.inner;
        let Some(_in_flight) = InFlight::enter(inner) else {
            return Err(IngestError::ShuttingDown);
        };
        // A hash map: a hostile request may carry hundreds of thousands of resources.
        let mut per_service: hashbrown::HashMap<Box<str>, u64> = hashbrown::HashMap::new();
        let mut sink = |attrs: AttrsRef<'_>, items: u64| {
            if !inner.track_traces {
                return;
            }
            let service = attrs
                .get(b"service.name")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service");
            let service =
                crate::sli::key::truncated(service, crate::completeness::MAX_SERVICE_NAME_BYTES);
            match per_service.get_mut(service) {
                Some(n) => *n += items,
                None => {
                    per_service.insert(service.into(), items);
                }
            }
        };
        let items = match signal {
            Signal::Metrics => metric_points_by_resource(body, &mut sink)?,
            Signal::Logs => log_records_by_resource(body, &mut sink)?,
            Signal::Traces => return self.ingest_traces(body).map(|t| t.spans),
        };
        if !inner.track_traces {
            return Ok(items);
        }
        let mut batches: Vec<Batch> = (0..inner.shards.len()).map(|_| inner.pool.take()).collect();
        for (service, n) in per_service {
            let shard =
                batch::shard_of(crate::sli::key::hash_key(service.as_bytes()), batches.len());
            if let Some(b) = batches.get_mut(shard) {
                b.signals.push(batch::ServiceEvent {
                    service: b.services.len() as u32,
                    kind: if signal == Signal::Logs {
                        batch::EventKind::LogRecords
                    } else {
                        batch::EventKind::MetricPoints
                    },
                    items: n,
                });
                b.services.push(service);
            }
        }
        if signal == Signal::Metrics {
            self.collect_request_points(body, &mut batches)?;
        }
        self.dispatch(batches)
            .map_err(|retry_after| IngestError::Busy {
                retry_after,
                spans: 0,
            })?;
        Ok(items)
    }

    /// Adds the request-metric data points of a metrics request to the batches of the
    /// shards owning their series, for trace coverage.
    fn collect_request_points(
        &self,
        body: &[u8],
        batches: &mut [Batch],
    ) -> Result<(), IngestError> {
        let classifier = &self.inner.classifier;
        let mut key = Vec::with_capacity(128);
        let mut stream = Vec::with_capacity(256);
        let n = batches.len();
        let mut current: Option<(AttrsRef<'_>, crate::sli::classify::ResourceValues<'_>)> = None;
        let mut key_bytes = 0usize;
        let mut too_large = false;
        scan_request_points(body, &mut |resource, point| {
            // Resource values once per resource, not once per point.
            let values = match &current {
                Some((attrs, values)) if attrs.same_as(&resource) => *values,
                _ => {
                    let values = classifier.resource(resource);
                    current = Some((resource, values));
                    values
                }
            };
            key.clear();
            if !classifier.metric_key(&values, point.attributes, &mut key) {
                return;
            }
            key_bytes += key.len();
            if key_bytes > batch::MAX_KEY_BYTES_PER_REQUEST {
                too_large = true;
                return;
            }
            // The stream: series key, metric, the point's attributes and the resource's
            // (replicas of a service differ in resource attributes such as
            // service.instance.id, and each has its own cumulative stream).
            stream.clear();
            stream.extend_from_slice(&key);
            stream.extend_from_slice(point.metric);
            for (k, v) in point.attributes.iter().chain(resource.iter()) {
                stream.extend_from_slice(k);
                stream.extend_from_slice(format!("={v:?};").as_bytes());
            }
            let hash = crate::sli::key::hash_key(&key);
            let Some(b) = batches.get_mut(batch::shard_of(hash, n)) else {
                return;
            };
            let key_start = b.keys.len() as u32;
            b.keys.extend_from_slice(&key);
            b.metric_points.push(batch::MetricItem {
                hash,
                key_start,
                key_len: key.len() as u32,
                point: MetricPoint {
                    stream: crate::sli::key::hash_key(&stream),
                    cumulative: point.temporality == 2,
                    start_unix_nanos: point.start_time_unix_nano,
                    count: point.count,
                    metric: crate::otlp::scan::REQUEST_METRICS
                        .iter()
                        .position(|m| *m == point.metric)
                        .unwrap_or(0) as u8,
                },
            });
        })?;
        if too_large {
            return Err(IngestError::TooLarge);
        }
        Ok(())
    }

    /// Sends each non-empty batch to its shard, after reserving room in all of them; on a
    /// full shard returns the retry delay and sends nothing.
    fn dispatch(&self, batches: Vec<Batch>) -> Result<(), Duration> {
        let inner = &*self.inner;
        for (i, b) in batches.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            if !self.reserve(i) {
                for (j, bj) in batches.iter().enumerate().take(i) {
                    if !bj.is_empty() {
                        if let Some(s) = inner.shards.get(j) {
                            s.queued.fetch_sub(1, Ordering::Release);
                        }
                    }
                }
                batches.into_iter().for_each(|b| inner.pool.give(b));
                return Err(inner.retry_after);
            }
        }
        for (shard, batch) in inner.shards.iter().zip(batches) {
            if batch.is_empty() {
                inner.pool.give(batch);
                continue;
            }
            if shard.tx.send(Msg::Batch(batch)).is_err() {
                // The worker is gone: only during shutdown.
                shard.queued.fetch_sub(1, Ordering::Release);
            }
        }
        Ok(())
    }

    fn reserve(&self, shard: usize) -> bool {
        let cap = self.inner.capacity;
        self.inner.shards.get(shard).is_some_and(|s| {
            s.queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    (q < cap).then_some(q + 1)
                })
                .is_ok()
        })
    }

    /// Combines the shards' latest snapshots.
    pub fn view(&self) -> View {
        let snaps: Vec<Arc<ShardSnapshot>> = self
            .inner
            .shards
            .iter()
            .map(|s| s.snapshot.load_full())
            .collect();
        View::combine(&snaps, &self.inner.settings.layout)
    }

    /// Asks every shard to apply what it has queued and publish a snapshot, and waits for
    /// them. Blocking: call from a blocking context.
    pub fn flush_now(&self) {
        let acks: Vec<_> = self
            .inner
            .shards
            .iter()
            .filter_map(|s| {
                let (tx, rx) = channel::bounded(1);
                s.tx.send(Msg::Flush(tx)).ok().map(|_| rx)
            })
            .collect();
        for rx in acks {
            let _ = rx.recv();
        }
    }

    /// Batches queued per shard.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.inner
            .shards
            .iter()
            .map(|s| s.queued.load(Ordering::Relaxed))
            .collect()
    }

    /// Capacity of each shard queue, in batches.
    pub fn queue_capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The shared series settings (layout, buckets, limits).
    pub fn settings(&self) -> &SeriesSettings {
        &self.inner.settings
    }

    /// Runs `q` on every shard's live state and merges the answers. Blocks until
    /// `q.deadline` at most (queued batches are applied first). At most
    /// [`query::MAX_CONCURRENT_QUERIES`] run at once.
    pub fn query_cohorts(
        &self,
        q: query::CohortQuery,
    ) -> Result<query::CohortSlots, query::QueryError> {
        let running = &self.inner.queries;
        if running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < query::MAX_CONCURRENT_QUERIES).then_some(n + 1)
            })
            .is_err()
        {
            return Err(query::QueryError::Busy);
        }
        struct Release<'a>(&'a AtomicUsize);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _release = Release(running);
        let deadline = q.deadline;
        let q = Arc::new(q);
        let replies: Vec<_> = self
            .inner
            .shards
            .iter()
            .map(|s| {
                let (tx, rx) = channel::bounded(1);
                s.tx.send(Msg::Query(Arc::clone(&q), tx)).ok().map(|()| rx)
            })
            .collect::<Option<_>>()
            .ok_or(query::QueryError::Unavailable)?;
        let mut parts = Vec::with_capacity(replies.len());
        for rx in replies {
            parts.push(
                rx.recv_deadline(deadline)
                    .map_err(|_| query::QueryError::Unavailable)?,
            );
        }
        Ok(query::merge(parts))
    }

    /// Whether flag evaluations are read (`flags.enabled`).
    pub fn reads_flags(&self) -> bool {
        self.inner.flags.is_some()
    }

    /// The flag settings; `None` when flags are not read.
    pub fn flag_options(&self) -> Option<&FlagOptions> {
        self.inner.flags.as_ref()
    }

    /// Flag evaluations received since start, by what became of them.
    pub fn flag_counts(&self) -> FlagCounts {
        let [e, v, u, n, l] = &self.inner.flag_counts;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FlagCounts {
            evaluations: get(e),
            no_variant: get(v),
            unattributed: get(u),
            not_listed: get(n),
            request_limit: get(l),
        }
    }

    /// The SLO engine, holding what shards have flushed; `None` without SLOs.
    pub fn slo_engine(&self) -> Option<&Arc<Mutex<SloEngine>>> {
        self.inner.slo.as_ref()
    }

    /// The current time of the pipeline's clock, Unix nanoseconds.
    pub fn now_unix_nanos(&self) -> u64 {
        self.inner.clock.now_unix_nanos()
    }

    /// True when completeness tracking is on.
    pub fn tracks_completeness(&self) -> bool {
        self.inner.track_traces
    }

    /// The classifier in use.
    pub fn classifier(&self) -> &Classifier {
        &self.inner.classifier
    }

    /// True until [`Pipeline::shutdown`] starts.
    pub fn is_running(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    /// Refuses new requests, lets every shard apply what is queued, publishes final
    /// snapshots and joins the shard threads. Blocking.
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Ingest calls that got in before the door closed finish queueing first (they are
        // short: a scan and a few sends).
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for s in &self.inner.shards {
            let _ = s.tx.send(Msg::Stop);
        }
        let threads = match self.inner.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::otlp::synth::{traces_request, Rng, Workload};
    use crate::sli::classify::ClassifyConfig;
    use crate::sli::hist::Layout;
    use crate::sli::window::Window;
    use prost::Message;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn build_with(shards: usize, capacity: usize, clock: SharedClock) -> (Pipeline, Vec<Worker>) {
        let settings = Arc::new(SeriesSettings::new(
            Layout::new(2).expect("layout"),
            &[0.1],
            1000,
            2,
        ));
        let opts = PipelineOptions {
            shards,
            queue_capacity: capacity,
            flush_interval: Duration::from_secs(60),
            retry_after: Duration::from_millis(1500),
            traces: Some(TrackerConfig {
                timeout_nanos: 30_000_000_000,
                max_traces: 10_000,
                max_spans_per_trace: 100,
                max_bytes: 64 << 20,
            }),
            max_clock_skew: Duration::from_secs(3600),
            slo: SloSettings::default(),
            flags: None,
        };
        let classifier = Classifier::new(ClassifyConfig::default()).expect("rules");
        Pipeline::build(&opts, classifier, settings, Arc::from(Vec::new()), clock)
    }

    fn build(shards: usize, capacity: usize) -> (Pipeline, Vec<Worker>) {
        build_with(shards, capacity, Arc::new(ManualClock::new(T0)))
    }

    fn run(workers: Vec<Worker>) -> Vec<JoinHandle<()>> {
        workers
            .into_iter()
            .map(|w| std::thread::spawn(move || w.run()))
            .collect()
    }

    fn total_requests(p: &Pipeline) -> u64 {
        p.view().series.iter().map(|s| s.requests_total).sum()
    }

    #[test]
    fn full_queue_refuses_whole_request_and_records_nothing_of_it() {
        let (p, workers) = build(2, 1);
        let w = Workload::default();
        let mut rng = Rng::new(7);
        // Big enough to touch both shards.
        let (req, entries, _) = traces_request(&w, &mut rng, 400, 1_700_000_000_000_000_000);
        let body = req.encode_to_vec();
        let first = p.ingest_traces(&body).expect("room for the first request");
        assert_eq!(first.entries, entries);
        // Workers are not running: every shard queue is at capacity now.
        match p.ingest_traces(&body) {
            Err(IngestError::Busy { retry_after, spans }) => {
                assert_eq!(retry_after, Duration::from_millis(1500));
                assert!(spans >= 400);
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(
            p.queue_depths(),
            vec![1, 1],
            "refused request left no reservation"
        );
        let threads = run(workers);
        p.flush_now();
        assert_eq!(
            total_requests(&p),
            entries,
            "only the first request counted"
        );
        // Room again once the shards drained.
        p.ingest_traces(&body).expect("accepted after draining");
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
        assert_eq!(
            total_requests(&p),
            2 * entries,
            "shutdown applied the queued batch"
        );
        assert!(matches!(
            p.ingest_traces(&body),
            Err(IngestError::ShuttingDown)
        ));
    }

    #[test]
    fn malformed_request_records_nothing() {
        let (p, workers) = build(1, 8);
        let threads = run(workers);
        let w = Workload::default();
        let (req, _, _) = traces_request(&w, &mut Rng::new(3), 100, 1_700_000_000_000_000_000);
        let mut body = req.encode_to_vec();
        body.truncate(body.len() - 3);
        assert!(matches!(
            p.ingest_traces(&body),
            Err(IngestError::Malformed(_))
        ));
        p.flush_now();
        assert_eq!(total_requests(&p), 0);
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
    }

    #[test]
    fn counts_match_the_generated_traffic_across_shards() {
        let (p, workers) = build(3, 64);
        let threads = run(workers);
        let w = Workload::default();
        let mut rng = Rng::new(11);
        let (mut want_req, mut want_err) = (0, 0);
        for _ in 0..20 {
            let (req, e, b) = traces_request(&w, &mut rng, 500, 1_700_000_000_000_000_000);
            p.ingest_traces(&req.encode_to_vec()).expect("accepted");
            want_req += e;
            want_err += b;
        }
        p.flush_now();
        let v = p.view();
        assert_eq!(
            v.series.iter().map(|s| s.requests_total).sum::<u64>(),
            want_req
        );
        assert_eq!(
            v.series.iter().map(|s| s.errors_total).sum::<u64>(),
            want_err
        );
        assert_eq!(v.active_series, w.services * w.features);
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
    }

    fn window_requests(p: &Pipeline, w: Window) -> u64 {
        p.view()
            .series
            .iter()
            .map(|s| s.windows[w.index()].requests)
            .sum()
    }

    /// Windows follow the injected clock: data leaves `1m` after a minute, `5m` after five,
    /// `1h` after an hour, and stays in `all`.
    #[test]
    fn windows_follow_the_injected_clock() {
        let start = T0;
        let clock = Arc::new(ManualClock::new(start));
        let (p, workers) = build_with(2, 16, clock.clone());
        let threads = run(workers);
        let (req, entries, _) = traces_request(&Workload::default(), &mut Rng::new(1), 400, start);
        p.ingest_traces(&req.encode_to_vec()).expect("accepted");
        p.flush_now();
        for w in Window::ALL {
            assert_eq!(window_requests(&p, w), entries, "{w:?} right after");
        }
        let sec = 1_000_000_000u64;
        clock.advance(70 * sec);
        p.flush_now();
        assert_eq!(window_requests(&p, Window::M1), 0, "1m after 70 s");
        assert_eq!(window_requests(&p, Window::M5), entries);
        clock.advance(300 * sec);
        p.flush_now();
        assert_eq!(window_requests(&p, Window::M5), 0, "5m after 6 min");
        assert_eq!(window_requests(&p, Window::H1), entries);
        clock.advance(3600 * sec);
        p.flush_now();
        assert_eq!(window_requests(&p, Window::H1), 0, "1h after 66 min");
        assert_eq!(window_requests(&p, Window::All), entries);
        let s = &p.view().series[0];
        assert!(s.windows[Window::M1.index()].quantiles_ns[0].is_none());
        assert!(s.windows[Window::All.index()].quantiles_ns[0].is_some());
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
    }

    /// Requests racing with shutdown are either refused or fully counted: none is answered
    /// OK and then lost.
    #[test]
    fn shutdown_never_loses_an_accepted_request() {
        let (p, workers) = build(2, 4096);
        let threads = run(workers);
        let (req, entries, _) = traces_request(&Workload::default(), &mut Rng::new(9), 200, T0);
        let body = req.encode_to_vec();
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let p = p.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0u64;
                    loop {
                        match p.ingest_traces(&body) {
                            Ok(_) => accepted += 1,
                            Err(IngestError::ShuttingDown) => return accepted,
                            Err(IngestError::Busy { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        p.shutdown();
        let accepted: u64 = senders.into_iter().map(|t| t.join().expect("sender")).sum();
        for t in threads {
            t.join().expect("worker exits");
        }
        assert!(accepted > 0);
        assert_eq!(total_requests(&p), accepted * entries);
    }

    /// Orphans and missing roots appear once the trace timeout passes on the injected
    /// clock; complete traces (parents arriving after children, in a later request) never
    /// produce a gap.
    #[test]
    fn trace_gaps_follow_the_injected_clock() {
        use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
        let clock = Arc::new(ManualClock::new(T0));
        let (p, workers) = build_with(2, 64, clock.clone());
        let threads = run(workers);
        let w = Workload::default();
        let (full, _, _) = traces_request(&w, &mut Rng::new(21), 400, T0);
        // Send each trace's children first and its root in a second request.
        let split = |roots: bool| {
            let mut r = full.clone();
            for rs in &mut r.resource_spans {
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|s| s.parent_span_id.is_empty() == roots);
                }
            }
            r
        };
        p.ingest_traces(&split(false).encode_to_vec())
            .expect("children");
        p.ingest_traces(&split(true).encode_to_vec())
            .expect("roots");
        // A second workload whose roots never come: every child is an orphan.
        let (broken, _, _) = traces_request(&w, &mut Rng::new(22), 40, T0);
        let mut broken = broken;
        let mut orphans = 0u64;
        let mut rootless = 0u64;
        for rs in &mut broken.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| !s.parent_span_id.is_empty());
                orphans += ss.spans.len() as u64;
            }
        }
        let traces: std::collections::HashSet<Vec<u8>> = broken
            .resource_spans
            .iter()
            .flat_map(|r: &ResourceSpans| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.clone())
            .collect();
        rootless += traces.len() as u64;
        p.ingest_traces(&broken.encode_to_vec()).expect("orphans");
        p.flush_now();
        assert!(
            p.view().gaps.iter().all(|g| g.counts.orphans.count == 0),
            "nothing before the timeout"
        );
        assert!(p.view().tracked_traces > 0);
        clock.advance(31_000_000_000);
        p.flush_now();
        let v = p.view();
        let total = |f: fn(&crate::completeness::GapCounts) -> u64| {
            v.gaps.iter().map(|g| f(&g.counts)).sum::<u64>()
        };
        assert_eq!(total(|c| c.orphans.count), orphans);
        assert_eq!(total(|c| c.missing_roots.count), rootless);
        assert_eq!(total(|c| c.missing_roots.spans), orphans);
        assert_eq!(v.tracked_traces, 0);
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
    }

    /// Sampled traffic (tracestate thresholds for 50% and 10%, and the older p-value)
    /// is counted by adjusted count: the estimated total lands within 4 standard
    /// deviations of the true traffic, and unsampled traffic stays exact.
    #[test]
    fn sampled_traffic_estimates_true_totals() {
        let n = 20_000usize;
        for (tracestate, p_keep) in [
            ("ot=th:8", 0.5),
            ("ot=th:e666666666666", 0.1),
            ("ot=p:1", 0.5),
            ("", 1.0),
        ] {
            let (p, workers) = build(2, 64);
            let threads = run(workers);
            let w = Workload {
                services: 1,
                features: 1,
                children_per_trace: 0,
                error_every: 0,
                seed: 1,
                ..Workload::default()
            };
            let mut rng = Rng::new(99);
            let (mut req, entries, _) = traces_request(&w, &mut rng, n, T0);
            assert_eq!(entries as usize, n);
            let mut kept = 0u64;
            for rs in &mut req.resource_spans {
                for ss in &mut rs.scope_spans {
                    ss.spans
                        .retain(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p_keep);
                    for span in &mut ss.spans {
                        span.trace_state = tracestate.into();
                    }
                    kept += ss.spans.len() as u64;
                }
            }
            p.ingest_traces(&req.encode_to_vec()).expect("accepted");
            p.flush_now();
            let v = p.view();
            let est: f64 = v.series.iter().map(|s| s.est_requests_total).sum();
            let spans: u64 = v.series.iter().map(|s| s.requests_total).sum();
            assert_eq!(spans, kept);
            let sigma = (n as f64 * (1.0 - p_keep) / p_keep).sqrt();
            assert!(
                (est - n as f64).abs() <= 4.0 * sigma + 1e-6,
                "{tracestate:?}: estimated {est}, true {n}, sigma {sigma}"
            );
            if p_keep == 1.0 {
                assert_eq!(est, n as f64, "exact when nothing is sampled");
            } else {
                let ratio = spans as f64 / est;
                assert!(
                    (ratio - p_keep).abs() < 1e-9,
                    "ratio {ratio} for {tracestate}"
                );
            }
            p.shutdown();
            for t in threads {
                t.join().expect("worker exits");
            }
        }
    }

    /// Invalid spans are counted per service: bad ids (rejected), entry spans ending before
    /// they start, and end times beyond the allowed clock skew.
    #[test]
    fn invalid_spans_are_counted_per_service() {
        let (p, workers) = build(2, 64);
        let threads = run(workers);
        let w = Workload {
            services: 1,
            features: 1,
            children_per_trace: 1,
            error_every: 0,
            seed: 1,
            ..Workload::default()
        };
        let (mut req, _, _) = traces_request(&w, &mut Rng::new(5), 40, T0);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[0].span_id = vec![0; 8];
        spans[1].trace_id.clear();
        // An entry span that ends before it starts.
        let entry = spans
            .iter_mut()
            .skip(2)
            .find(|s| s.kind == 2)
            .expect("an entry span");
        entry.end_time_unix_nano = entry.start_time_unix_nano - 1;
        // Two spans from two hours in the future.
        let mut future = 0;
        for s in spans.iter_mut().rev().take(2) {
            s.start_time_unix_nano = T0 + 7_200_000_000_000;
            s.end_time_unix_nano = T0 + 7_200_000_000_001;
            future += 1;
        }
        let tally = p.ingest_traces(&req.encode_to_vec()).expect("accepted");
        assert_eq!(tally.rejected(), 2);
        p.flush_now();
        let v = p.view();
        let g = v
            .gaps
            .iter()
            .find(|g| &*g.service == "service-0")
            .expect("service-0 tracked");
        assert_eq!(g.counts.invalid_ids, 2);
        assert_eq!(g.counts.invalid_durations, 1);
        assert_eq!(g.counts.clock_skew, future);
        assert_eq!(g.counts.invalid.count, 2 + 1 + future);
        assert!(g.counts.invalid.last_unix_nanos >= T0);
        p.shutdown();
        for t in threads {
            t.join().expect("worker exits");
        }
    }
}
