//! What a feature that is on by default costs in throughput: the CPU the whole pipeline
//! spends per span with it on against off, in alternating runs. `COST_OF` picks it:
//!
//! * `exemplars` (default): example requests, `sli.exemplars.enabled`;
//! * `completeness`: trace-structure tracking and the other completeness checks,
//!   `completeness.enabled`;
//! * `flags`: feature-flag cohorts, `flags.enabled`, over requests whose every entry span
//!   evaluates one flag (so the figure is the cost of counting flags, not of looking for
//!   them).
//!
//! Two pipelines are built from the embedded defaults (`app::build_pipeline`, so everything
//! else on by default is on in both), one with the feature and one without. Each run feeds
//! one of them the same pre-encoded 500-span requests of the synthetic workload (10
//! services × 8 features, one SERVER span and three children per trace, 1 in 20 requests
//! bad) through `Pipeline::ingest_traces` from this thread, then
//! waits until the shards have applied everything (`flush_now`). Its cost is the CPU time of
//! every thread of the process over the run (`/proc/self/task/*/schedstat`, nanoseconds):
//! the receiving thread's scan, classification and batching, and the shards' recording and
//! tracking. No network is involved, so the figure is the code's, and CPU time (not wall
//! time) does not move with what else the machine schedules meanwhile. The process
//! allocates with jemalloc, as the `otel-sli` binary does.
//!
//! Runs alternate on, off, off, on, … so drift cancels within each pair; the result is the
//! median of the pairs' ratios (on ÷ off CPU per span) with a bootstrap 95% interval, and the
//! same for spans per wall-clock second of the feeding thread.
//!
//! With `COST_TRACES=unique` every run sends trace ids no run sent before (as a node
//! receiving new traces does, so the tracker's tables grow to their working size and are
//! far larger than the caches): the run's requests are all distinct, and their trace ids
//! are rewritten between runs, outside the measured time. By default (`repeated`) the same
//! 64 requests are sent again and again, so every trace is one the tracker judged before.
//!
//! `cargo bench --bench feature_cost`; environment: `COST_OF` (above), `COST_TRACES`,
//! `COST_PAIRS` (default 40), `COST_REQUESTS` (requests per run, default 2000), `COST_ONLY`
//! (`on` or `off`: that side in both slots, for a profile of it alone). Without
//! `--bench` (as under `cargo test`) it runs a tiny smoke version.

mod common;

/// The allocator the `otel-sli` binary runs with, so allocation costs are the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use common::{env_or, is_bench_run, span_count, trace_id_offsets, Encoded, START_UNIX_NANOS};
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use otel_sli::pipeline::{IngestError, Pipeline};
use prost::Message;
use std::time::{Duration, Instant};

/// CPU time of every thread of this process so far, nanoseconds.
fn process_cpu_nanos() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// The pipeline of the embedded defaults, with `yaml` on top.
fn pipeline(yaml: &str) -> Pipeline {
    let config = otel_sli::settings::parse(yaml, |_| None).expect("valid configuration");
    otel_sli::app::build_pipeline(&config, otel_sli::clock::system()).expect("pipeline starts")
}

/// `count` distinct 500-span requests, entry spans evaluating `flag_events` flags each, with
/// where each span's trace id is in each request.
fn requests(count: u64, flag_events: usize) -> (Vec<Encoded>, Vec<Vec<usize>>) {
    let w = Workload {
        seed: 7,
        flag_events,
        ..Workload::default()
    };
    let mut rng = Rng::new(7);
    // Spans that ended in the last few minutes, as a live node receives them: none is
    // beyond the allowed clock skew (an hour by default), so none is counted as skewed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(START_UNIX_NANOS, |d| d.as_nanos() as u64);
    let first = now - 300_000_000_000;
    (0..count)
        .map(|i| {
            let (req, entries, _) =
                traces_request(&w, &mut rng, 500, first + i * 100_000_000 % 240_000_000_000);
            let body = req.encode_to_vec();
            let offsets = trace_id_offsets(&body);
            assert_eq!(offsets.len(), span_count(&req), "one trace id per span");
            let encoded = Encoded {
                spans: span_count(&req),
                body,
                entries,
            };
            (encoded, offsets)
        })
        .unzip()
}

/// Trace ids that differ from every earlier run's: the first 8 bytes of each trace id are
/// XORed with a value of run `run` (every span of a trace gets the same new id).
struct Relabel {
    offsets: Vec<Vec<usize>>,
    applied: u64,
}

