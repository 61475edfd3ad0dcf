//! Metrics and logs requests under their signals' names: the scanner's counting functions
//! ([`crate::otlp::scan::count_metric_points`], [`crate::otlp::scan::count_log_records`]),
//! which validate and count by walking the wire format, so a request of millions of tiny
//! items costs no memory beyond its own bytes; and the property tests that check their
//! counts against a full `prost` decode.

pub use crate::otlp::scan::{count_log_records, count_metric_points};

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint,
    };
    use proptest::prelude::*;
    use prost::Message;

    /// Data points by decoding the whole request with prost: the reference.
    fn prost_points(req: &ExportMetricsServiceRequest) -> u64 {
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

    fn metric(kind: u8, n: usize) -> Metric {
        let data = match kind % 6 {
            0 => Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); n],
            })),
            1 => Some(Data::Sum(Sum {
                data_points: vec![NumberDataPoint::default(); n],
                ..Default::default()
            })),
            2 => Some(Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.1, 1.0],
                        count: 6,
                        ..Default::default()
                    };
                    n
                ],
                ..Default::default()
            })),
            3 => Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint::default(); n],
                ..Default::default()
            })),
            4 => Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint::default(); n],
            })),
            _ => None,
        };
        Metric {
            name: "m".into(),
            data,
            ..Default::default()
        }
    }

    proptest! {
        #[test]
        fn metric_points_match_prost(shape in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec((0u8..6, 0usize..5), 0..4), 0..3), 0..4)) {
            let req = ExportMetricsServiceRequest {
                resource_metrics: shape.iter().map(|scopes| ResourceMetrics {
                    scope_metrics: scopes.iter().map(|ms| ScopeMetrics {
                        metrics: ms.iter().map(|&(k, n)| metric(k, n)).collect(),
                        ..Default::default()
                    }).collect(),
                    ..Default::default()
                }).collect(),
            };
            let bytes = req.encode_to_vec();
            prop_assert_eq!(count_metric_points(&bytes).ok(), Some(prost_points(&req)));
            // Every truncation errors exactly when prost does, never panics.
            for cut in 0..bytes.len() {
                let part = &bytes[..cut];
                let ours = count_metric_points(part).ok();
                let theirs = ExportMetricsServiceRequest::decode(part).ok().map(|r| prost_points(&r));
                prop_assert_eq!(ours.is_some(), theirs.is_some(), "cut at {}", cut);
                if let (Some(a), Some(b)) = (ours, theirs) {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn later_oneof_field_replaces_earlier() {
        let gauge = metric(0, 3).encode_to_vec();
        let sum = metric(1, 2).encode_to_vec();
        let mut m = gauge.clone();
        m.extend_from_slice(&sum);
        // Metric bytes concatenated = prost merge: the sum replaces the gauge.
        let decoded = Metric::decode(m.as_slice()).expect("valid");
        assert!(matches!(decoded.data, Some(Data::Sum(ref s)) if s.data_points.len() == 2));
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![decoded],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // Build the wire form with the concatenated (two-oneof) metric.
        let mut scope = Vec::new();
        prost::encoding::bytes::encode(2, &m, &mut scope);
        let mut rm = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut rm);
        let mut body = Vec::new();
        prost::encoding::bytes::encode(1, &rm, &mut body);
        assert_eq!(count_metric_points(&body), Ok(prost_points(&req)));
        assert_eq!(count_metric_points(&body), Ok(2));
    }

    #[test]
    fn log_records_match_prost() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord::default(); 7],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                3
            ],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(count_log_records(&bytes), Ok(21));
        assert!(count_log_records(&[0x0a, 0x05, 0x12]).is_err());
        assert!(count_metric_points(&[0xff; 3]).is_err());
    }

    #[test]
    fn request_points_are_found_with_their_attributes() {
        use crate::otlp::scan::scan_request_points;
        use crate::otlp::synth::kv_str;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let hist = |name: &str, temporality: i32, points: Vec<(u64, u64, &str)>| Metric {
            name: name.into(),
            data: Some(Data::Histogram(Histogram {
                aggregation_temporality: temporality,
                data_points: points
                    .into_iter()
                    .map(|(start, count, route)| HistogramDataPoint {
                        attributes: vec![
                            kv_str("http.request.method", "GET"),
                            kv_str("http.route", route),
                        ],
                        start_time_unix_nano: start,
                        count,
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", "shop")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        hist(
                            "http.server.request.duration",
                            2,
                            vec![(5, 200, "/a"), (5, 7, "/b")],
                        ),
                        hist("http.client.request.duration", 2, vec![(5, 99, "/x")]),
                        metric(1, 3),
                        Metric {
                            name: "rpc.server.duration".into(),
                            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                                aggregation_temporality: 1,
                                data_points: vec![ExponentialHistogramDataPoint {
                                    attributes: vec![kv_str("rpc.service", "S")],
                                    count: 3,
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        let mut seen = Vec::new();
        scan_request_points(&bytes, &mut |res, p| {
            let service = res
                .get(b"service.name")
                .and_then(|v| v.as_str())
                .map(String::from);
            let route = p
                .attributes
                .get(b"http.route")
                .and_then(|v| v.as_str())
                .map(String::from);
            seen.push((
                String::from_utf8_lossy(p.metric).into_owned(),
                service,
                route,
                p.temporality,
                p.start_time_unix_nano,
                p.count,
                p.attributes.len(),
            ));
        })
        .expect("valid");
        let shop = Some("shop".to_string());
        assert_eq!(
            seen,
            vec![
                (
                    "http.server.request.duration".into(),
                    shop.clone(),
                    Some("/a".into()),
                    2,
                    5,
                    200,
                    2
                ),
                (
                    "http.server.request.duration".into(),
                    shop.clone(),
                    Some("/b".into()),
                    2,
                    5,
                    7,
                    2
                ),
                ("rpc.server.duration".into(), shop, None, 1, 0, 3, 1),
            ]
        );
        assert!(scan_request_points(&bytes[..bytes.len() - 2], &mut |_, _| {}).is_err());
    }
}
