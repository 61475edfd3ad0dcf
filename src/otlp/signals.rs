//! Metrics and logs requests: validated and counted. They are not on the span hot path, so
//! they are decoded with `prost` (which also validates them completely).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// Number of data points in an `ExportMetricsServiceRequest`.
pub fn count_metric_points(body: &[u8]) -> Result<u64, prost::DecodeError> {
    let req = ExportMetricsServiceRequest::decode(body)?;
    Ok(metric_points(&req))
}

/// Number of data points in a decoded metrics request.
pub fn metric_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// Number of log records in an `ExportLogsServiceRequest`.
pub fn count_log_records(body: &[u8]) -> Result<u64, prost::DecodeError> {
    let req = ExportLogsServiceRequest::decode(body)?;
    Ok(log_records(&req))
}

/// Number of log records in a decoded logs request.
pub fn log_records(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}
