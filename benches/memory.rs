//! Memory held per active SLI series, measured with a counting global allocator.
//!
//! Drives `SeriesTable` directly (`record(hash, key, obs, slot)` / `advance(slot)`) for
//! 10,000 and 100,000 series in two scenarios:
//!
//! * sparse: each series gets a few requests in one 10 s slot, then time moves one slot on;
//! * steady: each series gets traffic in every slot for 372 slots (62 minutes of simulated
//!   time, more than the 361 needed for every window ring to be populated), 1 in 20
//!   requests bad, with two latency spreads: *typical* (log-normal around 50 ms, σ = 0.5)
//!   and *wide* (log-uniform over 1 ms..1 s, the worst case for sparse histograms).
//!
//! After each scenario a `snapshot()` is taken and kept (snapshots are part of the live
//! memory). Reports live heap bytes per series (requested sizes, without allocator
//! overhead), live allocations per series, the process RSS growth, and what
//! `SeriesTable::memory_bytes()` estimates.
//!
//! Memory per series grows with the traffic per series (more distinct latency buckets per
//! slot), so the steady scenario runs at 20 and at 2 requests per series per slot (2 and 0.2
//! requests per second). The whole run takes about 15 minutes on 2 cores and peaks near
//! 1.3 GB, most of it the 100,000-series steady runs at 20 per slot (about 5 minutes each).
//!
//! `cargo bench --bench memory`; environment: `MEM_PER_SLOT_10K` and `MEM_PER_SLOT_100K`
//! (default `20,2` each): comma-separated requests per series per slot for the steady
//! scenario; `MEM_SERIES` (e.g. `10000`) to run one size only.
//! Without `--bench` (as under `cargo test`) it runs a tiny smoke version.

mod common;

use common::{is_bench_run, thousands};
use otel_sli::otlp::synth::Rng;
use otel_sli::settings::DEFAULT_BUCKETS;
use otel_sli::sli::classify::Observation;
use otel_sli::sli::hist::Layout;
use otel_sli::sli::key;
use otel_sli::sli::series::{SeriesSettings, SeriesTable};
use otel_sli::sli::window::Window;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Forwards every call to the system allocator and keeps running totals of the live bytes
/// and allocations.
///
/// Soundness: each method calls the matching `System` method with exactly the arguments it
/// was given and returns its result unchanged, so `System`'s guarantees carry over as they
/// are. The bookkeeping uses only atomics (no allocation, no locks, no reentrancy), and runs
/// only after a successful call (a null result means nothing changed hands).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: see `Counting`: every method is a pass-through to `System` plus atomic counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds the rest.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> (usize, usize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_ALLOCS.load(Ordering::Relaxed),
    )
}

/// Resident set size of this process, bytes (0 if unavailable).
fn rss_bytes() -> usize {
    otel_sli::memory::resident_bytes().map_or(0, |b| b as usize)
}

/// Live heap of a `TraceTracker` holding `traces` in-flight traces of one root and three
/// children each (the end-to-end workload's shape), and the spans it holds. With
/// `children_first` the children arrive before their parent, so they wait for it.
fn tracker(traces: usize, children_first: bool) -> (usize, usize) {
    use otel_sli::completeness::spans::{SpanLink, TraceSpans};
    use otel_sli::completeness::traces::{TraceTracker, TrackerConfig};
    // Each span arrives on its own, through the scratch batch made before measuring.
    let services: Vec<u32> = (0..10).collect();
    let mut one = TraceSpans::default();
    one.reserve(1);
    let (before, _) = live();
    let mut t = TraceTracker::new(TrackerConfig {
        timeout_nanos: 30_000_000_000,
        max_traces: traces,
        max_spans_per_trace: 1_000,
        max_bytes: 1 << 30,
    });
    let mut rng = Rng::new(3);
    for i in 0..traces {
        let trace_id = (u128::from(rng.next_u64()) << 64) | i as u128;
        let root = rng.next_u64();
        let mut observe = |span_id: u64, parent: u64| {
            one.clear();
            let service = (i % 10) as u32;
            let link = SpanLink {
                span_id,
                parent,
                service,
                parent_remote: false,
            };
            one.push(trace_id, link);
            t.observe_spans(1, &one, &services);
        };
        let children: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        if !children_first {
            observe(root, 0);
        }
        for c in children {
            observe(c, root);
        }
        if children_first {
            observe(root, 0);
        }
    }
    let (after, _) = live();
    let held = after.saturating_sub(before);
    std::hint::black_box(&t);
    (held, traces * 4)
}

fn settings(max_series: usize) -> Arc<SeriesSettings> {
    Arc::new(SeriesSettings::new(
        Layout::new(2).expect("layout"),
        &DEFAULT_BUCKETS,
        max_series,
        2,
    ))
}

