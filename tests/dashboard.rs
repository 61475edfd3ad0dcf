//! The built-in dashboard in a real browser: `otel-sli` fed with spans by the OpenTelemetry
//! SDK, the page opened in headless Chromium over the DevTools protocol, and the rendered DOM
//! checked — feature rows with their success ratios, an SLO card paging, the gaps, a canary
//! verdict, feature-flag variants and the variants errors are tied to, keyboard-only
//! filtering and sorting, the token prompt and the empty state — with
//! no console error or exception. Skipped (with a note) without Chromium, unless
//! `OTEL_SLI_REQUIRE_TOOLS=1`.

mod common;

use common::browser::{self, Browser, Page};
use common::sdk::{self, Transport};
use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
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
    /// The duration of request `i`.
    latency: fn(usize) -> Duration,
}

fn batch(service: &'static str, route: &str, n: usize, failed_every: usize) -> Batch {
    Batch {
        service,
        version: "1.0.0",
        method: "GET",
        route: Some(route.to_string()),
        n,
        failed_every,
        latency: |i| Duration::from_millis(5 + (i % 40) as u64),
    }
}

/// Sends the batches through the SDK's OTLP/gRPC exporter, one provider per service and
/// version (`service.version` on the resource), and waits for the exports.
async fn send(server: &TestServer, batches: Vec<Batch>) {
    let endpoint = server.grpc.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let mut providers: std::collections::BTreeMap<(&str, &str), SdkTracerProvider> =
            std::collections::BTreeMap::new();
        for b in batches {
            let p = providers.entry((b.service, b.version)).or_insert_with(|| {
                let resource = sdk::resource(b.service, &[("service.version", b.version)]);
                sdk::provider_with_resource(&endpoint, Transport::Grpc, false, resource)
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
                    .with_start_time(end - (b.latency)(i))
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
        // Under the verdict, the canary's failing requests: ids to copy (no trace_url here).
        let canary_examples = page.eval(
            "[...document.querySelectorAll('#canary-result [data-list=canary] li.example')].map(li =>
                [li.querySelector('code.trace-id').textContent,
                 li.querySelector('[data-role=reason]').textContent,
                 li.querySelector('[data-role=series]').textContent,
                 !!li.querySelector('button.copy')])",
        );
        page.screenshot(&screenshot_path("dashboard.png"), 1400);
        let light = page.eval("getComputedStyle(document.body).backgroundColor");
        page.color_scheme("dark");
        let dark = page.eval("getComputedStyle(document.body).backgroundColor");
        assert!(luminance(light.as_str().unwrap_or("")) > 0.8, "{light}");
        assert!(luminance(dark.as_str().unwrap_or("")) < 0.15, "{dark}");
        page.screenshot(&screenshot_path("dashboard-dark.png"), 1400);
        page.drain(Duration::from_millis(200));
        (std::mem::take(&mut page.errors), canary_examples)
    })
    .await
    .expect("browser thread");
    let (checked, canary_examples) = checked;
    assert!(checked.is_empty(), "console errors: {checked:#?}");
    // The canary examples shown are the API's, in its order.
    let (_, verdict) = server
        .get_json("/api/v1/canary?service=web&baseline=1.0.0&canary=2.0.0&window=10m")
        .await;
    let want: Vec<Value> = verdict["canary_examples"]
        .as_array()
        .expect("canary_examples")
        .iter()
        .map(|e| {
            serde_json::json!([
                e["trace_id"],
                "status ERROR",
                "web · GET /items · service_version=2.0.0",
                true
            ])
        })
        .collect();
    assert!(!want.is_empty(), "{verdict}");
    assert_eq!(canary_examples, Value::from(want));
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

/// The rules of docs/dashboard.md ("How numbers are shown"), written again here from the
/// document, so the page is checked against the rule and not against its own code.
mod rule {
    /// Whole, with `,` between thousands.
    pub fn whole(x: f64) -> String {
        let r = x.round();
        let digits = format!("{}", r.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if r < 0.0 {
            format!("-{out}")
        } else {
            out
        }
    }

    /// Three significant digits, in the largest unit where the rounded value is ≥ 1.
    pub fn seconds(s: Option<f64>) -> String {
        let Some(s) = s else { return "—".into() };
        if s == 0.0 {
            return "0 s".into();
        }
        if s >= 999.5 {
            return format!("{} s", whole(s));
        }
        let r: f64 = format!("{s:.2e}").parse().expect("a number");
        let (f, unit) = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
            .into_iter()
            .find(|(f, _)| r >= *f)
            .unwrap_or((1e-9, "ns"));
        let v = r / f;
        let decimals = if v >= 99.95 {
            0
        } else if v >= 9.995 {
            1
        } else {
            2
        };
        format!("{v:.decimals$} {unit}")
    }

    /// Percent with two decimals, rounded towards the worse side; exact 0 and 1 alone at the
    /// ends.
    pub fn percent(r: Option<f64>, up: bool) -> String {
        let Some(r) = r else { return "—".into() };
        if r == 0.0 {
            return "0%".into();
        }
        if r == 1.0 {
            return "100%".into();
        }
        let scaled = r * 10_000.0;
        let mut h = if up {
            (scaled - 1e-6).ceil()
        } else {
            (scaled + 1e-6).floor()
        };
        if r > 0.0 && r < 1.0 {
            h = h.clamp(1.0, 9999.0);
        }
        format!("{:.2}%", h / 100.0)
    }

    /// Two decimals below 100, whole from 100, `<0.01` for a tiny positive value.
    pub fn decimal(x: Option<f64>) -> String {
        let Some(x) = x else { return "—".into() };
        if x == 0.0 {
            return "0".into();
        }
        let two = (x * 100.0).round() / 100.0;
        if two.abs() >= 100.0 {
            whole(x)
        } else if x > 0.0 && two == 0.0 {
            "<0.01".into()
        } else {
            format!("{two:.2}")
        }
    }

    /// A p-value: two significant digits rounded up; `<0.001` below 0.001; `1` for what
    /// rounds up to 1.
    pub fn p_value(p: f64) -> String {
        if p < 0.001 {
            return "<0.001".into();
        }
        if p >= 1.0 {
            return "1".into();
        }
        let e = p.log10().floor() as i32;
        let step = 10f64.powi(e - 1);
        let digits = (p / step - 1e-6).ceil();
        let up = digits * step;
        if up >= 1.0 {
            return "1".into();
        }
        // Two significant digits: one decimal fewer once rounding up reached the next power.
        let decimals = if digits >= 100.0 { -e } else { 1 - e } as usize;
        format!("{up:.decimals$}")
    }

    /// The objective as configured: 0.999 → 99.9%.
    pub fn objective(o: f64) -> String {
        let p: f64 = format!("{:.4}", o * 100.0).parse().expect("a number");
        format!("{p}%")
    }

    /// Time to exhaustion: two largest units.
    pub fn eta(sec: Option<f64>) -> String {
        let Some(sec) = sec else {
            return "not burning".into();
        };
        if sec <= 0.0 {
            return "exhausted".into();
        }
        if sec < 60.0 {
            let c = sec.ceil();
            return if c == 60.0 {
                "1m".into()
            } else {
                format!("{c}s")
            };
        }
        let s = sec as u64;
        let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
        if d > 0 {
            format!("{d}d {h}h")
        } else if h > 0 {
            format!("{h}h {m}m")
        } else {
            format!("{m}m")
        }
    }
}

const FIGURE_SLOS: &str = r#"
slos:
  - name: fast-availability
    service: web
    feature: "GET /fast"
    objective: 99.9
  - name: mid-availability
    service: web
    feature: "GET /mid"
    objective: 99.5
  - name: slow-latency
    service: web
    feature: "POST /slow"
    sli: latency
    threshold: 1s
    objective: 99
  - name: spread-latency
    service: web
    feature: "GET /spread"
    sli: latency
    threshold: 150ms
    objective: 50
"#;

/// Known latencies (every request of a feature at exactly 100 ms, 150 ms, 1.2 s or 0.4 ms,
/// one feature spread over 1–200 ms, one with a single request) and request metrics for one
/// feature, all through the SDK: every cell of the SLI table and every figure of every SLO
/// card equals the API's value written by the documented rule. The clock is injected and
/// stands still, so the page and the test read the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_on_the_page_is_the_api_value_written_by_the_documented_rule() {
    use otel_sli::clock::ManualClock;
    if !browser::available() {
        return;
    }
    let nanos = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    let clock = std::sync::Arc::new(ManualClock::new(nanos(SystemTime::now())));
    let server = TestServer::start_with_clock(common::config(FIGURE_SLOS), clock.clone()).await;
    let web = |method: &'static str, route: &str, n, failed_every, latency| Batch {
        method,
        latency,
        ..batch("web", route, n, failed_every)
    };
    send(
        &server,
        vec![
            web("GET", "/fast", 40, 20, |_| Duration::from_millis(100)),
            web("GET", "/mid", 30, 0, |_| Duration::from_millis(150)),
            web("POST", "/slow", 12, 12, |_| Duration::from_millis(1200)),
            web("GET", "/spread", 200, 0, |i| {
                Duration::from_millis(1 + i as u64)
            }),
            web("GET", "/health", 20, 0, |_| Duration::from_micros(400)),
            web("GET", "/once", 1, 0, |_| Duration::from_millis(250)),
        ],
    )
    .await;
    // Request metrics counting 31 requests of GET /mid, of which 30 arrived as spans.
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let resource = Resource::builder()
            .with_service_name("web")
            .with_attribute(KeyValue::new("service.version", "1.0.0"))
            .build();
        common::sdk::request_metrics(&endpoint, resource, "/mid", 31, 0.15);
    })
    .await
    .expect("sdk thread");
    clock.advance(40_000_000_000);
    let (_, slis) = server.get_json("/api/v1/slis?window=5m").await;
    let (_, slos) = server.get_json("/api/v1/slos").await;

    let admin = server.admin;
    let (table, cards, errors) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1400, 1200);
        let page = &mut b.page;
        open(page, admin);
        page.wait_for(
            "document.querySelectorAll('#slo-cards [data-slo]').length === 4",
            Duration::from_secs(10),
        );
        page.eval("document.getElementById('pause').click(); 1");
        let table = page.eval(
            "[...document.querySelectorAll('#sli-body tr[data-key]')].map(tr => ({
                service: tr.dataset.service, feature: tr.dataset.feature,
                cells: [...tr.children].slice(2, 8).map(td => td.textContent),
                quality: tr.children[8].dataset.value,
                reasons: [...tr.children[8].querySelectorAll('li')].map(li => li.textContent)}))",
        );
        let cards = page.eval(
            "[...document.querySelectorAll('#slo-cards [data-slo]')].map(c => {
                const role = (r) => c.querySelector('[data-role=' + r + ']').textContent;
                return { name: c.dataset.slo, alert: role('alert'), what: role('what'),
                  sli: role('sli'), requests: role('requests'), budget: role('budget'),
                  eta: role('eta'),
                  burn: Object.fromEntries([...c.querySelectorAll('td[data-window]')]
                    .map(td => [td.dataset.window, td.textContent])) };
            })",
        );
        page.drain(Duration::from_millis(100));
        (table, cards, std::mem::take(&mut page.errors))
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // The answers did not move while the page read them.
    assert_eq!(
        server.get_json("/api/v1/slis?window=5m").await.1["slis"],
        slis["slis"]
    );

    // The SLI table: every series, every cell.
    let secs = slis["window_seconds"].as_f64().expect("window_seconds");
    assert_eq!(secs, 40.0, "{slis}");
    let rows = table.as_array().expect("rows");
    let api = slis["slis"].as_array().expect("slis");
    assert_eq!(rows.len(), api.len(), "{table}");
    assert_eq!(api.len(), 6, "{slis}");
    for s in api {
        let row = rows
            .iter()
            .find(|r| r["service"] == s["service"] && r["feature"] == s["feature"])
            .unwrap_or_else(|| panic!("no row for {s} in {table}"));
        let success = s["success_ratio"].as_f64();
        let low = success.is_some_and(|r| r < 0.99);
        let lat = |q: &str| rule::seconds(s["latency_seconds"][q].as_f64());
        let coverage = match s["trace_coverage"].as_f64() {
            Some(c) => rule::percent(Some(c), false),
            None => "no metrics".into(),
        };
        let want = serde_json::json!([
            rule::decimal(s["requests"].as_f64().map(|r| r / secs)),
            format!(
                "{}{}",
                if low { "▼ " } else { "" },
                rule::percent(success, false)
            ),
            lat("p50"),
            lat("p95"),
            lat("p99"),
            coverage,
        ]);
        assert_eq!(row["cells"], want, "{}: API {s}", s["feature"]);
        assert_eq!(row["quality"], s["data_quality"], "{s}");
        let reasons = s["data_quality_reasons"].clone();
        let reasons = if reasons.is_null() {
            serde_json::json!([])
        } else {
            reasons
        };
        assert_eq!(row["reasons"], reasons, "{s}");
    }
    // What a user reads for the known latencies: the API's quantiles are the upper ends of
    // histogram buckets, within 1% of the truth (150 ms reads 151 ms, 1.2 s reads 1.21 s).
    let cells = |feature: &str| {
        rows.iter()
            .find(|r| r["feature"] == feature)
            .map(|r| r["cells"].clone())
            .unwrap_or_default()
    };
    assert_eq!(cells("GET /fast")[3], "100 ms", "p95 of 100 ms requests");
    assert_eq!(cells("GET /mid")[3], "151 ms", "p95 of 150 ms requests");
    assert_eq!(cells("POST /slow")[4], "1.21 s", "p99 of 1.2 s requests");
    assert_eq!(cells("GET /health")[2], "401 µs", "p50 of 0.4 ms requests");
    assert_eq!(cells("GET /spread")[4], "198 ms", "p99 of 1–200 ms");
    assert_eq!(cells("GET /fast")[1], "▼ 95.00%");
    assert_eq!(
        cells("GET /mid")[5],
        "96.77%",
        "30 of 31 requests traced, rounded down"
    );
    assert_eq!(cells("GET /spread")[0], "5.00", "200 requests in 40 s");
    let once = rows
        .iter()
        .find(|r| r["feature"] == "GET /once")
        .expect("once");
    assert_eq!(
        once["reasons"][0],
        "1 request in the window, fewer than completeness.min_events (10)"
    );

    // The SLO cards: every figure.
    let cards = cards.as_array().expect("cards");
    let api = slos["slos"].as_array().expect("slos");
    assert_eq!(cards.len(), api.len());
    for s in api {
        let card = cards
            .iter()
            .find(|c| c["name"] == s["name"])
            .unwrap_or_else(|| panic!("no card for {s}"));
        let alert = match s["alert"].as_str() {
            Some("ok") => "✓ OK",
            Some("ticket") => "▲ TICKET",
            Some("page") => "■ PAGE",
            Some("no_data") => "○ NO DATA",
            Some("insufficient") => "⚠ INSUFFICIENT DATA",
            other => panic!("alert {other:?}"),
        };
        let what = match s["threshold_seconds"].as_f64() {
            Some(t) => format!("requests faster than {}", rule::seconds(Some(t))),
            None => "successful requests".into(),
        };
        let remaining = s["error_budget_remaining"].as_f64();
        let burn: serde_json::Map<String, Value> = s["burn_rates"]
            .as_object()
            .expect("burn rates")
            .iter()
            .map(|(w, b)| (w.clone(), Value::from(rule::decimal(b.as_f64()))))
            .collect();
        let want = serde_json::json!({
            "name": s["name"],
            "alert": alert,
            "what": format!("{} · {} · {what} · {} window", s["service"].as_str().unwrap_or(""),
                s["feature"].as_str().unwrap_or(""), s["window"].as_str().unwrap_or("")),
            "sli": format!("{} (objective {})", rule::percent(s["sli_value"].as_f64(), false),
                rule::objective(s["objective"].as_f64().expect("objective"))),
            "requests": format!("{} total, {} bad", rule::whole(s["total"].as_f64().unwrap_or(0.0)),
                rule::whole(s["bad"].as_f64().unwrap_or(0.0))),
            "budget": match remaining {
                Some(_) => format!("{} remaining", rule::percent(remaining, false)),
                None => "no data".into(),
            },
            "eta": rule::eta(s["exhaustion_eta_seconds"].as_f64()),
            "burn": burn,
        });
        assert_eq!(card, &want, "API {s}");
    }
    let card = |name: &str| cards.iter().find(|c| c["name"] == name).expect("card");
    assert_eq!(card("fast-availability")["sli"], "95.00% (objective 99.9%)");
    assert_eq!(card("spread-latency")["sli"], "75.00% (objective 50%)");
    assert_eq!(
        card("slow-latency")["what"],
        "web · POST /slow · requests faster than 1.00 s · 30d window"
    );
    assert_eq!(card("slow-latency")["budget"], "-9900.00% remaining");
    assert_eq!(card("fast-availability")["burn"]["5m"], "50.00");
    assert_eq!(card("spread-latency")["eta"], "30d 0h");
    assert_eq!(card("mid-availability")["sli"], "100% (objective 99.5%)");
    server.stop().await;
}

