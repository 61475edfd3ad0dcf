//! The baseline the end-to-end benchmark compares `otel-sli` against: a straightforward
//! OTLP/gRPC receiver written the obvious way. tonic decodes every request into the full
//! `prost` object tree; the handler walks it and, for each SERVER span, updates a count, an
//! error count, a latency sum and an explicit-bucket histogram in a `HashMap` keyed by
//! (service, span name) behind one mutex. It derives less than `otel-sli` does (no
//! completeness, no windows, no SLOs), so the ratio understates the difference.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use std::collections::HashMap;
use std::sync::Mutex;

/// Latency bucket bounds in seconds.
const BOUNDS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

#[derive(Default)]
struct Agg {
    requests: u64,
    errors: u64,
    latency_sum: f64,
    buckets: [u64; 12],
}

#[derive(Default)]
struct Baseline {
    series: Mutex<HashMap<(String, String), Agg>>,
}

#[tonic::async_trait]
impl TraceService for Baseline {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let mut series = self
            .series
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                // SPAN_KIND_SERVER
                if span.kind != 2 {
                    continue;
                }
                let agg = series
                    .entry((service.clone(), span.name.clone()))
                    .or_default();
                agg.requests += 1;
                // STATUS_CODE_ERROR
                if span.status.as_ref().is_some_and(|s| s.code == 2) {
                    agg.errors += 1;
                }
                let secs = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano) as f64
                    / 1e9;
                agg.latency_sum += secs;
                let i = BOUNDS.iter().position(|b| secs <= *b).unwrap_or(11);
                agg.buckets[i] += 1;
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the baseline on `addr` until the process ends (run in a process of its own, so
/// its CPU time can be read as the server's).
pub fn serve(addr: std::net::SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("baseline runtime");
    rt.block_on(async move {
        let svc = TraceServiceServer::new(Baseline::default())
            .max_decoding_message_size(64 << 20)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve(addr)
            .await
            .expect("baseline server");
    });
}
