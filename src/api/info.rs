//! `GET /api/v1/info`: what a client needs to know about this instance to send it data —
//! the OTLP receiver addresses as endpoints, the `OTEL_EXPORTER_OTLP_*` settings, a one-line
//! test command — plus the version, the canary label, the history bounds and the trace link
//! template (`links.trace_url`). The dashboard's empty state and its trace links are built
//! from it.
//!
//! A receiver bound to an unspecified address (`0.0.0.0`, `[::]`) is reachable on whatever
//! name the client used for the admin server, so its endpoint takes the request's `Host`
//! (when that is a plain host name or address); otherwise the bound address is the endpoint.

use serde::Serialize;
use std::net::SocketAddr;

/// The instance facts `/api/v1/info` reports, fixed at start.
#[derive(Clone, Debug)]
pub struct Info {
    /// Bound OTLP/gRPC address.
    pub otlp_grpc: SocketAddr,
    /// Bound OTLP/HTTP address.
    pub otlp_http: SocketAddr,
    /// Whether the receivers require a bearer token (`receivers.auth`).
    pub receivers_auth: bool,
    /// `canary.attribute`; `None` when canary analysis is off.
    pub canary_attribute: Option<String>,
    /// Most series the history keeps.
    pub history_series_limit: usize,
    /// `links.trace_url`: the URL template of a trace at the user's tracing tool.
    pub trace_url: Option<String>,
}

#[derive(Serialize)]
struct Response<'a> {
    version: &'static str,
    otlp: Otlp,
    /// Environment for an OpenTelemetry SDK, in the order to set them.
    env: Vec<(&'static str, String)>,
    /// A shell command sending one request span to the OTLP/HTTP receiver.
    test_command: String,
    receivers_auth: bool,
    canary: Option<Canary<'a>>,
    history: History,
    links: Links<'a>,
}

/// Where the dashboard links example requests to.
#[derive(Serialize)]
struct Links<'a> {
    /// `links.trace_url`, with `{trace_id}` and `{span_id}` left for the page to fill.
    trace_url: Option<&'a str>,
}

#[derive(Serialize)]
struct Otlp {
    grpc: Receiver,
    http: Receiver,
}

#[derive(Serialize)]
struct Receiver {
    listen: String,
    endpoint: String,
}

#[derive(Serialize)]
struct Canary<'a> {
    attribute: &'a str,
    /// The series dimension holding the cohort (`/api/v1/slis` `dimensions` key).
    label: String,
}

#[derive(Serialize)]
struct History {
    points: usize,
    step_seconds: u64,
    series_limit: usize,
}

/// The host part of a `Host` header value, if it is a plain name or address (no
/// user info, path or characters a shell would read).
fn host_name(host: &str) -> Option<&str> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        &host[..rest.find(']')? + 2]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!name.is_empty() && name.len() <= 253 && name.chars().all(plain)).then_some(name)
}

