//! Merging queued requests into fewer, larger ones, for upstreams that take OTLP export
//! requests (forwarders). Serialized export requests of one signal concatenate into one
//! valid request: their only top-level field is a repeated message, and protobuf appends
//! repeated fields as it reads them. So every received request still goes out byte for
//! byte, several back to back in one upstream request, and the per-request work (a send,
//! an answer to read, the wake-ups and acknowledgements around them) is paid once for all.
//!
//! Only uncompressed bodies are merged. A body that arrived gzip-compressed and goes out as
//! it came is sent on its own: concatenated gzip members are valid gzip, but not every
//! decompressor reads past the first.

use super::delivery::Payload;
use bytes::BytesMut;
use std::time::Duration;
use tokio::sync::mpsc;

/// How requests are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// A merged request stays at or under this many bytes (before compression); a request
    /// that is larger on its own goes alone.
    pub max_bytes: usize,
    /// After taking a request, wait at most this long for more to merge with it. Zero:
    /// merge only what is already queued.
    pub wait: Duration,
}

/// Requests taken from the queue for one send.
#[derive(Debug)]
pub struct Gathered {
    /// What to send: the requests' bodies back to back (or the one request as it was).
    pub payload: Payload,
    /// How many queued requests it holds.
    pub requests: u64,
    /// A request taken from the queue that could not join (another signal, compressed, or
    /// no room left): the next to send.
    pub next: Option<Payload>,
}

/// True when `p` can be merged with `first`'s batch holding `len` bytes so far.
fn joins(first: &Payload, len: usize, p: &Payload, b: &Batching) -> bool {
    !p.gzipped && p.signal == first.signal && len + p.body.len() <= b.max_bytes
}

