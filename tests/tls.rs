//! TLS on the listeners, with real clients: the OpenTelemetry SDK's gRPC exporter over TLS
//! and mutual TLS, curl against the OTLP/HTTP receiver and the admin server, certificate
//! reload for new connections.

mod common;

use common::stat;
use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use otel_sli::telemetry::Listener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A certificate authority that issues `localhost` / `127.0.0.1` certificates.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, PEM.
struct Pair {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("CA");
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn issue(&self, not_after_year: i32) -> Pair {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).expect("cert");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("otel-sli-tls-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
    /// Writes `text` to `name` in one rename, as a Secret update does.
    fn write(&self, name: &str, text: &str) -> String {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        let path = self.0.join(name);
        std::fs::rename(&tmp, &path).expect("rename");
        path.to_string_lossy().into_owned()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
    fn put(&self, prefix: &str, p: &Pair) {
        self.write(&format!("{prefix}.crt"), &p.cert);
        self.write(&format!("{prefix}.key"), &p.key);
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_yaml(dir: &Dir, prefix: &str, client_ca: Option<&str>) -> String {
    let mut y = format!(
        "{{ cert_file: {:?}, key_file: {:?}, reload_interval: 1s",
        dir.path(&format!("{prefix}.crt")),
        dir.path(&format!("{prefix}.key"))
    );
    if let Some(ca) = client_ca {
        y.push_str(&format!(", client_ca_file: {ca:?}"));
    }
    y.push_str(" }");
    y
}

/// Sends `n` SERVER spans for service `service` through the SDK's gRPC exporter to
/// `endpoint`, over TLS trusting `ca_pem` when given, with a client certificate when
/// `identity` is given. (The SDK's simple processor logs a failed export and reports
/// nothing, so callers check what arrived.)
fn send_grpc(
    endpoint: String,
    service: &'static str,
    n: usize,
    ca_pem: Option<String>,
    identity: Option<(String, String)>,
) {
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _guard = handle.enter();
        let mut builder = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5));
        if let Some(ca) = ca_pem {
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("localhost");
            if let Some((cert, key)) = identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            builder = builder.with_tls_config(tls);
        }
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(builder.build().expect("exporter"))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tls-test");
        for _ in 0..n {
            tracer
                .span_builder("GET /secure")
                .with_kind(SpanKind::Server)
                .start(&tracer)
                .end();
        }
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    })
    .join()
    .expect("sdk thread");
}

/// [`send_grpc`] over TLS.
fn send_grpc_tls(
    endpoint: String,
    service: &'static str,
    n: usize,
    ca_pem: String,
    identity: Option<(String, String)>,
) {
    send_grpc(endpoint, service, n, Some(ca_pem), identity);
}

