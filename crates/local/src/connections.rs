//! The local server's connections: HTTP/1.1, each with two deadlines, so that a client that opens
//! sockets and sends half a header, or nothing, or stalls half way through a body, holds none of
//! them for long; and a stop that lets requests in flight finish, for a bounded time.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never runs under it; this
//! loop serves the same `Router` with one.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

/// How long requests in flight may take to finish once the runner is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The deadlines of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's whole head (request line and headers) must arrive within this long of the
    /// connection opening, or of the previous response: also how long a kept-alive connection may
    /// sit idle (`HEADER_TIMEOUT_SECONDS`).
    pub header: Duration,
    /// A connection on which no byte moves, either way, for this long while the server waits on
    /// it (a stalled upload body, a download nobody reads) is closed (`IDLE_TIMEOUT_SECONDS`).
    pub idle: Duration,
}

/// Serves `router` on `listener` until `stop` completes, then lets the requests in flight finish
/// for at most [`STOP_GRACE`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    stop: impl Future<Output = ()>,
) {
    let (stopping, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait for connections to close, then go on.
                    warn!(error = %e, "connection not accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop_rx = stop_rx.clone();
        connections.spawn(async move {
            let io = TokioIo::new(Idle::new(stream, timeouts.idle));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header);
            let connection = builder.serve_connection(io, service);
            let mut connection = pin!(connection);
            let mut told = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            debug!(error = %e, "connection closed");
                        }
                        break;
                    }
                    _ = stop_rx.changed(), if !told => {
                        // The request in flight finishes; an idle connection closes now.
                        connection.as_mut().graceful_shutdown();
                        told = true;
                    }
                }
            }
        });
        // Finished connections are reaped as new ones come, so the set stays as large as the
        // connections open.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(
            open = connections.len(),
            "connections still open after {} s of stopping: closed",
            STOP_GRACE.as_secs()
        );
        connections.abort_all();
    }
}

/// A socket that fails with `TimedOut` once no byte has moved on it, either way, for `idle`, while
/// the server waits on it.
struct Idle {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        Self {
            stream,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// What to answer for a read or write that is still waiting: an error once the deadline has
    /// passed (and a wake-up registered for it until then).
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing moved for {} s", self.idle.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.waiting(cx),
            failed => failed,
        }
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => this.waiting(cx),
            failed => failed,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.waiting(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
