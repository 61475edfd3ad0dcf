//! The OTLP/HTTP receiver in-process: its router (as the server mounts it) answering one
//! request with an arbitrary method, path, `Content-Type`, `Content-Encoding` and body,
//! handed to a running pipeline.
//!
//! Input, read from the front so that seeds are a few choice bytes and then a real body:
//! one byte each choosing the method, path, content type and content encoding (each byte
//! modulo the number of known values plus one; that last choice reads a length byte and
//! that many bytes of arbitrary header value), flags (bit 0: gzip the body here, so the decoder sees
//! a valid stream; bit 1: a small body limit; bit 2: a second, conflicting Content-Type;
//! bit 3: an `Authorization` header), then the body.
//! Oracle: every request gets an answer with a status, never a 5xx other than 503
//! (backpressure) and never a panic.
#![no_main]

use arbitrary::Unstructured;
use axum::body::Body;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::{HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use otel_sli::receiver::{http as otlp_http, Ingest};
use otel_sli::telemetry::Telemetry;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

const METHODS: [&str; 6] = ["POST", "GET", "PUT", "HEAD", "OPTIONS", "DELETE"];
const PATHS: [&str; 8] = [
    "/v1/traces",
    "/v1/metrics",
    "/v1/logs",
    "/v1/traces/",
    "/",
    "/v1/spans",
    "/v1/logs?x=1",
    "//v1/traces",
];
const TYPES: [&str; 7] = [
    "",
    "application/x-protobuf",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/X-PROTOBUF ; foo=bar",
    "application/grpc",
    "text/plain",
];
const ENCODINGS: [&str; 6] = ["", "gzip", "identity", " GZIP ", "deflate", "br"];

struct Harness {
    rt: tokio::runtime::Runtime,
    ingest: Ingest,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let config = otel_sli_fuzz::default_config();
        let pipeline = match otel_sli::app::build_pipeline(config, otel_sli::clock::system()) {
            Ok(p) => p,
            Err(e) => panic!("pipeline: {e}"),
        };
        let ingest = Ingest {
            pipeline,
            telemetry: Arc::new(Telemetry::default()),
            forward: Default::default(),
            memory: None,
            auth: None,
        };
        Harness { rt, ingest }
    })
}

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Option<&'a str> {
    let b: u8 = u.arbitrary().unwrap_or(0);
    from.get(usize::from(b) % (from.len() + 1)).copied()
}

/// A header value: one of `known`, or (the choice past them) arbitrary bytes.
fn header(u: &mut Unstructured<'_>, known: &[&str]) -> Option<Vec<u8>> {
    match pick(u, known) {
        Some("") => None,
        Some(v) => Some(v.as_bytes().to_vec()),
        None => {
            let len: u8 = u.arbitrary().unwrap_or(0);
            Some(
                u.bytes(usize::from(len).min(u.len()))
                    .unwrap_or_default()
                    .to_vec(),
            )
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let method = pick(&mut u, &METHODS).unwrap_or("PATCH");
    let path = pick(&mut u, &PATHS).unwrap_or("/v1/metrics/");
    let content_type = header(&mut u, &TYPES);
    let encoding = header(&mut u, &ENCODINGS);
    let flags: u8 = u.arbitrary().unwrap_or(0);
    let mut body = u.take_rest().to_vec();
    if flags & 1 == 1 {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        let _ = e.write_all(&body);
        body = e.finish().unwrap_or_default();
    }

    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let mut req = Request::builder().method(method).uri(path);
    if let Some(v) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        req = req.header(http::header::CONTENT_TYPE, v);
    }
    if flags & 4 == 4 {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(v) = encoding.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        req = req.header(http::header::CONTENT_ENCODING, v);
    }
    if flags & 8 == 8 {
        req = req.header(http::header::AUTHORIZATION, "Bearer x");
    }
    let Ok(req) = req.body(Body::from(body)) else {
        return;
    };
    let h = harness();
    let max_body = if flags & 2 == 2 { 64 } else { 1 << 20 };
    let app = otlp_http::router(h.ingest.clone(), max_body, Duration::from_secs(5));
    let resp = match h.rt.block_on(app.oneshot(req)) {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let status = resp.status();
    assert!(
        !status.is_server_error() || status == http::StatusCode::SERVICE_UNAVAILABLE,
        "status {status}"
    );
});
