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

use super::Payload;
use bytes::BytesMut;
use std::collections::VecDeque;
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

/// Payloads set aside while gathering at most (other signals, compressed ones); past this
/// the batch is sent as it is.
const MAX_ASIDE: usize = 64;

/// The receiving end of a delivery queue, shared by its workers (under one lock), with the
/// payloads a batch took but could not use: those go first, in the order they came.
#[derive(Debug)]
pub struct Source {
    rx: mpsc::Receiver<Payload>,
    front: VecDeque<Payload>,
}

impl Source {
    /// The receiving end `rx`, nothing set aside.
    pub fn new(rx: mpsc::Receiver<Payload>) -> Self {
        Self {
            rx,
            front: VecDeque::new(),
        }
    }

    /// The next payload, waiting for one; `None` once the queue is closed and empty.
    pub async fn next(&mut self) -> Option<Payload> {
        match self.front.pop_front() {
            Some(p) => Some(p),
            None => self.rx.recv().await,
        }
    }

    /// The next payload if there is one now.
    pub fn try_next(&mut self) -> Option<Payload> {
        self.front.pop_front().or_else(|| self.rx.try_recv().ok())
    }
}

/// Requests taken from the queue for one send.
#[derive(Debug)]
pub struct Gathered {
    /// What to send: the requests' bodies back to back (or the one request as it was).
    pub payload: Payload,
    /// The requests merged into `payload`, as they were (empty when it is one request).
    pub parts: Vec<Payload>,
}

impl Gathered {
    /// One request on its own.
    pub fn one(payload: Payload) -> Self {
        Self {
            payload,
            parts: Vec::new(),
        }
    }

    /// How many queued requests it holds.
    pub fn requests(&self) -> u64 {
        self.parts.len().max(1) as u64
    }

    /// The queued requests it holds, as they were received.
    pub fn received(&self) -> &[Payload] {
        if self.parts.is_empty() {
            std::slice::from_ref(&self.payload)
        } else {
            &self.parts
        }
    }
}

