//! Real time-series databases for integration tests: Prometheus, single-node
//! VictoriaMetrics and vmalert, each started on a free loopback port with a scratch
//! directory, waited for until ready, and killed and cleaned up on drop.
//!
//! The binaries come from the Debian packages `prometheus` and `victoria-metrics` (the latter
//! ships both `victoria-metrics` and `vmalert`); `.ci/run` installs them. A test checks
//! [`prometheus_available`] or [`victoria_metrics_available`] first and returns when it says
//! no (it has then printed `skipped: … not installed`; under `OTEL_SLI_REQUIRE_TOOLS=1` it
//! fails instead, see [`super::tool_available`]).
//!
//! Each process writes its stdout and stderr to `<name>.log` in its scratch directory. A
//! start that fails, a wait that times out, and a test that panics while one of these is
//! alive all print the end of that log, so a failed CI run says why.
//!
//! Freshly written samples: VictoriaMetrics hides samples newer than
//! `-search.latencyOffset` (30 s by default) and keeps new rows in memory for a few seconds
//! before searches see them. [`VictoriaMetrics::start`] turns the offset off and the harness
//! calls `/internal/force_flush` before every query, so a sample is queryable about 1 s
//! after its timestamp (VictoriaMetrics' own floor), by the harness and by vmalert alike.

use otel_sli::export::remote_write::{encode, prom};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The labels of one series or alert, `__name__` included when the API returns it.
pub type Labels = BTreeMap<String, String>;

/// How long a process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Prometheus::expect`] and its kin wait for a value.
const EXPECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of a process's log a panic message quotes.
const LOG_TAIL_LINES: usize = 40;

/// True when the `prometheus` binary runs (see [`super::tool_available`] for the skip rule).
pub fn prometheus_available() -> bool {
    super::tool_available("prometheus", &["--version"])
}

/// True when both `victoria-metrics` and `vmalert` run (one Debian package,
/// `victoria-metrics`; see [`super::tool_available`] for the skip rule).
pub fn victoria_metrics_available() -> bool {
    super::tool_available("victoria-metrics", &["-version"])
        && super::tool_available("vmalert", &["-version"])
}

/// Milliseconds since the Unix epoch, now: a remote-write sample timestamp.
pub fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("timestamp fits i64")
}