/// A service and a feature whose names are markup and a `javascript:` URL: they must show
/// as text, never as elements or links.
const HOSTILE_SERVICE: &str = "<img src=x onerror=window.__x=1>";
const HOSTILE_ROUTE: &str = "/javascript:alert(1)/<b>x</b>";
const TRACE_URL: &str = "https://tracing.example/trace/{trace_id}?span={span_id}";

/// A latency SLO on the hostile feature (bad or slower than 100 ms fails), with
/// `links.trace_url` set when `links`.
fn hostile_config(links: bool) -> String {
    let links = if links {
        format!("links:\n  trace_url: {TRACE_URL:?}\n")
    } else {
        String::new()
    };
    format!(
        "{links}sli:\n  latency:\n    buckets: [0.01, 0.1, 1]\nslos:\n  - name: hostile-latency\n    service: {HOSTILE_SERVICE:?}\n    feature: {:?}\n    sli: latency\n    threshold: 100ms\n    objective: 99\n",
        format!("GET {HOSTILE_ROUTE}")
    )
}

/// One request sent: the ids the SDK gave it (hex), its status and duration.
#[derive(Clone, Debug)]
struct Sent {
    trace_id: String,
    span_id: String,
}

/// Sends `GET route` SERVER spans of `service`, one per `(status, duration)`, ending 10 ms
/// apart in that order, through the SDK; returns their ids in sending order.
async fn send_requests(
    server: &TestServer,
    service: &'static str,
    route: &'static str,
    reqs: Vec<(u16, Duration)>,
) -> Vec<Sent> {
    let endpoint = server.grpc.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = sdk::provider_with_resource(
            &endpoint,
            Transport::Grpc,
            false,
            sdk::resource(service, &[]),
        );
        let tracer = p.tracer("dashboard-examples");
        let base = SystemTime::now() - Duration::from_secs(1);
        let mut sent = Vec::new();
        for (i, (status, took)) in reqs.into_iter().enumerate() {
            let end = base + Duration::from_millis(10 * i as u64);
            let mut span = tracer
                .span_builder(format!("GET {route}"))
                .with_kind(SpanKind::Server)
                .with_start_time(end - took)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("http.route", route),
                    KeyValue::new("http.response.status_code", i64::from(status)),
                ])
                .start(&tracer);
            let cx = span.span_context().clone();
            span.end_with_timestamp(end);
            sent.push(Sent {
                trace_id: cx.trace_id().to_string(),
                span_id: cx.span_id().to_string(),
            });
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
        sent
    })
    .await
    .expect("sdk thread")
}

