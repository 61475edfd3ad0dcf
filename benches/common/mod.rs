//! Helpers shared by the benchmarks: pre-encoded synthetic requests and small utilities.
//!
//! Each bench target compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod baseline;
pub mod collector;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;

/// Start time of the generated spans (any fixed time works; the scanner does not care).
pub const START_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;

/// One pre-encoded `ExportTraceServiceRequest`.
pub struct Encoded {
    /// The protobuf bytes.
    pub body: Vec<u8>,
    /// Spans in the request.
    pub spans: usize,
    /// Entry (SERVER) spans in the request.
    pub entries: u64,
}

/// Spans in a decoded request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// `count` distinct requests of the default workload with `spans` spans each
/// (`spans` should be a multiple of 4: one SERVER span plus 3 children per trace).
pub fn encoded_requests(count: usize, spans: usize, seed: u64) -> Vec<Encoded> {
    let w = Workload {
        seed,
        ..Workload::default()
    };
    let mut rng = Rng::new(seed);
    (0..count as u64)
        .map(|i| {
            let (req, entries, _) =
                traces_request(&w, &mut rng, spans, START_UNIX_NANOS + i * 1_000_000_000);
            Encoded {
                spans: span_count(&req),
                body: req.encode_to_vec(),
                entries,
            }
        })
        .collect()
}

/// True when the binary was started by `cargo bench` (which passes `--bench`); `cargo test`
/// runs bench targets without it, and the plain-`main` benches then do a quick smoke run.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// An environment variable parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// Formats a large number with thousands separators.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The address servers under test listen on (`E2E_SERVER_IP`, default loopback).
pub fn server_ip() -> std::net::IpAddr {
    env_or("E2E_SERVER_IP", "127.0.0.1".to_string())
        .parse()
        .expect("E2E_SERVER_IP is an IP address")
}

/// A command running `bin` under `E2E_SERVER_PREFIX`, when set: a command the server is
/// started under, e.g. `ip netns exec osli taskset -c 0` (see benches/netns.sh).
pub fn server_command(bin: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let prefix: Vec<String> = env_or("E2E_SERVER_PREFIX", String::new())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

/// A minimal HTTP/1.0 GET (so the answer is never chunked): status code and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::other(format!("malformed HTTP response to GET {path}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(std::io::Error::other("chunked responses are not supported"));
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// Sum of all samples of a Prometheus metric family whose labels contain `filter`.
pub fn metric_sum(text: &str, name: &str, filter: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(filter) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Offsets of every span's 16-byte trace id in an encoded request.
pub fn trace_id_offsets(body: &[u8]) -> Vec<usize> {
    use otel_sli::otlp::scan::{scan_traces, ResourceView, ScanError, SpanSink, SpanView};
    struct Offsets<'b>(&'b [u8], Vec<usize>);
    impl<'a> SpanSink<'a> for Offsets<'_> {
        fn resource(&mut self, _: ResourceView<'a>) {}
        fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
            if s.trace_id.len() == 16 {
                self.1
                    .push(s.trace_id.as_ptr() as usize - self.0.as_ptr() as usize);
            }
            Ok(())
        }
    }
    let mut o = Offsets(body, Vec::new());
    scan_traces(body, &mut o).expect("the generated request scans");
    o.1
}
