//! The time-series database harness (`tests/common/tsdb.rs`) checked against the real
//! binaries: samples remote-written into Prometheus, and into VictoriaMetrics evaluated by
//! vmalert, feed a recording rule and an alert, and the harness reads the recorded series,
//! the firing alert and the rules' health back.
//!
//! Needs `prometheus` (Debian package `prometheus`) and `victoria-metrics` + `vmalert`
//! (package `victoria-metrics`). Without them the tests print `skipped: … not installed` and
//! pass, unless `OTEL_SLI_REQUIRE_TOOLS=1` (CI).

mod common;

use common::tsdb::{self, PromOptions, Prometheus, TempFile, VictoriaMetrics, VmAlert};
use std::time::{Duration, Instant};

/// One recording rule and one alert on `x`.
const RULES: &str = "\
groups:
  - name: harness
    rules:
      - record: job:x:sum
        expr: sum(x)
      - alert: XHigh
        expr: sum(x) > 5
        for: 0s
        labels:
          severity: page
";

/// A rule that fails at every evaluation: both series of `x` lose the label telling them
/// apart, so the result holds one label set twice.
const FAILING_RULES: &str = "\
groups:
  - name: harness-failing
    rules:
      - record: x:collided
        expr: label_replace(x, \"i\", \"same\", \"\", \"\")
";

/// `x{i="a"} 3` and `x{i="b"} 4`, stamped now: `sum(x)` is 7.
fn samples() -> Vec<otel_sli::export::remote_write::prom::TimeSeries> {
    let now = tsdb::now_ms();
    vec![
        tsdb::float_series("x", &[("i", "a")], 3.0, now),
        tsdb::float_series("x", &[("i", "b")], 4.0, now),
    ]
}

/// Prints how long the test has run, for the timings in a failing (or `--nocapture`) run.
fn lap(start: Instant, what: &str) {
    eprintln!("{:>6.2}s {what}", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_records_and_alerts_on_remote_written_samples() {
    if !tsdb::prometheus_available() {
        return;
    }
    let t = Instant::now();
    let rules = TempFile::new("rules.yml", RULES);
    let prom = Prometheus::start(
        "harness",
        PromOptions {
            rules: Some(rules.path.clone()),
            ..PromOptions::default()
        },
    )
    .await;
    lap(t, "prometheus ready");
    prom.write(samples()).await;
    let mut x = prom.query_vector("x").await;
    x.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(&str, &str, f64)> = x
        .iter()
        .map(|(l, v)| (l["__name__"].as_str(), l["i"].as_str(), *v))
        .collect();
    assert_eq!(got, [("x", "a", 3.0), ("x", "b", 4.0)]);
    prom.expect("job:x:sum", 7.0).await;
    lap(t, "recording rule queryable");
    let labels = prom.expect_firing("XHigh").await;
    assert_eq!(labels["severity"], "page", "{labels:?}");
    assert_eq!(
        prom.firing_alerts().await.len(),
        1,
        "{:?}",
        prom.firing_alerts().await
    );
    lap(t, "alert firing");
    let rules = prom.expect_rules_healthy().await;
    let mut names: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.name.as_str(), r.kind.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("XHigh", "alerting"), ("job:x:sum", "recording")]);
    assert_eq!(prom.query("1 + 1").await, Some(2.0), "a scalar result");
    lap(t, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmalert_records_and_alerts_on_samples_remote_written_to_victoria_metrics() {
    if !tsdb::victoria_metrics_available() {
        return;
    }
    let t = Instant::now();
    let rules = TempFile::new("rules.yml", RULES);
    let vm = VictoriaMetrics::start("harness").await;
    lap(t, "victoria-metrics ready");
    let alert = VmAlert::start("harness", &rules.path, &vm, Duration::from_secs(1)).await;
    lap(t, "vmalert ready");
    vm.write(samples()).await;
    // Queryable at once: no latency offset, flushed on write.
    vm.expect("sum(x)", 7.0).await;
    lap(t, "samples queryable");
    let mut x = vm.query_vector("x").await;
    x.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(&str, &str, f64)> = x
        .iter()
        .map(|(l, v)| (l["__name__"].as_str(), l["i"].as_str(), *v))
        .collect();
    assert_eq!(got, [("x", "a", 3.0), ("x", "b", 4.0)]);
    vm.expect("job:x:sum", 7.0).await;
    lap(t, "recording rule queryable");
    let labels = alert.expect_firing("XHigh").await;
    assert_eq!(labels["severity"], "page", "{labels:?}");
    assert_eq!(labels["alertgroup"], "harness", "{labels:?}");
    lap(t, "alert firing");
    let rules = alert.expect_rules_healthy().await;
    let mut names: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.name.as_str(), r.kind.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("XHigh", "alerting"), ("job:x:sum", "recording")]);
    // The alert went out to the harness's notifier.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alert.notifications() == 0 {
        assert!(Instant::now() < deadline, "no notification sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lap(t, "done");
}

/// Waits up to 30 s until `health` reports `x:collided` failing, with its error.
async fn expect_collision<F, Fut>(health: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<tsdb::RuleHealth>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = health().await;
        if let Some(r) = rules.iter().find(|r| r.health == "err") {
            assert_eq!(r.name, "x:collided");
            assert!(r.evaluated, "{r:?}");
            assert!(!r.last_error.is_empty(), "{r:?}");
            return;
        }
        assert!(Instant::now() < deadline, "no rule error: {rules:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rule_shows_in_the_prometheus_rules_health() {
    if !tsdb::prometheus_available() {
        return;
    }
    let rules = TempFile::new("failing-rules.yml", FAILING_RULES);
    let prom = Prometheus::start(
        "harness-failing",
        PromOptions {
            rules: Some(rules.path.clone()),
            ..PromOptions::default()
        },
    )
    .await;
    prom.write(samples()).await;
    expect_collision(|| prom.rules_health()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rule_shows_in_the_vmalert_rules_health() {
    if !tsdb::victoria_metrics_available() {
        return;
    }
    let rules = TempFile::new("failing-rules.yml", FAILING_RULES);
    let vm = VictoriaMetrics::start("harness-failing").await;
    let alert = VmAlert::start("harness-failing", &rules.path, &vm, Duration::from_secs(1)).await;
    vm.write(samples()).await;
    expect_collision(|| alert.rules_health()).await;
}