impl Relabel {
    fn for_run(&mut self, reqs: &mut [Encoded], run: u64) {
        let target = run.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let delta = (self.applied ^ target).to_le_bytes();
        for (r, offsets) in reqs.iter_mut().zip(&self.offsets) {
            for &o in offsets {
                for (b, d) in r.body[o..o + 8].iter_mut().zip(delta) {
                    *b ^= d;
                }
            }
        }
        self.applied = target;
    }
}

/// One run: `n` requests into `p`; returns (CPU nanoseconds per span, spans per second).
fn run(p: &Pipeline, reqs: &[Encoded], n: usize) -> (f64, f64) {
    let cpu = process_cpu_nanos();
    let start = Instant::now();
    let mut spans = 0usize;
    for r in reqs.iter().cycle().take(n) {
        loop {
            match p.ingest_traces(&r.body) {
                Ok(_) => break,
                // A full shard queue: wait for the shards, as a client retrying would.
                Err(IngestError::Busy { .. }) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => panic!("ingest: {e}"),
            }
        }
        spans += r.spans;
    }
    p.flush_now();
    let wall = start.elapsed().as_secs_f64();
    let cpu = process_cpu_nanos().saturating_sub(cpu);
    (cpu as f64 / spans as f64, spans as f64 / wall)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The median of `xs` with a bootstrap 95% interval (2,000 resamples, a fixed seed).
fn median_interval(xs: &[f64]) -> (f64, f64, f64) {
    let mut rng = otel_sli::otlp::synth::Rng::new(17);
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let mut sample: Vec<f64> = (0..xs.len())
                .map(|_| xs[rng.below(xs.len() as u64) as usize])
                .collect();
            median(&mut sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let mut all = xs.to_vec();
    (median(&mut all), medians[50], medians[1949])
}

fn main() {
    let bench = is_bench_run();
    let feature: String = env_or("COST_OF", "exemplars".to_string());
    let pairs: usize = env_or("COST_PAIRS", if bench { 40 } else { 2 });
    let n: usize = env_or("COST_REQUESTS", if bench { 2000 } else { 4 });
    let (off_yaml, flag_events) = match feature.as_str() {
        "exemplars" => ("sli:\n  exemplars:\n    enabled: false\n", 0),
        "completeness" => ("completeness:\n  enabled: false\n", 0),
        "flags" => ("flags:\n  enabled: false\n", 1),
        other => panic!("COST_OF={other:?}: use exemplars, completeness or flags"),
    };
    let unique = match env_or("COST_TRACES", "repeated".to_string()).as_str() {
        "repeated" => false,
        "unique" => true,
        other => panic!("COST_TRACES={other:?}: use repeated or unique"),
    };
    let (mut reqs, offsets) = requests(if unique { n as u64 } else { 64 }, flag_events);
    let mut relabel = Relabel {
        offsets,
        applied: 0,
    };
    let mut runs = 0u64;
    let mut run = |p: &Pipeline, reqs: &mut [Encoded], n: usize| {
        if unique {
            runs += 1;
            relabel.for_run(reqs, runs);
        }
        run(p, reqs, n)
    };
    // For profiling one side alone: both slots run that configuration.
    let only = std::env::var("COST_ONLY").unwrap_or_default();
    let on = pipeline(if only == "off" { off_yaml } else { "" });
    let off = pipeline(if only == "on" { "" } else { off_yaml });
    // Warm both: every series, histogram bucket and example exists before measuring.
    let warm = reqs.len().min(128) * 2;
    run(&on, &mut reqs, warm);
    run(&off, &mut reqs, warm);
    let (mut cpu_ratios, mut rate_ratios) = (Vec::new(), Vec::new());
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = run(&on, &mut reqs, n);
            (a, run(&off, &mut reqs, n))
        } else {
            let b = run(&off, &mut reqs, n);
            (run(&on, &mut reqs, n), b)
        };
        cpu_ratios.push(a.0 / b.0);
        rate_ratios.push(a.1 / b.1);
        cpu_on.push(a.0);
        cpu_off.push(b.0);
    }
    let (m, lo, hi) = median_interval(&cpu_ratios);
    let (rm, rlo, rhi) = median_interval(&rate_ratios);
    println!(
        "cost of {feature}: {pairs} pairs of {n} requests ({} spans each run), {} trace ids",
        n * 500,
        if unique { "unique" } else { "repeated" }
    );
    println!(
        "CPU per span: on {:.1} ns, off {:.1} ns (medians)",
        median(&mut cpu_on),
        median(&mut cpu_off)
    );
    println!("CPU per span, on / off: median {m:.4} (95% interval {lo:.4} to {hi:.4})");
    println!("spans per wall second, on / off: median {rm:.4} (95% interval {rlo:.4} to {rhi:.4})");
    on.shutdown();
    off.shutdown();
}
