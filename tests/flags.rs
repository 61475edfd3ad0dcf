//! Feature-flag cohorts end to end with the OpenTelemetry SDK as the client: flag evaluations
//! recorded as span events (current and older conventions) and as span attributes, on the
//! entry span and on its children; SLIs per variant from `/api/v1/flags`, verdicts from
//! `/api/v1/canary?flag=`, errors tied to a variant on `/metrics`, and the caps.

mod common;

use common::sdk::{self, Transport};
use common::TestServer;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, TraceContextExt as _, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// How a request records its flag evaluations.
#[derive(Clone)]
enum Form {
    /// `feature_flag.evaluation` events with `feature_flag.result.variant`.
    Event,
    /// The older `feature_flag` events with `feature_flag.variant` and
    /// `feature_flag.provider_name`.
    OldEvent,
    /// `feature_flag.*` attributes of the span itself.
    Attributes,
    /// `feature_flag.evaluation` events on a child span of the entry span.
    Child,
    /// A `feature_flag.evaluation` event with only the evaluated value (a boolean).
    ValueOnly,
}

/// One request: an HTTP SERVER span `POST /pay` answered 500 (`error`) or 200, with flag
/// evaluations `(form, key, variant)`.
#[derive(Clone)]
struct Req {
    error: bool,
    latency: Duration,
    flags: Vec<(Form, String, String)>,
}

fn req(error: bool, i: usize, flags: &[(Form, &str, &str)]) -> Req {
    Req {
        error,
        latency: Duration::from_millis(10 + (i % 10) as u64),
        flags: flags
            .iter()
            .map(|(f, k, v)| (f.clone(), k.to_string(), v.to_string()))
            .collect(),
    }
}

fn event_attrs(form: &Form, key: &str, variant: &str) -> (&'static str, Vec<KeyValue>) {
    match form {
        Form::OldEvent => (
            "feature_flag",
            vec![
                KeyValue::new("feature_flag.key", key.to_string()),
                KeyValue::new("feature_flag.provider_name", "LaunchDarkly"),
                KeyValue::new("feature_flag.variant", variant.to_string()),
            ],
        ),
        Form::ValueOnly => (
            "feature_flag.evaluation",
            vec![
                KeyValue::new("feature_flag.key", key.to_string()),
                KeyValue::new("feature_flag.result.value", variant == "true"),
            ],
        ),
        _ => (
            "feature_flag.evaluation",
            vec![
                KeyValue::new("feature_flag.key", key.to_string()),
                KeyValue::new("feature_flag.provider.name", "flagd"),
                KeyValue::new("feature_flag.result.variant", variant.to_string()),
            ],
        ),
    }
}

/// Sends `reqs` as spans of `service` through the SDK (one batch exporter, so a request's
/// spans travel in the same export request) and waits until they are exported.
async fn send(server: &TestServer, transport: Transport, service: &str, reqs: Vec<Req>) {
    let endpoint = match transport {
        Transport::Grpc => server.grpc.to_string(),
        Transport::Http => server.http.to_string(),
    };
    let service = service.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = sdk::provider(&endpoint, transport, false, &service);
        let tracer = p.tracer("flags-test");
        for r in reqs {
            let end = SystemTime::now();
            let start = end - r.latency;
            let mut attrs = vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.route", "/pay"),
                KeyValue::new("http.response.status_code", if r.error { 500 } else { 200 }),
            ];
            for (form, key, variant) in &r.flags {
                if let Form::Attributes = form {
                    attrs.push(KeyValue::new("feature_flag.key", key.clone()));
                    attrs.push(KeyValue::new(
                        "feature_flag.result.variant",
                        variant.clone(),
                    ));
                }
            }
            let mut span = tracer
                .span_builder("POST /pay")
                .with_kind(SpanKind::Server)
                .with_start_time(start)
                .with_attributes(attrs)
                .start(&tracer);
            let mut children = Vec::new();
            for (form, key, variant) in &r.flags {
                let (name, kvs) = event_attrs(form, key, variant);
                match form {
                    Form::Attributes => {}
                    Form::Child => children.push((name, kvs)),
                    _ => span.add_event(name, kvs),
                }
            }
            let cx = Context::current_with_span(span);
            for (name, kvs) in children {
                let mut child = tracer
                    .span_builder("evaluate flags")
                    .with_kind(SpanKind::Internal)
                    .with_start_time(start)
                    .start_with_context(&tracer, &cx);
                child.add_event(name, kvs);
                child.end_with_timestamp(end);
            }
            cx.span().end_with_timestamp(end);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

/// `n` requests under `flags`, the first `errors` of them failed.
fn many(n: usize, errors: usize, flags: &[(Form, &str, &str)]) -> Vec<Req> {
    (0..n).map(|i| req(i < errors, i, flags)).collect()
}

async fn flags(server: &TestServer) -> Value {
    server.flush().await;
    let (status, v) = server.get_json("/api/v1/flags?window=5m").await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The variant `variant` of flag `flag` of `service` in a `/api/v1/flags` answer.
fn variant<'a>(v: &'a Value, service: &str, flag: &str, variant: &str) -> &'a Value {
    v["flags"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .find(|f| f["service"] == service && f["flag"] == flag)
        })
        .and_then(|f| f["variants"].as_array())
        .and_then(|vs| vs.iter().find(|x| x["variant"] == variant))
        .unwrap_or_else(|| panic!("{service}/{flag}/{variant} in {v}"))
}

