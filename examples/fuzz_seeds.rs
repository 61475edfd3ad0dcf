//! Writes the seed inputs of the fuzz targets (`fuzz/seeds/<target>/`): small valid inputs
//! of each format, laid out as each target reads its input.
//!
//! ```sh
//! cargo run --example fuzz_seeds
//! ```

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use otel_sli::export::delivery::spool::{Record, Spool, SpoolConfig};
use otel_sli::otlp::synth::{kv_int, kv_str, traces_request, Rng, Workload};
use otel_sli::slo::buckets::BucketsState;
use otel_sli::slo::engine::{EngineState, SloState};
use otel_sli::slo::state::StateFile;
use prost::Message;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const NOW: u64 = 1_700_000_000_000_000_000;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    fs::create_dir_all(&d)?;
    fs::write(d.join(name), bytes)
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    e.finish()
}

fn metrics() -> ExportMetricsServiceRequest {
    let point = HistogramDataPoint {
        attributes: vec![
            kv_str("http.route", "/cart"),
            kv_str("http.request.method", "GET"),
            kv_int("http.response.status_code", 200),
        ],
        start_time_unix_nano: NOW - 60_000_000_000,
        time_unix_nano: NOW,
        count: 42,
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "cart")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![point],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let nested = AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(any_value::Value::StringValue("x".into())),
            }],
        })),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "cart")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: NOW,
                        body: Some(nested),
                        attributes: vec![KeyValue {
                            key: "k".into(),
                            ..Default::default()
                        }],
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Default::default()
                    };
                    2
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let workload = Workload {
        services: 2,
        features: 3,
        error_every: 3,
        ..Workload::default()
    };
    let (small, _, _) = traces_request(&workload, &mut Rng::new(1), 4, NOW);
    let (larger, _, _) = traces_request(&workload, &mut Rng::new(2), 30, NOW);
    let traces = [small.encode_to_vec(), larger.encode_to_vec()];
    let metrics = metrics().encode_to_vec();
    let logs = logs().encode_to_vec();

    // scan: protobuf requests of each signal.
    write(&root, "scan", "traces-small", &traces[0])?;
    write(&root, "scan", "traces-larger", &traces[1])?;
    write(&root, "scan", "metrics", &metrics)?;
    write(&root, "scan", "logs", &logs)?;

    // json: OTLP/JSON of each signal.
    write(&root, "json", "traces", &serde_json::to_vec(&small)?)?;
    write(
        &root,
        "json",
        "metrics",
        &serde_json::to_vec(&self::metrics())?,
    )?;
    write(&root, "json", "logs", &serde_json::to_vec(&self::logs())?)?;

    // http: method 0 (POST), path (0 traces, 1 metrics, 2 logs), content type
    // (1 protobuf, 2 JSON), encoding (0 none, 1 gzip), flags (bit 0: the target gzips),
    // then the body.
    let http = |path: u8, ct: u8, enc: u8, flags: u8, body: &[u8]| {
        let mut b = vec![0, path, ct, enc, flags];
        b.extend_from_slice(body);
        b
    };
    write(&root, "http", "traces-proto", &http(0, 1, 0, 0, &traces[0]))?;
    write(
        &root,
        "http",
        "traces-proto-gzip",
        &http(0, 1, 1, 1, &traces[0]),
    )?;
    write(&root, "http", "metrics-proto", &http(1, 1, 0, 0, &metrics))?;
    write(&root, "http", "logs-proto", &http(2, 1, 0, 0, &logs))?;
    let json = serde_json::to_vec(&small)?;
    write(&root, "http", "traces-json", &http(0, 2, 0, 0, &json))?;
    write(&root, "http", "traces-json-gzip", &http(0, 2, 1, 1, &json))?;

    // gzip: cap choice, mode (bit 0: the target compresses), data.
    let mut g = vec![3, 0];
    g.extend_from_slice(&gzip(&traces[0])?);
    write(&root, "gzip", "stream", &g)?;
    let mut g = vec![5, 0];
    g.extend_from_slice(&gzip(
        &[gzip(b"two members ")?, gzip(b"in one body")?].concat(),
    )?);
    write(&root, "gzip", "nested", &g)?;
    write(&root, "gzip", "repeated", b"\x02\x0fzeros zeros zeros")?;

    // config: the documented examples.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (name, path) in [
        ("example", "deploy/examples/otel-sli.yaml"),
        ("topology-2", "deploy/examples/topology-2-otel-sli.yaml"),
        (
            "topology-3",
            "deploy/examples/topology-3-agent-otel-sli.yaml",
        ),
    ] {
        write(&root, "config", name, &fs::read(manifest.join(path))?)?;
    }
    write(
        &root,
        "config",
        "env",
        b"receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: ${env:MY_POD_IP}:4317\n      http:\n        endpoint: ${MY_POD_IP:-0.0.0.0}:4318\nadmin:\n  endpoint: $$x\n",
    )?;

    // spool: a segment written by the spool itself (flags 0: one segment, as it is).
    let dir = std::env::temp_dir().join(format!("otel-sli-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    {
        let mut spool = Spool::open(SpoolConfig::new(dir.clone(), 1 << 20))?;
        for (i, body) in [&traces[0], &metrics, &logs].into_iter().enumerate() {
            spool.append(&Record {
                body: body.clone().into(),
                items: i as u64 + 1,
                signal: None,
                gzipped: i == 1,
            })?;
        }
        spool.close(std::time::Instant::now())?;
    }
    let mut segment = vec![0u8];
    segment.extend_from_slice(&fs::read(dir.join(format!("{:016x}.seg", 0)))?);
    write(&root, "spool", "segment", &segment)?;
    // Records the target frames with correct checksums (flags: magic, framed).
    write(
        &root,
        "spool",
        "framed",
        b"\x28\x05\x01\0\0\0\0\0\0\0\x01\0hello\x03\x02\0\0\0\0\0\0\0\x02\x01abc",
    )?;
    let _ = fs::remove_dir_all(&dir);

    // state: a state file (mode 0) and its body alone (mode 1) for the SLOs the target has.
    let config = otel_sli::settings::parse(
        "slos:\n  - name: checkout-availability\n    service: checkout\n    feature: \"POST /checkout\"\n    sli: availability\n    objective: 99.9\n    window: 30d\n  - name: checkout-latency\n    service: checkout\n    feature: \"POST /checkout\"\n    sli: latency\n    threshold: 300ms\n    objective: 99\n    window: 7d\n",
        |_| None,
    )?;
    let minute = NOW / 60_000_000_000;
    let mut state = EngineState {
        late_spans: 2,
        ..EngineState::default()
    };
    for def in &config.slos {
        state.slos.insert(
            def.name.clone(),
            SloState {
                identity: def.identity(),
                buckets: BucketsState {
                    minutes: vec![(minute - 1, 100, 3), (minute, 50, 1)],
                    hours: vec![(minute / 60, 150, 4)],
                },
            },
        );
    }
    let dir = std::env::temp_dir().join(format!("otel-sli-seeds-state-{}", std::process::id()));
    let file = StateFile::new(&dir);
    file.write(&state)?;
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&fs::read(file.path())?);
    write(&root, "state", "file", &bytes)?;
    let mut body = vec![1u8];
    body.extend_from_slice(&serde_json::to_vec(&state)?);
    write(&root, "state", "body", &body)?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
