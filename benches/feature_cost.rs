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
//! time) does not move with what else the machine schedules meanwhile.
//!
//! Runs alternate on, off, off, on, … so drift cancels within each pair; the result is the
//! median of the pairs' ratios (on ÷ off CPU per span) with a bootstrap 95% interval, and the
//! same for spans per wall-clock second of the feeding thread.
//!
//! `cargo bench --bench feature_cost`; environment: `COST_OF` (above), `COST_PAIRS` (default
//! 40), `COST_REQUESTS` (requests per run, default 2000). Without `--bench` (as under
//! `cargo test`) it runs a tiny smoke version.

mod common;

use common::{env_or, is_bench_run, span_count, Encoded, START_UNIX_NANOS};
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

/// 64 distinct 500-span requests, entry spans evaluating `flag_events` flags each.
fn requests(flag_events: usize) -> Vec<Encoded> {
    let w = Workload {
        seed: 7,
        flag_events,
        ..Workload::default()
    };
    let mut rng = Rng::new(7);
    (0..64u64)
        .map(|i| {
            let (req, entries, _) =
                traces_request(&w, &mut rng, 500, START_UNIX_NANOS + i * 1_000_000_000);
            Encoded {
                spans: span_count(&req),
                body: req.encode_to_vec(),
                entries,
            }
        })
        .collect()
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
    let reqs = requests(flag_events);
    let on = pipeline("");
    let off = pipeline(off_yaml);
    // Warm both: every series, histogram bucket and example exists before measuring.
    run(&on, &reqs, reqs.len() * 2);
    run(&off, &reqs, reqs.len() * 2);
    let (mut cpu_ratios, mut rate_ratios) = (Vec::new(), Vec::new());
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = run(&on, &reqs, n);
            (a, run(&off, &reqs, n))
        } else {
            let b = run(&off, &reqs, n);
            (run(&on, &reqs, n), b)
        };
        cpu_ratios.push(a.0 / b.0);
        rate_ratios.push(a.1 / b.1);
        cpu_on.push(a.0);
        cpu_off.push(b.0);
    }
    let (m, lo, hi) = median_interval(&cpu_ratios);
    let (rm, rlo, rhi) = median_interval(&rate_ratios);
    println!(
        "cost of {feature}: {pairs} pairs of {n} requests ({} spans each run)",
        n * 500
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