/// JavaScript: the example requests listed under `scope` as
/// `{trace, span, text, href, target, rel, reason, series, copy}`.
fn examples_js(scope: &str) -> String {
    format!(
        "[...document.querySelectorAll({scope:?} + ' li.example')].map(li => {{
            const a = li.querySelector('a');
            const r = (role) => li.querySelector('[data-role=' + role + ']')?.textContent ?? null;
            return {{ trace: li.dataset.traceId, span: li.dataset.spanId,
              text: li.querySelector('.trace-id').textContent,
              href: a ? a.getAttribute('href') : null, target: a ? a.target : null,
              rel: a ? a.rel : null, reason: r('reason'), series: r('series'),
              copy: li.querySelector('button.copy')?.getAttribute('aria-label') ?? null }};
        }})"
    )
}

/// JavaScript: the hostile row of the SLI table.
fn hostile_row_js() -> String {
    format!(
        "[...document.querySelectorAll('#sli-body tr[data-key]')].find(tr => tr.dataset.service === {})",
        serde_json::to_string(HOSTILE_SERVICE).expect("json")
    )
}

/// Opens the hostile row's examples with the keyboard and waits for `n` examples.
fn open_row_examples(page: &mut Page, n: usize) {
    page.eval(&format!(
        "{}.querySelector('button.examples-toggle').focus(); 1",
        hostile_row_js()
    ));
    page.key("Enter");
    page.wait_for(
        &format!("document.querySelectorAll('#sli-examples li.example').length === {n}"),
        Duration::from_secs(10),
    );
}

