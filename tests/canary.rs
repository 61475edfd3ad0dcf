//! Canary analysis end to end with the OpenTelemetry SDK as the client: cohorts told apart
//! by `service.version` on the resource, verdicts from `/api/v1/canary`.

mod common;

use common::sdk::{self, Req, Transport};
use common::TestServer;
use std::time::Duration;

/// Sends `n` requests of `service` at `version`, `errors` of them failed, through the SDK's
/// HTTP/protobuf exporter.
async fn send(server: &TestServer, service: &str, version: &str, n: usize, errors: usize) {
    let reqs = (0..n)
        .map(|i| Req {
            error: i < errors,
            ..Req::server(
                "GET",
                "/items",
                Duration::from_millis(20 + (i % 10) as u64),
                0,
            )
        })
        .collect();
    let resource = sdk::resource(service, &[("service.version", version)]);
    sdk::send_with_resource(
        server.http.to_string(),
        Transport::Http,
        false,
        resource,
        reqs,
    )
    .await;
}

async fn verdict(server: &TestServer, service: &str, extra: &str) -> serde_json::Value {
    let (status, v) = server
        .get_json(&format!(
            "/api/v1/canary?service={service}&baseline=1.0.0&canary=2.0.0&window=10m{extra}"
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_errors_fails_equal_passes_twenty_requests_is_inconclusive() {
    let server = TestServer::start("").await;
    send(&server, "web", "1.0.0", 1000, 10).await;
    send(&server, "web", "2.0.0", 1000, 100).await;
    send(&server, "api", "1.0.0", 1000, 20).await;
    send(&server, "api", "2.0.0", 1000, 20).await;
    send(&server, "new", "1.0.0", 1000, 10).await;
    send(&server, "new", "2.0.0", 20, 0).await;

    let web = verdict(&server, "web", "").await;
    assert_eq!(web["verdict"], "fail", "{web}");
    assert_eq!(web["baseline"]["requests"], 1000);
    assert_eq!(web["canary"]["errors"], 100);
    assert!(web["reasons"].to_string().contains("error ratio"), "{web}");
    assert_eq!(web["features"][0]["feature"], "GET /items");
    assert_eq!(web["features"][0]["verdict"], "fail");
    assert_eq!(web["query"]["attribute"], "service.version");

    let api = verdict(&server, "api", "&feature=GET%20/items").await;
    assert_eq!(api["verdict"], "pass", "{api}");
    assert_eq!(api["reasons"], serde_json::json!([]));
    assert_eq!(api["canary"]["error_ratio"], 0.02);
    assert!(api["canary"]["p95_seconds"].as_f64().is_some());

    let new = verdict(&server, "new", "").await;
    assert_eq!(new["verdict"], "inconclusive", "{new}");
    assert!(new["reasons"].to_string().contains("20 requests"), "{new}");

    // Errors are clear and never crash the endpoint.
    for (q, code) in [
        ("service=web&baseline=1.0.0", 400),
        ("service=web&baseline=1.0.0&canary=1.0.0", 400),
        ("service=web&baseline=1.0.0&canary=2.0.0&window=2h", 400),
        ("service=web&baseline=1.0.0&canary=2.0.0&window=soon", 400),
        ("service=web&baseline=1.0.0&canary=2.0.0&window=30s", 400),
    ] {
        let (status, v) = server.get_json(&format!("/api/v1/canary?{q}")).await;
        assert_eq!(status, code, "{q}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    // Cohorts appear as a label on the SLI series.
    let m = server.metrics().await;
    assert!(
        m.contains("sli_requests_total{service=\"web\",feature=\"GET /items\",service_version=\"2.0.0\"} 1000"),
        "{m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_analysis_can_be_turned_off() {
    let server = TestServer::start("canary:\n  attribute: \"\"\n").await;
    let (status, v) = server
        .get_json("/api/v1/canary?service=a&baseline=1&canary=2")
        .await;
    assert_eq!(status, 404, "{v}");
    let m = server.metrics().await;
    assert!(!m.contains("service_version"), "no cohort label when off");
    server.stop().await;
}