/// `n` series keys with realistic labels (100 services, routes like the synthetic workload).
fn keys(n: usize) -> Vec<(u64, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let service = format!("service-{}", i % 100);
            let feature = format!("GET /api/v1/resource-{i}/{{id}}");
            let k = key::encode([service.as_str(), feature.as_str()], 256);
            (key::hash_key(&k), k)
        })
        .collect()
}

/// How request latencies are spread.
#[derive(Clone, Copy, Debug)]
enum Spread {
    /// Log-normal around 50 ms with σ = 0.5 (most requests within 20–130 ms): typical of one
    /// endpoint.
    Typical,
    /// Log-uniform over 1 ms..1 s: every bucket of three decades equally likely, the worst
    /// case for sparse histograms.
    Wide,
}

/// Observations with latencies spread as `spread`, 1 in 20 bad.
fn observations(rng: &mut Rng, spread: Spread) -> Vec<Observation> {
    let mut unit = move || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..4096)
        .map(|_| {
            let duration_ns = match spread {
                Spread::Wide => 1e6 * 1000f64.powf(unit()),
                Spread::Typical => {
                    // Box–Muller.
                    let z = (-2.0 * unit().ln()).sqrt() * (std::f64::consts::TAU * unit()).cos();
                    50e6 * (0.5 * z).exp()
                }
            } as u64;
            Observation {
                bad: (unit() * 20.0) < 1.0,
                duration_ns,
                invalid_duration: false,
                unattributed: false,
                weight: 1.0,
                ..Observation::default()
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Scenario {
    /// `requests` per series in one slot, then one slot on.
    Sparse { requests: usize },
    /// `per_slot` requests per series in each of `slots` slots.
    Steady {
        per_slot: usize,
        slots: u64,
        spread: Spread,
    },
}

struct Outcome {
    series: usize,
    label: String,
    table_bytes: usize,
    with_snapshot_bytes: usize,
    with_snapshot_allocs: usize,
    estimate: usize,
    rss_growth: usize,
    peak_bytes: usize,
    secs: f64,
    /// Time in `SeriesTable::advance` per series per slot, microseconds (steady only).
    advance_us: Option<f64>,
    /// Time of the final `SeriesTable::snapshot` per series (every series changed), µs.
    snapshot_us: f64,
}

fn run(n: usize, scenario: Scenario) -> Outcome {
    let mut rng = Rng::new(0x5eed ^ n as u64);
    let keys = keys(n);
    let spread = match scenario {
        Scenario::Steady { spread, .. } => spread,
        Scenario::Sparse { .. } => Spread::Typical,
    };
    let obs = observations(&mut rng, spread);
    let mut pick = 0usize;
    let mut next_obs = move || {
        // A cheap stride through the table; its values are already random.
        pick = (pick + 7) & 4095;
        obs[pick]
    };
    // Start on a 5-minute period boundary so every ring rotates the same way each run.
    let start_slot = 30 * 6_000_000;

    let (base_bytes, base_allocs) = live();
    PEAK_BYTES.store(base_bytes, Ordering::Relaxed);
    let base_rss = rss_bytes();
    let t0 = Instant::now();
    let mut table = SeriesTable::new(settings(n + 1));
    let mut advance_us = None;
    let (label, total) = match scenario {
        Scenario::Sparse { requests } => {
            for (hash, k) in &keys {
                for _ in 0..requests {
                    table.record(*hash, k, &next_obs(), start_slot);
                }
            }
            table.advance(start_slot + 1);
            (
                format!("sparse ({requests} requests, 1 slot)"),
                (n * requests) as u64,
            )
        }
        Scenario::Steady {
            per_slot,
            slots,
            spread,
        } => {
            let mut in_advance = std::time::Duration::ZERO;
            for slot in start_slot..start_slot + slots {
                let t = Instant::now();
                table.advance(slot);
                in_advance += t.elapsed();
                for (hash, k) in &keys {
                    for _ in 0..per_slot {
                        table.record(*hash, k, &next_obs(), slot);
                    }
                }
            }
            advance_us = Some(in_advance.as_secs_f64() * 1e6 / (n as f64 * slots as f64));
            (
                format!("steady {spread:?} ({per_slot}/slot × {slots} slots)"),
                (n * per_slot) as u64 * slots,
            )
        }
    };
    assert_eq!(table.len(), n, "every series admitted");
    let (table_bytes, _) = live();
    let estimate = table.memory_bytes();
    let t = Instant::now();
    let snaps = table.snapshot();
    let snapshot_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let (snap_bytes, snap_allocs) = live();
    let secs = t0.elapsed().as_secs_f64();
    let rss_growth = rss_bytes().saturating_sub(base_rss);
    let peak = PEAK_BYTES.load(Ordering::Relaxed);

    // Sanity: the snapshot accounts for every request.
    let all = Window::All.index();
    let counted: u64 = snaps.iter().map(|s| s.windows[all].requests).sum();
    assert_eq!(counted, total, "all-time window counts every request");
    assert_eq!(
        snaps.iter().map(|s| s.requests_total).sum::<u64>(),
        total,
        "requests_total counts every request"
    );

    drop(snaps);
    drop(table);
    let (end_bytes, _) = live();
    assert!(
        end_bytes <= base_bytes + 4096,
        "dropping the table returns its memory ({end_bytes} vs {base_bytes} bytes live)"
    );
    Outcome {
        series: n,
        label,
        table_bytes: table_bytes - base_bytes,
        with_snapshot_bytes: snap_bytes - base_bytes,
        with_snapshot_allocs: snap_allocs - base_allocs,
        estimate,
        rss_growth,
        peak_bytes: peak - base_bytes,
        secs,
        advance_us,
        snapshot_us,
    }
}

/// A comma-separated list of numbers from the environment, or `default`.
fn env_list(name: &str, default: &str) -> Vec<usize> {
    let v = std::env::var(name).unwrap_or_else(|_| default.to_string());
    v.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?}: not a list of numbers"))
        })
        .collect()
}

