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

/// What a vendor Collector wrote to its file: span ids (with their `http.route`), metric
/// points (their `point` attribute) and log records (their `line` attribute), each with
/// the service of its resource.
#[derive(Debug, Default)]
struct Received {
    spans: Vec<(String, String, String)>,
    points: Vec<(String, String)>,
    records: Vec<(String, String)>,
}

fn attr(item: &Value, key: &str) -> String {
    item["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| {
            let v = &kv["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| v["intValue"].as_str().map(str::to_string))
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default()
}

fn received(file: &std::path::Path) -> Received {
    let mut r = Received::default();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue; // a line being written
        };
        let each = |key: &str| doc[key].as_array().cloned().unwrap_or_default();
        for rs in each("resourceSpans") {
            let service = attr(&rs["resource"], "service.name");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let id = s["spanId"].as_str().unwrap_or("").to_string();
                    r.spans.push((service.clone(), id, attr(s, "http.route")));
                }
            }
        }
        for rm in each("resourceMetrics") {
            let service = attr(&rm["resource"], "service.name");
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for p in m["gauge"]["dataPoints"].as_array().into_iter().flatten() {
                        r.points.push((service.clone(), attr(p, "point")));
                    }
                }
            }
        }
        for rl in each("resourceLogs") {
            let service = attr(&rl["resource"], "service.name");
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for l in sl["logRecords"].as_array().into_iter().flatten() {
                    r.records.push((service.clone(), attr(l, "line")));
                }
            }
        }
    }
    r
}

/// Sends `spans` SDK spans (gzip, gRPC), `points` metric points and `records` log records to
/// the agent's gRPC receiver.
async fn feed(agent_grpc: &str, spans: usize, points: usize, records: usize) {
    use common::{grpc_raw, LOGS_EXPORT, METRICS_EXPORT};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    let reqs = (0..spans)
        .map(|i| {
            Req::server(
                "GET",
                "/cart",
                Duration::from_millis(5 + i as u64 % 50),
                200,
            )
        })
        .collect();
    sdk::send(agent_grpc.to_string(), Transport::Grpc, true, "shop", reqs).await;
    let addr = agent_grpc.parse().expect("addr");
    let m = common::otlp::metrics_request(points);
    grpc_raw::<ExportMetricsServiceResponse>(addr, METRICS_EXPORT, m.into(), true)
        .await
        .expect("metrics accepted");
    let l = common::otlp::logs_request(records);
    grpc_raw::<ExportLogsServiceResponse>(addr, LOGS_EXPORT, l.into(), false)
        .await
        .expect("logs accepted");
}