/// The `http://host:port` clients reach `bound` at; `host` is the request's `Host` header.
pub fn endpoint(bound: SocketAddr, host: Option<&str>) -> String {
    if bound.ip().is_unspecified() {
        let name = host.and_then(host_name).map_or_else(
            || {
                if bound.is_ipv6() {
                    "[::1]".to_string()
                } else {
                    "127.0.0.1".to_string()
                }
            },
            str::to_string,
        );
        format!("http://{name}:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// The test command: one `GET /hello` server span of service `hello`, timed now.
fn test_command(http_endpoint: &str, auth: bool) -> String {
    let header = if auth {
        " -H \"Authorization: Bearer $OTLP_TOKEN\""
    } else {
        ""
    };
    format!(
        "curl -sS {http_endpoint}/v1/traces -H 'Content-Type: application/json'{header} -d '{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":\"hello\"}}}}]}},\"scopeSpans\":[{{\"spans\":[{{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\",\"name\":\"GET /hello\",\"kind\":2,\"startTimeUnixNano\":\"'$(date +%s)'000000000\",\"endTimeUnixNano\":\"'$(date +%s)'050000000\",\"attributes\":[{{\"key\":\"http.request.method\",\"value\":{{\"stringValue\":\"GET\"}}}},{{\"key\":\"http.route\",\"value\":{{\"stringValue\":\"/hello\"}}}},{{\"key\":\"http.response.status_code\",\"value\":{{\"intValue\":\"200\"}}}}]}}]}}]}}]}}'"
    )
}

/// Renders `/api/v1/info` for a request whose `Host` header is `host`.
pub fn render(info: &Info, host: Option<&str>) -> Vec<u8> {
    let grpc = endpoint(info.otlp_grpc, host);
    let http = endpoint(info.otlp_http, host);
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
    ];
    if info.receivers_auth {
        env.push((
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Bearer%20<token>".to_string(),
        ));
    }
    serde_json::to_vec(&Response {
        version: env!("CARGO_PKG_VERSION"),
        test_command: test_command(&http, info.receivers_auth),
        otlp: Otlp {
            grpc: Receiver {
                listen: info.otlp_grpc.to_string(),
                endpoint: grpc,
            },
            http: Receiver {
                listen: info.otlp_http.to_string(),
                endpoint: http,
            },
        },
        env,
        receivers_auth: info.receivers_auth,
        canary: info.canary_attribute.as_deref().map(|a| Canary {
            attribute: a,
            label: crate::sli::classify::label_name(a),
        }),
        history: History {
            points: crate::api::history::POINTS,
            step_seconds: crate::api::history::STEP_NANOS / 1_000_000_000,
            series_limit: info.history_series_limit,
        },
        links: Links {
            trace_url: info.trace_url.as_deref(),
        },
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn endpoints_use_the_bound_address_or_the_clients_host() {
        assert_eq!(
            endpoint(addr("127.0.0.1:4318"), Some("dash:9464")),
            "http://127.0.0.1:4318"
        );
        assert_eq!(
            endpoint(addr("0.0.0.0:4318"), Some("node-7.example:9464")),
            "http://node-7.example:4318"
        );
        assert_eq!(
            endpoint(addr("[::]:4317"), Some("[fd00::5]:9464")),
            "http://[fd00::5]:4317"
        );
        assert_eq!(
            endpoint(addr("0.0.0.0:4318"), Some("evil$(rm -rf /)")),
            "http://127.0.0.1:4318",
            "a host a shell would interpret is not used"
        );
        assert_eq!(
            endpoint(addr("0.0.0.0:4318"), None),
            "http://127.0.0.1:4318"
        );
        assert_eq!(endpoint(addr("[::]:4318"), None), "http://[::1]:4318");
    }

    #[test]
    fn info_names_the_sdk_settings_and_a_test_command() {
        let info = Info {
            otlp_grpc: addr("127.0.0.1:4317"),
            otlp_http: addr("127.0.0.1:4318"),
            receivers_auth: true,
            canary_attribute: Some("service.version".into()),
            history_series_limit: 10,
            trace_url: Some("https://tracing.example/trace/{trace_id}".into()),
        };
        let v: serde_json::Value = serde_json::from_slice(&render(&info, None)).expect("json");
        assert_eq!(v["otlp"]["grpc"]["endpoint"], "http://127.0.0.1:4317");
        assert_eq!(
            v["env"][0],
            serde_json::json!(["OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"])
        );
        assert_eq!(v["env"][2][0], "OTEL_EXPORTER_OTLP_HEADERS");
        assert_eq!(v["canary"]["label"], "service_version");
        assert_eq!(
            v["links"]["trace_url"],
            "https://tracing.example/trace/{trace_id}"
        );
        let none = Info {
            trace_url: None,
            ..info.clone()
        };
        let unset: serde_json::Value = serde_json::from_slice(&render(&none, None)).expect("json");
        assert_eq!(unset["links"], serde_json::json!({"trace_url": null}));
        let cmd = v["test_command"].as_str().expect("command");
        assert!(
            cmd.starts_with("curl -sS http://127.0.0.1:4318/v1/traces "),
            "{cmd}"
        );
        assert!(cmd.contains("Authorization: Bearer $OTLP_TOKEN"), "{cmd}");
        // The JSON between the single quotes is valid once the shell inserted the times.
        let body = cmd
            .split_once("-d '")
            .map(|(_, b)| b.trim_end_matches('\''))
            .expect("body")
            .replace("'$(date +%s)'", "1700000000");
        let span: serde_json::Value = serde_json::from_str(&body).expect("span JSON");
        assert_eq!(
            span["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"],
            "1700000000050000000"
        );
    }
}
