//! `otel-sli` with the real OpenTelemetry Collector (the distribution of `tests/collector/`):
//! behind a Collector (`deploy/examples/collector-to-otel-sli*.yaml`, used verbatim), under
//! back-pressure with the Collector's retries, ahead of a Collector as the vendor, behind a
//! Collector routing traces to a gateway tier, and beside the `spanmetrics` connector on the
//! same traffic. Skipped (with a note) when the Collector cannot be built, unless
//! `OTEL_SLI_REQUIRE_TOOLS=1`.

mod common;

use common::collector::{self, Collector};
use common::sdk::{self, Req, Transport};
use common::{free_addr, TestServer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it returns `Some`, for up to `secs` seconds.
async fn until<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shop's traffic: `GET /cart` 2–200 ms, every 10th answered 503 (bad), and
/// `POST /checkout` 300–339 ms, every 4th answered 404 (a client error: good).
fn shop_traffic() -> Vec<Req> {
    let mut reqs = Vec::new();
    for i in 0..200u64 {
        let status = if i % 10 == 0 { 503 } else { 200 };
        reqs.push(Req::server(
            "GET",
            "/cart",
            Duration::from_millis(2 * (i % 100 + 1)),
            status,
        ));
    }
    for i in 0..40u64 {
        let status = if i % 4 == 0 { 404 } else { 201 };
        reqs.push(Req::server(
            "POST",
            "/checkout",
            Duration::from_millis(300 + i),
            status,
        ));
    }
    reqs
}

/// Requests and errors per feature, and the sorted latencies (seconds), of `reqs`.
fn truth(reqs: &[Req], feature: &str) -> (u64, u64, Vec<f64>) {
    let of: Vec<&Req> = reqs
        .iter()
        .filter(|r| format!("{} {}", r.method, r.route) == feature)
        .collect();
    let errors = of.iter().filter(|r| r.status >= 500 || r.error).count() as u64;
    let mut lat: Vec<f64> = of.iter().map(|r| r.latency.as_secs_f64()).collect();
    lat.sort_by(f64::total_cmp);
    (of.len() as u64, errors, lat)
}

/// `/api/v1/slis?window=all` once it holds `want` requests per feature of `service`.
async fn slis_holding(server: &TestServer, service: &str, want: &[(&str, u64)]) -> Option<Value> {
    until(30, || async {
        let all = server.slis("all").await;
        let ok = want.iter().all(|(feature, n)| {
            all["slis"].as_array().is_some_and(|s| {
                s.iter().any(|s| {
                    s["service"] == service && s["feature"] == *feature && s["requests"] == *n
                })
            })
        });
        ok.then_some(all)
    })
    .await
}

/// Asserts that `/api/v1/slis` holds exactly the requests, errors and quantiles of `reqs`.
async fn assert_exact(server: &TestServer, service: &str, reqs: &[Req]) {
    let features = ["GET /cart", "POST /checkout"];
    let want: Vec<(&str, u64)> = features.iter().map(|f| (*f, truth(reqs, f).0)).collect();
    let got = slis_holding(server, service, &want).await;
    assert!(
        got.is_some(),
        "not all requests arrived: {}",
        server.slis("all").await
    );
    // Nothing arrives twice: a second later the counts are the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for feature in features {
        let (n, errors, lat) = truth(reqs, feature);
        let s = server.sli("all", service, feature).await;
        assert_eq!(s["requests"], n, "{s}");
        assert_eq!(s["errors"], errors, "{s}");
        for (q, name) in [(0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")] {
            common::assert_close(
                &s["latency_seconds"][name],
                common::exact_quantile(&lat, q),
                &format!("{feature} {name}"),
            );
        }
    }
}

/// SDK → Collector (`batch`, then the exporter of `example`) → otel-sli.
async fn behind_a_collector(example: &str, transport: Transport) {
    let Some(bin) = collector::binary() else {
        return;
    };
    let server = TestServer::start("").await;
    let collector_grpc = free_addr();
    let mut c = Collector::start(
        &bin,
        &collector::repo(example),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", collector_grpc.clone()),
            ("COLLECTOR_HTTP_ENDPOINT", free_addr()),
            ("OTEL_SLI_GRPC_ENDPOINT", server.grpc.to_string()),
            ("OTEL_SLI_HTTP_ENDPOINT", format!("http://{}", server.http)),
        ],
    );
    let reqs = shop_traffic();
    sdk::send(collector_grpc, Transport::Grpc, false, "shop", reqs.clone()).await;
    assert_exact(&server, "shop", &reqs).await;
    // The Collector's batches came over the transport of the example, compressed.
    let metrics = server.metrics().await;
    let label = match transport {
        Transport::Grpc => "grpc",
        Transport::Http => "http",
    };
    assert_eq!(
        common::sample(
            &metrics,
            &format!("otel_sli_accepted_spans_total{{transport=\"{label}\"}}")
        ),
        Some(reqs.len() as f64),
        "{metrics}"
    );
    let sent = c.self_metric("otelcol_exporter_sent_spans", &[]);
    assert_eq!(
        sent,
        reqs.len() as f64,
        "the Collector's own count of spans sent"
    );
    c.stop();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_collector_over_grpc_with_gzip_every_request_is_counted_once() {
    behind_a_collector(
        "deploy/examples/collector-to-otel-sli.yaml",
        Transport::Grpc,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_collector_over_otlphttp_every_request_is_counted_once() {
    behind_a_collector(
        "deploy/examples/collector-to-otel-sli-http.yaml",
        Transport::Http,
    )
    .await;
}

/// otel-sli refuses (its only shard queue is full) while a Collector on
/// `deploy/examples/topology-2-collector.yaml` sends; the Collector's exporter retries, as
/// its log shows, and once otel-sli drains every span is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_makes_the_collector_retry_and_nothing_is_lost_or_doubled() {
    let Some(bin) = collector::binary() else {
        return;
    };
    let mut otel_sli = common::stalled::Stalled::start(
        "pipeline:\n  shards: 1\n  queue_capacity: 1\n  retry_after: 1s\n",
    )
    .await;
    let collector_grpc = free_addr();
    let mut c = Collector::start(
        &bin,
        &collector::repo("deploy/examples/topology-2-collector.yaml"),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", collector_grpc.clone()),
            ("COLLECTOR_HTTP_ENDPOINT", free_addr()),
            ("OTEL_SLI_GRPC_ENDPOINT", otel_sli.grpc.to_string()),
        ],
    );
    // Four waves, each its own batch at the Collector (its batch processor waits 200 ms).
    let wave: Vec<Req> = (0..100)
        .map(|i| Req::server("GET", "/cart", Duration::from_millis(10 + i), 200))
        .collect();
    for _ in 0..4 {
        sdk::send(
            collector_grpc.clone(),
            Transport::Grpc,
            false,
            "shop",
            wave.clone(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    use otel_sli::telemetry::{RefuseReason, Transport as Wire};
    let refused = until(30, || async {
        let busy = otel_sli
            .telemetry
            .refused_spans_count(Wire::Grpc, RefuseReason::Busy);
        let retrying = c.log().contains("Will retry the request after interval");
        (busy > 0 && retrying).then_some(busy)
    })
    .await;
    let log = c.log();
    let refused = refused.unwrap_or_else(|| panic!("no refusal and retry seen:\n{log}"));
    // The Collector logged the refusal it will retry, with otel-sli's status.
    let retry_line = log
        .lines()
        .find(|l| l.contains("Will retry the request after interval"))
        .unwrap_or_default()
        .to_string();
    // UNAVAILABLE, and the wait otel-sli asked for in RetryInfo (retry_after: 1s).
    assert!(
        retry_line.contains("Throttle (1s)") && retry_line.contains("Unavailable"),
        "{retry_line}"
    );

    otel_sli.resume();
    let counted = until(60, || async {
        let n = otel_sli.requests().await;
        (n >= 400).then_some(n)
    })
    .await;
    assert_eq!(counted, Some(400), "{}", c.log());
    // Nothing arrives twice, and the Collector gave up on nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(otel_sli.requests().await, 400);
    assert_eq!(c.self_metric("otelcol_exporter_sent_spans", &[]), 400.0);
    assert_eq!(
        c.self_metric("otelcol_exporter_send_failed_spans", &[]),
        0.0
    );
    eprintln!(
        "refused {refused} spans at first; the Collector retried ({} retry lines) and delivered all 400",
        c.log().matches("Will retry the request after interval").count()
    );
    c.stop();
    otel_sli.stop().await;
}
