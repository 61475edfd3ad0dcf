//! Example requests end to end: requests sent with the OpenTelemetry SDK come back from
//! `/api/v1/exemplars` with the trace and span ids the SDK gave them: the last bad ones
//! with their reason, one per latency bucket, the slowest first; spans that were not
//! sampled are never examples; `sli.exemplars.enabled: false` keeps none.

mod common;

use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// One request sent: its ids (hex), status and duration.
#[derive(Clone, Debug)]
struct Sent {
    trace_id: String,
    span_id: String,
    status: u16,
    took: Duration,
}

/// Sends `POST /pay` requests of `checkout` (status, duration) through the SDK and returns
/// them with the ids the SDK gave them, in sending order.
async fn send(server: &TestServer, reqs: Vec<(u16, Duration)>) -> Vec<Sent> {
    send_as(server, common::sdk::resource("checkout", &[]), reqs).await
}

/// [`send`] from `resource`.
async fn send_as(
    server: &TestServer,
    resource: opentelemetry_sdk::Resource,
    reqs: Vec<(u16, Duration)>,
) -> Vec<Sent> {
    let endpoint = server.grpc.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = common::sdk::provider_with_resource(
            &endpoint,
            common::sdk::Transport::Grpc,
            false,
            resource,
        );
        let tracer = p.tracer("exemplar-test");
        let mut sent = Vec::new();
        for (status, took) in reqs {
            let end = SystemTime::now();
            let mut span = tracer
                .span_builder("POST /pay")
                .with_kind(SpanKind::Server)
                .with_start_time(end - took)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", "POST"),
                    KeyValue::new("http.route", "/pay"),
                    KeyValue::new("http.response.status_code", i64::from(status)),
                ])
                .start(&tracer);
            let cx = span.span_context().clone();
            span.end_with_timestamp(end);
            sent.push(Sent {
                trace_id: cx.trace_id().to_string(),
                span_id: cx.span_id().to_string(),
                status,
                took,
            });
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
        sent
    })
    .await
    .expect("sdk thread")
}

