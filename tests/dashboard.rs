//! The built-in dashboard in a real browser: `otel-sli` fed with spans by the OpenTelemetry
//! SDK, the page opened in headless Chromium over the DevTools protocol, and the rendered DOM
//! checked — feature rows with their success ratios, an SLO card paging, the gaps, a canary
//! verdict, keyboard-only filtering and sorting, the token prompt and the empty state — with
//! no console error or exception. Skipped (with a note) without Chromium, unless
//! `OTEL_SLI_REQUIRE_TOOLS=1`.

mod common;

use common::browser::{self, Browser, Page};
use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// `n` request spans of one feature; every `failed_every`-th fails (0: none). `route: None`
/// leaves the route out, so the feature falls back to the span name.
struct Batch {
    service: &'static str,
    version: &'static str,
    method: &'static str,
    route: Option<String>,
    n: usize,
    failed_every: usize,
}

fn batch(service: &'static str, route: &str, n: usize, failed_every: usize) -> Batch {
    Batch {
        service,
        version: "1.0.0",
        method: "GET",
        route: Some(route.to_string()),
        n,
        failed_every,
    }
}

/// Sends the batches through the SDK's OTLP/gRPC exporter, one provider per service and
/// version (`service.version` on the resource), and waits for the exports.
async fn send(server: &TestServer, batches: Vec<Batch>) {
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let mut providers: std::collections::BTreeMap<(&str, &str), SdkTracerProvider> =
            std::collections::BTreeMap::new();
        for b in batches {
            let p = providers.entry((b.service, b.version)).or_insert_with(|| {
                let exporter = SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .build()
                    .expect("exporter");
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(b.service)
                            .with_attribute(KeyValue::new("service.version", b.version))
                            .build(),
                    )
                    .build()
            });
            let tracer = p.tracer("dashboard-test");
            let name = match &b.route {
                Some(r) => format!("{} {r}", b.method),
                None => b.method.to_string(),
            };
            for i in 0..b.n {
                let end = SystemTime::now();
                let mut attrs = vec![KeyValue::new("http.request.method", b.method)];
                if let Some(r) = &b.route {
                    attrs.push(KeyValue::new("http.route", r.clone()));
                }
                let mut span = tracer
                    .span_builder(name.clone())
                    .with_kind(SpanKind::Server)
                    .with_start_time(end - Duration::from_millis(5 + (i % 40) as u64))
                    .with_attributes(attrs)
                    .start(&tracer);
                if b.failed_every > 0 && i % b.failed_every == 0 {
                    span.set_status(Status::error("boom"));
                }
                span.end_with_timestamp(end);
            }
        }
        for p in providers.values() {
            p.force_flush().expect("flush");
            p.shutdown().expect("shutdown");
        }
    })
    .await
    .expect("sdk thread");
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
"#;

/// Opens the dashboard and waits for its first complete refresh.
fn open(page: &mut Page, server_admin: std::net::SocketAddr) {
    page.navigate(&format!("http://{server_admin}/"));
    page.wait_for(
        "Number(document.body.dataset.refreshes || 0) >= 1",
        Duration::from_secs(10),
    );
}

/// The table's rows as `[service, feature, success text, success value]`.
fn rows(page: &mut Page) -> Vec<Value> {
    page.eval(
        "[...document.querySelectorAll('#sli-body tr[data-key]')].map(tr => [
            tr.dataset.service, tr.dataset.feature,
            tr.children[3].textContent, Number(tr.children[3].dataset.value)])",
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

fn features(page: &mut Page) -> Vec<String> {
    rows(page)
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r[0].as_str().unwrap_or(""),
                r[1].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn screenshot_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
}

