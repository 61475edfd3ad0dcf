//! End to end with the OpenTelemetry Rust SDK's own OTLP exporters (gRPC with gzip,
//! HTTP/protobuf, HTTP/JSON): exact per-feature counts, outcome classification and
//! quantiles within the configured precision.

mod common;

use common::{assert_close, exact_quantile, TestServer};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime};

/// What the scenario sent for one feature.
#[derive(Default, Debug)]
struct Expect {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
}

/// Sends the scenario through `provider` and returns what each feature must show.
fn scenario(provider: &SdkTracerProvider) -> Vec<(&'static str, Expect)> {
    let tracer = provider.tracer("otel-sli-tests");
    let base = SystemTime::now() - Duration::from_secs(5);
    let mut out = Vec::new();
    let span = |name: &str, kind: SpanKind, ms: u64, attrs: Vec<KeyValue>, error: bool| {
        let mut s = tracer
            .span_builder(name.to_string())
            .with_kind(kind)
            .with_start_time(base)
            .with_attributes(attrs)
            .start(&tracer);
        if error {
            s.set_status(Status::error("failed"));
        }
        s.end_with_timestamp(base + Duration::from_millis(ms));
    };

    // HTTP server spans: 5xx bad, 4xx good.
    let mut cart = Expect::default();
    for i in 1..=40u64 {
        let code: i64 = if i % 10 == 0 {
            503
        } else if i % 7 == 0 {
            404
        } else {
            200
        };
        span(
            "GET /cart",
            SpanKind::Server,
            i * 5,
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/cart"),
                KeyValue::new("http.response.status_code", code),
            ],
            false,
        );
        cart.requests += 1;
        cart.errors += u64::from(code >= 500);
        cart.latencies.push(i as f64 * 0.005);
    }
    out.push(("GET /cart", cart));

    // Old semantic conventions: http.method + http.status_code.
    let mut legacy = Expect::default();
    for i in 1..=6u64 {
        let code: i64 = if i == 3 { 500 } else { 200 };
        span(
            "legacy",
            SpanKind::Server,
            20,
            vec![
                KeyValue::new("http.method", "PUT"),
                KeyValue::new("http.route", "/legacy"),
                KeyValue::new("http.status_code", code),
            ],
            false,
        );
        legacy.requests += 1;
        legacy.errors += u64::from(code >= 500);
        legacy.latencies.push(0.02);
    }
    out.push(("PUT /legacy", legacy));

    // Status ERROR is bad regardless of attributes.
    let mut pay = Expect::default();
    for i in 1..=10u64 {
        let err = i <= 3;
        span(
            "pay",
            SpanKind::Server,
            100 + i,
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.route", "/pay"),
            ],
            err,
        );
        pay.requests += 1;
        pay.errors += u64::from(err);
        pay.latencies.push((100 + i) as f64 / 1000.0);
    }
    out.push(("POST /pay", pay));

    // gRPC server codes: UNAVAILABLE/INTERNAL/DEADLINE_EXCEEDED bad; NOT_FOUND/INVALID_ARGUMENT good.
    let mut rpc = Expect::default();
    for (code, bad) in [
        (0i64, false),
        (0, false),
        (14, true),
        (5, false),
        (13, true),
        (3, false),
    ] {
        span(
            "cart.Cart/Get",
            SpanKind::Server,
            7,
            vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", "cart.Cart"),
                KeyValue::new("rpc.method", "Get"),
                KeyValue::new("rpc.grpc.status_code", code),
            ],
            false,
        );
        rpc.requests += 1;
        rpc.errors += u64::from(bad);
        rpc.latencies.push(0.007);
    }
    span(
        "cart.Cart/Get",
        SpanKind::Server,
        7,
        vec![
            KeyValue::new("rpc.service", "cart.Cart"),
            KeyValue::new("rpc.method", "Get"),
            KeyValue::new("rpc.status_code", "DEADLINE_EXCEEDED"),
        ],
        false,
    );
    rpc.requests += 1;
    rpc.errors += 1;
    rpc.latencies.push(0.007);
    out.push(("cart.Cart/Get", rpc));

    // feature.name wins over everything.
    span(
        "whatever",
        SpanKind::Server,
        1,
        vec![
            KeyValue::new("feature.name", "checkout-flow"),
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/ignored"),
        ],
        false,
    );
    out.push((
        "checkout-flow",
        Expect {
            requests: 1,
            errors: 0,
            latencies: vec![0.001],
        },
    ));

    // Consumer spans are entry spans too; messaging feature key.
    span(
        "orders process",
        SpanKind::Consumer,
        30,
        vec![
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", "orders"),
        ],
        true,
    );
    out.push((
        "process orders",
        Expect {
            requests: 1,
            errors: 1,
            latencies: vec![0.03],
        },
    ));

    // Not entry spans: never counted.
    span(
        "GET",
        SpanKind::Client,
        9,
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.response.status_code", 500i64),
        ],
        true,
    );
    span("render", SpanKind::Internal, 3, vec![], false);
    out
}

fn resource() -> Resource {
    Resource::builder().with_service_name("checkout").build()
}

/// Runs the SDK on a plain thread (as an application would), with the test runtime entered
/// so the tonic exporter can use it.
fn run_sdk<E>(make_exporter: impl FnOnce() -> E + Send + 'static) -> Vec<(&'static str, Expect)>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _guard = handle.enter();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(make_exporter())
            .with_resource(resource())
            .build();
        let expected = scenario(&provider);
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
        expected
    })
    .join()
    .expect("sdk thread")
}