/// Telemetry text in the page made no element, ran no script and made no `javascript:`
/// link, and shows as the literal text it is.
fn assert_telemetry_is_text(page: &mut Page) {
    let feature = format!("GET {HOSTILE_ROUTE}");
    assert_eq!(
        page.eval("[...document.querySelectorAll('img')].filter(i => !i.closest('.brand')).length"),
        0,
        "no img element came from a service name"
    );
    assert_eq!(page.eval("document.querySelectorAll('b').length"), 0);
    assert_eq!(page.eval("typeof window.__x"), "undefined");
    assert_eq!(
        page.eval("document.querySelectorAll('a[href^=\"javascript:\" i]').length"),
        0
    );
    let row = page.eval(&format!(
        "(() => {{ const tr = {}; return [tr.children[0].textContent, tr.children[1].firstChild.textContent]; }})()",
        hostile_row_js()
    ));
    assert_eq!(row, serde_json::json!([HOSTILE_SERVICE, feature]));
    assert_eq!(
        page.eval("document.getElementById('sli-examples-h').textContent"),
        format!("Example requests: {HOSTILE_SERVICE} · {feature}").as_str()
    );
}

/// The hostile feature's requests, through the SDK: two 503s, two slow ones (500 ms, 2 s),
/// two fast good ones. Its examples in the page (latest bad, slowest of the window) and
/// those of its latency SLO are exactly the ids the SDK gave those requests, each linked to
/// `links.trace_url` filled with its ids; names from telemetry stay text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_link_the_requests_sent_to_the_configured_trace_url() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start(&hostile_config(true)).await;
    let ms = Duration::from_millis;
    let sent = send_requests(
        &server,
        HOSTILE_SERVICE,
        HOSTILE_ROUTE,
        vec![
            (200, ms(5)),
            (503, ms(10)),
            (200, ms(500)),
            (503, ms(20)),
            (200, ms(2000)),
            (200, ms(6)),
        ],
    )
    .await;
    server.flush().await;
    let (_, info) = server.get_json("/api/v1/info").await;
    assert_eq!(info["links"]["trace_url"], TRACE_URL);

    let admin = server.admin;
    let (row, slo, refreshed, errors) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1400, 1000);
        let page = &mut b.page;
        open(page, admin);
        open_row_examples(page, 5);
        assert_eq!(
            page.eval(&format!(
                "(() => {{ const b = {}.querySelector('button.examples-toggle');
                   return [b.getAttribute('aria-expanded'), b.getAttribute('aria-controls'),
                           document.activeElement === b]; }})()",
                hostile_row_js()
            )),
            serde_json::json!(["true", "sli-examples", true]),
            "the toggle says it is open, points at its panel and keeps the focus"
        );
        let row = page.eval(&format!(
            "({{ bad: {}, slowest: {} }})",
            examples_js("#sli-examples [data-list=bad]"),
            examples_js("#sli-examples [data-list=slowest]")
        ));
        // The SLO card's failing requests, opened from the keyboard.
        let card = "document.querySelector('[data-slo=\"hostile-latency\"] details.examples')";
        page.eval(&format!("{card}.querySelector('summary').focus(); 1"));
        page.key("Enter");
        assert_eq!(page.eval(&format!("{card}.open")), true);
        let slo = page.eval(&examples_js(
            "[data-slo=\"hostile-latency\"] [data-list=slo]",
        ));
        assert_telemetry_is_text(page);
        // A refresh keeps both open, re-read.
        let n = page
            .eval("Number(document.body.dataset.refreshes)")
            .as_u64()
            .unwrap_or(0);
        page.wait_for(
            &format!("Number(document.body.dataset.refreshes) > {n}"),
            Duration::from_secs(10),
        );
        let refreshed = page.eval(&format!(
            "[document.querySelectorAll('#sli-examples li.example').length, {card}.open,
              document.querySelectorAll('#slo-cards li.example').length]"
        ));
        page.screenshot(&screenshot_path("dashboard-examples.png"), 1400);
        let panel =
            "getComputedStyle(document.querySelector('tr.examples-row > td')).backgroundColor";
        let light = page.eval(panel);
        page.color_scheme("dark");
        let dark = page.eval(panel);
        assert!(luminance(light.as_str().unwrap_or("")) > 0.8, "{light}");
        assert!(luminance(dark.as_str().unwrap_or("")) < 0.2, "{dark}");
        page.screenshot(&screenshot_path("dashboard-examples-dark.png"), 1400);
        page.drain(Duration::from_millis(100));
        (row, slo, refreshed, std::mem::take(&mut page.errors))
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(refreshed, serde_json::json!([5, true, 4]));

    let feature = format!("GET {HOSTILE_ROUTE}");
    let want = |i: usize, reason: Option<&str>, series: bool| {
        let s = &sent[i];
        serde_json::json!({
            "trace": s.trace_id, "span": s.span_id, "text": s.trace_id,
            "href": format!("https://tracing.example/trace/{}?span={}", s.trace_id, s.span_id),
            "target": "_blank", "rel": "noopener noreferrer",
            "reason": reason,
            "series": series.then(|| format!("{HOSTILE_SERVICE} · {feature}")),
            "copy": null,
        })
    };
    // The latest bad requests, newest first.
    assert_eq!(
        row["bad"],
        serde_json::json!([
            want(3, Some("http 503"), false),
            want(1, Some("http 503"), false)
        ])
    );
    // The slowest of the last 5 minutes: 2 s, 500 ms, then the 0.1 bucket's latest (20 ms).
    assert_eq!(
        row["slowest"],
        serde_json::json!([
            want(4, None, false),
            want(2, None, false),
            want(3, Some("http 503"), false)
        ])
    );
    // The SLO's failing requests: bad or slower than 100 ms, newest first.
    assert_eq!(
        slo,
        serde_json::json!([
            want(4, Some("slower than 0.1s"), true),
            want(3, Some("http 503"), true),
            want(2, Some("slower than 0.1s"), true),
            want(1, Some("http 503"), true),
        ])
    );
    server.stop().await;
}

