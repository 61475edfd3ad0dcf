//! The OpenTelemetry Collector as the end-to-end benchmark's peer (`E2E_PEER`): the test
//! distribution of `tests/collector/` (built by `tests/collector/build.sh`), on one of the
//! configurations in `benches/collector/`, started like `otel-sli` (under
//! `E2E_SERVER_PREFIX`, on `E2E_SERVER_IP`) so its CPU is measured the same way.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Collector; killed when dropped.
pub struct Peer {
    pub child: Child,
    pub grpc: SocketAddr,
    /// Its own metrics (`otelcol_*`).
    telemetry: SocketAddr,
    /// The spanmetrics connector's series (`spanmetrics` only).
    prometheus: SocketAddr,
    kind: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts the Collector as `kind` (`spanmetrics` or `passthrough`), forwarding (for
/// `passthrough`) to the gRPC `sink` with `compression`.
pub fn start(kind: &str, sink: SocketAddr, compression: &str) -> Peer {
    assert!(
        matches!(kind, "spanmetrics" | "passthrough"),
        "E2E_PEER={kind:?}: use spanmetrics or passthrough"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("tests/collector/build.sh"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let bin = root.join("target/otelcol-test/otelcol-test");
    assert!(
        built && bin.is_file(),
        "E2E_PEER needs the test Collector (tests/collector/build.sh, needs go)"
    );
    let ip = super::server_ip();
    let grpc = SocketAddr::new(ip, free_port());
    // On the server's address too: reachable from here when it runs in a namespace.
    let telemetry = SocketAddr::new(ip, free_port());
    let prometheus = SocketAddr::new(ip, free_port());
    let mut cmd = super::server_command(&bin);
    let config = root.join(format!("benches/collector/{kind}.yaml"));
    let child = cmd
        .arg("--config")
        .arg(format!("file:{}", config.display()))
        .env("PEER_GRPC_ENDPOINT", grpc.to_string())
        .env("PEER_TELEMETRY_HOST", telemetry.ip().to_string())
        .env("PEER_TELEMETRY_PORT", telemetry.port().to_string())
        .env("PEER_PROMETHEUS_ENDPOINT", prometheus.to_string())
        .env("PEER_SINK", sink.to_string())
        .env("PEER_COMPRESSION", compression)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the Collector");
    let mut peer = Peer {
        child,
        grpc,
        telemetry,
        prometheus,
        kind: kind.to_string(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(grpc).is_err() {
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("the Collector exited during start-up: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the Collector is not ready after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    peer
}

/// The sum of the samples of `family` in the Prometheus text at `addr` (0 when there is
/// none, or no answer).
fn scrape_sum(addr: SocketAddr, family: &str) -> f64 {
    super::http_get(addr, "/metrics")
        .ok()
        .and_then(|(_, text)| super::metric_sum(&text, family, ""))
        .unwrap_or(0.0)
}

/// That the Collector did the whole job for the `sent` spans of its answered requests:
/// spanmetrics counted every one as a call, or the exporter sent every one to the sink
/// (waiting up to 30 s for its queue). Panics on a mismatch; returns what was checked.
pub fn check(peer: &Peer, sent: u64) -> String {
    let (what, family, addr) = match peer.kind.as_str() {
        "spanmetrics" => (
            "calls counted by spanmetrics",
            "traces_span_metrics_calls_total",
            peer.prometheus,
        ),
        _ => (
            "spans the exporter sent to the sink",
            "otelcol_exporter_sent_spans",
            peer.telemetry,
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = scrape_sum(addr, family);
    while got < sent as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = scrape_sum(addr, family);
    }
    let accepted = scrape_sum(peer.telemetry, "otelcol_receiver_accepted_spans");
    assert!(
        got == sent as f64 && accepted == sent as f64,
        "MISMATCH: {what} {got}, accepted {accepted}, spans in answered requests {sent}"
    );
    format!("{what} {got} = accepted {accepted} = spans in answered requests {sent}: OK")
}