async fn requests(server: &TestServer, service: &str) -> u64 {
    let all = server.slis("all").await;
    all["slis"]
        .as_array()
        .expect("slis")
        .iter()
        .filter(|s| s["service"] == service)
        .map(|s| s["requests"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_over_tls_with_the_sdk() {
    let dir = Dir::new("grpc");
    let ca = Ca::new("server");
    dir.put("server", &ca.issue(2040));
    let server = TestServer::start(&format!(
        "receivers: {{ otlp_grpc: {{ tls: {} }} }}",
        tls_yaml(&dir, "server", None)
    ))
    .await;
    let endpoint = format!("https://127.0.0.1:{}", server.grpc.port());
    send_grpc_tls(endpoint, "secure", 25, ca.pem.clone(), None);
    assert_eq!(requests(&server, "secure").await, 25);

    // A client that does not speak TLS gets no service, and the failed handshake is counted.
    send_grpc(format!("http://{}", server.grpc), "plain", 1, None, None);
    assert_eq!(
        requests(&server, "plain").await,
        0,
        "plaintext to a TLS listener"
    );
    assert!(stat(&server, Listener::OtlpGrpc, |c| &c.handshake_failures) >= 1);
    let m = server.metrics().await;
    let expiry = common::sample(
        &m,
        "otel_sli_tls_certificate_expiry_timestamp_seconds{listener=\"otlp_grpc\"}",
    );
    assert_eq!(expiry, Some(2_208_988_800.0), "2040-01-01T00:00:00Z");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = Dir::new("mtls");
    let server_ca = Ca::new("server");
    let client_ca = Ca::new("clients");
    let rogue_ca = Ca::new("rogue");
    dir.put("server", &server_ca.issue(2040));
    let ca_file = dir.write("clients.pem", &client_ca.pem);
    let server = TestServer::start(&format!(
        "receivers: {{ otlp_grpc: {{ tls: {} }} }}",
        tls_yaml(&dir, "server", Some(&ca_file))
    ))
    .await;
    let endpoint = format!("https://127.0.0.1:{}", server.grpc.port());

    let good = client_ca.issue(2040);
    send_grpc_tls(
        endpoint.clone(),
        "admitted",
        7,
        server_ca.pem.clone(),
        Some((good.cert, good.key)),
    );
    let rogue = rogue_ca.issue(2040);
    send_grpc_tls(
        endpoint.clone(),
        "rogue",
        3,
        server_ca.pem.clone(),
        Some((rogue.cert, rogue.key)),
    );
    send_grpc_tls(endpoint, "anonymous", 3, server_ca.pem.clone(), None);
    assert_eq!(requests(&server, "admitted").await, 7);
    assert_eq!(requests(&server, "rogue").await, 0);
    assert_eq!(requests(&server, "anonymous").await, 0);
    assert!(stat(&server, Listener::OtlpGrpc, |c| &c.handshake_failures) >= 2);
    server.stop().await;
}

/// Runs curl with `args`; returns its exit status success and stdout.
fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const SPAN_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /x","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receiver_with_mutual_tls_and_https_admin_with_curl() {
    if !common::tool_available("curl", &["--version"]) {
        return;
    }
    let dir = Dir::new("curl");
    let server_ca = Ca::new("server");
    let client_ca = Ca::new("clients");
    dir.put("server", &server_ca.issue(2040));
    dir.put("client", &client_ca.issue(2040));
    let server_ca_file = dir.write("server-ca.pem", &server_ca.pem);
    let client_ca_file = dir.write("clients.pem", &client_ca.pem);
    let server = TestServer::start(&format!(
        "receivers: {{ otlp_http: {{ tls: {} }} }}\nadmin: {{ tls: {} }}",
        tls_yaml(&dir, "server", Some(&client_ca_file)),
        tls_yaml(&dir, "server", None)
    ))
    .await;
    let traces = format!("https://localhost:{}/v1/traces", server.http.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let (cert, key) = (dir.path("client.crt"), dir.path("client.key"));
    let post = |with_cert: bool| {
        let mut args = vec![
            "--resolve",
            &resolve,
            "--cacert",
            &server_ca_file,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            SPAN_JSON,
            "--write-out",
            "%{http_code}",
            "--output",
            "/dev/null",
        ];
        if with_cert {
            args.extend(["--cert", &cert, "--key", &key]);
        }
        args.push(&traces);
        curl(&args)
    };
    let (ok, code) = tokio::task::block_in_place(|| post(true));
    assert!(ok && code == "200", "with a client certificate: {code}");
    let (ok, _) = tokio::task::block_in_place(|| post(false));
    assert!(!ok, "without a client certificate the handshake must fail");
    assert!(stat(&server, Listener::OtlpHttp, |c| &c.handshake_failures) >= 1);

    server.flush().await;
    let metrics = format!("https://127.0.0.1:{}/metrics", server.admin.port());
    let (ok, body) = tokio::task::block_in_place(|| curl(&["--cacert", &server_ca_file, &metrics]));
    assert!(ok, "admin over https");
    assert_eq!(
        common::sample(&body, "otel_sli_accepted_spans_total{transport=\"http\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        common::sample(
            &body,
            "otel_sli_tls_certificate_expiry_timestamp_seconds{listener=\"admin\"}"
        ),
        Some(2_208_988_800.0)
    );
    let plain = format!("http://{}/healthz", server.admin);
    let (ok, _) = tokio::task::block_in_place(|| curl(&[&plain]));
    assert!(!ok, "plaintext to the https admin server must fail");
    server.stop().await;
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !tokio::task::block_in_place(&mut f) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_new_connections_and_a_broken_one_is_refused() {
    if !common::tool_available("curl", &["--version"]) {
        return;
    }
    let dir = Dir::new("reload");
    let (old_ca, new_ca) = (Ca::new("old"), Ca::new("new"));
    dir.put("admin", &old_ca.issue(2040));
    let old_ca_file = dir.write("old.pem", &old_ca.pem);
    let new_ca_file = dir.write("new.pem", &new_ca.pem);
    let server = TestServer::start(&format!(
        "admin: {{ tls: {} }}",
        tls_yaml(&dir, "admin", None)
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/healthz", server.admin.port());
    let trusts = |ca: &str| curl(&["--cacert", ca, &url]).0;
    assert!(tokio::task::block_in_place(|| trusts(&old_ca_file)));
    assert!(!tokio::task::block_in_place(|| trusts(&new_ca_file)));

    // Renewal from another CA: the key first, then the certificate, as a tool writing the
    // files one by one would. In between the pair does not fit and must not be served.
    let renewed = new_ca.issue(2041);
    dir.write("admin.key", &renewed.key);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        tokio::task::block_in_place(|| trusts(&old_ca_file)),
        "old pair kept while the new one is half written"
    );
    dir.write("admin.crt", &renewed.cert);
    wait_for("the renewed certificate", || trusts(&new_ca_file)).await;
    assert!(!tokio::task::block_in_place(|| trusts(&old_ca_file)));
    assert_eq!(stat(&server, Listener::Admin, |c| &c.reloads), 1);
    assert_eq!(
        stat(&server, Listener::Admin, |c| &c.cert_not_after),
        2_240_611_200
    );

    // A broken certificate file: refused, counted, the renewed one still served.
    let failures = stat(&server, Listener::Admin, |c| &c.reload_failures);
    dir.write(
        "admin.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while stat(&server, Listener::Admin, |c| &c.reload_failures) == failures {
        assert!(Instant::now() < deadline, "the broken file was not noticed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(tokio::task::block_in_place(|| trusts(&new_ca_file)));
    assert_eq!(stat(&server, Listener::Admin, |c| &c.reloads), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_mismatched_certificate_fails_validation_with_the_key_path() {
    let dir = Dir::new("validate");
    let ca = Ca::new("server");
    let (a, b) = (ca.issue(2040), ca.issue(2040));
    dir.write("a.crt", &a.cert);
    dir.write("b.key", &b.key);
    let yaml = format!(
        "admin: {{ tls: {{ cert_file: {:?}, key_file: {:?} }} }}",
        dir.path("a.crt"),
        dir.path("b.key")
    );
    let e = otel_sli::settings::parse(&yaml, |_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("admin.tls") && e.contains("does not fit"), "{e}");
    let yaml = format!(
        "receivers: {{ otlp_http: {{ tls: {{ cert_file: {:?} }} }} }}",
        dir.path("a.crt")
    );
    let e = otel_sli::settings::parse(&yaml, |_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("receivers.otlp_http.tls.key_file"), "{e}");
    let yaml = "receivers: { otlp_grpc: { tls: { cert_file: /nonexistent.crt, key_file: /nonexistent.key } } }";
    let e = otel_sli::settings::parse(yaml, |_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("receivers.otlp_grpc.tls") && e.contains("/nonexistent.crt"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_an_https_admin_server() {
    let dir = Dir::new("probe");
    let ca = Ca::new("server");
    dir.put("admin", &ca.issue(2040));
    let ca_file = dir.write("ca.pem", &ca.pem);
    let server = TestServer::start(&format!(
        "admin: {{ tls: {} }}",
        tls_yaml(&dir, "admin", None)
    ))
    .await;
    let url = format!("https://localhost:{}/healthz", server.admin.port());
    let check = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_otel-sli"))
            .args(["healthcheck", "--url", &url])
            .args(args)
            .output()
            .expect("otel-sli runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = tokio::task::block_in_place(|| check(&["--ca-file", &ca_file]));
    assert!(ok, "trusting the CA: {err}");
    let (ok, err) = tokio::task::block_in_place(|| check(&[]));
    assert!(!ok, "an unknown CA must fail the check");
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    let (ok, err) = tokio::task::block_in_place(|| check(&["--insecure-skip-verify"]));
    assert!(ok, "without verification: {err}");
    server.stop().await;
}