/// otel-sli on `deploy/examples/topology-2-otel-sli.yaml` (verbatim) forwards to a vendor
/// Collector over `protocol`; everything arrives with its attributes; the vendor is stopped
/// for a while and started again, and with the spool nothing is lost or doubled.
async fn ahead_of_a_vendor_collector(protocol: &str) {
    let Some(bin) = collector::binary() else {
        return;
    };
    let dir = collector::scratch("vendor");
    let file = dir.join("vendor.jsonl");
    let (vendor_grpc, vendor_http) = (free_addr(), free_addr());
    let mut vendor = Collector::start(
        &bin,
        &collector::repo("tests/collector/vendor.yaml"),
        &[
            ("VENDOR_GRPC_ENDPOINT", vendor_grpc.clone()),
            ("VENDOR_HTTP_ENDPOINT", vendor_http.clone()),
            ("VENDOR_FILE", file.display().to_string()),
        ],
    );
    let upstream = if protocol == "grpc" {
        &vendor_grpc
    } else {
        &vendor_http
    };
    let (grpc, http, admin) = (free_addr(), free_addr(), free_addr());
    let mut agent = common::spawn_with_env(
        env!("CARGO_BIN_EXE_otel-sli"),
        &collector::repo("deploy/examples/topology-2-otel-sli.yaml"),
        &grpc,
        &http,
        &admin,
        &[
            ("VENDOR_OTLP_ENDPOINT", format!("http://{upstream}")),
            ("VENDOR_OTLP_PROTOCOL", protocol.to_string()),
            ("VENDOR_API_KEY", "test-key".to_string()),
            (
                "OTEL_SLI_STORAGE",
                dir.join("storage").display().to_string(),
            ),
        ],
    );
    common::wait_ready(&admin);

    feed(&grpc, 300, 50, 40).await;
    let arrived = until(30, || async {
        let r = received(&file);
        (r.spans.len() >= 300 && r.points.len() >= 50 && r.records.len() >= 40).then_some(r)
    })
    .await;
    let r = arrived.unwrap_or_else(|| panic!("not everything arrived: {:?}", received(&file)));
    assert!(
        r.spans
            .iter()
            .all(|(svc, _, route)| svc == "shop" && route == "/cart"),
        "{r:?}"
    );
    let mut points: Vec<String> = r.points.iter().map(|(_, p)| p.clone()).collect();
    points.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(points, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(r.records.iter().all(|(svc, _)| svc == "shop"));

    // The vendor goes away; what arrives meanwhile waits in the spool.
    vendor.stop();
    feed(&grpc, 200, 10, 10).await;
    let spooled = until(30, || async {
        let m = common::http_get_text(&admin, "/metrics").unwrap_or_default();
        let items = collector::sum_samples(&m, "otel_sli_exporter_spooled_items_total", &[]);
        (items >= 220.0).then_some(items)
    })
    .await;
    assert!(
        spooled.is_some(),
        "{}",
        common::http_get_text(&admin, "/metrics").unwrap_or_default()
    );
    // The file exporter starts its file afresh: the restarted vendor writes to a second one.
    let file2 = dir.join("vendor-after-restart.jsonl");
    vendor.set_env("VENDOR_FILE", file2.display().to_string());
    vendor.restart();
    let both = || {
        let (mut a, b) = (received(&file), received(&file2));
        a.spans.extend(b.spans);
        a.points.extend(b.points);
        a.records.extend(b.records);
        a
    };
    let all = until(60, || async {
        let r = both();
        (r.spans.len() >= 500 && r.points.len() >= 60 && r.records.len() >= 50).then_some(r)
    })
    .await;
    let r = all.unwrap_or_else(|| panic!("after the restart: {:?}", both()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r2 = both();
    assert_eq!(
        (r2.spans.len(), r2.points.len(), r2.records.len()),
        (500, 60, 50),
        "each item exactly once"
    );
    let mut ids: Vec<&String> = r.spans.iter().map(|(_, id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 500, "distinct spans");
    let metrics = common::http_get_text(&admin, "/metrics").unwrap_or_default();
    assert_eq!(
        collector::sum_samples(&metrics, "otel_sli_exporter_dropped_items_total", &[]),
        0.0,
        "nothing dropped"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    vendor.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ahead_of_a_collector_over_grpc_everything_arrives_and_the_spool_bridges_a_restart() {
    ahead_of_a_vendor_collector("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ahead_of_a_collector_over_http_everything_arrives_and_the_spool_bridges_a_restart() {
    ahead_of_a_vendor_collector("http").await;
}

/// A gateway: otel-sli on `grpc` judging traces 10 s after their last span.
async fn gateway(grpc: &str) -> TestServer {
    gateway_judging_after(grpc, "10s").await
}

async fn gateway_judging_after(grpc: &str, trace_timeout: &str) -> TestServer {
    let mut c = common::config(&format!(
        "completeness:\n  trace_timeout: {trace_timeout}\n"
    ));
    c.grpc.endpoint = grpc.to_string();
    TestServer::start_with(c).await
}

/// Spans of `service` that make up traces, and the requests (one span each) that carry
/// them: `complete` whole traces (SERVER root, INTERNAL child, CLIENT grandchild), `orphans`
/// traces whose child never comes (its grandchild is an orphan), and `rootless` traces
/// whose root never comes (an orphan child and a missing root). Ids start at `first`.
fn traces(first: u64, complete: u64, orphans: u64, rootless: u64) -> Vec<Vec<u8>> {
    use common::otlp::{traces_request, SpanIds};
    let mut requests = Vec::new();
    for t in first..first + complete + orphans + rootless {
        // Spread the trace ids over the hash ring.
        let trace = u128::from(t).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1;
        let span = |n: u64| SpanIds {
            trace,
            span: t * 16 + n,
            parent: if n == 1 { 0 } else { t * 16 + n - 1 },
            kind: [0, 2, 1, 3][n as usize],
            name: ["", "GET /orders", "load", "SELECT orders"][n as usize],
        };
        let sent: &[u64] = if t < first + complete {
            &[3, 2, 1]
        } else if t < first + complete + orphans {
            &[3, 1]
        } else {
            &[3, 2]
        };
        for n in sent {
            requests.push(traces_request("shop", &[span(*n)]));
        }
    }
    requests
}

/// Sends each request as its own gRPC Export to `addr`.
async fn export_each(addr: &str, requests: Vec<Vec<u8>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let addr = addr.parse().expect("addr");
    for r in requests {
        common::grpc_raw::<ExportTraceServiceResponse>(addr, common::TRACE_EXPORT, r.into(), false)
            .await
            .expect("accepted");
    }
}

/// (requests, orphan spans, missing-root traces) a gateway has counted.
async fn judged(g: &TestServer) -> (f64, f64, f64) {
    let m = g.metrics().await;
    (
        collector::sum_samples(&m, "sli_requests_total", &["service=\"shop\""]),
        collector::sum_samples(&m, "telemetry_gap_spans_total", &["kind=\"orphan_spans\""]),
        collector::sum_samples(&m, "telemetry_gap_traces_total", &["kind=\"missing_root\""]),
    )
}

/// The Collector of `deploy/examples/topology-3-collector-static.yaml` routes traces whose
/// spans come in separate requests to two gateways: every trace arrives whole at one of
/// them, so complete traces raise no gap and exactly the injected incomplete ones are
/// reported, once across both. The same spans sent to the gateways round-robin, without the
/// router, raise false orphans. Then one gateway stops: its share waits in the Collector's
/// queue and is retried, the other gateway is unaffected, and when it comes back it receives
/// its share, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_routing_by_trace_id_gives_each_gateway_whole_traces() {
    let Some(bin) = collector::binary() else {
        return;
    };
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let a = gateway(&addr_a).await;
    let mut b = gateway(&addr_b).await;
    let router = free_addr();
    let c = Collector::start(
        &bin,
        &collector::repo("deploy/examples/topology-3-collector-static.yaml"),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", router.clone()),
            ("GATEWAY_1", addr_a.clone()),
            ("GATEWAY_2", addr_b.clone()),
        ],
    );
    // 40 whole traces, 5 with an orphan, 3 without their root: 45 requests (root spans).
    export_each(&router, traces(1, 40, 5, 3)).await;
    let both = || async {
        let (x, y) = (judged(&a).await, judged(&b).await);
        (x, y, (x.0 + y.0, x.1 + y.1, x.2 + y.2))
    };
    let done = until(40, || async {
        let (_, _, sum) = both().await;
        (sum == (45.0, 8.0, 3.0)).then_some(sum)
    })
    .await;
    let (ga, gb, sum) = both().await;
    assert_eq!(
        done,
        Some((45.0, 8.0, 3.0)),
        "A {ga:?}, B {gb:?}, sum {sum:?}"
    );
    assert!(
        ga.0 > 0.0 && gb.0 > 0.0,
        "both gateways have a share: A {ga:?}, B {gb:?}"
    );
    // Judged once: nothing more comes of it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(both().await.2, (45.0, 8.0, 3.0));

    // Without the router, the same kind of traces sent round-robin come apart.
    let direct = traces(100, 20, 0, 0);
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for (i, r) in direct.into_iter().enumerate() {
        if i % 2 == 0 {
            to_a.push(r)
        } else {
            to_b.push(r)
        }
    }
    export_each(&addr_a, to_a).await;
    export_each(&addr_b, to_b).await;
    let split = until(40, || async {
        let (_, _, sum) = both().await;
        (sum.0 == 65.0 && sum.1 > 8.0).then_some(sum.1 - 8.0)
    })
    .await;
    let now = both().await;
    assert!(split.is_some(), "A {:?}, B {:?}", now.0, now.1);
    // Every split trace judged (trace_timeout after its last span) before going on.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = both().await;
    let false_orphans = before.2 .1 - 8.0;
    assert!(
        false_orphans >= 10.0,
        "round-robin splits traces: {false_orphans} orphans"
    );

    // Gateway B stops. 20 more whole traces go through the router.
    b.stop().await;
    export_each(&router, traces(200, 20, 0, 0)).await;
    let retried = until(20, || async {
        c.log()
            .lines()
            .any(|l| l.contains("Will retry the request after interval") && l.contains(&addr_b))
            .then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "the Collector retries B's share:\n{}",
        c.log()
    );
    // B comes back on its address; the Collector delivers what it held for it. (A may
    // still be receiving its own share meanwhile: the Collector sends asynchronously.)
    b = gateway(&addr_b).await;
    let shares = until(60, || async {
        let a_share = judged(&a).await.0 - before.0 .0;
        let b_share = judged(&b).await.0;
        (a_share + b_share >= 20.0).then_some((a_share, b_share))
    })
    .await;
    let (a_share, b_share) = shares.unwrap_or_else(|| panic!("{}", c.log()));
    assert_eq!(a_share + b_share, 20.0, "every trace once");
    assert!(
        a_share > 0.0 && b_share > 0.0,
        "each gateway its own share: A {a_share}, B {b_share}"
    );
    // Whole traces on both sides once judged (after trace_timeout).
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(judged(&a).await.1, before.0 .1, "no new orphan at A");
    assert_eq!(
        judged(&b).await,
        (20.0 - a_share, 0.0, 0.0),
        "B's share arrived whole"
    );
    eprintln!(
        "routed (requests, orphan spans, missing roots): A {ga:?} B {gb:?}; round-robin \
         without the router: {false_orphans} false orphans; B stopped: A took {a_share} of 20, \
         B's {} came after its restart",
        20.0 - a_share
    );
    drop(c);
    a.stop().await;
    b.stop().await;
}

/// `deploy/examples/topology-3-collector.yaml` (the DNS resolver, as in Kubernetes) with
/// `localhost` as the gateways' name: the one gateway it resolves to gets every trace whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dns_router_example_sends_whole_traces_to_the_gateway_it_resolves() {
    let Some(bin) = collector::binary() else {
        return;
    };
    let port = common::free_addr()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .expect("port");
    let g = gateway_judging_after(&format!("127.0.0.1:{port}"), "2s").await;
    let router = free_addr();
    let c = Collector::start(
        &bin,
        &collector::repo("deploy/examples/topology-3-collector.yaml"),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", router.clone()),
            ("GATEWAY_HOSTNAME", "localhost".to_string()),
            ("GATEWAY_PORT", port),
        ],
    );
    export_each(&router, traces(1, 30, 2, 0)).await;
    let done = until(30, || async {
        let j = judged(&g).await;
        (j == (32.0, 2.0, 0.0)).then_some(j)
    })
    .await;
    assert_eq!(
        done,
        Some((32.0, 2.0, 0.0)),
        "{:?}\n{}",
        judged(&g).await,
        c.log()
    );
    drop(c);
    g.stop().await;
}

/// The comparison traffic of `shop`, through the SDK. `GET /cart`: 90 requests at 110 ms and
/// 10 at 190 ms; 10 answered 503 with span status ERROR, 5 answered 503 with the status left
/// unset, 10 answered 404. `POST /checkout`: 40 at 300 ms. 60 SERVER spans named just `GET`
/// (as some instrumentations name them) for the routes `/items` and `/users`. 50 CLIENT
/// spans (calls the service makes).
fn comparison_traffic() -> Vec<Req> {
    use opentelemetry::trace::SpanKind;
    let mut reqs = Vec::new();
    for i in 0..100u64 {
        let latency = Duration::from_millis(if i % 10 == 9 { 190 } else { 110 });
        let mut r = Req::server("GET", "/cart", latency, 200);
        if i % 10 == 0 {
            (r.status, r.error) = (503, true);
        } else if i % 20 == 5 {
            r.status = 503;
        } else if i % 10 == 3 {
            r.status = 404;
        }
        reqs.push(r);
    }
    for _ in 0..40 {
        reqs.push(Req::server(
            "POST",
            "/checkout",
            Duration::from_millis(300),
            201,
        ));
    }
    for route in ["/items", "/users"] {
        for _ in 0..30 {
            let mut r = Req::server("GET", route, Duration::from_millis(20), 200);
            r.name = Some("GET".into());
            reqs.push(r);
        }
    }
    for _ in 0..50 {
        let mut r = Req::server("GET", "/inventory", Duration::from_millis(5), 200);
        (r.name, r.kind) = (Some("GET".into()), SpanKind::Client);
        reqs.push(r);
    }
    reqs
}

/// What Prometheus' `histogram_quantile` makes of the cumulative `buckets` (upper bound in
/// ms, count): linear interpolation inside the bucket holding the rank.
fn interpolated_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, cumulative) in buckets {
        if cumulative >= rank {
            return lower + (upper - lower) * (rank - below) / (cumulative - below);
        }
        (lower, below) = (upper, cumulative);
    }
    f64::NAN
}

/// The same traffic through the Collector's `spanmetrics` connector and through otel-sli
/// (`deploy/examples/collector-spanmetrics-beside-otel-sli.yaml`, verbatim): SERVER calls per
/// service and span name equal otel-sli's requests per feature where spans are named after
/// their route, and each difference docs/vs-spanmetrics.md explains is shown here: what
/// counts as an error, CLIENT spans, span names against routes, buckets against quantiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanmetrics_side_by_side_agrees_on_calls_and_differs_where_documented() {
    let Some(bin) = collector::binary() else {
        return;
    };
    let server = TestServer::start("").await;
    let (collector_grpc, prom) = (free_addr(), free_addr());
    let c = Collector::start(
        &bin,
        &collector::repo("deploy/examples/collector-spanmetrics-beside-otel-sli.yaml"),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", collector_grpc.clone()),
            ("COLLECTOR_HTTP_ENDPOINT", free_addr()),
            ("OTEL_SLI_GRPC_ENDPOINT", server.grpc.to_string()),
            ("SPANMETRICS_PROMETHEUS_ENDPOINT", prom.clone()),
            ("SPANMETRICS_FLUSH_INTERVAL", "1s".to_string()),
        ],
    );
    let reqs = comparison_traffic();
    sdk::send(collector_grpc, Transport::Grpc, false, "shop", reqs.clone()).await;
    let calls = |text: &str, labels: &[&str]| {
        collector::sum_samples(text, "traces_span_metrics_calls_total", labels)
    };
    let text = until(30, || async {
        let t = common::http_get_text(&prom, "/metrics").unwrap_or_default();
        (calls(&t, &["service_name=\"shop\""]) >= 250.0).then_some(t)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "spanmetrics: {}",
            common::http_get_text(&prom, "/metrics").unwrap_or_default()
        )
    });
    let sli = |feature: &'static str| {
        let server = &server;
        async move { server.sli("all", "shop", feature).await }
    };
    assert!(slis_holding(
        &server,
        "shop",
        &[("GET /cart", 100), ("POST /checkout", 40)]
    )
    .await
    .is_some());
    let server_span = "span_kind=\"SPAN_KIND_SERVER\"";
    // 1. Calls of SERVER spans named after their route = otel-sli's requests per feature.
    for (feature, n) in [("GET /cart", 100.0), ("POST /checkout", 40.0)] {
        let name = format!("span_name=\"{feature}\"");
        assert_eq!(
            calls(&text, &[server_span, &name]),
            n,
            "spanmetrics calls of {feature}"
        );
        assert_eq!(
            sli(feature).await["requests"],
            n,
            "otel-sli requests of {feature}"
        );
    }
    // 2. Errors: spanmetrics counts span status ERROR only (10); otel-sli also counts the 5
    //    answered 503 whose instrumentation left the status unset. 404s are good in both.
    let cart = "span_name=\"GET /cart\"";
    let errors = calls(
        &text,
        &[server_span, cart, "status_code=\"STATUS_CODE_ERROR\""],
    );
    assert_eq!(errors, 10.0);
    assert_eq!(sli("GET /cart").await["errors"], 15);
    // 3. CLIENT spans are calls to spanmetrics (its totals mix them in); otel-sli counts only
    //    the requests a service serves.
    assert_eq!(calls(&text, &["span_kind=\"SPAN_KIND_CLIENT\""]), 50.0);
    let all = server.slis("all").await;
    let otel_sli_total: u64 = all["slis"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["requests"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(otel_sli_total, 200, "{all}");
    assert_eq!(calls(&text, &["service_name=\"shop\""]), 250.0);
    // 4. Span names against routes: 60 SERVER spans named `GET` are one spanmetrics series;
    //    otel-sli splits them by http.route.
    assert_eq!(calls(&text, &[server_span, "span_name=\"GET\""]), 60.0);
    assert_eq!(sli("GET /items").await["requests"], 30);
    assert_eq!(sli("GET /users").await["requests"], 30);
    // 5. Buckets against quantiles: 90 of 100 cart requests took 110 ms and 10 took 190 ms.
    //    All fall in spanmetrics' (100, 200] ms bucket, so an interpolated p50 says 150 ms and
    //    p90 190 ms; otel-sli's quantiles are within 1% of 110 ms.
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("traces_span_metrics_duration_milliseconds_bucket{")
                && l.contains(cart)
                && l.contains(server_span)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count: f64 = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le.parse::<f64>().unwrap_or(f64::INFINITY), count))
        })
        .fold(Vec::new(), |mut acc: Vec<(f64, f64)>, (le, n)| {
            // Sum the series of each status code per bound.
            match acc.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += n,
                None => acc.push((le, n)),
            }
            acc
        });
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p50 = interpolated_quantile(&buckets, 0.5);
    let p90 = interpolated_quantile(&buckets, 0.9);
    assert!(
        (p50 - 150.0).abs() < 1e-9,
        "spanmetrics p50 {p50} ms from {buckets:?}"
    );
    assert!((p90 - 190.0).abs() < 1e-9, "spanmetrics p90 {p90} ms");
    let s = sli("GET /cart").await;
    common::assert_close(&s["latency_seconds"]["p50"], 0.110, "otel-sli p50");
    common::assert_close(&s["latency_seconds"]["p90"], 0.110, "otel-sli p90");
    common::assert_close(&s["latency_seconds"]["p95"], 0.190, "otel-sli p95");
    eprintln!(
        "spanmetrics: cart errors {errors}, p50 {p50} ms, p90 {p90} ms; otel-sli: cart errors {}, p50 {} s, p90 {} s",
        s["errors"], s["latency_seconds"]["p50"], s["latency_seconds"]["p90"]
    );
    drop(c);
    server.stop().await;
}