fn counts(v: &Value) -> (u64, u64) {
    (
        v["requests"].as_u64().expect("requests"),
        v["errors"].as_u64().expect("errors"),
    )
}

async fn verdict(server: &TestServer, service: &str, flag: &str, b: &str, c: &str) -> Value {
    let (status, v) = server
        .get_json(&format!(
            "/api/v1/canary?service={service}&flag={flag}&baseline={b}&canary={c}&window=10m"
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Runs `deploy/examples/flag-rollback.sh` against `server` with a command that leaves a
/// file behind; returns its exit status and whether the command ran.
async fn rollback(
    server: &TestServer,
    service: &str,
    flag: &str,
    baseline: &str,
    canary: &str,
) -> (i32, bool) {
    let marker = std::env::temp_dir().join(format!(
        "otel-sli-rollback-{}-{service}-{flag}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&marker);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/flag-rollback.sh");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script)
        .args(["--", "touch"])
        .arg(&marker)
        .env("OTEL_SLI", format!("http://{}", server.admin))
        .env("SERVICE", service)
        .env("FLAG", flag)
        .env("BASELINE", baseline)
        .env("CANARY", canary);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("sh runs"))
        .await
        .expect("script thread");
    let code = out.status.code().unwrap_or(-1);
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    (code, ran)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_are_counted_exactly_in_every_form_and_judged() {
    let server = TestServer::start("flags:\n  metrics: true\n").await;
    // new-flow (current events, gRPC): "on" has ten times the errors of "off". Each request
    // is also evaluated under "dark-mode" (value only): one request, one cohort per flag.
    let on = [
        (Form::Event, "new-flow", "on"),
        (Form::ValueOnly, "dark-mode", "true"),
    ];
    let off = [
        (Form::Event, "new-flow", "off"),
        (Form::ValueOnly, "dark-mode", "false"),
    ];
    send(&server, Transport::Grpc, "checkout", many(1000, 100, &on)).await;
    send(&server, Transport::Grpc, "checkout", many(1000, 10, &off)).await;
    // old-flow (older events, HTTP): two equal variants.
    for v in ["a", "b"] {
        let reqs = many(500, 5, &[(Form::OldEvent, "old-flow", v)]);
        send(&server, Transport::Http, "cart", reqs).await;
    }
    // attr-flow (span attributes): too little traffic to judge.
    for v in ["x", "y"] {
        let reqs = many(30, 1, &[(Form::Attributes, "attr-flow", v)]);
        send(&server, Transport::Http, "search", reqs).await;
    }

    let f = flags(&server).await;
    assert_eq!(
        counts(variant(&f, "checkout", "new-flow", "on")),
        (1000, 100)
    );
    assert_eq!(
        counts(variant(&f, "checkout", "new-flow", "off")),
        (1000, 10)
    );
    assert_eq!(
        counts(variant(&f, "checkout", "dark-mode", "true")),
        (1000, 100)
    );
    assert_eq!(
        counts(variant(&f, "checkout", "dark-mode", "false")),
        (1000, 10)
    );
    assert_eq!(counts(variant(&f, "cart", "old-flow", "a")), (500, 5));
    assert_eq!(counts(variant(&f, "cart", "old-flow", "b")), (500, 5));
    assert_eq!(counts(variant(&f, "search", "attr-flow", "x")), (30, 1));
    let on_v = variant(&f, "checkout", "new-flow", "on");
    assert_eq!(on_v["success_ratio"], 0.9);
    assert_eq!(on_v["features"][0]["feature"], "POST /pay");
    assert_eq!(on_v["features"][0]["requests"], 1000);
    let p95 = on_v["latency_seconds"]["p95"].as_f64().expect("p95");
    assert!((0.0185..=0.0195).contains(&p95), "p95 of 10..19 ms: {p95}");
    // Errors tied to "on" (and to dark-mode "true", which rode on the same requests), not
    // to the equal variants nor to the untested ones.
    let tied = |service: &str, flag: &str| {
        f["flags"]
            .as_array()
            .and_then(|fs| {
                fs.iter()
                    .find(|x| x["service"] == service && x["flag"] == flag)
            })
            .map(|x| x["errors_tied_to"].clone())
            .expect("flag")
    };
    assert_eq!(tied("checkout", "new-flow"), serde_json::json!(["on"]));
    assert_eq!(tied("cart", "old-flow"), serde_json::json!([]));
    assert_eq!(tied("search", "attr-flow"), serde_json::json!([]));
    assert_eq!(
        variant(&f, "search", "attr-flow", "x")["error_test"],
        Value::Null
    );
    assert_eq!(f["dropped"]["no_variant"], 0);
    assert_eq!(f["limits"]["tracked_flags"], 4);

    // Verdicts per flag rollout.
    let v = verdict(&server, "checkout", "new-flow", "off", "on").await;
    assert_eq!(v["verdict"], "fail", "{v}");
    assert_eq!(v["canary"]["requests"], 1000);
    assert_eq!(v["canary"]["errors"], 100);
    assert_eq!(v["baseline"]["errors"], 10);
    assert_eq!(v["query"]["flag"], "new-flow");
    let example = &v["canary_examples"][0];
    assert_eq!(example["reason"], "http 500", "{v}");
    assert_eq!(example["dimensions"]["variant"], "on", "{v}");
    let v = verdict(&server, "cart", "old-flow", "a", "b").await;
    assert_eq!(v["verdict"], "pass", "{v}");
    let v = verdict(&server, "search", "attr-flow", "x", "y").await;
    assert_eq!(v["verdict"], "inconclusive", "{v}");
    assert_eq!(
        v["reasons"],
        serde_json::json!([
            "overall: baseline has 30 requests, fewer than the 100 needed (canary.min_requests)",
            "overall: canary has 30 requests, fewer than the 100 needed (canary.min_requests)"
        ]),
        "{v}"
    );

    // The rollback recipe: runs its command on `fail` only.
    let rolled = rollback(&server, "checkout", "new-flow", "off", "on").await;
    assert_eq!(rolled, (1, true), "fail: rolled back, exit 1");
    let kept = rollback(&server, "cart", "old-flow", "a", "b").await;
    assert_eq!(kept, (0, false), "pass: nothing done");
    let kept = rollback(&server, "search", "attr-flow", "x", "y").await;
    assert_eq!(kept, (0, false), "inconclusive: nothing done");

    // The alertable gauge and the opt-in flag series.
    let m = server.metrics().await;
    for (series, value) in [
        (
            r#"sli_flag_errors_tied{service="checkout",flag="new-flow",variant="on"}"#,
            1.0,
        ),
        (
            r#"sli_flag_errors_tied{service="checkout",flag="new-flow",variant="off"}"#,
            0.0,
        ),
        (
            r#"sli_flag_errors_tied{service="cart",flag="old-flow",variant="a"}"#,
            0.0,
        ),
        (
            r#"sli_flag_requests_total{service="checkout",feature="POST /pay",flag="new-flow",variant="on"}"#,
            1000.0,
        ),
        (
            r#"sli_flag_errors_total{service="cart",feature="POST /pay",flag="old-flow",variant="b"}"#,
            5.0,
        ),
        ("otel_sli_flag_evaluations_total", 5060.0),
    ] {
        assert_eq!(common::sample(&m, series), Some(value), "{series}\n{m}");
    }
    assert!(
        !m.contains(r#"sli_flag_errors_tied{service="search""#),
        "{m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_on_child_spans_count_toward_their_request() {
    let server = TestServer::start("").await;
    // The entry span evaluates "checkout-v2" itself; its child evaluates "checkout-v2"
    // again (counted once) and "banner" (counted toward the request).
    let both = [
        (Form::Event, "checkout-v2", "on"),
        (Form::Child, "checkout-v2", "off"),
        (Form::Child, "banner", "blue"),
    ];
    send(&server, Transport::Grpc, "shop", many(40, 4, &both)).await;
    // A child span whose entry span is in another export request (here: never sent).
    let handle = tokio::runtime::Handle::current();
    let endpoint = server.grpc.to_string();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = sdk::provider(&endpoint, Transport::Grpc, false, "shop");
        let tracer = p.tracer("flags-test");
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes([7; 16]),
            opentelemetry::trace::SpanId::from_bytes([8; 8]),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(remote);
        let mut span = tracer
            .span_builder("lookup")
            .with_kind(SpanKind::Internal)
            .start_with_context(&tracer, &cx);
        let (name, kvs) = event_attrs(&Form::Event, "banner", "red");
        span.add_event(name, kvs);
        span.end();
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");

    let f = flags(&server).await;
    assert_eq!(counts(variant(&f, "shop", "checkout-v2", "on")), (40, 4));
    assert_eq!(counts(variant(&f, "shop", "banner", "blue")), (40, 4));
    let shop: Vec<&Value> = f["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .flat_map(|x| x["variants"].as_array().expect("variants"))
        .collect();
    assert_eq!(shop.len(), 2, "the entry span's own variant wins: {f}");
    assert_eq!(f["dropped"]["unattributed"], 1, "{f}");
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            r#"otel_sli_flag_evaluations_dropped_total{reason="unattributed"}"#
        ),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caps_hold_under_a_flood_of_flags_and_variants() {
    let server =
        TestServer::start("flags:\n  max_flags: 5\n  max_variants: 3\n  metrics: true\n").await;
    // One flag with 20 variants, then 50 distinct flags, then one more request of the first.
    let variants: Vec<Req> = (0..20)
        .map(|i| req(false, i, &[(Form::Event, "wide", &format!("v{i}"))]))
        .collect();
    send(&server, Transport::Grpc, "flood", variants).await;
    // Applied before the next request, so "wide" is the first flag the caps see.
    server.flush().await;
    let keys: Vec<Req> = (0..50)
        .map(|i| req(false, i, &[(Form::Event, &format!("flag-{i}"), "on")]))
        .collect();
    send(&server, Transport::Grpc, "flood", keys).await;

    let f = flags(&server).await;
    assert_eq!(f["limits"]["tracked_flags"], 5, "{f}");
    let listed = f["flags"].as_array().expect("flags");
    assert_eq!(listed.len(), 5, "{f}");
    assert!(listed
        .iter()
        .all(|x| x["variants"].as_array().is_some_and(|v| v.len() <= 4)));
    // "wide": three variants kept, the other 17 requests under __overflow__.
    assert_eq!(
        counts(variant(&f, "flood", "wide", "__overflow__")),
        (17, 0)
    );
    assert_eq!(f["folded"]["max_variants"], 17);
    // Four of the 50 flags found a place; 46 evaluations were dropped and counted.
    assert_eq!(f["dropped"]["max_flags"], 46);
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            r#"otel_sli_flag_evaluations_dropped_total{reason="max_flags"}"#
        ),
        Some(46.0)
    );
    assert_eq!(common::sample(&m, "otel_sli_flags_tracked"), Some(5.0));
    let requests: usize = m
        .lines()
        .filter(|l| l.starts_with("sli_flag_requests_total{"))
        .count();
    assert_eq!(
        requests,
        5 + 3,
        "wide has 4 series, the 4 others one each: {m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_keeps_only_its_keys_and_flags_can_be_turned_off() {
    let server = TestServer::start("flags:\n  keys: [kept]\n").await;
    let both = [(Form::Event, "kept", "on"), (Form::Event, "ignored", "on")];
    send(&server, Transport::Http, "svc", many(10, 0, &both)).await;
    let f = flags(&server).await;
    assert_eq!(f["flags"].as_array().map(Vec::len), Some(1), "{f}");
    assert_eq!(counts(variant(&f, "svc", "kept", "on")), (10, 0));
    assert_eq!(f["dropped"]["not_listed"], 10);
    server.stop().await;

    let off = TestServer::start("flags:\n  enabled: false\n").await;
    send(&off, Transport::Http, "svc", many(10, 0, &both)).await;
    off.flush().await;
    let (status, v) = off.get_json("/api/v1/flags").await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = off
        .get_json("/api/v1/canary?service=svc&flag=kept&baseline=off&canary=on")
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(!off.metrics().await.contains("otel_sli_flag"));
    // The SLIs themselves are untouched.
    let sli = off.sli("all", "svc", "POST /pay").await;
    assert_eq!(sli["requests"], 10);
    off.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_series_cap_folds_into_one_overflow_series_across_shards() {
    let server = TestServer::start(
        "pipeline:\n  shards: 4\nflags:\n  max_series: 1\n  max_flags: 100\n  metrics: true\n",
    )
    .await;
    let reqs: Vec<Req> = (0..20)
        .map(|i| req(i % 2 == 0, i, &[(Form::Event, &format!("f{i}"), "on")]))
        .collect();
    send(&server, Transport::Grpc, "svc", reqs).await;
    let f = flags(&server).await;
    assert_eq!(f["folded"]["max_series"], 19, "{f}");
    // A flag whose first request the series cap turned away holds no max_flags place.
    assert_eq!(f["limits"]["tracked_flags"], 1, "{f}");
    let m = server.metrics().await;
    let overflow = m
        .lines()
        .filter(|l| l.starts_with("sli_flag_requests_total{") && l.contains("__overflow__"))
        .count();
    assert_eq!(overflow, 1, "one overflow series, however many shards: {m}");
    assert_eq!(
        common::sample(
            &m,
            r#"sli_flag_requests_total{service="__overflow__",feature="__overflow__"}"#
        ),
        Some(19.0),
        "{m}"
    );
    server.stop().await;
}