/// Takes requests that can be merged with `first` from `src`: those already queued, then
/// those that arrive within `b.wait`, until one would not fit or `stop` resolves. Requests of
/// other signals and compressed ones met meanwhile are put back, ahead of the rest.
pub async fn gather(
    first: Payload,
    src: &mut Source,
    b: &Batching,
    stop: impl std::future::Future<Output = ()>,
) -> Gathered {
    if first.gzipped || first.body.len() >= b.max_bytes {
        return Gathered::one(first);
    }
    let mut len = first.body.len();
    let mut parts = vec![first];
    let mut aside = Vec::new();
    let deadline = tokio::time::sleep(b.wait);
    tokio::pin!(deadline, stop);
    loop {
        let p = match src.try_next() {
            Some(p) => p,
            None if b.wait.is_zero() => break,
            None => tokio::select! {
                biased;
                p = src.rx.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                () = &mut deadline => break,
                () = &mut stop => break,
            },
        };
        if p.gzipped || p.signal != parts[0].signal {
            aside.push(p);
            if aside.len() >= MAX_ASIDE {
                break;
            }
            continue;
        }
        if len + p.body.len() > b.max_bytes {
            aside.push(p);
            break;
        }
        len += p.body.len();
        parts.push(p);
    }
    for p in aside.into_iter().rev() {
        src.front.push_front(p);
    }
    if parts.len() == 1 {
        return Gathered::one(parts.remove(0));
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
        parts,
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

    /// Gathers with no wait and no stop: only what is queued already.
    async fn gather_now(first: Payload, src: &mut Source, max_bytes: usize) -> Gathered {
        gather(first, src, &batching(max_bytes, 0), std::future::pending()).await
    }

    /// A source holding `queued`, and its sending end.
    fn source(queued: Vec<Payload>) -> (mpsc::Sender<Payload>, Source) {
        let (tx, rx) = mpsc::channel(256);
        for q in queued {
            tx.try_send(q).expect("room");
        }
        (tx, Source::new(rx))
    }

    /// The bodies left in `src`, in the order they would be taken.
    fn left(src: &mut Source) -> Vec<Bytes> {
        std::iter::from_fn(|| src.try_next())
            .map(|p| p.body)
            .collect()
    }

    #[tokio::test]
    async fn queued_requests_are_merged_in_order_up_to_the_size_limit() {
        let queued = [&b"bb"[..], b"ccc", b"dddd", b"e"];
        let (_tx, mut src) = source(
            queued
                .iter()
                .map(|&b| Payload {
                    body: Bytes::copy_from_slice(b),
                    items: b.len() as u64,
                    signal: Some(Signal::Traces),
                    gzipped: false,
                })
                .collect(),
        );
        let g = gather_now(p(b"a", Signal::Traces, false), &mut src, 6).await;
        assert_eq!(&g.payload.body[..], b"abbccc");
        assert_eq!((g.payload.items, g.requests()), (6, 3));
        assert!(!g.payload.gzipped);
        let parts: Vec<Bytes> = g.parts.iter().map(|p| p.body.clone()).collect();
        assert_eq!(parts, [&b"a"[..], b"bb", b"ccc"]);
        // The one that did not fit is next, ahead of the rest.
        assert_eq!(left(&mut src), [&b"dddd"[..], b"e"]);
    }

    #[tokio::test]
    async fn other_signals_and_compressed_bodies_are_put_back_in_order() {
        let (_tx, mut src) = source(vec![
            p(b"l1", Signal::Logs, false),
            p(b"t2", Signal::Traces, false),
            p(b"gz", Signal::Traces, true),
            p(b"m1", Signal::Metrics, false),
            p(b"t3", Signal::Traces, false),
        ]);
        let g = gather_now(p(b"t1", Signal::Traces, false), &mut src, 100).await;
        assert_eq!(&g.payload.body[..], b"t1t2t3");
        assert_eq!(left(&mut src), [&b"l1"[..], b"gz", b"m1"]);

        // A compressed first request goes alone without touching the queue.
        let (_tx, mut src) = source(vec![p(b"t", Signal::Traces, false)]);
        let g = gather_now(p(b"gz", Signal::Traces, true), &mut src, 100).await;
        assert!(g.payload.gzipped && g.requests() == 1 && g.parts.is_empty());
        assert_eq!(left(&mut src), [&b"t"[..]]);
    }

    #[tokio::test]
    async fn what_was_put_back_is_merged_by_the_next_gathering() {
        let (_tx, mut src) = source(vec![
            p(b"l1", Signal::Logs, false),
            p(b"t2", Signal::Traces, false),
            p(b"l2", Signal::Logs, false),
        ]);
        let g = gather_now(p(b"t1", Signal::Traces, false), &mut src, 100).await;
        assert_eq!(&g.payload.body[..], b"t1t2");
        let first = src.try_next().expect("set aside");
        let g = gather_now(first, &mut src, 100).await;
        assert_eq!(&g.payload.body[..], b"l1l2");
        assert!(src.try_next().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_arriving_within_the_wait_are_merged_later_ones_are_not() {
        let (tx, mut src) = source(Vec::new());
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
        let started = tokio::time::Instant::now();
        let g = gather(
            p(b"a", Signal::Metrics, false),
            &mut src,
            &batching(100, 5),
            std::future::pending(),
        )
        .await;
        assert_eq!(&g.payload.body[..], b"ab");
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        let _tx = sender.await.expect("sender");
        assert_eq!(left(&mut src), [&b"c"[..]]);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_wait_with_what_was_gathered() {
        let (_tx, mut src) = source(Vec::new());
        let started = tokio::time::Instant::now();
        let g = gather(
            p(b"a", Signal::Logs, false),
            &mut src,
            &batching(100, 60_000),
            tokio::time::sleep(Duration::from_millis(1)),
        )
        .await;
        assert_eq!((&g.payload.body[..], g.requests()), (&b"a"[..], 1));
        assert_eq!(started.elapsed(), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn merged_export_requests_decode_as_one_request_holding_all_of_them() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
        use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
        use prost::Message;
        let resource = |s: &str| {
            Some(Resource {
                attributes: vec![crate::otlp::synth::kv_str("service.name", s)],
                ..Default::default()
            })
        };
        async fn merged<M: Message + Default>(signal: Signal, a: &M, b: &M) -> M {
            let payload = |m: &M| Payload {
                body: Bytes::from(m.encode_to_vec()),
                items: 1,
                signal: Some(signal),
                gzipped: false,
            };
            let (_tx, mut src) = source(vec![payload(b)]);
            let g = gather_now(payload(a), &mut src, 1 << 20).await;
            assert_eq!(g.requests(), 2);
            M::decode(g.payload.body).expect("decodes")
        }
        let traces = |services: &[&str]| ExportTraceServiceRequest {
            resource_spans: services
                .iter()
                .map(|s| ResourceSpans {
                    resource: resource(s),
                    ..Default::default()
                })
                .collect(),
        };
        let got = merged(
            Signal::Traces,
            &traces(&["checkout", "cart"]),
            &traces(&["search"]),
        )
        .await;
        assert_eq!(got, traces(&["checkout", "cart", "search"]));
        let metrics = |services: &[&str]| ExportMetricsServiceRequest {
            resource_metrics: services
                .iter()
                .map(|s| ResourceMetrics {
                    resource: resource(s),
                    ..Default::default()
                })
                .collect(),
        };
        let got = merged(Signal::Metrics, &metrics(&["a"]), &metrics(&["b", "c"])).await;
        assert_eq!(got, metrics(&["a", "b", "c"]));
        let logs = |services: &[&str]| ExportLogsServiceRequest {
            resource_logs: services
                .iter()
                .map(|s| ResourceLogs {
                    resource: resource(s),
                    ..Default::default()
                })
                .collect(),
        };
        let got = merged(Signal::Logs, &logs(&["x"]), &logs(&["y"])).await;
        assert_eq!(got, logs(&["x", "y"]));
    }

    #[tokio::test]
    async fn a_request_over_the_limit_goes_alone() {
        let (_tx, mut src) = source(vec![p(b"b", Signal::Traces, false)]);
        let g = gather_now(p(b"abcdef", Signal::Traces, false), &mut src, 4).await;
        assert_eq!((&g.payload.body[..], g.requests()), (&b"abcdef"[..], 1));
        assert_eq!(left(&mut src), [&b"b"[..]]);
    }
}
