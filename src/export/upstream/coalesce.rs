//! Write coalescing for HTTP/2 upstream connections. hyper's HTTP/2 writes each frame (at
//! most 16 KiB of DATA) with a system call of its own and flushes after every one, so a
//! 100 KB message costs seven sends, seven TCP transmits and as many ACKs to process; on
//! the forwarding path those cost more CPU than everything else forwarding does.
//!
//! [`Coalesce`] sits between the TCP socket and TLS/HTTP/2. It gathers what is written and
//! sends it with one call when the connection next reads from the socket, or at once when
//! [`GATHER_LIMIT`] bytes have gathered. A flush with bytes gathered wakes the task driving
//! the connection, so that next read comes straight after the task has written what it had
//! (HTTP/2 connections always go back to reading the socket when they are polled); when the
//! socket itself was full, its readiness wakes the task instead. Shutdown sends everything
//! first.
//!
//! This relies on the one user it has: an HTTP/2 connection (h2, driven by
//! [`super::http2`]) reads the socket whenever it is polled, before it returns `Pending`. A
//! flush here therefore means "send before the next read", not "sent". Do not put it under
//! a protocol that may wait on a flush without reading (HTTP/1.1 clients do).

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Bytes gathered at most before they are sent without waiting for the next read: more
/// than a few 100 KB requests' frames, so a batch of frames goes in one send.
pub const GATHER_LIMIT: usize = 256 * 1024;

/// A connection whose writes are gathered and sent together (see the module doc).
#[derive(Debug)]
pub struct Coalesce<T> {
    inner: T,
    /// Bytes written and not yet sent; `buf[sent..]` is what is left to send.
    buf: Vec<u8>,
    sent: usize,
    /// The last send found the socket full: its readiness will wake the task.
    stalled: bool,
}

impl<T> Coalesce<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            stalled: false,
        }
    }

    fn gathered(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl<T: Write + Unpin> Coalesce<T> {
    /// Sends what has gathered; `Pending` when the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.stalled = true;
                    return Poll::Pending;
                }
            }
        }
        self.buf.clear();
        self.sent = 0;
        self.stalled = false;
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Write + Unpin> Read for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A full socket is not an error here: reading goes on, and the socket's readiness
        // brings the task back to send the rest.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if this.gathered() + len > GATHER_LIMIT {
            ready!(this.poll_send(cx))?;
            if len >= GATHER_LIMIT {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        if this.sent > 0 {
            // Part of the buffer went out (the socket took only some): drop what was sent,
            // so the buffer stays within the limit however long the socket stays full.
            this.buf.drain(..this.sent);
            this.sent = 0;
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gathered() == 0 {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.stalled {
            // Sent on the read that follows this wake-up, together with whatever else the
            // task writes before it.
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for Coalesce<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// A TCP connector (no Nagle) whose connections coalesce their writes.
#[derive(Clone, Debug)]
pub struct CoalescingConnector(pub HttpConnector);

type TcpIo = TokioIo<tokio::net::TcpStream>;

impl tower::Service<http::Uri> for CoalescingConnector {
    type Response = Coalesce<TcpIo>;
    type Error = <HttpConnector as tower::Service<http::Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(Coalesce::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A socket pair with the client side wrapped.
    async fn pair() -> (TokioIo<Coalesce<TcpIo>>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), async {
            listener.accept().await.unwrap().0
        });
        let client = Coalesce::new(TokioIo::new(client.unwrap()));
        (TokioIo::new(client), server)
    }

    #[tokio::test]
    async fn gathered_writes_are_sent_on_the_next_read_and_at_shutdown() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"one ").await.unwrap();
        client.write_all(b"two").await.unwrap();
        client.flush().await.unwrap();
        assert_eq!(
            client.inner().gathered(),
            7,
            "flush only schedules the send"
        );
        // The read sends first; the server answers what it got.
        let answer = tokio::spawn(async move {
            let mut got = [0u8; 7];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(b"ok").await.unwrap();
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.unwrap();
            (got, rest)
        });
        let mut ok = [0u8; 2];
        client.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"ok");
        client.write_all(b"last").await.unwrap();
        client.shutdown().await.unwrap();
        let (got, rest) = answer.await.unwrap();
        assert_eq!(&got, b"one two");
        assert_eq!(rest, b"last");
    }

    #[tokio::test]
    async fn more_than_the_limit_is_sent_without_waiting_and_nothing_is_reordered() {
        let (mut client, mut server) = pair().await;
        let data: Vec<u8> = (0..3 * GATHER_LIMIT + 5).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expect.len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expect);
        });
        for chunk in data.chunks(16 * 1024 + 9) {
            client.write_all(chunk).await.unwrap();
        }
        assert!(client.inner().gathered() < GATHER_LIMIT);
        client.shutdown().await.unwrap();
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_socket_keeps_the_buffer_within_the_limit() {
        let (mut client, mut server) = pair().await;
        // Nobody reads: the socket fills, sends become partial, then stop.
        let chunk = vec![7u8; 16 * 1024 + 9];
        let mut written = 0usize;
        loop {
            let w =
                tokio::time::timeout(Duration::from_millis(200), client.write_all(&chunk)).await;
            if w.is_err() {
                break;
            }
            written += chunk.len();
            assert!(written < 256 << 20, "the socket never filled");
        }
        let held = client.inner().buf.len();
        assert!(held <= GATHER_LIMIT, "{held} bytes held");
        // Everything written still arrives once the peer reads.
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    return got;
                }
                assert!(buf[..n].iter().all(|&b| b == 7));
                got += n;
            }
        });
        client.shutdown().await.unwrap();
        drop(client);
        let got = reader.await.unwrap();
        assert_eq!(got, written);
    }

    #[tokio::test]
    async fn a_flush_with_bytes_gathered_wakes_the_task_to_send_them() {
        let (mut client, _server) = pair().await;
        client.write_all(b"frame").await.unwrap();
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let flushed = Pin::new(client.inner_mut()).poll_flush(&mut cx);
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
