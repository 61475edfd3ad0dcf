//! The real OpenTelemetry Collector in tests: the distribution of `tests/collector/`, built by
//! `tests/collector/build.sh` into `target/otelcol-test/`. A test starts it on a configuration
//! file used verbatim (the `deploy/examples/` files take their addresses from the
//! environment) plus an overlay of its own that gives the Collector's self-telemetry a port
//! of its own; the Collector's log is kept for assertions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test Collector binary, built first when it is missing (once per test process).
/// `None` (with "skipped" printed) when it cannot be had; a failure under
/// `OTEL_SLI_REQUIRE_TOOLS=1`, where `.ci/run` builds it.
pub fn binary() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let bin = root.join("target/otelcol-test/otelcol-test");
            // build.sh returns at once when the binary matches its sources.
            let built = Command::new(root.join("tests/collector/build.sh"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (built && bin.is_file()).then_some(bin)
        })
        .clone();
    if found.is_none() {
        assert!(
            std::env::var("OTEL_SLI_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "the test Collector (tests/collector/build.sh) is missing and OTEL_SLI_REQUIRE_TOOLS=1"
        );
        eprintln!(
            "skipped: the test Collector could not be built (needs go; tests/collector/build.sh)"
        );
    }
    found
}

/// A path under the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A fresh directory for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "otel-sli-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A running Collector.
pub struct Collector {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// The Collector's own metrics (Prometheus text) are served at `http://{telemetry}/metrics`
    /// (a new port at each start).
    pub telemetry: String,
    starts: u32,
}

impl Collector {
    /// Starts the Collector on `config` with `env` set, and waits until it is ready.
    pub fn start(bin: &Path, config: &Path, env: &[(&str, String)]) -> Self {
        let dir = scratch("collector");
        let overlay = Self::overlay_path(&dir);
        let mut c = Self {
            child: None,
            bin: bin.to_path_buf(),
            args: vec![
                "--config".into(),
                format!("file:{}", config.display()),
                "--config".into(),
                format!("file:{}", overlay.display()),
            ],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            dir,
            telemetry: String::new(),
            starts: 0,
        };
        c.spawn();
        c
    }

    /// The configuration overlay that gives the self-telemetry its port, rewritten at
    /// each start.
    fn overlay_path(dir: &Path) -> PathBuf {
        dir.join("test-overlay.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("collector.log")
    }

    /// Starts it and waits until it is ready. A port freed by the run before can be taken
    /// for a moment by another socket of the machine (an outgoing connection's local
    /// port), so the Collector's self-telemetry gets a fresh port at every start, and a
    /// start that failed only because an address was in use (its receivers keep theirs
    /// across a restart) is tried again.
    fn spawn(&mut self) {
        const TRIES: u32 = 20;
        for attempt in 1..=TRIES {
            let before = self.log().len();
            match self.try_spawn() {
                Ok(()) => return,
                Err(status) => {
                    let log = self.log();
                    let this_run = log.get(before..).unwrap_or_default();
                    if !this_run.contains("address already in use") || attempt == TRIES {
                        panic!("the Collector exited ({status}):\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// One start: `Err` with its exit status if it exited before it was ready.
    fn try_spawn(&mut self) -> Result<(), std::process::ExitStatus> {
        self.telemetry = super::free_addr();
        let (host, port) = self.telemetry.split_once(':').expect("host:port");
        std::fs::write(
            Self::overlay_path(&self.dir),
            format!(
                "service:\n  telemetry:\n    metrics:\n      level: detailed\n      readers:\n        \
                 - pull: {{exporter: {{prometheus: {{host: {host}, port: {port}}}}}}}\n"
            ),
        )
        .expect("overlay");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the Collector starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.log().matches("Everything is ready").count();
            if ready > self.starts as usize {
                self.starts += 1;
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "the Collector is not ready after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the Collector has logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops it with SIGTERM (it drains what it holds, as on a rolling update) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets (or replaces) `key` in the environment of the next start.
    pub fn set_env(&mut self, key: &str, value: String) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value));
    }

    /// Starts it again with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The Collector's own metrics, Prometheus text.
    pub fn self_metrics(&self) -> String {
        super::http_get_text(&self.telemetry, "/metrics").unwrap_or_default()
    }

    /// The sum of every sample of `family` whose labels contain all of `labels`
    /// (`key="value"` pieces).
    pub fn self_metric(&self, family: &str, labels: &[&str]) -> f64 {
        sum_samples(&self.self_metrics(), family, labels)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The sum of the samples of `family` (exactly that name) whose label set contains every one
/// of `labels`.
pub fn sum_samples(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r),
                None => (series, ""),
            };
            (name == family && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
