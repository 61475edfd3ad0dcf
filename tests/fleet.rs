//! Fleet mode end to end: several `otel-sli` agents (separate processes, each named by its
//! default identity) receive disjoint shares of the OpenTelemetry SDK's traffic and
//! remote-write into a real Prometheus, or a real VictoriaMetrics with `vmalert`; the rules
//! `otel-sli rules` generates are evaluated there. The fleet-wide answers are checked
//! against the ground truth and against one agent fed the union of the traffic, the page
//! alert against that agent's own page state, and the fleet totals across agents restarted
//! with SIGTERM and killed with SIGKILL.
//!
//! Needs `prometheus` and `victoria-metrics` (Debian packages, installed by `.ci/run`);
//! without them the tests print "skipped" and pass, unless `OTEL_SLI_REQUIRE_TOOLS=1`.

mod common;

use common::collector::{self, Collector};
use common::sdk::{self, Req, Transport};
use common::tsdb::{self, Prometheus, VictoriaMetrics, VmAlert};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICE: &str = "checkout";
const ROUTE: &str = "/checkout";
const SLO: &str = "checkout-availability";
/// Remote-write interval of every agent.
const INTERVAL: &str = "1s";

/// The part of an agent's configuration every test shares: one availability SLO at 99%
/// (budget 1%; the page alert needs an error ratio above 14.4% over 1h and 5m).
fn slo_config() -> String {
    format!(
        "slos:\n  - name: {SLO}\n    service: {SLO_SERVICE}\n    feature: \"POST {ROUTE}\"\n    objective: 99\n",
        SLO_SERVICE = SERVICE
    )
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("otel-sli-fleet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Self(d)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `otel-sli` process on fixed loopback ports, so a restart keeps its identity
/// (`<host>:<admin port>`: no identity variable is passed on).
struct Agent {
    child: Option<Child>,
    config: PathBuf,
    env: Vec<(&'static str, String)>,
    grpc: String,
    http: String,
    admin: String,
}

impl Agent {
    fn start(config: &Path) -> Self {
        Self::start_with_env(config, Vec::new())
    }

    /// [`Agent::start`] with `env` set (for a configuration's `${env:…}`).
    fn start_with_env(config: &Path, env: Vec<(&'static str, String)>) -> Self {
        let mut a = Agent {
            child: None,
            config: config.to_path_buf(),
            env,
            grpc: common::free_addr(),
            http: common::free_addr(),
            admin: common::free_addr(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_otel-sli"))
            .arg("--config")
            .arg(&self.config)
            .args(["--otlp-grpc", &self.grpc, "--otlp-http", &self.http])
            .args(["--admin", &self.admin])
            .env_remove("MY_POD_NAME")
            .env_remove("K8S_NODE_NAME")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("otel-sli starts");
        self.child = Some(child);
        common::wait_ready(&self.admin);
    }

    /// The identity its series carry.
    fn instance(&self) -> String {
        let port = self.admin.rsplit(':').next().expect("port");
        format!(
            "{}:{port}",
            otel_sli::identity::hostname().unwrap_or_else(|| "unknown".into())
        )
    }

    /// Sends `n` requests of `POST /checkout` through the SDK, the first `bad` answered 503.
    async fn send(&self, n: usize, bad: usize) {
        let reqs = (0..n)
            .map(|i| {
                let status = if i < bad { 503 } else { 200 };
                Req::server("POST", ROUTE, Duration::from_millis(20), status)
            })
            .collect();
        sdk::send(self.grpc.clone(), Transport::Grpc, false, SERVICE, reqs).await;
    }

    /// Waits until the agent counts `n` requests of the SLO's feature.
    async fn counted(&self, n: f64) {
        let series =
            format!("sli_requests_total{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let got = common::http_get_text(&self.admin, "/metrics")
                .and_then(|m| common::sample(&m, &series));
            if got == Some(n) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{}: {got:?} requests, want {n}",
                self.admin
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/api/v1/slos`' entry for the SLO.
    fn slo(&self) -> Value {
        let body = common::http_get_text(&self.admin, "/api/v1/slos").expect("slos");
        let v: Value = serde_json::from_str(&body).expect("json");
        v["slos"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == SLO).cloned())
            .unwrap_or(Value::Null)
    }

    /// SIGTERM, and waits for a clean exit (the final export is part of it).
    async fn terminate(&mut self) {
        let child = self.child.as_mut().expect("running");
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < end, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "exit status {status}");
        self.child = None;
    }

    /// SIGKILL: no final export.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `otel-sli rules` for `config`, written beside it.
fn rules_file(scratch: &Scratch, config: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_otel-sli"))
        .args(["rules", "--config"])
        .arg(config)
        .output()
        .expect("otel-sli rules runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scratch.file("rules.yaml", &String::from_utf8(out.stdout).expect("UTF-8"))
}

fn agent_config(scratch: &Scratch, name: &str, write_url: Option<&str>) -> PathBuf {
    let mut yaml = slo_config();
    if let Some(url) = write_url {
        yaml.push_str(&format!(
            "exporters:\n  prometheus_remote_write:\n    endpoint: {url}\n    interval: {INTERVAL}\n"
        ));
    }
    scratch.file(name, &yaml)
}

/// Either database, queried the same way.
enum Db<'a> {
    Prom(&'a Prometheus),
    Vm(&'a VictoriaMetrics),
}

impl Db<'_> {
    async fn query(&self, q: &str) -> Option<f64> {
        match self {
            Db::Prom(p) => p.query(q).await,
            Db::Vm(v) => v.query(q).await,
        }
    }

    /// Waits up to 30 s until `q` gives `want` within `tolerance`; the last value.
    async fn expect_near(&self, q: &str, want: f64, tolerance: f64) -> f64 {
        let end = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < end {
            last = self.query(q).await;
            if let Some(v) = last {
                if (v - want).abs() <= tolerance {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{q}: got {last:?}, want {want} ± {tolerance}");
    }
}

/// The shares of the healthy traffic: (requests, errors) per agent. 600 requests, 3 errors:
/// an error ratio of 0.5%, half the 1% budget; no alert fires.
const SHARES: [(usize, usize); 3] = [(300, 1), (200, 1), (100, 1)];

/// Tolerance of a ratio read through `rate()` over agents' series, relative. Errors and
/// requests of one agent share timestamps, so each agent's own ratio is exact; the fleet
/// ratio weights the agents by how each database turns an increase into a rate:
/// - Prometheus divides by the range and extrapolates each series' increase at the range's
///   end by up to 1.1 sample intervals (not at its start: every series starts with a zero,
///   and Prometheus extrapolates no further back than a zero). Relative to a series' age,
///   that is 1.1 s in at least [`MIN_AGE`] less one interval: under 5%.
/// - VictoriaMetrics divides each increase by the time its samples span, which is the
///   series' age while it is younger than the range: agents started a second or two apart
///   are weighted up to 2 s / [`MIN_AGE`] apart. Once series are older than the window (an
///   agent running for more than 5 minutes) the weights are equal. Its `increase()` does
///   not extrapolate, so the ratio of increases is checked exactly.
const PROM_RATIO_TOLERANCE: f64 = 0.05;
/// How old every agent's series are when the recorded ratios are read.
const MIN_AGE: Duration = Duration::from_secs(25);
/// See [`PROM_RATIO_TOLERANCE`].
const VM_RATIO_TOLERANCE: f64 = 0.1;

/// Sends the healthy shares to three agents and the union of them to a fourth, then checks
/// the fleet's recorded answers in `db` against the truth and against the fourth agent.
async fn fleet_matches_one_agent(
    db: Db<'_>,
    agents: &[Agent],
    union: &Agent,
    tolerance: f64,
    started: Instant,
) {
    for (a, (n, bad)) in agents.iter().zip(SHARES) {
        a.send(n, bad).await;
        union.send(n, bad).await;
    }
    let (total, bad): (usize, usize) = SHARES.iter().fold((0, 0), |(t, b), (n, e)| (t + n, b + e));
    for (a, (n, _)) in agents.iter().zip(SHARES) {
        a.counted(n as f64).await;
    }
    union.counted(total as f64).await;

    // Raw counters: exact, one series set per agent.
    let sel = format!("{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
    db.expect_near(&format!("sum(sli_requests_total{sel})"), total as f64, 0.0)
        .await;
    db.expect_near(&format!("sum(sli_errors_total{sel})"), bad as f64, 0.0)
        .await;
    db.expect_near(
        &format!("count(count by (otel_sli_instance) (sli_requests_total{sel}))"),
        3.0,
        0.0,
    )
    .await;
    // Each agent's own series hold exactly its share.
    for (a, (n, _)) in agents.iter().zip(SHARES) {
        let q = format!(
            "sum(sli_requests_total{{otel_sli_instance=\"{}\"}})",
            a.instance()
        );
        db.expect_near(&q, n as f64, 0.0).await;
    }

    // The union agent's own evaluation is exact.
    let truth_ratio = bad as f64 / total as f64;
    let one = union.slo();
    assert_eq!(one["total"], total, "{one}");
    assert_eq!(one["bad"], bad, "{one}");
    let one_sli = one["sli_value"].as_f64().expect("sli_value");
    let one_budget = one["error_budget_remaining"].as_f64().expect("budget");
    assert!((one_sli - (1.0 - truth_ratio)).abs() < 1e-12, "{one}");
    assert!(
        (one_budget - (1.0 - truth_ratio / 0.01)).abs() < 1e-9,
        "{one}"
    );

    // The fleet's recorded answers, within the rate tolerance.
    tokio::time::sleep(MIN_AGE.saturating_sub(started.elapsed())).await;
    let slo = format!("{{slo=\"{SLO}\"}}");
    for w in ["5m", "1h", "30d"] {
        let got = db
            .expect_near(
                &format!("slo:sli_error:ratio_rate{w}{slo}"),
                truth_ratio,
                truth_ratio * tolerance,
            )
            .await;
        eprintln!(
            "fleet error ratio over {w}: {got} (truth {truth_ratio}, one agent {})",
            1.0 - one_sli
        );
    }
    let budget = db
        .expect_near(
            &format!("slo:error_budget_remaining:ratio{slo}"),
            one_budget,
            truth_ratio * tolerance / 0.01,
        )
        .await;
    eprintln!("fleet error budget remaining: {budget} (one agent {one_budget})");
}

/// An error burst at the third agent's share: 150 of 200 requests fail, so the fleet's
/// error ratio over 5m and 1h is 153 / 800 = 19%, above the page threshold of 14.4%.
/// Returns when the union agent first reports `page` firing.
async fn burst(agents: &[Agent], union: &Agent) -> Instant {
    agents[2].send(200, 150).await;
    union.send(200, 150).await;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = union.slo();
        if s["firing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "page"))
        {
            return Instant::now();
        }
        assert!(Instant::now() < end, "the union agent never pages: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long after the in-pipeline page state the TSDB's alert may fire: a remote-write
/// interval (1 s) + the recording rules' evaluation (1 s) + the alerting rule's (1 s) +
/// the agent's flush (1 s), with room for a loaded CI machine.
const ALERT_LAG: Duration = Duration::from_secs(15);

async fn page_fires(
    name: &str,
    paged: Instant,
    firing: impl AsyncFn() -> Vec<(String, std::collections::BTreeMap<String, String>)>,
) {
    let end = paged + ALERT_LAG;
    loop {
        let alerts = firing().await;
        if alerts.iter().any(|(n, l)| {
            n == "SLOErrorBudgetBurn"
                && l.get("severity").map(String::as_str) == Some("page")
                && l.get("slo").map(String::as_str) == Some(SLO)
        }) {
            eprintln!(
                "{name}: page fires {:?} after the agent's page state",
                paged.elapsed()
            );
            return;
        }
        assert!(
            Instant::now() < end,
            "{name}: no page alert {ALERT_LAG:?} after the agent paged: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_in_prometheus_give_one_agents_answer_and_page_together() {
    if !tsdb::prometheus_available() {
        return;
    }
    let scratch = Scratch::new("prom");
    let rules = rules_file(&scratch, &agent_config(&scratch, "rules-input.yaml", None));
    let prom = Prometheus::start(
        "fleet",
        tsdb::PromOptions {
            native_histograms: false,
            rules: Some(rules),
            evaluation_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let config = agent_config(&scratch, "agent.yaml", Some(&prom.write_url()));
    let started = Instant::now();
    let agents: Vec<Agent> = (0..3).map(|_| Agent::start(&config)).collect();
    let union = Agent::start(&agent_config(&scratch, "union.yaml", None));

    fleet_matches_one_agent(
        Db::Prom(&prom),
        &agents,
        &union,
        PROM_RATIO_TOLERANCE,
        started,
    )
    .await;
    let rules = prom.expect_rules_healthy().await;
    assert!(rules.len() >= 10, "{rules:?}");
    // Healthy traffic fires nothing, after several evaluations.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(prom.firing_alerts().await, vec![]);
    assert_eq!(union.slo()["firing"], serde_json::json!([]));

    let paged = burst(&agents, &union).await;
    page_fires("prometheus", paged, async || prom.firing_alerts().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_in_victoria_metrics_give_one_agents_answer_and_page_together() {
    if !tsdb::victoria_metrics_available() {
        return;
    }
    let scratch = Scratch::new("vm");
    let rules = rules_file(&scratch, &agent_config(&scratch, "rules-input.yaml", None));
    let vm = VictoriaMetrics::start("fleet").await;
    let vmalert = VmAlert::start("fleet", &rules, &vm, Duration::from_secs(1)).await;
    let config = agent_config(&scratch, "agent.yaml", Some(&vm.write_url()));
    let started = Instant::now();
    let agents: Vec<Agent> = (0..3).map(|_| Agent::start(&config)).collect();
    let union = Agent::start(&agent_config(&scratch, "union.yaml", None));

    fleet_matches_one_agent(Db::Vm(&vm), &agents, &union, VM_RATIO_TOLERANCE, started).await;
    let rules = vmalert.expect_rules_healthy().await;
    assert!(rules.len() >= 10, "{rules:?}");
    // Without extrapolation, the ratio of increases is the truth.
    let sel = format!("{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
    Db::Vm(&vm)
        .expect_near(
            &format!("sum(increase(sli_errors_total{sel}[5m])) / sum(increase(sli_requests_total{sel}[5m]))"),
            3.0 / 600.0,
            1e-12,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(vmalert.firing_alerts().await, vec![]);

    let paged = burst(&agents, &union).await;
    page_fires("vmalert", paged, async || vmalert.firing_alerts().await).await;
}

/// The samples of every series `selector` selects over the last `range`, as the database
/// stores them, summed as `increase()` would count them without extrapolation: every rise,
/// and after a drop (a reset) the new value.
async fn stored_increase(base: &str, selector: &str, range: &str) -> f64 {
    let url = format!(
        "http://{base}/api/v1/query?query={}",
        tsdb::urlencode(&format!("{selector}[{range}]"))
    );
    let r: Value = reqwest::get(url)
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    let mut total = 0.0;
    for s in r["data"]["result"].as_array().into_iter().flatten() {
        let values: Vec<f64> = s["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p[1].as_str()?.parse().ok())
            .collect();
        for w in values.windows(2) {
            total += if w[1] >= w[0] { w[1] - w[0] } else { w[1] };
        }
    }
    total
}

/// Phase sizes of the restart test: the second life of each restarted agent counts more
/// than its first, the case where a reset without the start's zero is invisible.
const FIRST: [usize; 3] = [40, 50, 30];
const SECOND: [usize; 3] = [20, 60, 45];
/// Requests the SIGKILLed agent receives after its last export, then lost with it.
const UNEXPORTED: usize = 7;

/// Three agents; between two loads one is restarted with SIGTERM and one killed with
/// SIGKILL (after its last export) and both are started again on the same ports. The
/// fleet total read from `db` equals what was sent; then the killed agent receives
/// [`UNEXPORTED`] requests and is killed before it can export them: at most those are lost.
async fn restarts_neither_lose_nor_double(
    db: Db<'_>,
    base: &str,
    write_url: &str,
    scratch: &Scratch,
    exact: bool,
) {
    let config = agent_config(scratch, "agent.yaml", Some(write_url));
    let started = Instant::now();
    let mut agents: Vec<Agent> = (0..3).map(|_| Agent::start(&config)).collect();
    let sel = format!("sli_requests_total{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
    for (a, n) in agents.iter().zip(FIRST) {
        a.send(n, 1).await;
        a.counted(n as f64).await;
    }
    let first: usize = FIRST.iter().sum();
    db.expect_near(&format!("sum({sel})"), first as f64, 0.0)
        .await;

    agents[1].terminate().await;
    agents[2].kill();
    agents[1].spawn();
    agents[2].spawn();
    for (a, n) in agents.iter().zip(SECOND) {
        a.send(n, 1).await;
    }
    for (i, a) in agents.iter().enumerate() {
        let lives = if i == 0 {
            FIRST[0] + SECOND[0]
        } else {
            SECOND[i]
        };
        a.counted(lives as f64).await;
    }
    let truth = (first + SECOND.iter().sum::<usize>()) as f64;
    // The last values alone: the restarted agents began again at 0.
    let last = (FIRST[0] + SECOND.iter().sum::<usize>()) as f64;
    db.expect_near(&format!("sum({sel})"), last, 0.0).await;
    // Let a few more writes land so every series has samples after its reset.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stored = stored_increase(base, &sel, "10m").await;
    assert_eq!(stored, truth, "the stored samples add up to what was sent");
    let resets = db.query(&format!("sum(resets({sel}[10m]))")).await;
    assert_eq!(resets, Some(2.0), "both restarts are visible resets");
    // Prometheus extrapolates the end of the range, never the start (see
    // PROM_RATIO_TOLERANCE): its increase is at least the truth and at most 5% above.
    tokio::time::sleep(MIN_AGE.saturating_sub(started.elapsed())).await;
    let (want, tolerance) = if exact {
        (truth, 0.0)
    } else {
        let t = truth * PROM_RATIO_TOLERANCE / 2.0;
        (truth + t, t)
    };
    let fleet = db
        .expect_near(&format!("sum(increase({sel}[10m]))"), want, tolerance)
        .await;
    eprintln!("fleet increase over the run: {fleet} (sent {truth}; last values sum to {last})");

    // SIGKILL loses what came after the last export, and no more.
    let c = &agents[2];
    db.expect_near(&format!("sum({sel})"), last, 0.0).await;
    c.send(UNEXPORTED, 0).await;
    c.counted((SECOND[2] + UNEXPORTED) as f64).await;
    agents[2].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stored_increase(base, &sel, "10m").await;
    let lost = truth + UNEXPORTED as f64 - after;
    eprintln!("SIGKILL lost {lost} of the {UNEXPORTED} requests received after the last export");
    assert!(
        (0.0..=UNEXPORTED as f64).contains(&lost),
        "lost {lost}: more than the requests received since the last export, or counted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agents_neither_lose_nor_double_count_in_prometheus() {
    if !tsdb::prometheus_available() {
        return;
    }
    let scratch = Scratch::new("restart-prom");
    let prom = Prometheus::start(
        "fleet-restart",
        tsdb::PromOptions {
            native_histograms: false,
            rules: None,
            evaluation_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    restarts_neither_lose_nor_double(
        Db::Prom(&prom),
        &prom.addr,
        &prom.write_url(),
        &scratch,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agents_neither_lose_nor_double_count_in_victoria_metrics() {
    if !tsdb::victoria_metrics_available() {
        return;
    }
    let scratch = Scratch::new("restart-vm");
    let vm = VictoriaMetrics::start("fleet-restart").await;
    restarts_neither_lose_nor_double(Db::Vm(&vm), &vm.addr, &vm.write_url(), &scratch, true).await;
}

/// Two agents on one host with nothing but the remote-write endpoint configured write two
/// distinct series sets, told apart by `otel_sli_instance` = `<host>:<admin port>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_default_agents_write_distinct_series() {
    if !tsdb::prometheus_available() {
        return;
    }
    let scratch = Scratch::new("identity");
    let prom = Prometheus::start(
        "fleet-identity",
        tsdb::PromOptions {
            native_histograms: false,
            rules: None,
            evaluation_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let config = scratch.file(
        "agent.yaml",
        &format!(
            "exporters:\n  prometheus_remote_write:\n    endpoint: {}\n    interval: {INTERVAL}\n",
            prom.write_url()
        ),
    );
    let agents = [Agent::start(&config), Agent::start(&config)];
    agents[0].send(11, 0).await;
    agents[1].send(13, 2).await;
    for (a, n) in agents.iter().zip([11.0, 13.0]) {
        a.counted(n).await;
    }
    let db = Db::Prom(&prom);
    for (a, n) in agents.iter().zip([11.0, 13.0]) {
        let q = format!(
            "sum(sli_requests_total{{otel_sli_instance=\"{}\",service=\"{SERVICE}\"}})",
            a.instance()
        );
        db.expect_near(&q, n, 0.0).await;
    }
    db.expect_near(
        "count(count by (otel_sli_instance) (sli_requests_total))",
        2.0,
        0.0,
    )
    .await;
    db.expect_near("sum(sli_requests_total)", 24.0, 0.0).await;
}

/// Topology 3 of docs/deploy.md with its documented files, verbatim: two agents
/// (`deploy/examples/topology-3-agent-otel-sli.yaml`) forward to a Collector routing by
/// trace ID (`topology-3-collector-static.yaml`) in front of two gateways
/// (`deploy/kubernetes/overlays/gateway/config.yaml`), which remote-write to Prometheus.
/// Every request is counted once in the fleet: by exactly one gateway, and not by the
/// agents, whose own counts stay on their `/metrics` (scraping those too would count every
/// request twice, as the docs say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_topology_counts_every_request_once() {
    let Some(bin) = collector::binary() else {
        return;
    };
    if !tsdb::prometheus_available() {
        return;
    }
    let scratch = Scratch::new("gateways");
    let rules = rules_file(&scratch, &agent_config(&scratch, "rules-input.yaml", None));
    let prom = Prometheus::start(
        "fleet-gateways",
        tsdb::PromOptions {
            native_histograms: false,
            rules: Some(rules),
            evaluation_interval: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let gateway_config = collector::repo("deploy/kubernetes/overlays/gateway/config.yaml");
    let mut gateways: Vec<Agent> = ["otel-sli-gateway-0", "otel-sli-gateway-1"]
        .into_iter()
        .map(|pod| {
            Agent::start_with_env(
                &gateway_config,
                vec![
                    ("PROMETHEUS_REMOTE_WRITE_URL", prom.write_url()),
                    ("MY_POD_NAME", pod.to_string()),
                    (
                        "OTEL_SLI_STORAGE",
                        scratch.0.join(pod).display().to_string(),
                    ),
                ],
            )
        })
        .collect();
    let router = common::free_addr();
    let _collector = Collector::start(
        &bin,
        &collector::repo("deploy/examples/topology-3-collector-static.yaml"),
        &[
            ("COLLECTOR_GRPC_ENDPOINT", router.clone()),
            ("GATEWAY_1", gateways[0].grpc.clone()),
            ("GATEWAY_2", gateways[1].grpc.clone()),
        ],
    );
    let agent_config = collector::repo("deploy/examples/topology-3-agent-otel-sli.yaml");
    let agents: Vec<Agent> = ["node-a", "node-b"]
        .into_iter()
        .map(|node| {
            Agent::start_with_env(
                &agent_config,
                vec![
                    ("ROUTER_OTLP_ENDPOINT", format!("http://{router}")),
                    (
                        "OTEL_SLI_STORAGE",
                        scratch.0.join(node).display().to_string(),
                    ),
                ],
            )
        })
        .collect();

    let shares = [(120, 3), (80, 1)];
    for (a, (n, bad)) in agents.iter().zip(shares) {
        a.send(n, bad).await;
        a.counted(n as f64).await;
    }
    // Each request reaches exactly one gateway.
    let series = format!("sli_requests_total{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
    let end = Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let counts: Vec<f64> = gateways
            .iter()
            .map(|g| {
                common::http_get_text(&g.admin, "/metrics")
                    .and_then(|m| common::sample(&m, &series))
                    .unwrap_or(0.0)
            })
            .collect();
        if counts.iter().sum::<f64>() >= 200.0 {
            break counts;
        }
        assert!(Instant::now() < end, "gateways counted {counts:?} of 200");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counts.iter().sum::<f64>(), 200.0, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c > 0.0),
        "both gateways have a share: {counts:?}"
    );
    // The gateways' remote write (every 15 s by default) delivers the final counts on
    // SIGTERM at the latest.
    for g in &mut gateways {
        g.terminate().await;
    }
    let db = Db::Prom(&prom);
    let sel = format!("{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\"}}");
    db.expect_near(&format!("sum(sli_requests_total{sel})"), 200.0, 0.0)
        .await;
    db.expect_near(&format!("sum(sli_errors_total{sel})"), 4.0, 0.0)
        .await;
    let instances = prom
        .query_vector(&format!(
            "count by (otel_sli_instance) (sli_requests_total{sel})"
        ))
        .await;
    let mut names: Vec<String> = instances
        .iter()
        .filter_map(|(l, _)| l.get("otel_sli_instance").cloned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["otel-sli-gateway-0", "otel-sli-gateway-1"],
        "only the gateways write"
    );
    // The fleet SLO's recorded error ratio: each gateway's errors and requests share
    // timestamps, so its own ratio is exact, and the fleet's is a weighted mean of them.
    let mut own = Vec::new();
    for (g, n) in gateways.iter().zip(&counts) {
        let pod = g
            .env
            .iter()
            .find(|(k, _)| *k == "MY_POD_NAME")
            .map_or("", |(_, v)| v);
        let q = format!(
            "sum(sli_errors_total{{service=\"{SERVICE}\",feature=\"POST {ROUTE}\",otel_sli_instance=\"{pod}\"}})"
        );
        own.push(db.query(&q).await.expect("gateway errors") / n);
    }
    let (lo, hi) = (own[0].min(own[1]), own[0].max(own[1]));
    let ratio = db
        .expect_near(
            &format!("slo:sli_error:ratio_rate5m{{slo=\"{SLO}\"}}"),
            (lo + hi) / 2.0,
            (hi - lo) / 2.0 + 1e-12,
        )
        .await;
    eprintln!("gateways counted {counts:?}; fleet error ratio over 5m {ratio} (truth 0.02)");
}