/// Takes requests that can be merged with `first` from `rx`: those already queued, then
/// those that arrive within `b.wait`, until the next would not fit or `stop` resolves.
pub async fn gather(
    first: Payload,
    rx: &mut mpsc::Receiver<Payload>,
    b: &Batching,
    stop: impl std::future::Future<Output = ()>,
) -> Gathered {
    let alone = |payload| Gathered {
        payload,
        requests: 1,
        next: None,
    };
    if first.gzipped || first.body.len() >= b.max_bytes {
        return alone(first);
    }
    let mut len = first.body.len();
    let mut parts = vec![first];
    let mut next = None;
    let deadline = tokio::time::sleep(b.wait);
    tokio::pin!(deadline, stop);
    loop {
        let p = match rx.try_recv() {
            Ok(p) => p,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if b.wait.is_zero() => break,
            Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                biased;
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                () = &mut deadline => break,
                () = &mut stop => break,
            },
        };
        if !joins(&parts[0], len, &p, b) {
            next = Some(p);
            break;
        }
        len += p.body.len();
        parts.push(p);
    }
    if parts.len() == 1 {
        let mut g = alone(parts.remove(0));
        g.next = next;
        return g;
    }
    let mut body = BytesMut::with_capacity(len);
    let mut items = 0;
    for p in &parts {
        body.extend_from_slice(&p.body);
        items += p.items;
    }
    Gathered {
        payload: Payload {
            body: body.freeze(),
            items,
            signal: parts[0].signal,
            gzipped: false,
        },
        requests: parts.len() as u64,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Signal;
    use bytes::Bytes;

    fn p(body: &'static [u8], signal: Signal, gzipped: bool) -> Payload {
        Payload {
            body: Bytes::from_static(body),
            items: body.len() as u64,
            signal: Some(signal),
            gzipped,
        }
    }

    fn batching(max_bytes: usize, wait_ms: u64) -> Batching {
        Batching {
            max_bytes,
            wait: Duration::from_millis(wait_ms),
        }
    }

    #[tokio::test]
    async fn queued_requests_are_merged_in_order_up_to_the_size_limit() {
        let (tx, mut rx) = mpsc::channel(16);
        for b in [&b"bb"[..], b"ccc", b"dddd", b"e"] {
            tx.send(p(b, Signal::Traces, false)).await.expect("send");
        }
        let g = gather(
            p(b"a", Signal::Traces, false),
            &mut rx,
            &batching(6, 0),
            std::future::pending(),
        )
        .await;
        assert_eq!(&g.payload.body[..], b"abbccc");
        assert_eq!((g.payload.items, g.requests), (6, 3));
        assert!(!g.payload.gzipped);
        // The one that did not fit is handed back, the rest is still queued.
        assert_eq!(g.next.map(|n| n.body), Some(Bytes::from_static(b"dddd")));
        assert_eq!(
            rx.try_recv().map(|n| n.body).ok(),
            Some(Bytes::from_static(b"e"))
        );
    }

    #[tokio::test]
    async fn other_signals_and_compressed_bodies_are_not_merged() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(p(b"logs", Signal::Logs, false))
            .await
            .expect("send");
        let g = gather(
            p(b"t", Signal::Traces, false),
            &mut rx,
            &batching(100, 0),
            std::future::pending(),
        )
        .await;
        assert_eq!((&g.payload.body[..], g.requests), (&b"t"[..], 1));
        assert_eq!(g.next.map(|n| n.signal), Some(Some(Signal::Logs)));

        tx.send(p(b"gz", Signal::Traces, true)).await.expect("send");
        let g = gather(
            p(b"t", Signal::Traces, false),
            &mut rx,
            &batching(100, 0),
            std::future::pending(),
        )
        .await;
        assert_eq!(g.requests, 1);
        assert!(g.next.is_some_and(|n| n.gzipped));

        // A compressed first request goes alone without touching the queue.
        tx.send(p(b"t", Signal::Traces, false)).await.expect("send");
        let g = gather(
            p(b"gz", Signal::Traces, true),
            &mut rx,
            &batching(100, 0),
            std::future::pending(),
        )
        .await;
        assert!(g.payload.gzipped && g.requests == 1 && g.next.is_none());
        assert!(rx.try_recv().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_arriving_within_the_wait_are_merged_later_ones_are_not() {
        let (tx, mut rx) = mpsc::channel(16);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            tx.send(p(b"b", Signal::Metrics, false))
                .await
                .expect("send");
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(p(b"c", Signal::Metrics, false))
                .await
                .expect("send");
            tx
        });
        let g = gather(
            p(b"a", Signal::Metrics, false),
            &mut rx,
            &batching(100, 5),
            std::future::pending(),
        )
        .await;
        assert_eq!(&g.payload.body[..], b"ab");
        assert!(g.next.is_none());
        let _tx = sender.await.expect("sender");
        assert_eq!(
            rx.try_recv().map(|n| n.body).ok(),
            Some(Bytes::from_static(b"c"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_wait_with_what_was_gathered() {
        let (_tx, mut rx) = mpsc::channel::<Payload>(16);
        let g = gather(
            p(b"a", Signal::Logs, false),
            &mut rx,
            &batching(100, 60_000),
            tokio::time::sleep(Duration::from_millis(1)),
        )
        .await;
        assert_eq!((&g.payload.body[..], g.requests), (&b"a"[..], 1));
    }

    #[tokio::test]
    async fn merged_export_requests_decode_as_one_request_holding_all_of_them() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
        use prost::Message;
        let request = |services: &[&str]| ExportTraceServiceRequest {
            resource_spans: services
                .iter()
                .map(|s| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![crate::otlp::synth::kv_str("service.name", s)],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        };
        let (a, b) = (request(&["checkout", "cart"]), request(&["search"]));
        let payload = |r: &ExportTraceServiceRequest| Payload {
            body: Bytes::from(r.encode_to_vec()),
            items: r.resource_spans.len() as u64,
            signal: Some(Signal::Traces),
            gzipped: false,
        };
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(payload(&b)).await.expect("send");
        let g = gather(
            payload(&a),
            &mut rx,
            &batching(1 << 20, 0),
            std::future::pending(),
        )
        .await;
        assert_eq!(g.requests, 2);
        let merged = ExportTraceServiceRequest::decode(g.payload.body).expect("decodes");
        assert_eq!(merged, request(&["checkout", "cart", "search"]));
    }

    #[tokio::test]
    async fn a_request_over_the_limit_goes_alone() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(p(b"b", Signal::Traces, false)).await.expect("send");
        let g = gather(
            p(b"abcdef", Signal::Traces, false),
            &mut rx,
            &batching(4, 0),
            std::future::pending(),
        )
        .await;
        assert_eq!((&g.payload.body[..], g.requests), (&b"abcdef"[..], 1));
        assert!(g.next.is_none());
    }
}
