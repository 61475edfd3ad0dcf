//! The binary as users run it: `validate`, and a run on embedded defaults with overridden
//! addresses that serves, reports ready, and exits cleanly on SIGTERM.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_otel-sli");

/// A minimal temporary file helper (no extra dependency).
mod tempfile_path {
    use std::path::PathBuf;
    pub struct TempPath(pub PathBuf);
    impl TempPath {
        pub fn new(text: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "otel-sli-cli-{}-{}.yaml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).expect("write config");
            Self(p)
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn validate_accepts_a_good_config() {
    let f = tempfile_path::TempPath::new(
        "sli:\n  dimensions: [service.version]\nlimits:\n  max_series: 500\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&f.0)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn validate_names_the_key_path_of_an_error() {
    for (text, path) in [
        (
            "sli:\n  latency:\n    significant_digits: 9\n",
            "sli.latency.significant_digits",
        ),
        (
            "receivers:\n  otlp_grpc:\n    endpont: 1.2.3.4:4317\n",
            "receivers.otlp_grpc",
        ),
        ("limits:\n  max_series: many\n", "limits.max_series"),
    ] {
        let f = tempfile_path::TempPath::new(text);
        let out = Command::new(BIN)
            .args(["validate", "--config"])
            .arg(&f.0)
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(path), "{text:?}: {err}");
    }
    let out = Command::new(BIN)
        .args(["validate", "--config", "/nonexistent/otel-sli.yaml"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn runs_on_defaults_and_stops_on_sigterm() {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .args(["--otlp-grpc", &format!("127.0.0.1:{}", free_port())])
        .args(["--otlp-http", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &admin])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready = loop {
        if let Some(r) = http_get(&admin, "/readyz") {
            break r;
        }
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = http_get(&admin, "/metrics").expect("metrics");
    assert!(metrics.contains("otel_sli_build_info{version="));
    // Every metric the README documents is exposed (with its # TYPE line).
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .filter(|n| {
            n.starts_with("sli_") || n.starts_with("otel_sli_") || n.starts_with("telemetry_")
        })
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for name in documented {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "README documents {name}, /metrics does not expose it"
        );
    }
    let pid = child.id().to_string();
    // SIGHUP is logged and ignored (reloading is not supported), not fatal.
    let hup = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "SIGHUP ended the process"
    );
    let ready = http_get(&admin, "/readyz").expect("still serving after SIGHUP");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(
        log.contains("configuration reload is not supported"),
        "{log}"
    );
}

#[test]
fn shipped_example_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/otel-sli.yaml");
    let out = Command::new(BIN)
        .args(["validate", "--config", dir])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's first example, run as a newcomer runs it (with `sh`, against the binary on
/// its defaults): its span is timed now, so it shows as the `cart` SLI and raises no
/// "invalid spans" gap (a fixed timestamp from the past, or a future one, would).
#[test]
fn the_readme_first_span_is_valid_and_shows_the_sli() {
    if !common::tool_available("curl", &["--version"]) {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let block = readme
        .split("Send it a span and read the SLI:\n\n```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README's first span example");
    let (grpc, http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let script = block
        .replace("localhost:4318", &http)
        .replace("localhost:9464", &admin);
    assert_ne!(script, block, "the example uses the default addresses");
    let mut child = Command::new(BIN)
        .args([
            "--otlp-grpc",
            &grpc,
            "--otlp-http",
            &http,
            "--admin",
            &admin,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&admin, "/readyz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh runs");
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    let gaps = http_get(&admin, "/api/v1/gaps").expect("gaps");
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{shown}");
    // What the example prints last: the SLI of the one span, 120 ms long.
    let json = shown
        .rfind("{\"window\"")
        .map(|i| &shown[i..])
        .unwrap_or_else(|| panic!("no SLI answer in {shown}"));
    let slis: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON");
    let cart = &slis["slis"][0];
    assert_eq!(cart["service"], "cart", "{slis}");
    assert_eq!(cart["feature"], "GET /cart");
    assert_eq!(cart["requests"], 1);
    assert_eq!(cart["errors"], 0);
    let p50 = cart["latency_seconds"]["p50"].as_f64().expect("p50");
    assert!((0.119..=0.122).contains(&p50), "120 ms span: p50 {p50}");
    assert_eq!(
        cart["data_quality_reasons"][0],
        "1 request in the window, fewer than completeness.min_events (10)"
    );
    assert!(
        !gaps.contains("invalid_spans"),
        "the example's span is valid: {gaps}"
    );
}