async fn check(server: &TestServer, expected: &[(&'static str, Expect)]) {
    let all = server.slis("all").await;
    let slis = all["slis"].as_array().expect("array");
    assert_eq!(slis.len(), expected.len(), "one series per feature: {all}");
    for (feature, e) in expected {
        let s = server.sli("all", "checkout", feature).await;
        assert_eq!(s["requests"], e.requests, "{feature} requests");
        assert_eq!(s["errors"], e.errors, "{feature} errors");
        let ratio = (e.requests - e.errors) as f64 / e.requests as f64;
        assert!((s["success_ratio"].as_f64().expect("ratio") - ratio).abs() < 1e-12);
        let mut lat = e.latencies.clone();
        lat.sort_by(f64::total_cmp);
        for (q, key) in [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")] {
            assert_close(
                &s["latency_seconds"][key],
                exact_quantile(&lat, q),
                &format!("{feature} {key}"),
            );
        }
        // Fewer than completeness.min_events (10) requests: not to be trusted yet.
        let want = if e.requests >= 10 {
            "ok"
        } else {
            "insufficient"
        };
        assert_eq!(s["data_quality"], want, "{feature}: {s}");
        assert_eq!(s["sampled_requests"], e.requests);
        assert_eq!(s["sampling_ratio"], 1.0);
        // The short windows hold the same data (it all arrived just now).
        let m1 = server.sli("1m", "checkout", feature).await;
        assert_eq!(m1["requests"], e.requests);
    }
    let total: u64 = expected.iter().map(|(_, e)| e.requests).sum();
    let metrics = server.metrics().await;
    assert_eq!(
        common::sample(&metrics, "otel_sli_entry_spans_total"),
        Some(total as f64)
    );
    assert_eq!(
        common::sample(
            &metrics,
            "sli_requests_total{service=\"checkout\",feature=\"GET /cart\"}"
        ),
        Some(40.0)
    );
    assert_eq!(
        common::sample(
            &metrics,
            "sli_errors_total{service=\"checkout\",feature=\"GET /cart\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        common::sample(
            &metrics,
            "sli_latency_seconds_bucket{service=\"checkout\",feature=\"GET /cart\",le=\"0.1\"}"
        ),
        Some(20.0),
        "20 of 5..200 ms are <= 100 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exporter_with_gzip() {
    let server = TestServer::start("").await;
    let endpoint = format!("http://{}", server.grpc);
    let expected = run_sdk(move || {
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .expect("exporter")
    });
    check(&server, &expected).await;
    let m = server.metrics().await;
    assert!(
        common::sample(&m, "otel_sli_accepted_spans_total{transport=\"grpc\"}").unwrap_or(0.0)
            >= 67.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_exporter() {
    let server = TestServer::start("").await;
    let endpoint = format!("http://{}/v1/traces", server.http);
    let expected = run_sdk(move || {
        SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .expect("exporter")
    });
    check(&server, &expected).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_exporter() {
    let server = TestServer::start("").await;
    let endpoint = format!("http://{}/v1/traces", server.http);
    let expected = run_sdk(move || {
        SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint)
            .build()
            .expect("exporter")
    });
    check(&server, &expected).await;
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            "otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"malformed\"}"
        ),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rules_change_features_and_outcomes() {
    let server = TestServer::start(
        "sli:\n  dimensions: [deployment.environment.name]\n  outcome:\n    http_bad_status: [429, '5xx']\n",
    )
    .await;
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _g = handle.enter();
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .expect("exporter");
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name("api")
                    .with_attribute(KeyValue::new("deployment.environment.name", "prod"))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("t");
        for code in [200i64, 429, 429, 404] {
            let mut s = tracer
                .span_builder("GET /q")
                .with_kind(SpanKind::Server)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("http.route", "/q"),
                    KeyValue::new("http.response.status_code", code),
                ])
                .start(&tracer);
            s.end();
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .join()
    .expect("sdk thread");
    let s = server.sli("all", "api", "GET /q").await;
    assert_eq!(s["requests"], 4);
    assert_eq!(s["errors"], 2, "429 configured as bad, 404 still good");
    assert_eq!(s["dimensions"]["deployment_environment_name"], "prod");
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            "sli_requests_total{service=\"api\",feature=\"GET /q\",deployment_environment_name=\"prod\"}"
        ),
        Some(4.0)
    );
    server.stop().await;
}

/// With default settings, an accepted span is readable within 2 seconds, with no explicit
/// flush: the shards publish on their own tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_spans_are_readable_within_two_seconds() {
    let server = TestServer::start("").await;
    let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"late"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "name":"GET /x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let r = common::http_post(
        server.http,
        "/v1/traces",
        "application/json",
        None,
        body.to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let accepted = std::time::Instant::now();
    let url = format!("http://{}/api/v1/slis", server.admin);
    loop {
        let v: serde_json::Value = reqwest::get(&url)
            .await
            .expect("admin")
            .json()
            .await
            .expect("json");
        if v["slis"].as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(v["slis"][0]["service"], "late");
            break;
        }
        assert!(
            accepted.elapsed() < Duration::from_secs(2),
            "not visible 2 s after the Export call returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