/// Without `links.trace_url` no example is a link: the trace id is text with a Copy
/// button, which copies it (or, without a clipboard, selects it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trace_url_the_ids_are_text_to_copy() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start(&hostile_config(false)).await;
    let ms = Duration::from_millis;
    let sent = send_requests(
        &server,
        HOSTILE_SERVICE,
        HOSTILE_ROUTE,
        vec![(503, ms(10)), (200, ms(500))],
    )
    .await;
    server.flush().await;
    let (_, info) = server.get_json("/api/v1/info").await;
    assert_eq!(info["links"]["trace_url"], Value::Null);

    let admin = server.admin;
    let (row, slo, copied, selected, errors) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1300, 900);
        let page = &mut b.page;
        // The clipboard needs a focused document and the permission.
        page.call(
            "Emulation.setFocusEmulationEnabled",
            serde_json::json!({ "enabled": true }),
        );
        page.call(
            "Browser.grantPermissions",
            serde_json::json!({ "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
        );
        open(page, admin);
        // Bad: the 503; slowest: 500 ms, then the 503 (10 ms).
        open_row_examples(page, 3);
        let row = page.eval(&examples_js("#sli-examples"));
        page.eval("document.querySelector('[data-slo=\"hostile-latency\"] details.examples summary').click(); 1");
        let slo = page.eval(&examples_js("[data-slo=\"hostile-latency\"] [data-list=slo]"));
        assert_eq!(page.eval("document.querySelectorAll('#sli-examples a, #slo-cards a').length"), 0);
        assert!(page
            .eval("document.querySelector('#sli-examples .hint').textContent")
            .as_str()
            .unwrap_or("")
            .contains("links.trace_url"));
        assert_telemetry_is_text(page);
        // Copy, from the keyboard: the clipboard holds the id.
        page.eval("document.querySelector('#sli-examples [data-list=bad] button.copy').focus(); 1");
        page.key("Enter");
        page.wait_for(
            "document.querySelector('#sli-examples [data-list=bad] .copy-note').textContent === 'Copied'",
            Duration::from_secs(5),
        );
        let copied = page.eval("navigator.clipboard.readText()");
        // Without the clipboard API (plain HTTP from another host): the id is selected.
        page.eval("Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined }); 1");
        page.eval("document.querySelector('#sli-examples [data-list=slowest] button.copy').click(); 1");
        page.wait_for(
            "document.querySelector('#sli-examples [data-list=slowest] .copy-note').textContent !== ''",
            Duration::from_secs(5),
        );
        let selected = page.eval("getSelection().toString()");
        page.drain(Duration::from_millis(100));
        (row, slo, copied, selected, std::mem::take(&mut page.errors))
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let want = |i: usize, reason: Option<&str>, series: bool| {
        let s = &sent[i];
        serde_json::json!({
            "trace": s.trace_id, "span": s.span_id, "text": s.trace_id,
            "href": null, "target": null, "rel": null,
            "reason": reason,
            "series": series.then(|| format!("{HOSTILE_SERVICE} · GET {HOSTILE_ROUTE}")),
            "copy": format!("Copy trace id {}", s.trace_id),
        })
    };
    assert_eq!(
        row,
        serde_json::json!([
            want(0, Some("http 503"), false),
            want(1, None, false),
            want(0, Some("http 503"), false)
        ])
    );
    assert_eq!(
        slo,
        serde_json::json!([
            want(1, Some("slower than 0.1s"), true),
            want(0, Some("http 503"), true)
        ])
    );
    assert_eq!(copied, sent[0].trace_id.as_str());
    assert_eq!(selected, sent[1].trace_id.as_str());
    server.stop().await;
}

/// A flag key and a variant that are markup: they must show as text.
const HOSTILE_FLAG: &str = "<img src=x onerror=window.__flag=1>";
const HOSTILE_VARIANT: &str = "<b>bold</b>";

/// checkout's requests through the SDK, each evaluating two flags (`feature_flag.evaluation`
/// events): `new-flow`, half `on` (one request in 5 fails, 100–149 ms) and half `off` (one
/// in 100 fails, 20–49 ms), 300 each over `POST /pay` and `GET /cart`; and a flag whose key
/// and one variant are markup, split across the same requests.
fn flagged_requests() -> Vec<(sdk::Req, Vec<(String, String)>)> {
    (0..600)
        .map(|i| {
            let (on, j) = (i % 2 == 0, i / 2);
            let failed = if on { j % 5 == 0 } else { j % 100 == 0 };
            let ms = if on { 100 + j % 50 } else { 20 + j % 30 };
            let (method, route) = if j % 3 == 0 {
                ("GET", "/cart")
            } else {
                ("POST", "/pay")
            };
            let status = if failed { 503 } else { 200 };
            let req = sdk::Req::server(method, route, Duration::from_millis(ms as u64), status);
            let flags = vec![
                (
                    "new-flow".to_string(),
                    if on { "on" } else { "off" }.to_string(),
                ),
                (
                    HOSTILE_FLAG.to_string(),
                    if j % 2 == 0 { HOSTILE_VARIANT } else { "plain" }.to_string(),
                ),
            ];
            (req, flags)
        })
        .collect()
}

/// JavaScript: every flag of the Flags section, as the user reads it.
const FLAGS_JS: &str = "[...document.querySelectorAll('#flag-list article.flag')].map(a => {
    const cells = (tr) => ['requests', 'errors', 'success', 'p95', 'p99']
      .map(r => tr.querySelector('[data-role=' + r + ']').textContent);
    return { service: a.dataset.service, flag: a.dataset.flag,
      title: a.querySelector('h3').textContent,
      sub: a.querySelector('[data-role=service]').textContent,
      verdict: a.querySelector('[data-role=verdict]').textContent,
      variants: [...a.querySelectorAll(':scope > .table-wrap tbody tr')].map(tr => ({
        variant: tr.dataset.variant, name: tr.querySelector('th').textContent, cells: cells(tr),
        tied: !!tr.querySelector('[data-role=tied]'), marked: tr.dataset.tied === 'true',
        p: tr.querySelector('[data-role=p]')?.textContent ?? null,
        test: tr.querySelector('[data-role=test]').textContent })),
      features_open: !!a.querySelector('details.flag-features')?.open,
      features: [...a.querySelectorAll('details.flag-features tbody tr')].map(tr => ({
        feature: tr.dataset.feature, variant: tr.dataset.variant,
        names: [tr.children[0].textContent, tr.children[1].textContent], cells: cells(tr) })) };
  })";