/// One float series with one sample, `name{labels} value @timestamp_ms`, its labels sorted
/// by name as remote write asks.
pub fn float_series(
    name: &str,
    labels: &[(&str, &str)],
    value: f64,
    timestamp_ms: i64,
) -> prom::TimeSeries {
    let mut all: Vec<prom::Label> = std::iter::once(("__name__", name))
        .chain(labels.iter().copied())
        .map(|(n, v)| prom::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    prom::TimeSeries {
        labels: all,
        samples: vec![prom::Sample {
            value,
            timestamp: timestamp_ms,
        }],
        ..Default::default()
    }
}

/// POSTs `series` as one remote-write 1.0 request (snappy protobuf) to `url`; panics unless
/// the answer is 2xx.
pub async fn remote_write(url: &str, series: Vec<prom::TimeSeries>) {
    use prost::Message;
    let body = encode::compress(
        &prom::WriteRequest {
            timeseries: series,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let r = reqwest::Client::new()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("remote write to {url}: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "remote write to {url}: {status}: {text}"
    );
}

/// A file removed on drop (a rules file for a test, say).
pub struct TempFile {
    /// Where it is.
    pub path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a fresh file named after `name` in the temp directory.
    pub fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "otel-sli-{}-{}-{name}",
            std::process::id(),
            SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("temp file");
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Makes scratch names unique within a test process, whatever tags tests pick.
static SCRATCH_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory `otel-sli-<kind>-<tag>-<pid>-<n>` in the temp directory.
fn scratch(kind: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "otel-sli-{kind}-{tag}-{}-{}",
        std::process::id(),
        SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `d` as a duration Go and Prometheus both parse.
fn go_duration(d: Duration) -> String {
    assert!(!d.is_zero(), "an evaluation interval must be positive");
    format!("{}ms", d.as_millis())
}

/// `path` made absolute (the processes run with other working directories in mind).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).expect("absolute path")
}

/// One child process with its scratch directory and log; killed, reaped and its directory
/// removed on drop.
struct Process {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    /// Set once a panic message has quoted the log, so that drop does not print it again.
    quoted: AtomicBool,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr to `<dir>/<name>.log`.
    fn spawn(name: &'static str, mut cmd: Command, dir: PathBuf) -> Self {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Self {
            name,
            child,
            dir,
            quoted: AtomicBool::new(false),
        }
    }

    /// [`Process::read_log_tail`], for a panic message (drop then does not print it again).
    fn log_tail(&self) -> String {
        self.quoted.store(true, Ordering::Relaxed);
        self.read_log_tail()
    }

    /// The last [`LOG_TAIL_LINES`] lines of the log.
    fn read_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", self.name)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "--- last lines of {} ({}):\n{}",
            self.name,
            self.dir.display(),
            lines[from..].join("\n")
        )
    }

    /// Waits up to [`READY_TIMEOUT`] until `GET url` answers 2xx; panics with the log's tail
    /// when the process exits first or the time is up.
    async fn wait_ready(&mut self, url: &str) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let start = Instant::now();
        loop {
            let ready = client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before {url} was ready\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "{} not ready ({url}) in {READY_TIMEOUT:?}\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && !self.quoted.load(Ordering::Relaxed) {
            eprintln!("{}", self.read_log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET url` as JSON; `None` when unreachable or not JSON.
async fn get_json(url: &str) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The float samples of the instant query `q` on the Prometheus HTTP API at `base`
/// (`http://host:port`): empty while unreachable; panics on a query error. A scalar result
/// is one sample without labels; native-histogram samples are left out.
async fn query_vector_at(base: &str, q: &str) -> Vec<(Labels, f64)> {
    let Some(r) = get_json(&format!("{base}/api/v1/query?query={}", urlencode(q))).await else {
        return Vec::new();
    };
    assert_eq!(r["status"], "success", "{q}: {r}");
    let value = |v: &Value| v[1].as_str().and_then(|s| s.parse::<f64>().ok());
    let result = &r["data"]["result"];
    if r["data"]["resultType"] == "scalar" {
        return value(result)
            .map(|v| (Labels::new(), v))
            .into_iter()
            .collect();
    }
    result
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((labels(&s["metric"]), value(&s["value"])?)))
        .collect()
}

/// A JSON object of strings as [`Labels`].
fn labels(v: &Value) -> Labels {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Polls `read` until it returns `want` (within 1e-9) for at most [`EXPECT_TIMEOUT`].
async fn expect_value<F, Fut>(what: &str, q: &str, want: f64, log: impl Fn() -> String, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<f64>>,
{
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < EXPECT_TIMEOUT {
        last = read().await;
        if last.is_some_and(|v| (v - want).abs() < 1e-9) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{what}: {q}: got {last:?}, want {want} (waited {EXPECT_TIMEOUT:?})\n{}",
        log()
    );
}

/// The firing alerts of `/api/v1/alerts` at `base` (Prometheus and vmalert answer alike):
/// `(alertname, labels)`, the labels including `alertname`.
async fn firing_alerts_at(base: &str) -> Vec<(String, Labels)> {
    let Some(r) = get_json(&format!("{base}/api/v1/alerts")).await else {
        return Vec::new();
    };
    // vmalert answers `"alerts": null` when there are none.
    r["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let l = labels(&a["labels"]);
            (l.get("alertname").cloned().unwrap_or_default(), l)
        })
        .collect()
}

/// Waits up to [`EXPECT_TIMEOUT`] until `alertname` fires at `base`; its labels.
async fn expect_firing_at(
    what: &str,
    base: &str,
    alertname: &str,
    log: impl Fn() -> String,
) -> Labels {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < EXPECT_TIMEOUT {
        last = firing_alerts_at(base).await;
        if let Some((_, l)) = last.iter().find(|(n, _)| n == alertname) {
            return l.clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rules = rules_health_at(base).await;
    panic!(
        "{what}: {alertname} not firing in {EXPECT_TIMEOUT:?}; firing: {last:?}; rules: {rules:#?}\n{}",
        log()
    );
}

/// How one loaded rule fared at its last evaluation (`/api/v1/rules`).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleHealth {
    /// The rule group's name.
    pub group: String,
    /// The recorded series or the alert's name.
    pub name: String,
    /// `recording` or `alerting`.
    pub kind: String,
    /// `ok`, `err`, or (Prometheus, before the first evaluation) `unknown`.
    pub health: String,
    /// The last evaluation's error, empty when it went well.
    pub last_error: String,
    /// Whether the rule has been evaluated at least once.
    pub evaluated: bool,
}

/// Every rule of `/api/v1/rules` at `base` (Prometheus and vmalert answer alike).
async fn rules_health_at(base: &str) -> Vec<RuleHealth> {
    let Some(r) = get_json(&format!("{base}/api/v1/rules")).await else {
        return Vec::new();
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    r["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| {
            g["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |rule| RuleHealth {
                    group: s(&g["name"]),
                    name: s(&rule["name"]),
                    kind: s(&rule["type"]),
                    health: s(&rule["health"]),
                    last_error: s(&rule["lastError"]),
                    // Both print Go's zero time before the first evaluation.
                    evaluated: rule["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001-")),
                })
        })
        .collect()
}

/// Waits up to [`EXPECT_TIMEOUT`] until every rule at `base` has been evaluated, then
/// panics unless all of them are healthy; the rules.
async fn expect_rules_healthy_at(
    what: &str,
    base: &str,
    log: impl Fn() -> String,
) -> Vec<RuleHealth> {
    let start = Instant::now();
    loop {
        let rules = rules_health_at(base).await;
        if !rules.is_empty() && rules.iter().all(|r| r.evaluated) {
            let bad: Vec<&RuleHealth> = rules
                .iter()
                .filter(|r| r.health != "ok" || !r.last_error.is_empty())
                .collect();
            assert!(bad.is_empty(), "{what}: rules failing: {bad:#?}");
            return rules;
        }
        assert!(
            start.elapsed() < EXPECT_TIMEOUT,
            "{what}: rules not all evaluated in {EXPECT_TIMEOUT:?}: {rules:#?}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How [`Prometheus::start`] configures Prometheus.
#[derive(Clone, Debug)]
pub struct PromOptions {
    /// `--enable-feature=native-histograms`.
    pub native_histograms: bool,
    /// A rules file, loaded through `rule_files`.
    pub rules: Option<PathBuf>,
    /// The global `evaluation_interval` of the rules.
    pub evaluation_interval: Duration,
    /// Targets (`host:port`) scraped every second at `/metrics`, job `otel-sli`.
    pub scrape: Vec<String>,
    /// `--enable-feature=exemplar-storage`.
    pub exemplar_storage: bool,
}

impl Default for PromOptions {
    /// Classic histograms, no rules, rules evaluated every second.
    fn default() -> Self {
        Self {
            native_histograms: false,
            rules: None,
            evaluation_interval: Duration::from_secs(1),
            scrape: Vec::new(),
            exemplar_storage: false,
        }
    }
}

/// A Prometheus with the remote-write receiver on, its data in a scratch directory; killed
/// and cleaned up on drop.
pub struct Prometheus {
    process: Process,
    /// `127.0.0.1:port` of its HTTP API.
    pub addr: String,
    /// Its scratch directory (configuration, data, `prometheus.log`), removed on drop.
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port and waits until `/-/ready`.
    pub async fn start(tag: &str, opts: PromOptions) -> Self {
        Self::start_on(tag, opts, super::free_addr()).await
    }

    /// Like [`Prometheus::start`], listening on `addr`.
    pub async fn start_on(tag: &str, opts: PromOptions, addr: String) -> Self {
        let dir = scratch("prometheus", tag);
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let mut config = format!(
            "global:\n  scrape_interval: 15s\n  evaluation_interval: {}\n",
            go_duration(opts.evaluation_interval)
        );
        if let Some(rules) = &opts.rules {
            // A JSON string is a YAML double-quoted scalar.
            let path = serde_json::to_string(&absolute(rules)).expect("path");
            config.push_str(&format!("rule_files:\n  - {path}\n"));
        }
        if !opts.scrape.is_empty() {
            let targets = serde_json::to_string(&opts.scrape).expect("targets");
            config.push_str(&format!(
                "scrape_configs:\n  - job_name: otel-sli\n    scrape_interval: 1s\n    static_configs: [{{ targets: {targets} }}]\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("config");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver");
        let mut features = Vec::new();
        if opts.native_histograms {
            features.push("native-histograms");
        }
        if opts.exemplar_storage {
            features.push("exemplar-storage");
        }
        if !features.is_empty() {
            cmd.arg(format!("--enable-feature={}", features.join(",")));
        }
        let mut process = Process::spawn("prometheus", cmd, dir.clone());
        process.wait_ready(&format!("http://{addr}/-/ready")).await;
        Self { process, addr, dir }
    }

    /// `http://addr`, the base of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The remote-write receiver, `http://addr/api/v1/write`.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Remote-writes `series` ([`remote_write`]).
    pub async fn write(&self, series: Vec<prom::TimeSeries>) {
        remote_write(&self.write_url(), series).await;
    }

    /// The value of the first sample of the instant query `q`, `None` while it returns none.
    pub async fn query(&self, q: &str) -> Option<f64> {
        self.query_vector(q).await.first().map(|(_, v)| *v)
    }

    /// Every float sample of the instant query `q`, with its labels.
    pub async fn query_vector(&self, q: &str) -> Vec<(Labels, f64)> {
        query_vector_at(&self.url(), q).await
    }

    /// Waits until `q` returns `want` (within 1e-9), for at most 30 s.
    pub async fn expect(&self, q: &str, want: f64) {
        expect_value(
            "prometheus",
            q,
            want,
            || self.process.log_tail(),
            || self.query(q),
        )
        .await;
    }

    /// The firing alerts, `(alertname, labels)`.
    pub async fn firing_alerts(&self) -> Vec<(String, Labels)> {
        firing_alerts_at(&self.url()).await
    }

    /// Waits up to 30 s until `alertname` fires; its labels.
    pub async fn expect_firing(&self, alertname: &str) -> Labels {
        expect_firing_at("prometheus", &self.url(), alertname, || {
            self.process.log_tail()
        })
        .await
    }

    /// Every loaded rule and how its last evaluation went.
    pub async fn rules_health(&self) -> Vec<RuleHealth> {
        rules_health_at(&self.url()).await
    }

    /// Waits up to 30 s until every loaded rule has been evaluated (there must be some),
    /// then asserts that all are healthy; the rules.
    pub async fn expect_rules_healthy(&self) -> Vec<RuleHealth> {
        expect_rules_healthy_at("prometheus", &self.url(), || self.process.log_tail()).await
    }
}

/// A single-node VictoriaMetrics, its storage in a scratch directory; killed and cleaned up
/// on drop.
///
/// Flags, beyond the address and storage path:
/// - `-search.latencyOffset=0s`: by default queries do not see samples younger than 30 s
///   (a query at "now" is moved 30 s back), which vmalert would inherit;
/// - `-search.disableCache`: no response cache, so a query never answers from results
///   computed before later writes (the cache also keeps out of its reach only the last
///   `-search.cacheTimestampOffset`, 5 min);
/// - `-dedup.minScrapeInterval=0s` (the default, stated): no deduplication, every written
///   sample is kept. With it on, samples of a series closer than the interval collapse to
///   the last one, which changes `increase()` over short windows;
/// - `-retentionPeriod=100y`: samples older than the retention (1 month by default) are
///   dropped on write, which would silently lose samples stamped by a fake clock;
/// - `-loggerLevel=WARN`: the log quoted on failure holds what went wrong (dropped rows,
///   failed queries), not the start-up chatter.
///
/// Staleness is left alone: `-search.maxStalenessInterval` is derived from the interval
/// between a series' samples. Note that VictoriaMetrics' `increase()` and `rate()` do not
/// extrapolate to the window's edges as Prometheus' do: they use the last sample before the
/// window, so results agree with Prometheus' only when one exists and samples sit on the
/// edges. Pass other flags through [`VictoriaMetrics::start_with`].
pub struct VictoriaMetrics {
    process: Process,
    /// `127.0.0.1:port` of its HTTP API.
    pub addr: String,
    /// Its scratch directory (`data/`, `victoria-metrics.log`), removed on drop.
    pub dir: PathBuf,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics on a free loopback port and waits until `/health`.
    pub async fn start(tag: &str) -> Self {
        Self::start_with(tag, &[]).await
    }

    /// Like [`VictoriaMetrics::start`], with `extra` flags after the harness's (a later
    /// flag wins).
    pub async fn start_with(tag: &str, extra: &[&str]) -> Self {
        let dir = scratch("victoria-metrics", tag);
        let addr = super::free_addr();
        let mut cmd = Command::new("victoria-metrics");
        cmd.arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .args([
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-dedup.minScrapeInterval=0s",
                "-retentionPeriod=100y",
                "-loggerLevel=WARN",
            ])
            .args(extra);
        let mut process = Process::spawn("victoria-metrics", cmd, dir.clone());
        process.wait_ready(&format!("http://{addr}/health")).await;
        Self { process, addr, dir }
    }

    /// `http://addr`, the base of its HTTP API (a `-datasource.url` for vmalert).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Prometheus remote-write endpoint, `http://addr/api/v1/write`.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Makes every sample received so far searchable now (`/internal/force_flush`); without
    /// it new rows and series take up to ~10 s to show.
    pub async fn flush(&self) {
        let _ = reqwest::get(format!("{}/internal/force_flush", self.url())).await;
    }

    /// Remote-writes `series` ([`remote_write`]) and flushes them.
    pub async fn write(&self, series: Vec<prom::TimeSeries>) {
        remote_write(&self.write_url(), series).await;
        self.flush().await;
    }

    /// The value of the first sample of the instant query `q` (after a flush), `None` while
    /// it returns none.
    pub async fn query(&self, q: &str) -> Option<f64> {
        self.query_vector(q).await.first().map(|(_, v)| *v)
    }

    /// Every float sample of the instant query `q` (after a flush), with its labels.
    pub async fn query_vector(&self, q: &str) -> Vec<(Labels, f64)> {
        self.flush().await;
        query_vector_at(&self.url(), q).await
    }

    /// Waits until `q` returns `want` (within 1e-9), for at most 30 s.
    pub async fn expect(&self, q: &str, want: f64) {
        expect_value(
            "victoria-metrics",
            q,
            want,
            || self.process.log_tail(),
            || self.query(q),
        )
        .await;
    }
}

/// vmalert evaluating a rules file against a [`VictoriaMetrics`] (`-datasource.url`),
/// writing recording-rule results and alert state (`ALERTS`, `ALERTS_FOR_STATE`) back to it
/// (`-remoteWrite.url`); killed and cleaned up on drop.
///
/// - vmalert 1.79 refuses to start alerting rules without a notifier and has no
///   `-notifier.blackhole` (added later), so the harness runs a loopback listener that
///   answers 200 to everything and counts the notifications ([`VmAlert::notifications`]);
/// - `-remoteWrite.flushInterval=200ms` (5 s by default) gets recorded series to storage
///   quickly;
/// - `-loggerLevel=WARN` keeps its log to what went wrong;
/// - `-remoteRead.url` (alert state restored at start) is left out: every vmalert the
///   harness starts is new.
///
/// `-datasource.queryTimeAlignment` stays on: queries run at the evaluation time rounded
/// down to the interval, so with a long interval a rule sees samples up to an interval late.
pub struct VmAlert {
    process: Process,
    /// `127.0.0.1:port` of its HTTP API.
    pub addr: String,
    /// Its scratch directory (`vmalert.log`), removed on drop.
    pub dir: PathBuf,
    notifier: NotifierSink,
}

impl VmAlert {
    /// Starts vmalert on `rules` against `vm`, evaluating every `evaluation_interval`, and
    /// waits until `/health`.
    pub async fn start(
        tag: &str,
        rules: &Path,
        vm: &VictoriaMetrics,
        evaluation_interval: Duration,
    ) -> Self {
        let dir = scratch("vmalert", tag);
        let addr = super::free_addr();
        let notifier = NotifierSink::start();
        let mut cmd = Command::new("vmalert");
        cmd.arg(format!("-rule={}", absolute(rules).display()))
            .arg(format!("-datasource.url={}", vm.url()))
            .arg(format!("-remoteWrite.url={}", vm.url()))
            .arg("-remoteWrite.flushInterval=200ms")
            .arg("-loggerLevel=WARN")
            .arg(format!("-notifier.url=http://{}", notifier.addr))
            .arg(format!("-httpListenAddr={addr}"))
            .arg(format!(
                "-evaluationInterval={}",
                go_duration(evaluation_interval)
            ));
        let mut process = Process::spawn("vmalert", cmd, dir.clone());
        process.wait_ready(&format!("http://{addr}/health")).await;
        Self {
            process,
            addr,
            dir,
            notifier,
        }
    }

    /// `http://addr`, the base of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The firing alerts, `(alertname, labels)`; vmalert adds `alertgroup` (the group's name).
    pub async fn firing_alerts(&self) -> Vec<(String, Labels)> {
        firing_alerts_at(&self.url()).await
    }

    /// Waits up to 30 s until `alertname` fires; its labels.
    pub async fn expect_firing(&self, alertname: &str) -> Labels {
        expect_firing_at("vmalert", &self.url(), alertname, || {
            self.process.log_tail()
        })
        .await
    }

    /// Every loaded rule and how its last evaluation went.
    pub async fn rules_health(&self) -> Vec<RuleHealth> {
        rules_health_at(&self.url()).await
    }

    /// Waits up to 30 s until every loaded rule has been evaluated (there must be some),
    /// then asserts that all are healthy; the rules.
    pub async fn expect_rules_healthy(&self) -> Vec<RuleHealth> {
        expect_rules_healthy_at("vmalert", &self.url(), || self.process.log_tail()).await
    }

    /// How many notification requests vmalert has sent so far.
    pub fn notifications(&self) -> usize {
        self.notifier.received.load(Ordering::Relaxed)
    }
}

/// A loopback HTTP listener answering `200 OK` to every request (vmalert's notifier); it
/// counts them. Stopped on drop.
struct NotifierSink {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifierSink {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind notifier sink");
        let addr = listener.local_addr().expect("notifier sink addr");
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let count = Arc::clone(&count);
                    std::thread::spawn(move || answer_ok(conn, &count));
                }
            }
        });
        Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NotifierSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop up to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the requests of one connection with `200 OK`, counting them, until the peer
/// closes it (or stays silent for 5 s).
fn answer_ok(mut conn: TcpStream, count: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // One request: the head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        count.fetch_add(1, Ordering::Relaxed);
        if conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}
