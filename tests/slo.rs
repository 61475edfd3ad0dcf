//! SLOs end to end with the OpenTelemetry SDK as the client: error ratios that page or
//! stay ok, latency SLOs counting slow requests as bad, late spans left out, the Prometheus
//! series, and SLO windows surviving a restart through the state file.

mod common;

use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use std::time::{Duration, Instant, SystemTime};

use common::sdk_provider as provider;

/// One request span: `POST /pay`-style feature from method and route, ending `ago` before
/// now after taking `took`.
struct Req<'a> {
    method: &'a str,
    route: &'a str,
    failed: bool,
    took: Duration,
    ago: Duration,
}

/// Sends `reqs` for `service` through the SDK's gRPC exporter and waits for the export.
async fn send(server: &TestServer, service: &str, reqs: Vec<Req<'static>>) {
    send_at(server, service, reqs, SystemTime::now()).await
}

/// Like [`send`], with `now` as the present the requests' `ago` counts back from.
async fn send_at(server: &TestServer, service: &str, reqs: Vec<Req<'static>>, now: SystemTime) {
    send_to(format!("http://{}", server.grpc), service, reqs, now).await
}

/// Like [`send_at`], to the OTLP/gRPC endpoint `endpoint`.
async fn send_to(endpoint: String, service: &str, reqs: Vec<Req<'static>>, now: SystemTime) {
    let service = service.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = provider(&endpoint, &service);
        let tracer = p.tracer("slo-test");
        for r in reqs {
            let end = now - r.ago;
            let mut span = tracer
                .span_builder(format!("{} {}", r.method, r.route))
                .with_kind(SpanKind::Server)
                .with_start_time(end - r.took)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", r.method),
                    KeyValue::new("http.route", r.route),
                ])
                .start(&tracer);
            if r.failed {
                span.set_status(Status::error("boom"));
            }
            span.end_with_timestamp(end);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

fn reqs(
    n: usize,
    failed_every: usize,
    method: &'static str,
    route: &'static str,
) -> Vec<Req<'static>> {
    (0..n)
        .map(|i| Req {
            method,
            route,
            failed: failed_every > 0 && i % failed_every == 0,
            took: Duration::from_millis(20),
            ago: Duration::ZERO,
        })
        .collect()
}

