//! `otel-sli rules` as users run it: the shipped example renders in both formats, the rules
//! pass `promtool check rules`, and `promtool test rules` shows that, fed the series several
//! agents export, the alerts fire when the engine's would and stay quiet when they would not.
//!
//! promtool comes from the `prometheus` package. Without it the promtool checks print
//! `skipped: promtool not installed` and pass, unless `OTEL_SLI_REQUIRE_TOOLS=1` (CI).

mod common;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_otel-sli");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/otel-sli.yaml");

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("otel-sli-rules-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("otel-sli runs")
}

/// `otel-sli rules --config <config> --format <format>`, which must succeed.
fn rules(config: &Path, format: &str) -> String {
    let config = config.to_str().expect("UTF-8 path");
    let out = run(&["rules", "--config", config, "--format", format]);
    assert!(
        out.status.success(),
        "rules --format {format} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn parse(yaml: &str) -> Value {
    serde_norway::from_str(yaml).expect("output is YAML")
}

/// True when promtool can be run (see [`common::tool_available`]).
fn promtool_available() -> bool {
    common::tool_available("promtool", &["--version"])
}

fn promtool(args: &[&str], file: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} {} failed:\n{text}\n{}",
        file.display(),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    text
}

#[test]
fn example_renders_in_both_formats() {
    let plain = parse(&rules(Path::new(EXAMPLE), "prometheus"));
    let groups = plain["groups"].as_array().expect("groups");
    // Three SLOs, each with recordings and alerts.
    assert_eq!(groups.len(), 6, "{plain:#}");
    let wrapped = parse(&rules(Path::new(EXAMPLE), "prometheusrule"));
    assert_eq!(wrapped["kind"], "PrometheusRule");
    assert_eq!(wrapped["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(wrapped["metadata"]["name"], "otel-sli-slos");
    assert_eq!(wrapped["spec"], plain);
}

#[test]
fn example_rules_pass_promtool_check() {
    if !promtool_available() {
        return;
    }
    let dir = TempDir::new("check");
    let plain = dir.write("rules.yaml", &rules(Path::new(EXAMPLE), "prometheus"));
    let out = promtool(&["check", "rules"], &plain);
    assert!(out.contains("SUCCESS"), "{out}");
    let wrapped = parse(&rules(Path::new(EXAMPLE), "prometheusrule"));
    let spec = serde_norway::to_string(&wrapped["spec"]).expect("spec as YAML");
    let spec = dir.write("spec.yaml", &spec);
    let out = promtool(&["check", "rules"], &spec);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn no_slos_is_an_error() {
    let dir = TempDir::new("empty");
    let config = dir.write("otel-sli.yaml", "log:\n  level: info\n");
    let out = run(&["rules", "--config", config.to_str().expect("UTF-8 path")]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("defines no SLOs"), "{err}");
}

/// Two SLOs on every `GET` feature of `api`, 99% over 30 days.
const CONFIG: &str = r#"
sli:
  latency:
    buckets: [0.1, 0.3, 1]
slos:
  - name: api-availability
    service: api
    feature: "GET /*"
    objective: 99
    window: 30d
    labels: { team: web }
  - name: api-latency
    service: api
    feature: "GET /*"
    sli: latency
    threshold: 300ms
    objective: 99
    window: 30d
    labels: { team: web }
"#;

/// A counter growing by `per_minute` for two hours.
fn counter(series: &str, per_minute: u32) -> Value {
    json!({ "series": series, "values": format!("0+{per_minute}x120") })
}

/// `sli_requests_total` and `sli_errors_total` of one agent (`node`) and feature.
fn requests(node: &str, service: &str, feature: &str, total: u32, errors: u32) -> Vec<Value> {
    let labels = format!("service=\"{service}\",feature=\"{feature}\",node=\"{node}\"");
    vec![
        counter(&format!("sli_requests_total{{{labels}}}"), total),
        counter(&format!("sli_errors_total{{{labels}}}"), errors),
    ]
}

/// The latency histogram of one agent and feature: `(le, cumulative per minute)` pairs.
fn histogram(node: &str, feature: &str, buckets: &[(&str, u32)]) -> Vec<Value> {
    let labels = format!("service=\"api\",feature=\"{feature}\",node=\"{node}\"");
    let mut out: Vec<Value> = buckets
        .iter()
        .map(|(le, n)| {
            counter(
                &format!("sli_latency_seconds_bucket{{{labels},le=\"{le}\"}}"),
                *n,
            )
        })
        .collect();
    if let Some((_, total)) = buckets.last() {
        out.push(counter(
            &format!("sli_latency_seconds_count{{{labels}}}"),
            *total,
        ));
    }
    out
}

/// The alert `promtool` must see firing for `slo` at `severity`, annotations as generated.
fn firing(rules: &Value, slo: &str, severity: &str) -> Value {
    let rule = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["labels"]["slo"] == slo && r["labels"]["severity"] == severity)
        .unwrap_or_else(|| panic!("no {severity} alert for {slo}"));
    json!({ "exp_labels": rule["labels"], "exp_annotations": rule["annotations"] })
}

/// One `promql_expr_test` expecting a single sample of `record` for `slo` at 1h, to six
/// decimal places (promtool compares floats exactly).
fn expect_value(record: &str, slo: &str, value: f64) -> Value {
    json!({
        "expr": format!("round({record}{{slo=\"{slo}\"}}, 0.000001)"),
        "eval_time": "1h",
        "exp_samples": [{
            "labels": format!("{{slo=\"{slo}\",team=\"web\"}}"),
            "value": value,
        }],
    })
}

#[test]
fn alerts_fire_like_the_engine_across_agents() {
    if !promtool_available() {
        return;
    }
    let dir = TempDir::new("unit");
    let config = dir.write("otel-sli.yaml", CONFIG);
    let file = rules(&config, "prometheus");
    let rules_path = dir.write("rules.yaml", &file);
    let rules = parse(&file);

    // 20% errors overall, split unevenly over two agents and two features; the 100% errors
    // of a POST feature and of another service must not count.
    let mut burning = Vec::new();
    burning.extend(requests("n1", "api", "GET /a", 100, 10));
    burning.extend(requests("n2", "api", "GET /b", 100, 30));
    burning.extend(requests("n1", "api", "POST /a", 100, 100));
    burning.extend(requests("n2", "web", "GET /a", 100, 100));

    // 0.1% errors and 0.5% slower than 300 ms against 99%: no alert.
    let mut healthy = Vec::new();
    for node in ["n1", "n2"] {
        healthy.extend(requests(node, "api", "GET /a", 1000, 1));
        healthy.extend(histogram(
            node,
            "GET /a",
            &[("0.1", 900), ("0.3", 995), ("1", 1000), ("+Inf", 1000)],
        ));
    }

    // No errors but 20% slower than 300 ms: only the latency SLO burns.
    let mut slow = Vec::new();
    for node in ["n1", "n2"] {
        slow.extend(requests(node, "api", "GET /a", 1000, 0));
        slow.extend(histogram(
            node,
            "GET /a",
            &[("0.1", 500), ("0.3", 800), ("1", 1000), ("+Inf", 1000)],
        ));
    }

    let test = json!({
        "rule_files": [rules_path],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": burning,
                "promql_expr_test": [
                    expect_value("slo:sli_error:ratio_rate5m", "api-availability", 0.2),
                    expect_value("slo:error_budget:ratio", "api-availability", 0.01),
                    expect_value("slo:objective:ratio", "api-availability", 0.99),
                ],
                "alert_rule_test": [{
                    "eval_time": "1h",
                    "alertname": "SLOErrorBudgetBurn",
                    "exp_alerts": [
                        firing(&rules, "api-availability", "page"),
                        firing(&rules, "api-availability", "ticket"),
                    ],
                }],
            },
            {
                "interval": "1m",
                "input_series": healthy,
                "promql_expr_test": [
                    expect_value("slo:sli_error:ratio_rate1h", "api-availability", 0.001),
                    expect_value("slo:sli_error:ratio_rate1h", "api-latency", 0.006),
                    expect_value("slo:error_budget_remaining:ratio", "api-latency", 0.4),
                ],
                "alert_rule_test": [
                    { "eval_time": "1h", "alertname": "SLOErrorBudgetBurn", "exp_alerts": [] },
                    { "eval_time": "2h", "alertname": "SLOErrorBudgetBurn", "exp_alerts": [] },
                ],
            },
            {
                "interval": "1m",
                "input_series": slow,
                "promql_expr_test": [
                    expect_value("slo:sli_error:ratio_rate5m", "api-latency", 0.2),
                    expect_value("slo:sli_error:ratio_rate5m", "api-availability", 0.0),
                ],
                "alert_rule_test": [{
                    "eval_time": "1h",
                    "alertname": "SLOErrorBudgetBurn",
                    "exp_alerts": [
                        firing(&rules, "api-latency", "page"),
                        firing(&rules, "api-latency", "ticket"),
                    ],
                }],
            },
        ],
    });
    let test_path = dir.write(
        "rules_test.yaml",
        &serde_norway::to_string(&test).expect("test as YAML"),
    );
    let out = promtool(&["test", "rules"], &test_path);
    assert!(out.contains("SUCCESS"), "{out}");
}