async fn exemplars(server: &TestServer, query: &str) -> Value {
    let (status, v) = server.get_json(&format!("/api/v1/exemplars{query}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

const CONFIG: &str = "sli:\n  latency:\n    buckets: [0.01, 0.1, 1]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_are_the_requests_that_were_sent() {
    let server = TestServer::start(CONFIG).await;
    let ms = Duration::from_millis;
    // Buckets (le): 0.01 → 5 ms; 0.1 → 50 ms and 60 ms; 1 → 500 ms; +Inf → 2 s.
    let reqs = vec![
        (200, ms(5)),
        (503, ms(50)),
        (200, ms(500)),
        (500, ms(60)),
        (200, ms(2000)),
        (502, ms(5)),
        (200, ms(6)),
        (503, ms(7)),
        (504, ms(8)),
        (200, ms(9)),
    ];
    let sent = send(&server, reqs).await;
    server.flush().await;
    let v = exemplars(&server, "").await;
    let series = v["series"].as_array().expect("series");
    assert_eq!(series.len(), 1, "{v}");
    let s = &series[0];
    assert_eq!(s["service"], "checkout");
    assert_eq!(s["feature"], "POST /pay");

    // The last four bad requests, newest first, with their reasons.
    let bad: Vec<&Sent> = sent
        .iter()
        .filter(|r| r.status >= 500)
        .rev()
        .take(4)
        .collect();
    let got: Vec<(String, String, String)> = s["bad"]
        .as_array()
        .expect("bad")
        .iter()
        .map(|e| {
            (
                e["trace_id"].as_str().unwrap_or("").to_string(),
                e["span_id"].as_str().unwrap_or("").to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = bad
        .iter()
        .map(|r| {
            (
                r.trace_id.clone(),
                r.span_id.clone(),
                format!("http {}", r.status),
            )
        })
        .collect();
    assert_eq!(got, want);

    // One per bucket: the latest request that fell in it.
    let latest_in = |lo: Duration, hi: Duration| {
        sent.iter()
            .rev()
            .find(|r| r.took > lo && r.took <= hi)
            .expect("a request in the bucket")
    };
    let buckets = s["buckets"].as_array().expect("buckets");
    let got: Vec<(String, String, f64)> = buckets
        .iter()
        .map(|b| {
            (
                b["le"].as_str().unwrap_or("").to_string(),
                b["exemplar"]["trace_id"].as_str().unwrap_or("").to_string(),
                b["exemplar"]["duration_seconds"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    let want: Vec<(String, String, f64)> = [
        ("0.01", ms(0), ms(10)),
        ("0.1", ms(10), ms(100)),
        ("1", ms(100), ms(1000)),
        ("+Inf", ms(1000), Duration::MAX),
    ]
    .into_iter()
    .map(|(le, lo, hi)| {
        let r = latest_in(lo, hi);
        (le.to_string(), r.trace_id.clone(), r.took.as_secs_f64())
    })
    .collect();
    assert_eq!(got, want);
    // A good request has no reason.
    assert!(
        buckets[2]["exemplar"].get("reason").is_none(),
        "{}",
        buckets[2]
    );

    // The slowest requests of each window, slowest first.
    for w in ["1m", "5m", "1h", "all"] {
        let slow: Vec<f64> = s["slowest"][w]
            .as_array()
            .expect("window")
            .iter()
            .filter_map(|e| e["duration_seconds"].as_f64())
            .collect();
        assert_eq!(slow, vec![2.0, 0.5, 0.06], "{w}");
    }

    // Filters.
    let none = exemplars(&server, "?service=search").await;
    assert_eq!(none["series"], serde_json::json!([]));
    let one = exemplars(&server, "?service=checkout&feature=POST%20/pay").await;
    assert_eq!(one["series"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

/// A span whose W3C sampled flag is clear (flags say the flags are known) is counted but
/// is never an example: its trace is not at the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_spans_are_counted_but_never_examples() {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind as Kind;
    let server = TestServer::start(CONFIG).await;
    let span = |trace: u8, flags: u32| opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace; 8],
        name: "GET /x".into(),
        kind: Kind::Server as i32,
        start_time_unix_nano: 1,
        end_time_unix_nano: 2_000_001,
        flags,
        ..Default::default()
    };
    // 0x100: "has is-remote" is set, so the trace flags are known, and sampled is clear.
    let req = common::otlp::trace_request("inventory", vec![span(1, 0x100), span(2, 0x101)]);
    let r = common::post_protobuf(
        server.http,
        "/v1/traces",
        prost::Message::encode_to_vec(&req),
    )
    .await;
    assert_eq!(r.status(), 200);
    server.flush().await;
    let sli = server.sli("all", "inventory", "GET /x").await;
    assert_eq!(sli["requests"], 2, "{sli}");
    let v = exemplars(&server, "?service=inventory").await;
    let ids: Vec<&str> = v["series"][0]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["exemplar"]["trace_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["02".repeat(16)], "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_keeps_none() {
    let server = TestServer::start("sli:\n  exemplars:\n    enabled: false\n").await;
    send(&server, vec![(503, Duration::from_millis(5))]).await;
    server.flush().await;
    let sli = server.sli("all", "checkout", "POST /pay").await;
    assert_eq!(sli["errors"], 1, "{sli}");
    let v = exemplars(&server, "").await;
    assert_eq!(v["series"], serde_json::json!([]));
    server.stop().await;
}

/// `/metrics` as OpenMetrics when asked (as Prometheus asks by default): counters declared
/// without `_total`, `# EOF` at the end, exemplars on `sli_errors_total` and the latency
/// buckets; the classic text format is unchanged and carries none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_metrics_carries_exemplars_and_the_text_format_does_not() {
    let server = TestServer::start(CONFIG).await;
    let ms = Duration::from_millis;
    let sent = send(&server, vec![(200, ms(5)), (503, ms(50))]).await;
    server.flush().await;
    let text = server.metrics().await;
    assert!(!text.contains(" # {"), "no exemplar in the text format");
    assert!(text.contains("# TYPE sli_requests_total counter"));

    let r = reqwest::Client::new()
        .get(format!("http://{}/metrics", server.admin))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().await.expect("body");
    assert!(
        om.ends_with("# EOF\n"),
        "{}",
        &om[om.len().saturating_sub(200)..]
    );
    assert!(
        om.contains("# TYPE sli_requests counter\n"),
        "counters lose _total"
    );
    assert!(!om.contains("# TYPE sli_requests_total"));
    let bad = &sent[1];
    let errors = om
        .lines()
        .find(|l| l.starts_with("sli_errors_total{service=\"checkout\""))
        .expect("errors line");
    assert!(
        errors.contains(&format!(
            "# {{trace_id=\"{}\",span_id=\"{}\"}} 1 ",
            bad.trace_id, bad.span_id
        )),
        "{errors}"
    );
    let bucket = om
        .lines()
        .find(|l| l.starts_with("sli_latency_seconds_bucket{") && l.contains("le=\"0.01\""))
        .expect("bucket line");
    assert!(
        bucket.contains(&format!("trace_id=\"{}\"", sent[0].trace_id))
            && bucket.contains("} 0.005 "),
        "{bucket}"
    );
    server.stop().await;
}

/// A real Prometheus with exemplar storage scrapes `/metrics` (it asks for OpenMetrics by
/// default): the scrape succeeds with every family, and `/api/v1/query_exemplars` returns
/// the trace ids of the requests that were sent, with their durations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_exemplars_of_the_requests_sent() {
    use common::tsdb::{self, PromOptions, Prometheus};
    if !tsdb::prometheus_available() {
        return;
    }
    let server = TestServer::start(CONFIG).await;
    let sent = send(&server, four_requests()).await;
    server.flush().await;
    let prom = Prometheus::start(
        "exemplars",
        PromOptions {
            scrape: vec![server.admin.to_string()],
            exemplar_storage: true,
            ..PromOptions::default()
        },
    )
    .await;
    prom.expect("up{job=\"otel-sli\"}", 1.0).await;
    prom.expect("sum(sli_requests_total)", 4.0).await;
    let got = stored_exemplars(&prom).await;
    assert_eq!(got, stored_for(&sent));
    server.stop().await;
}

/// The requests both Prometheus tests send, each in a bucket of its own: 5 ms, 50 ms
/// (503), 500 ms and 2 s (500).
fn four_requests() -> Vec<(u16, Duration)> {
    let ms = Duration::from_millis;
    vec![(200, ms(5)), (503, ms(50)), (200, ms(500)), (500, ms(2000))]
}

/// What a Prometheus should hold once [`four_requests`] (`sent`) are scraped or written,
/// sorted like [`stored_exemplars`]: the last bad request on the errors, one per bucket.
fn stored_for(sent: &[Sent]) -> Vec<(String, String, String, f64)> {
    let id = |i: usize| sent[i].trace_id.clone();
    let bucket = |le: &str, i: usize, v: f64| {
        (
            "sli_latency_seconds_bucket".to_string(),
            le.to_string(),
            id(i),
            v,
        )
    };
    let mut want = vec![
        ("sli_errors_total".to_string(), String::new(), id(3), 1.0),
        bucket("+Inf", 3, 2.0),
        bucket("0.01", 0, 0.005),
        bucket("0.1", 1, 0.05),
        bucket("1", 2, 0.5),
    ];
    want.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    want
}

/// The exemplars a Prometheus holds for the SLI buckets and error counters: (series name,
/// `le`, trace id, value), sorted.
async fn stored_exemplars(prom: &common::tsdb::Prometheus) -> Vec<(String, String, String, f64)> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let url = format!(
        "{}/api/v1/query_exemplars?query={}&start={}&end={}",
        prom.url(),
        common::tsdb::urlencode("{__name__=~\"sli_latency_seconds_bucket|sli_errors_total\"}"),
        now - 600,
        now + 600
    );
    let v: Value = reqwest::get(&url)
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "success", "{v}");
    let mut got: Vec<(String, String, String, f64)> = Vec::new();
    for s in v["data"].as_array().expect("data") {
        let name = s["seriesLabels"]["__name__"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let le = s["seriesLabels"]["le"].as_str().unwrap_or("").to_string();
        for e in s["exemplars"].as_array().expect("exemplars") {
            let id = e["labels"]["trace_id"].as_str().unwrap_or("").to_string();
            let value: f64 = e["value"]
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(-1.0);
            got.push((name.clone(), le.clone(), id, value));
        }
    }
    got.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    got
}

/// Remote write carries the exemplars too: a real Prometheus with exemplar storage and the
/// remote-write receiver returns the trace ids sent, once each although every write
/// repeats them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_carries_the_exemplars_to_prometheus() {
    use common::tsdb::{self, PromOptions, Prometheus};
    if !tsdb::prometheus_available() {
        return;
    }
    let prom = Prometheus::start(
        "exemplars-rw",
        PromOptions {
            exemplar_storage: true,
            ..PromOptions::default()
        },
    )
    .await;
    let server = TestServer::start(&format!(
        "{CONFIG}exporters:\n  prometheus_remote_write:\n    endpoint: {}\n    interval: 1s\n",
        prom.write_url()
    ))
    .await;
    let sent = send(&server, four_requests()).await;
    server.flush().await;
    prom.expect("sum(sli_requests_total)", 4.0).await;
    // A few more writes, each repeating the same exemplars.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = stored_exemplars(&prom).await;
    assert_eq!(got, stored_for(&sent));
    // Every write was taken: repeated exemplars are not an error.
    let m = server.metrics().await;
    let failed = common::sample(
        &m,
        "otel_sli_exporter_failed_attempts_total{exporter=\"prometheus_remote_write\"}",
    );
    assert_eq!(failed, Some(0.0), "{m}");
    server.stop().await;
}

/// Each SLO status lists the failing requests behind it, newest first: bad ones for an
/// availability SLO, bad or slower than the threshold for a latency SLO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_statuses_show_the_failing_requests_behind_them() {
    let server = TestServer::start(&format!(
        "{CONFIG}slos:\n  - name: pay-availability\n    service: checkout\n    feature: \"POST /pay\"\n    objective: 99\n  - name: pay-latency\n    service: checkout\n    feature: \"POST /pay\"\n    sli: latency\n    threshold: 100ms\n    objective: 99\n"
    ))
    .await;
    let ms = Duration::from_millis;
    let sent = send(
        &server,
        vec![(503, ms(5)), (200, ms(500)), (200, ms(6)), (500, ms(7))],
    )
    .await;
    server.flush().await;
    let ids = |s: &Value| -> Vec<(String, String)> {
        s["examples"]
            .as_array()
            .expect("examples")
            .iter()
            .map(|e| {
                (
                    e["trace_id"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let avail = server.slo("pay-availability").await;
    assert_eq!(
        ids(&avail),
        vec![
            (sent[3].trace_id.clone(), "http 500".to_string()),
            (sent[0].trace_id.clone(), "http 503".to_string()),
        ],
        "{avail}"
    );
    assert_eq!(avail["examples"][0]["feature"], "POST /pay");
    let latency = server.slo("pay-latency").await;
    let mut got = ids(&latency);
    got.sort();
    let mut want = vec![
        (sent[3].trace_id.clone(), "http 500".to_string()),
        (sent[1].trace_id.clone(), "slower than 0.1s".to_string()),
        (sent[0].trace_id.clone(), "http 503".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "{latency}");
    server.stop().await;
}

/// A canary verdict lists the canary cohort's failing requests, not the baseline's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_verdict_shows_the_canary_cohorts_failing_requests() {
    let server = TestServer::start(CONFIG).await;
    let ms = Duration::from_millis;
    let version = |v: &str| common::sdk::resource("checkout", &[("service.version", v)]);
    let baseline = send_as(&server, version("1.0.0"), vec![(503, ms(5)); 3]).await;
    let canary = send_as(
        &server,
        version("2.0.0"),
        vec![(200, ms(5)), (502, ms(5)), (200, ms(5)), (504, ms(5))],
    )
    .await;
    server.flush().await;
    let (status, v) = server
        .get_json("/api/v1/canary?service=checkout&baseline=1.0.0&canary=2.0.0&window=10m")
        .await;
    assert_eq!(status, 200, "{v}");
    let got: Vec<(String, String, String)> = v["canary_examples"]
        .as_array()
        .expect("canary_examples")
        .iter()
        .map(|e| {
            (
                e["trace_id"].as_str().unwrap_or("").to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
                e["dimensions"]["service_version"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                canary[3].trace_id.clone(),
                "http 504".into(),
                "2.0.0".into()
            ),
            (
                canary[1].trace_id.clone(),
                "http 502".into(),
                "2.0.0".into()
            ),
        ],
        "{v}"
    );
    assert!(baseline
        .iter()
        .all(|b| !v.to_string().contains(&b.trace_id)));
    server.stop().await;
}