/// What the page shows for one variant's (or one variant-in-a-feature's) figures.
fn flag_cells(x: &Value) -> Value {
    let success = x["success_ratio"].as_f64();
    let low = success.is_some_and(|r| r < 0.99);
    serde_json::json!([
        rule::whole(x["requests"].as_f64().expect("requests")),
        rule::whole(x["errors"].as_f64().expect("errors")),
        format!(
            "{}{}",
            if low { "▼ " } else { "" },
            rule::percent(success, false)
        ),
        rule::seconds(x["latency_seconds"]["p95"].as_f64()),
        rule::seconds(x["latency_seconds"]["p99"].as_f64()),
    ])
}

/// What the page should show for `flag` of `/api/v1/flags`, by the documented rules.
fn want_flag(f: &Value) -> Value {
    let tied: Vec<&str> = f["errors_tied_to"]
        .as_array()
        .expect("errors_tied_to")
        .iter()
        .map(|v| v.as_str().expect("variant"))
        .collect();
    let variants = f["variants"].as_array().expect("variants");
    let tested = variants.iter().any(|v| !v["error_test"].is_null());
    let verdict = if !tied.is_empty() {
        format!("▲ errors tied to {}", tied.join(", "))
    } else if tested {
        "✓ errors tied to no variant".into()
    } else {
        "○ not tested: too few requests".into()
    };
    let mut features = Vec::new();
    for v in variants {
        for x in v["features"].as_array().expect("features") {
            features.push(serde_json::json!({
                "feature": x["feature"], "variant": v["variant"],
                "names": [x["feature"], v["variant"]], "cells": flag_cells(x),
            }));
        }
    }
    // Feature by feature, each feature's variants in the API's order.
    features.sort_by(|a, b| {
        a["feature"]
            .as_str()
            .unwrap_or("")
            .cmp(b["feature"].as_str().unwrap_or(""))
    });
    let n = variants.len();
    serde_json::json!({
        "service": f["service"], "flag": f["flag"], "title": f["flag"],
        "sub": format!("Service {} · {n} variant{}", f["service"].as_str().unwrap_or(""),
            if n == 1 { "" } else { "s" }),
        "verdict": verdict,
        "variants": variants.iter().map(|v| {
            let is_tied = tied.contains(&v["variant"].as_str().unwrap_or(""));
            let t = &v["error_test"];
            let p = (!t.is_null()).then(|| {
                let (p, adjusted) = match t["adjusted"].as_object() {
                    Some(a) => (a["p_value"].as_f64(), Some(a["tests"].clone())),
                    None => (t["p_value"].as_f64(), None),
                };
                let p = rule::p_value(p.expect("p_value"));
                format!(
                    "p {}{p}{}",
                    if p.starts_with('<') { "" } else { "= " },
                    adjusted.map_or(String::new(), |n| format!(" (Holm-adjusted over {n} variants)"))
                )
            });
            let test = match &p {
                None => "not tested: too few requests".to_string(),
                Some(p) if is_tied => format!("▲ errors tied to this variant {p}"),
                Some(p) => format!("not tied {p}"),
            };
            serde_json::json!({
                "variant": v["variant"], "name": v["variant"], "cells": flag_cells(v),
                "tied": is_tied, "marked": is_tied, "p": p, "test": test,
            })
        }).collect::<Vec<_>>(),
        "features_open": Value::Null,
        "features": features,
    })
}