/// The relative luminance (0–1) of a computed `rgb(…)` colour.
fn luminance(rgb: &str) -> f64 {
    let v: Vec<f64> = rgb
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(v.len() >= 3, "a colour: {rgb}");
    (0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]) / 255.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_features_slo_pages_gaps_and_canary_verdict() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start(SLOS).await;
    let mut web_v2 = batch("web", "/items", 400, 5);
    web_v2.version = "2.0.0";
    let mut pay = batch("pay", "/pay", 500, 5);
    pay.method = "POST";
    send(
        &server,
        vec![
            pay,
            batch("search", "/search", 300, 0),
            batch("search", "/search/suggest", 100, 100),
            // No route: unattributed spans, a completeness gap.
            Batch {
                route: None,
                ..batch("vague", "", 12, 0)
            },
            batch("web", "/items", 400, 100),
            web_v2,
        ],
    )
    .await;
    server.flush().await;

    // Served from the binary with their types and a strict policy.
    let r = reqwest::get(format!("http://{}/", server.admin))
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let js = reqwest::get(format!("http://{}/dashboard.js", server.admin))
        .await
        .expect("js");
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let (status, history) = server.get_json("/api/v1/history?window=1h").await;
    assert_eq!(status, 200, "{history}");
    let pay_history = history["series"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["feature"] == "POST /pay"))
        .unwrap_or_else(|| panic!("pay in {history}"));
    let points = pay_history["requests"].as_array().expect("points");
    assert_eq!(points.last(), Some(&Value::from(500)), "{pay_history}");

    let admin = server.admin;
    let checked = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1400, 1000);
        let page = &mut b.page;
        open(page, admin);
        let rows = rows(page);
        let find = |service: &str, feature: &str| {
            rows.iter()
                .find(|r| r[0] == service && r[1] == feature)
                .unwrap_or_else(|| panic!("no row {service}/{feature} in {rows:?}"))
                .clone()
        };
        let pay = find("pay", "POST /pay");
        assert_eq!(pay[3], 0.8);
        assert_eq!(pay[2], "▼ 80.00%", "a low success ratio is marked by more than colour");
        assert_eq!(find("search", "GET /search")[2], "100%");
        assert_eq!(find("search", "GET /search/suggest")[2], "99.00%");
        assert_eq!(find("vague", "GET")[2], "100%");
        assert_eq!(rows.len(), 6, "pay, 2 × search, vague, 2 × web (one per version)");
        // Trends drawn from the history.
        assert!(
            page.eval(
                "document.querySelector('#sli-body tr[data-service=\"pay\"] svg.spark.success')
                   .querySelectorAll('polyline, circle').length"
            )
            .as_u64()
                > Some(0)
        );

        // SLO cards: pay pages, search is fine; state as text, not just colour.
        let card = |name: &str, what: &str| {
            format!("document.querySelector('[data-slo=\"{name}\"]{what}')")
        };
        assert_eq!(page.eval(&format!("{}.dataset.alert", card("pay-availability", ""))), "page");
        assert_eq!(
            page.eval(&format!("{}.textContent", card("pay-availability", " [data-role=alert]"))),
            "■ PAGE"
        );
        assert_eq!(
            page.eval(&format!("{}.textContent", card("pay-availability", " [data-role=sli]"))),
            "80.00% (objective 99.9%)"
        );
        assert_eq!(
            page.eval(&format!("{}.textContent", card("pay-availability", " [data-role=eta]"))),
            "exhausted"
        );
        assert_eq!(
            page.eval(&format!("{}.textContent", card("search-availability", " [data-role=alert]"))),
            "✓ OK"
        );

        // The gap, grouped under its service, with its explanation.
        let gap = page
            .eval(
                "document.querySelector('#gap-list [data-service=\"vague\"] \
                 [data-kind=\"unattributed_spans\"]').textContent",
            )
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(gap.starts_with("Unattributed spans · GET"), "{gap}");
        assert!(gap.contains("http.route"), "{gap}");
        assert_eq!(page.eval("document.getElementById('welcome').hidden"), true);

        // Canary: the selects offer web's two versions; 20% errors against 1% fails.
        page.wait_for(
            "[...document.getElementById('canary-service').options].some(o => o.value === 'web')",
            Duration::from_secs(5),
        );
        assert_eq!(
            page.eval(
                "[...document.getElementById('canary-service').options].map(o => o.value)"
            ),
            serde_json::json!(["web"]),
            "only services with two versions can be compared"
        );
        page.eval("document.getElementById('canary-service').value = 'web'; document.getElementById('canary-submit').click(); 1");
        let verdict = page.wait_for(
            "document.querySelector('#canary-result [data-verdict]')?.dataset.verdict",
            Duration::from_secs(10),
        );
        assert_eq!(verdict, "fail");
        let text = page.eval("document.getElementById('canary-result').textContent");
        let text = text.as_str().unwrap_or("");
        assert!(text.contains("✗ FAIL") && text.contains("2.0.0 against 1.0.0"), "{text}");
        assert!(text.contains("20.00%") && text.contains("1.00%"), "{text}");

        page.screenshot(&screenshot_path("dashboard.png"), 1400);
        let light = page.eval("getComputedStyle(document.body).backgroundColor");
        page.color_scheme("dark");
        let dark = page.eval("getComputedStyle(document.body).backgroundColor");
        assert!(luminance(light.as_str().unwrap_or("")) > 0.8, "{light}");
        assert!(luminance(dark.as_str().unwrap_or("")) < 0.15, "{dark}");
        page.screenshot(&screenshot_path("dashboard-dark.png"), 1400);
        page.drain(Duration::from_millis(200));
        std::mem::take(&mut page.errors)
    })
    .await
    .expect("browser thread");
    assert!(checked.is_empty(), "console errors: {checked:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_alone_filters_and_sorts_the_table() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start("").await;
    send(
        &server,
        vec![
            batch("checkout", "/cart", 100, 2),
            batch("search", "/search", 100, 0),
            batch("search", "/suggest", 100, 10),
            batch("users", "/login", 100, 4),
        ],
    )
    .await;
    server.flush().await;
    let admin = server.admin;
    let errors = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1300, 900);
        let page = &mut b.page;
        open(page, admin);
        let all = features(page);
        assert_eq!(
            all,
            ["checkout/GET /cart", "search/GET /search", "search/GET /suggest", "users/GET /login"]
        );
        let active = "document.activeElement.id || document.activeElement.dataset.sort || document.activeElement.tagName";
        // Tab through the page to the filter: only the keyboard from here on.
        let mut presses = 0;
        while page.eval(active) != "filter" {
            page.key("Tab");
            presses += 1;
            assert!(presses < 20, "the filter is reachable with Tab");
        }
        page.type_text("search");
        assert_eq!(features(page), ["search/GET /search", "search/GET /suggest"]);
        assert_eq!(
            page.eval("document.getElementById('sli-count').textContent"),
            "2 of 4 features shown"
        );
        for _ in 0.."search".len() {
            page.key("Backspace");
        }
        assert_eq!(features(page), all, "clearing the filter shows every row again");
        // On to the Success column header, a button: Enter sorts, lowest success first
        // after a second Enter.
        while page.eval(active) != "success" {
            page.key("Tab");
            presses += 1;
            assert!(presses < 40, "the Success header is reachable with Tab");
        }
        let outline = page.eval("getComputedStyle(document.activeElement).outlineStyle");
        assert_ne!(outline, "none", "focus is visible");
        page.key("Enter");
        assert_eq!(
            features(page),
            ["search/GET /search", "search/GET /suggest", "users/GET /login", "checkout/GET /cart"],
            "highest success first"
        );
        assert_eq!(
            page.eval("document.querySelector('th[data-key=success]').getAttribute('aria-sort')"),
            "descending"
        );
        page.key("Enter");
        assert_eq!(
            features(page),
            ["checkout/GET /cart", "users/GET /login", "search/GET /suggest", "search/GET /search"]
        );
        assert_eq!(page.eval(active), "success", "focus stays on the header");
        page.drain(Duration::from_millis(100));
        std::mem::take(&mut page.errors)
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prompt_then_an_empty_state_whose_test_command_works() {
    if !browser::available() || !common::tool_available("curl", &["--version"]) {
        return;
    }
    const TOKEN: &str = "dash-7f3c2a-token";
    let server = TestServer::start(&format!(
        "admin:\n  auth: {{bearer_token: \"{TOKEN}\"}}\ncanary:\n  attribute: \"\"\n"
    ))
    .await;
    // The page's files hold no data and are open; the API needs the token.
    for (path, status) in [
        ("/", 200),
        ("/dashboard.js", 200),
        ("/api/v1/slis", 401),
        ("/api/v1/info", 401),
    ] {
        let r = reqwest::get(format!("http://{}{path}", server.admin))
            .await
            .expect("admin");
        assert_eq!(r.status(), status, "{path}");
    }
    let admin = server.admin;
    let http = server.http;
    let (errors, command) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1300, 900);
        let page = &mut b.page;
        open(page, admin);
        assert_eq!(page.eval("document.getElementById('auth').hidden"), false);
        let slo = page.eval("document.getElementById('slo-message').textContent");
        assert!(slo.as_str().unwrap_or("").contains("admin token"), "{slo}");
        // The token field has the focus: type it and press Enter.
        assert_eq!(page.eval("document.activeElement.id"), "token");
        page.type_text(TOKEN);
        page.key("Enter");
        page.wait_for(
            "document.getElementById('auth').hidden",
            Duration::from_secs(5),
        );
        page.wait_for(
            "!document.getElementById('welcome').hidden",
            Duration::from_secs(5),
        );
        assert_eq!(
            page.eval("sessionStorage.getItem('otel-sli.admin-token')"),
            TOKEN
        );
        let env = page.eval("document.getElementById('welcome-env').textContent");
        let env = env.as_str().unwrap_or("");
        assert!(
            env.contains(&format!(
                "export OTEL_EXPORTER_OTLP_ENDPOINT=http://{http}\n"
            )),
            "{env}"
        );
        let canary = page.eval("document.getElementById('canary-message').textContent");
        assert!(
            canary
                .as_str()
                .unwrap_or("")
                .starts_with("Canary analysis is off"),
            "{canary}"
        );
        assert_eq!(
            page.eval("document.getElementById('canary-submit').disabled"),
            true
        );
        let command = page
            .eval("document.getElementById('welcome-cmd').textContent")
            .as_str()
            .unwrap_or("")
            .to_string();
        let out = std::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{command}: {out:?}");
        // The next refresh shows the request and drops the empty state.
        page.wait_for(
            "document.querySelector('#sli-body tr[data-service=hello]')?.dataset.feature",
            Duration::from_secs(15),
        );
        assert_eq!(page.eval("document.getElementById('welcome').hidden"), true);
        page.drain(Duration::from_millis(100));
        // The 401 answers before the token are logged by the browser itself.
        let errors: Vec<String> = std::mem::take(&mut page.errors)
            .into_iter()
            .filter(|e| !e.contains("status of 401"))
            .collect();
        (errors, command)
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert!(command.starts_with(&format!("curl -sS http://{http}/v1/traces ")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_series_render_fast() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start("").await;
    let batches = (0..1000)
        .map(|i| {
            batch(
                ["cart", "pay", "search", "users"][i % 4],
                &format!("/r/{i}"),
                2,
                0,
            )
        })
        .collect();
    send(&server, batches).await;
    server.flush().await;
    let admin = server.admin;
    let (fcp, rendered, rows) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1400, 1000);
        let page = &mut b.page;
        // The first load also starts the browser's renderer; the figure that matters is a
        // browser already running, so the page is opened twice and the second measured.
        open(page, admin);
        let cold =
            page.eval("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1");
        eprintln!("1000 series, browser just started: first contentful paint {cold} ms");
        open(page, admin);
        let rows = page.eval("document.querySelectorAll('#sli-body tr[data-key]').length");
        let fcp =
            page.eval("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1");
        let rendered =
            page.eval("performance.getEntriesByName('otel-sli-first-render')[0]?.startTime ?? -1");
        assert!(page.errors.is_empty(), "{:?}", page.errors);
        (fcp, rendered, rows)
    })
    .await
    .expect("browser thread");
    let (fcp, rendered) = (
        fcp.as_f64().unwrap_or(-1.0),
        rendered.as_f64().unwrap_or(-1.0),
    );
    eprintln!("1000 series: first contentful paint {fcp:.0} ms, table rendered {rendered:.0} ms after navigation");
    assert_eq!(rows, 1000);
    assert!((0.0..1000.0).contains(&fcp), "first paint {fcp} ms");
    assert!(
        (0.0..3000.0).contains(&rendered),
        "table rendered at {rendered} ms"
    );
    server.stop().await;
}
