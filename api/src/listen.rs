//! Connections: the accept loop with a cap on open connections, hyper's HTTP/1 server
//! with a header-read timeout, an idle timeout, graceful shutdown, and the open-file
//! limit raised at start-up.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::settings::HttpSettings;

const TARGET: &str = "tidemark_api::listen";

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits for the open
/// connections to finish their requests (the caller bounds that wait).
///
/// At most `max_connections` are open at once: beyond that the loop stops accepting
/// (new clients wait in the kernel's backlog) until one closes.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout).keep_alive(true);
    let idle = settings.idle_timeout;
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(io::Error::other)?,
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // E.g. out of file descriptors: wait for some to close, as axum::serve does.
                    tracing::warn!(target: TARGET, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked { stream, activity: activity.clone() });
        let service = hyper::service::service_fn({
            let (app, activity) = (app.clone(), activity.clone());
            move |req: Request<Incoming>| {
                let busy = Busy::new(activity.clone());
                let call = app.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let response = match call.await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    if is_event_stream(&response) {
                        return Ok::<_, std::convert::Infallible>(hold_until_end(response, busy));
                    }
                    drop(busy);
                    Ok(response)
                }
            }
        });
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = conn => {}
                () = activity.idle_for(idle) => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What a connection did last: the time of its last progress (milliseconds since
/// `start`) and how many of its requests are being handled.
struct Activity {
    start: Instant,
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection made no progress for `limit` while none of its
    /// requests was being handled.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            if self.busy.load(Ordering::Relaxed) == 0 && last.elapsed() >= limit {
                return;
            }
            let until = (last + limit).max(Instant::now() + limit / 8);
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Whether `response` is a server-sent event stream (`/v1/stream`).
fn is_event_stream(response: &Response) -> bool {
    response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// `response` with `busy` held until its body ends: a stream is a request being handled
/// for as long as it lasts, so the idle timeout never closes it — not while its client
/// reads slowly or not at all (it lags and catches up instead), nor while its filter
/// matches nothing for longer than the timeout.
fn hold_until_end(response: Response, busy: Busy) -> Response {
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _busy = &busy;
            chunk
        }))
    })
}

/// A request being handled on a connection, from its head to its response's head (to
/// the end of its body for a stream).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records each read or write that moved bytes.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The open-file limits, soft and hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// The soft limit (the one enforced).
    pub soft: u64,
    /// The hard limit (the most the soft one may be raised to).
    pub hard: u64,
}

/// Raises the open-file soft limit to the hard limit; returns the limits before and
/// after.
pub fn raise_open_file_limit() -> io::Result<(FileLimits, FileLimits)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = FileLimits { soft: lim.rlim_cur, hard: lim.rlim_max };
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, FileLimits { soft: lim.rlim_cur, hard: lim.rlim_max }))
}