fn main() {
    let bench = is_bench_run();
    let only: Option<usize> = std::env::var("MEM_SERIES")
        .ok()
        .and_then(|v| v.parse().ok());
    let plan: Vec<(usize, Vec<usize>)> = if bench {
        vec![
            (10_000, env_list("MEM_PER_SLOT_10K", "20,2")),
            (100_000, env_list("MEM_PER_SLOT_100K", "20,2")),
        ]
    } else {
        println!("memory: smoke run (use `cargo bench --bench memory` for the real one)");
        vec![(200, vec![2])]
    };
    let spreads = [Spread::Typical, Spread::Wide];
    let slots = 372;
    let kib = 1024.0;
    let mut rows = Vec::new();
    for (n, per_slot) in plan {
        if only.is_some_and(|o| o != n) {
            continue;
        }
        if n >= 100_000 && per_slot.iter().all(|&p| p < 20) {
            println!(
                "note: {} series run the steady scenario at {per_slot:?} requests/series/slot \
                 (reduced from 20 to bound run time and memory)",
                thousands(n as f64)
            );
        }
        let scenarios = std::iter::once(Scenario::Sparse { requests: 3 }).chain(
            per_slot.iter().flat_map(|&p| {
                spreads.iter().map(move |&spread| Scenario::Steady {
                    per_slot: p,
                    slots,
                    spread,
                })
            }),
        );
        for scenario in scenarios {
            let o = run(n, scenario);
            println!(
                "{:>7} series, {:<38} {:>7.1} KiB/series live (with snapshot), {:>6.1} s{}, \
                 snapshot() {:.2} µs/series",
                thousands(o.series as f64),
                o.label,
                o.with_snapshot_bytes as f64 / o.series as f64 / kib,
                o.secs,
                o.advance_us.map_or(String::new(), |us| format!(
                    ", advance() {us:.2} µs/series/slot"
                )),
                o.snapshot_us
            );
            rows.push(o);
        }
    }

    // --- completeness tracking ---
    let traces = if bench { 200_000 } else { 2_000 };
    for children_first in [false, true] {
        let (bytes, spans) = tracker(traces, children_first);
        println!(
            "trace tracker: {} in-flight 4-span traces ({}): {:.1} bytes per span, {:.0} per trace",
            thousands(traces as f64),
            if children_first {
                "children before their parent"
            } else {
                "parent first"
            },
            bytes as f64 / spans as f64,
            bytes as f64 / traces as f64,
        );
    }

    println!("\nbytes per series (live heap = requested bytes, no allocator overhead)");
    println!(
        "{:>8} {:<38} {:>9} {:>10} {:>9} {:>9} {:>7} {:>10} {:>9}",
        "series",
        "scenario",
        "table",
        "+snapshot",
        "estimate",
        "peak",
        "allocs",
        "rss growth",
        "≤16 KiB?"
    );
    for o in &rows {
        let per = |b: usize| b as f64 / o.series as f64;
        println!(
            "{:>8} {:<38} {:>9.0} {:>10.0} {:>9.0} {:>9.0} {:>7.1} {:>10.0} {:>9}",
            o.series,
            o.label,
            per(o.table_bytes),
            per(o.with_snapshot_bytes),
            per(o.estimate),
            per(o.peak_bytes),
            o.with_snapshot_allocs as f64 / o.series as f64,
            per(o.rss_growth),
            if per(o.with_snapshot_bytes) <= 16.0 * kib {
                "yes"
            } else {
                "NO"
            }
        );
    }
    println!(
        "\ntable = SeriesTable alone; +snapshot = table plus the kept snapshot() result; \
         estimate = SeriesTable::memory_bytes(); peak = highest live heap during the run; \
         allocs = live allocations (table + snapshot); rss growth = VmRSS increase over the \
         run (includes allocator overhead; freed pages may be retained)"
    );
}
