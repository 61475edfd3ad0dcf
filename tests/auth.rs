//! Bearer-token authentication: the receivers (`receivers.auth`) and the admin API
//! (`admin.auth`) refuse requests without the token (HTTP 401 / gRPC `UNAUTHENTICATED`,
//! counted) and take them with it, from the OpenTelemetry SDK too; probes stay open; and
//! the tokens appear nowhere: not in `/metrics`, the configuration's `Debug` output, error
//! messages or the service's log at trace level.

mod common;

use bytes::Bytes;
use common::{grpc_raw, http_post, sample, TestServer, TRACE_EXPORT};
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use otel_sli::otlp::rpc;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const RECV_TOKEN: &str = "recv-7f3a9c1e-token";
const ADMIN_TOKEN: &str = "admin-52bd0e44-token";

fn request() -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    traces_request(&Workload::default(), &mut Rng::new(2), 8, now)
        .0
        .encode_to_vec()
}

struct TempFile(std::path::PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn token_file(name: &str, token: &str) -> TempFile {
    let p = std::env::temp_dir().join(format!("otel-sli-{name}-{}", std::process::id()));
    std::fs::write(&p, format!("{token}\n")).expect("write token");
    TempFile(p)
}

fn yaml(admin_file: &TempFile) -> String {
    format!(
        "receivers:\n  auth: {{bearer_token: \"{RECV_TOKEN}\"}}\nadmin:\n  auth: {{bearer_token_file: \"{}\"}}\n",
        admin_file.0.display()
    )
}

async fn post(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(request());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("reachable")
}

async fn admin_get(server: &TestServer, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", server.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("reachable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_and_admin_require_their_tokens_and_never_show_them() {
    let admin_file = token_file("admin-token", ADMIN_TOKEN);
    let config = common::config(&yaml(&admin_file));
    let dump = format!("{config:?}");
    assert!(
        !dump.contains(RECV_TOKEN) && !dump.contains(ADMIN_TOKEN),
        "a token shows in the configuration's Debug output"
    );
    let server = TestServer::start_with(config).await;

    // OTLP/HTTP: none, wrong, right.
    let r = post(&server, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let status = rpc::Status::decode(r.bytes().await.expect("body")).expect("google.rpc.Status");
    assert_eq!(status.code, rpc::code::UNAUTHENTICATED);
    assert!(!status.message.contains(RECV_TOKEN));
    assert_eq!(
        post(&server, Some("recv-7f3a9c1e-tokeN")).await.status(),
        401
    );
    assert_eq!(post(&server, Some(ADMIN_TOKEN)).await.status(), 401);
    assert_eq!(post(&server, Some(RECV_TOKEN)).await.status(), 200);
    // Unauthenticated requests are refused before anything else, whatever they carry.
    let r = http_post(server.http, "/v1/traces", "text/plain", None, vec![1, 2, 3]).await;
    assert_eq!(r.status(), 401);

    // OTLP/gRPC without the token.
    let err = grpc_raw::<ExportTraceServiceResponse>(
        server.grpc,
        TRACE_EXPORT,
        Bytes::from(request()),
        false,
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(!err.message().contains(RECV_TOKEN));

    // The OpenTelemetry SDK with the token in its metadata gets through.
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
        let _g = handle.enter();
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            "authorization",
            format!("Bearer {RECV_TOKEN}").parse().expect("metadata"),
        );
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_metadata(metadata)
            .build()
            .expect("exporter");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("auth-test");
        for _ in 0..5 {
            let mut s = tracer
                .span_builder("GET /ok")
                .with_kind(SpanKind::Server)
                .start(&tracer);
            s.end();
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .join()
    .expect("sdk thread");

    // Admin: probes open, the rest behind its own token.
    assert_eq!(admin_get(&server, "/healthz", None).await.status(), 200);
    assert_eq!(admin_get(&server, "/readyz", None).await.status(), 200);
    for path in ["/metrics", "/api/v1/slis", "/api/v1/gaps", "/api/v1/slos"] {
        assert_eq!(admin_get(&server, path, None).await.status(), 401, "{path}");
        assert_eq!(
            admin_get(&server, path, Some(RECV_TOKEN)).await.status(),
            401,
            "{path} with the receivers' token"
        );
    }
    server.flush().await;
    let metrics = admin_get(&server, "/metrics", Some(ADMIN_TOKEN))
        .await
        .text()
        .await
        .expect("metrics");
    assert!(!metrics.contains(RECV_TOKEN) && !metrics.contains(ADMIN_TOKEN));
    let refused = |transport: &str| {
        sample(
            &metrics,
            &format!("otel_sli_requests_total{{transport=\"{transport}\",signal=\"traces\",outcome=\"unauthenticated\"}}"),
        )
    };
    assert_eq!(refused("http"), Some(4.0));
    assert_eq!(refused("grpc"), Some(1.0));
    assert_eq!(
        sample(
            &metrics,
            "otel_sli_accepted_spans_total{transport=\"grpc\"}"
        ),
        Some(5.0)
    );
    server.stop().await;
}

#[test]
fn config_errors_name_the_key_not_the_token() {
    let both = otel_sli::settings::parse(
        &format!("receivers:\n  auth: {{bearer_token: \"{RECV_TOKEN}\", bearer_token_file: /x}}\n"),
        |_| None,
    )
    .expect_err("both keys");
    let msg = both.to_string();
    assert!(msg.starts_with("receivers.auth"), "{msg}");
    assert!(!msg.contains(RECV_TOKEN), "{msg}");
    let missing = otel_sli::settings::parse(
        "admin:\n  auth: {bearer_token_file: /nonexistent/otel-sli-token}\n",
        |_| None,
    )
    .expect_err("no file")
    .to_string();
    assert!(
        missing.starts_with("admin.auth.bearer_token_file"),
        "{missing}"
    );
    let empty = otel_sli::settings::parse("admin:\n  auth: {bearer_token: \" \"}\n", |_| None)
        .expect_err("empty")
        .to_string();
    assert!(empty.contains("empty"), "{empty}");
}

/// The real binary at trace log level, taking good and bad requests: neither token shows
/// in what it logs.
#[test]
fn the_log_never_shows_a_token() {
    let admin_file = token_file("admin-token-log", ADMIN_TOKEN);
    let dir = std::env::temp_dir().join(format!("otel-sli-auth-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("config.yaml");
    let port = |l: std::net::TcpListener| l.local_addr().expect("addr").port();
    let free = || port(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let (g, h, a) = (free(), free(), free());
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  otlp_grpc: {{endpoint: \"127.0.0.1:{g}\"}}\n  otlp_http: {{endpoint: \"127.0.0.1:{h}\"}}\n  auth: {{bearer_token: \"{RECV_TOKEN}\"}}\nadmin:\n  endpoint: \"127.0.0.1:{a}\"\n  auth: {{bearer_token_file: \"{}\"}}\n",
            admin_file.0.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otel-sli"))
        .args(["run", "--log-level", "trace", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{a}/readyz");
        for _ in 0..100 {
            if client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for token in [None, Some("wrong"), Some(RECV_TOKEN), Some(ADMIN_TOKEN)] {
            let mut r = client
                .post(format!("http://127.0.0.1:{h}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(request());
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let _ = r.send().await.expect("reachable");
            let mut m = client.get(format!("http://127.0.0.1:{a}/metrics"));
            if let Some(t) = token {
                m = m.bearer_auth(t);
            }
            let _ = m.send().await.expect("reachable");
        }
    });
    let _ = child.kill();
    let mut log = String::new();
    for stream in [
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut s = stream;
        let _ = s.read_to_string(&mut log);
    }
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        log.contains("otel-sli listening"),
        "the service did not start:\n{log}"
    );
    assert!(
        !log.contains(RECV_TOKEN),
        "the receivers' token is in the log"
    );
    assert!(!log.contains(ADMIN_TOKEN), "the admin token is in the log");
}

/// Upstream credentials (forwarder, remote-write and OTLP-metrics headers) stay out of the
/// configuration's `Debug` output too; only the header names show.
#[test]
fn upstream_header_values_stay_out_of_the_configuration_dump() {
    let yaml = r#"
forward:
  - endpoint: http://vendor.example:4317
    headers: { x-api-key: "fwd-9b1c-secret" }
exporters:
  prometheus_remote_write:
    endpoint: http://prom.example:9090/api/v1/write
    headers: { authorization: "Bearer rw-44e1-secret" }
  otlp_metrics:
    endpoint: http://collector.example:4317
    headers: { x-token: "om-07aa-secret" }
"#;
    let config = otel_sli::settings::parse(yaml, |_| None).expect("valid");
    let dump = format!("{config:?}");
    for secret in ["fwd-9b1c-secret", "rw-44e1-secret", "om-07aa-secret"] {
        assert!(!dump.contains(secret), "{secret} shows in the dump");
    }
    for name in ["x-api-key", "authorization", "x-token"] {
        assert!(dump.contains(name), "{name} is missing from the dump");
    }
}