/// Feature-flag cohorts through the SDK: every figure of the Flags section is the API's
/// (`/api/v1/flags`) written by the documented rules; errors are tied to `on`, with its
/// p-value, and not to `off`; the per-feature figures open from the keyboard and stay open
/// across a refresh; a flag key and a variant that are markup read as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_section_shows_each_variant_and_the_variant_errors_are_tied_to() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start("").await;
    sdk::send_with_flags(
        server.grpc.to_string(),
        Transport::Grpc,
        sdk::resource("checkout", &[]),
        flagged_requests(),
    )
    .await;
    server.flush().await;
    let (status, before) = server.get_json("/api/v1/flags?window=5m").await;
    assert_eq!(status, 200, "{before}");

    let admin = server.admin;
    let samples = [
        0.0, 0.0005, 0.001, 0.00123, 0.0321, 0.0499, 0.0996, 0.12, 0.5, 0.994, 1.0,
    ];
    let (flags, p_values, errors) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1400, 1000);
        let page = &mut b.page;
        open(page, admin);
        page.wait_for(
            "document.querySelectorAll('#flag-list article.flag').length === 2",
            Duration::from_secs(10),
        );
        // The per-feature figures of new-flow, opened with the keyboard; still open, and
        // still focused, after the next refresh.
        let new_flow = "[...document.querySelectorAll('#flag-list article.flag')]
            .find(a => a.dataset.flag === 'new-flow')";
        page.eval(&format!(
            "{new_flow}.querySelector('details.flag-features summary').focus(); 1"
        ));
        page.key("Enter");
        let n = page
            .eval("Number(document.body.dataset.refreshes)")
            .as_u64()
            .unwrap_or(0);
        page.wait_for(
            &format!("Number(document.body.dataset.refreshes) > {n}"),
            Duration::from_secs(10),
        );
        assert_eq!(
            page.eval(&format!(
                "(() => {{ const d = {new_flow}.querySelector('details.flag-features');
                   return [d.open, document.activeElement === d.querySelector('summary')]; }})()"
            )),
            serde_json::json!([true, true])
        );
        page.eval("document.getElementById('pause').click(); 1");
        let flags = page.eval(FLAGS_JS);
        // Telemetry is text: no element made, no script run.
        assert_eq!(
            page.eval(
                "[...document.querySelectorAll('img')].filter(i => !i.closest('.brand')).length"
            ),
            0,
            "no img element came from a flag key"
        );
        assert_eq!(page.eval("document.querySelectorAll('b').length"), 0);
        assert_eq!(page.eval("typeof window.__flag"), "undefined");
        let p_values = page.eval(&format!("{samples:?}.map(p => OtelSliFormat.pValue(p))"));
        page.screenshot(&screenshot_path("dashboard-flags.png"), 1400);
        page.color_scheme("dark");
        page.screenshot(&screenshot_path("dashboard-flags-dark.png"), 1400);
        page.drain(Duration::from_millis(100));
        (flags, p_values, std::mem::take(&mut page.errors))
    })
    .await
    .expect("browser thread");
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // The p-value formatter follows the documented rule.
    let want: Vec<String> = samples.iter().map(|p| rule::p_value(*p)).collect();
    assert_eq!(p_values, serde_json::json!(want));
    assert_eq!(
        want,
        [
            "<0.001", "<0.001", "0.0010", "0.0013", "0.033", "0.050", "0.10", "0.12", "0.50", "1",
            "1"
        ]
    );
    // The answer did not move while the page read it.
    let (_, after) = server.get_json("/api/v1/flags?window=5m").await;
    assert_eq!(after["flags"], before["flags"]);

    // Every flag, every cell, against the API.
    let api = before["flags"].as_array().expect("flags");
    let shown = flags.as_array().expect("flags shown");
    assert_eq!(api.len(), 2, "{before}");
    assert_eq!(shown.len(), api.len(), "{flags}");
    for (f, got) in api.iter().zip(shown) {
        let mut want = want_flag(f);
        want["features_open"] = Value::from(f["flag"] == "new-flow");
        assert_eq!(got, &want, "API {f}");
    }

    // What a user reads, spelled out.
    let flag = |name: &str| {
        shown
            .iter()
            .find(|f| f["flag"] == name)
            .unwrap_or_else(|| panic!("no flag {name} in {flags}"))
    };
    let variant = |f: &Value, v: &str| {
        f["variants"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["variant"] == v))
            .cloned()
            .unwrap_or_else(|| panic!("no variant {v} in {f}"))
    };
    let new_flow = flag("new-flow");
    assert_eq!(new_flow["service"], "checkout");
    assert_eq!(new_flow["verdict"], "▲ errors tied to on");
    let on = variant(new_flow, "on");
    assert_eq!(
        on["cells"].as_array().expect("cells")[0..3],
        ["300", "60", "▼ 80.00%"]
    );
    assert_eq!(on["tied"], true);
    assert_eq!(on["marked"], true);
    assert_eq!(
        on["test"],
        "▲ errors tied to this variant p <0.001 (Holm-adjusted over 2 variants)"
    );
    let off = variant(new_flow, "off");
    assert_eq!(
        off["cells"].as_array().expect("cells")[0..3],
        ["300", "3", "99.00%"]
    );
    assert_eq!(off["tied"], false);
    assert_eq!(off["marked"], false);
    assert!(
        off["test"]
            .as_str()
            .unwrap_or("")
            .starts_with("not tied p = "),
        "{off}"
    );
    // 100 GET /cart and 200 POST /pay requests per variant.
    let features = new_flow["features"].as_array().expect("features");
    let requests: Vec<(&str, &str, &str)> = features
        .iter()
        .map(|x| {
            (
                x["feature"].as_str().unwrap_or(""),
                x["variant"].as_str().unwrap_or(""),
                x["cells"][0].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        requests,
        [
            ("GET /cart", "off", "100"),
            ("GET /cart", "on", "100"),
            ("POST /pay", "off", "200"),
            ("POST /pay", "on", "200"),
        ]
    );
    let hostile = flag(HOSTILE_FLAG);
    assert_eq!(hostile["title"], HOSTILE_FLAG);
    assert_eq!(variant(hostile, HOSTILE_VARIANT)["name"], HOSTILE_VARIANT);
    server.stop().await;
}

/// With `flags: {enabled: false}` the API answers 404 and the Flags section says flags are
/// off; the rest of the page works, and the page asks for flags only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_flags_off_the_flags_section_says_so_and_the_page_works() {
    if !browser::available() {
        return;
    }
    let server = TestServer::start("flags:\n  enabled: false\n").await;
    sdk::send_with_flags(
        server.grpc.to_string(),
        Transport::Grpc,
        sdk::resource("checkout", &[]),
        flagged_requests().into_iter().take(20).collect(),
    )
    .await;
    server.flush().await;
    let (status, body) = server.get_json("/api/v1/flags").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let admin = server.admin;
    let (seen, errors) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1300, 900);
        let page = &mut b.page;
        open(page, admin);
        // Two more refreshes: flags are not asked for again.
        page.wait_for(
            "Number(document.body.dataset.refreshes) >= 2",
            Duration::from_secs(15),
        );
        let seen = page.eval(
            "({ message: document.getElementById('flag-message').textContent,
                hidden: document.getElementById('flag-message').hidden,
                cards: document.querySelectorAll('#flag-list > *').length,
                notes: document.getElementById('flag-notes').hidden,
                rows: [...document.querySelectorAll('#sli-body tr[data-key]')].map(tr => tr.dataset.feature),
                status: document.getElementById('status').textContent,
                asked: performance.getEntriesByType('resource')
                  .filter(e => new URL(e.name).pathname === '/api/v1/flags').length })",
        );
        page.drain(Duration::from_millis(100));
        (seen, std::mem::take(&mut page.errors))
    })
    .await
    .expect("browser thread");
    // The browser itself logs the one 404 answer.
    let (flags_404, errors): (Vec<String>, Vec<String>) = errors
        .into_iter()
        .partition(|e| e.contains("status of 404") && e.contains("/api/v1/flags"));
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(flags_404.len(), 1, "{flags_404:#?}");
    assert_eq!(seen["asked"], 1, "{seen}");
    assert_eq!(seen["hidden"], false);
    assert!(
        seen["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Feature-flag cohorts are off on this instance (flags.enabled is false)"),
        "{seen}"
    );
    assert_eq!(seen["cards"], 0);
    assert_eq!(seen["notes"], true);
    assert_eq!(seen["rows"], serde_json::json!(["GET /cart", "POST /pay"]));
    assert!(
        !seen["status"].as_str().unwrap_or("").contains("failed"),
        "{seen}"
    );
    server.stop().await;
}