const SLOS: &str = r#"
slos:
  - name: pay-availability
    service: pay
    feature: "POST /pay"
    objective: 99.9
  - name: search-availability
    service: search
    feature: "GET /search*"
    objective: 99
    window: 7d
    labels: { team: discovery }
  - name: pay-latency
    service: pay
    feature: "POST /pay"
    sli: latency
    threshold: 300ms
    objective: 95
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_errors_page_a_tenth_of_a_percent_against_99_stays_ok() {
    let server = TestServer::start(SLOS).await;
    // pay: 500 requests, every 5th failed (20%).
    send(&server, "pay", reqs(500, 5, "POST", "/pay")).await;
    // search: 2000 requests over two features matched by the glob, 2 failed (0.1%).
    let mut search = reqs(1000, 0, "GET", "/search");
    search.extend(reqs(1000, 0, "GET", "/search/suggest"));
    search[10].failed = true;
    search[1500].failed = true;
    send(&server, "search", search).await;

    let pay = server.slo("pay-availability").await;
    assert_eq!(pay["total"], 500, "{pay}");
    assert_eq!(pay["bad"], 100);
    assert_eq!(pay["alert"], "page", "{pay}");
    assert_eq!(pay["firing"], serde_json::json!(["ticket", "page"]));
    // Burn: (100/500) / 0.001 = 200 in every window holding the requests.
    let burn = pay["burn_rates"]["5m"].as_f64().expect("5m burn");
    assert!((burn - 200.0).abs() < 1e-6, "{burn}");
    assert!((pay["burn_rates"]["3d"].as_f64().expect("3d") - 200.0).abs() < 1e-6);
    // Budget: 1 − 100 / (0.001 × 500) = −199, reported unclamped.
    let remaining = pay["error_budget_remaining"].as_f64().expect("budget");
    assert!((remaining + 199.0).abs() < 1e-6, "{remaining}");
    assert_eq!(pay["exhaustion_eta_seconds"], 0.0, "already exhausted");
    assert!((pay["sli_value"].as_f64().expect("sli") - 0.8).abs() < 1e-12);

    let search = server.slo("search-availability").await;
    assert_eq!(
        (search["total"].clone(), search["bad"].clone()),
        (2000.into(), 2.into())
    );
    assert_eq!(search["alert"], "ok", "{search}");
    // (2/2000)/0.01 = 0.1: burning a tenth of the sustainable rate.
    assert!((search["burn_rates"]["1h"].as_f64().expect("1h") - 0.1).abs() < 1e-9);
    // 7-day window: no 3d... it is shorter than 7d, so 3d is there; no 30d-only windows.
    assert!(search["burn_rates"].get("3d").is_some());
    let eta = search["exhaustion_eta_seconds"].as_f64().expect("eta");
    // remaining 0.9 × 7 d / 0.1 = 5,443,200 s.
    assert!((eta - 0.9 * 7.0 * 86_400.0 / 0.1).abs() < 1e-3, "{eta}");

    let m = server.metrics().await;
    let v = |s: &str| common::sample(&m, s).unwrap_or_else(|| panic!("no {s} in\n{m}"));
    assert_eq!(
        v("slo_alert_active{slo=\"pay-availability\",severity=\"page\"}"),
        1.0
    );
    assert_eq!(
        v("slo_alert_active{slo=\"search-availability\",team=\"discovery\",severity=\"page\"}"),
        0.0
    );
    assert_eq!(v("slo_objective_ratio{slo=\"pay-availability\"}"), 0.999);
    assert_eq!(v("slo_sli_ratio{slo=\"pay-availability\"}"), 0.8);
    assert!((v("slo_burn_rate{slo=\"pay-availability\",window=\"1h\"}") - 200.0).abs() < 1e-6);
    assert!((v("slo_error_budget_remaining_ratio{slo=\"pay-availability\"}") + 199.0).abs() < 1e-6);
    // Every SLO metric the README documents is exposed.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `slo_")?.split('`').next())
        .collect();
    assert!(documented.len() >= 7, "{documented:?}");
    for name in documented {
        assert!(
            m.contains(&format!("# TYPE slo_{name} ")),
            "README documents slo_{name}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slo_counts_slow_and_failed_requests_and_late_spans_stay_out() {
    let server = TestServer::start(SLOS).await;
    let mut r = Vec::new();
    for i in 0..100 {
        r.push(Req {
            method: "POST",
            route: "/pay",
            failed: i == 0,
            // 10 slow ones (i = 90..99), one exactly at the threshold (good).
            took: match i {
                90.. => Duration::from_millis(500),
                50 => Duration::from_millis(300),
                _ => Duration::from_millis(100),
            },
            ago: Duration::ZERO,
        });
    }
    // Two hours late (beyond slo.max_lateness = 1h): counted as late, not in the window.
    for _ in 0..3 {
        r.push(Req {
            method: "POST",
            route: "/pay",
            failed: true,
            took: Duration::from_millis(10),
            ago: Duration::from_secs(7200),
        });
    }
    send(&server, "pay", r).await;
    let lat = server.slo("pay-latency").await;
    assert_eq!(
        (lat["total"].clone(), lat["bad"].clone()),
        (100.into(), 11.into()),
        "{lat}"
    );
    assert_eq!(lat["threshold_seconds"], 0.3);
    let avail = server.slo("pay-availability").await;
    assert_eq!(
        (avail["total"].clone(), avail["bad"].clone()),
        (100.into(), 1.into())
    );
    let m = server.metrics().await;
    assert_eq!(common::sample(&m, "otel_sli_late_spans_total"), Some(3.0));
    // The threshold is an exact bucket bound of the exported histogram.
    assert!(m.contains("feature=\"POST /pay\",le=\"0.3\"}"), "{m}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_windows_survive_a_restart_and_a_corrupt_state_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("otel-sli-slo-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let yaml = format!(
        "{SLOS}\nstorage:\n  directory: {}\n  interval: 1s\n",
        dir.display()
    );
    let server = TestServer::start(&yaml).await;
    send(&server, "pay", reqs(40, 4, "POST", "/pay")).await;
    assert_eq!(server.slo("pay-availability").await["total"], 40);
    server.stop().await;
    assert!(dir.join("slo-state.json").exists(), "written on shutdown");

    // Restart: the counts are back without any new traffic.
    let server = TestServer::start(&yaml).await;
    let pay = server.slo("pay-availability").await;
    assert_eq!(
        (pay["total"].clone(), pay["bad"].clone()),
        (40.into(), 10.into()),
        "{pay}"
    );
    server.stop().await;

    // Corrupt the file: the next start reports it, sets it aside and starts empty.
    let path = dir.join("slo-state.json");
    let mut bytes = std::fs::read(&path).expect("state file");
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    std::fs::write(&path, bytes).expect("write");
    let server = TestServer::start(&yaml).await;
    assert_eq!(server.slo("pay-availability").await["alert"], "no_data");
    let aside = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside, "corrupt file kept for inspection");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_move_through_page_ticket_and_ok_as_the_injected_clock_runs_through_days() {
    use otel_sli::clock::ManualClock;
    use std::sync::Arc;
    let t0 = SystemTime::now();
    let nanos = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    let clock = Arc::new(ManualClock::new(nanos(t0)));
    let server = TestServer::start_with_clock(common::config(SLOS), clock.clone()).await;
    let at = |d: Duration| t0 + d;
    let set = |d: Duration| clock.set(nanos(at(d)));
    let alert = |v: &serde_json::Value| v["alert"].as_str().unwrap_or("").to_string();
    let h = |n: u64| Duration::from_secs(n * 3600);
    let m = |n: u64| Duration::from_secs(n * 60);

    // A clean hour of 1000 requests, then at +1 h an incident: 50 of 1000 fail.
    send_at(
        &server,
        "pay",
        reqs(1000, 0, "POST", "/pay"),
        at(Duration::ZERO),
    )
    .await;
    set(h(1));
    send_at(&server, "pay", reqs(1000, 20, "POST", "/pay"), at(h(1))).await;
    let s = server.slo("pay-availability").await;
    // burn(1h) = burn(5m) = (50/1000)/0.001 = 50 > 14.4: page.
    assert_eq!(alert(&s), "page", "{s}");
    assert!((s["burn_rates"]["5m"].as_f64().expect("5m") - 50.0).abs() < 1e-9);
    // Budget: 1 − 50/(0.001 × 2000) = −24.
    assert!((s["error_budget_remaining"].as_f64().expect("budget") + 24.0).abs() < 1e-9);

    // 31 minutes of silence: 5m and 30m are empty, so both page rules stop; 1d/2h burn
    // (50/2000/0.001 = 25 and 50) > 3: ticket.
    set(h(1) + m(31));
    let s = server.slo("pay-availability").await;
    assert_eq!(alert(&s), "ticket", "{s}");
    assert!(s["burn_rates"]["5m"].is_null(), "no requests in 5m: {s}");
    assert!((s["burn_rates"]["1d"].as_f64().expect("1d") - 25.0).abs() < 1e-9);

    // +3 h: 2h is empty, the 3d/6h rule (25 and 50 > 1) still tickets.
    set(h(4));
    let s = server.slo("pay-availability").await;
    assert_eq!(alert(&s), "ticket", "{s}");
    assert_eq!(s["firing"], serde_json::json!(["ticket"]));

    // +7 h after the incident: the 6h window is empty, nothing fires. But the service has
    // sent nothing for hours (completeness.silence_after), so "healthy" cannot be claimed.
    set(h(8));
    let s = server.slo("pay-availability").await;
    assert_eq!(alert(&s), "insufficient", "{s}");
    assert!(
        s["alert_reasons"].to_string().contains("no telemetry"),
        "{s}"
    );
    // Traffic resumes, all good: ok, with the budget still overspent from the incident
    // (1 − 50 / (0.001 × 2100) = −22.8).
    send_at(&server, "pay", reqs(100, 0, "POST", "/pay"), at(h(8))).await;
    let s = server.slo("pay-availability").await;
    assert_eq!(alert(&s), "ok", "{s}");
    assert_eq!(s["total"], 2100);
    let remaining = s["error_budget_remaining"].as_f64().expect("budget");
    assert!((remaining - (1.0 - 50.0 / 2.1)).abs() < 1e-9, "{remaining}");
    assert!(s["exhaustion_eta_seconds"].is_null(), "burn(1h) is 0: {s}");

    // 31 days later everything has left the 30-day window: no data.
    set(h(24 * 31));
    let s = server.slo("pay-availability").await;
    assert_eq!(alert(&s), "no_data", "{s}");
    assert_eq!(s["total"], 0);
    server.stop().await;
}

/// The SLO `name` from `/api/v1/slos` of the admin server at `admin`.
async fn slo_at(admin: &str, name: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = reqwest::get(format!("http://{admin}/api/v1/slos"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["slos"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// SIGKILL while spans are arriving, then a restart on the same storage: the SLO windows
/// come back as of the last periodic save (at most `storage.interval` behind), and the
/// state file is whole (written to a temporary file and renamed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_windows_survive_sigkill_mid_load() {
    let dir = std::env::temp_dir().join(format!("otel-sli-slo-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("otel-sli.yaml");
    std::fs::write(
        &config,
        format!(
            "{SLOS}\nstorage:\n  directory: {}\n  interval: 1s\n",
            dir.join("state").display()
        ),
    )
    .expect("config");
    let (grpc, http, admin) = (
        common::free_addr(),
        common::free_addr(),
        common::free_addr(),
    );
    let mut first = common::spawn_otel_sli(&config, &grpc, &http, &admin);
    let total = |s: &Option<serde_json::Value>| s.as_ref().and_then(|s| s["total"].as_u64());
    let deadline = Instant::now() + Duration::from_secs(30);
    while slo_at(&admin, "pay-availability").await.is_none() {
        assert!(Instant::now() < deadline, "not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send_to(
        format!("http://{grpc}"),
        "pay",
        reqs(40, 4, "POST", "/pay"),
        SystemTime::now(),
    )
    .await;
    while total(&slo_at(&admin, "pay-availability").await) != Some(40) {
        assert!(Instant::now() < deadline, "40 requests not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two save intervals: the 40 are on disk.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // More spans arriving, and the process killed in the middle of them.
    let endpoint = format!("http://{grpc}");
    let load = tokio::spawn(send_to(
        endpoint,
        "pay",
        reqs(400, 0, "POST", "/pay"),
        SystemTime::now(),
    ));
    tokio::time::sleep(Duration::from_millis(30)).await;
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    let _ = load.await;

    let mut second = common::spawn_otel_sli(&config, &grpc, &http, &admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let restored = loop {
        if let Some(s) = slo_at(&admin, "pay-availability").await {
            break s;
        }
        assert!(Instant::now() < deadline, "restart not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = second.kill();
    let _ = second.wait();
    let corrupt = std::fs::read_dir(dir.join("state"))
        .expect("state dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!corrupt, "the state file was whole after SIGKILL");
    let t = restored["total"].as_u64().unwrap_or(0);
    assert!((40..=440).contains(&t), "restored total {t}: {restored}");
    assert!(restored["bad"].as_u64().unwrap_or(0) >= 4, "{restored}");
}
