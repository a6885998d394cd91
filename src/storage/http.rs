//! Every request kiln makes to an object store goes through [`Observed`], wrapped around
//! object_store's own reqwest client. It counts requests and the failed attempts that
//! object_store retries — throttling (429, 503), other server errors (5xx), connections
//! that fail or drop mid-body — for the report, and it lowers the number of requests in
//! flight while the store throttles, raising it again after: additive increase,
//! multiplicative decrease, as TCP does and as the AWS SDKs' adaptive retry mode does.
//! The limit is halved on a throttled response (at most once per
//! [`DECREASE_INTERVAL`], so one burst of 503s halves it once) and grows by one after
//! each round of as many successful requests as the limit, up to `run.io_concurrency`.
//!
//! The counters and the limit are per process, across the run's stores: one `kiln` run
//! is one process.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    ReqwestConnector,
};
use serde::Serialize;
use tokio::sync::Notify;

/// Shortest time between two decreases of the limit.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(200);

/// What the store's requests met, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Requests sent (each retry is a request).
    pub requests: u64,
    /// Responses 429 or 503 (SlowDown): throttled, retried after a backoff.
    pub throttled: u64,
    /// Other 5xx responses, retried.
    pub server_errors: u64,
    /// Requests whose connection failed or timed out, or whose body was cut off.
    pub connection_errors: u64,
    /// The lowest the limit on requests in flight went while throttled (absent when
    /// never throttled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowest_concurrency: Option<usize>,
    /// The limit at the end of the run (absent when never throttled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_at_end: Option<usize>,
}

struct Limiter {
    /// Requests allowed in flight.
    limit: AtomicUsize,
    /// The most `limit` may grow back to (`run.io_concurrency`).
    max: AtomicUsize,
    in_flight: AtomicUsize,
    /// Successes since the limit last changed.
    successes: AtomicUsize,
    lowest: AtomicUsize,
    last_decrease: Mutex<Option<Instant>>,
    freed: Notify,
    requests: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    connection_errors: AtomicU64,
}

/// No limit until [`set_max_concurrency`] says otherwise.
const UNSET: usize = usize::MAX;

static LIMITER: Limiter = Limiter {
    limit: AtomicUsize::new(UNSET),
    max: AtomicUsize::new(UNSET),
    in_flight: AtomicUsize::new(0),
    successes: AtomicUsize::new(0),
    lowest: AtomicUsize::new(UNSET),
    last_decrease: Mutex::new(None),
    freed: Notify::const_new(),
    requests: AtomicU64::new(0),
    throttled: AtomicU64::new(0),
    server_errors: AtomicU64::new(0),
    connection_errors: AtomicU64::new(0),
};

/// Sets the most requests in flight (`run.io_concurrency`): the limit starts there and
/// grows back to it after throttling.
pub fn set_max_concurrency(n: usize) {
    let n = n.max(1);
    LIMITER.max.store(n, Ordering::Relaxed);
    LIMITER.limit.store(n, Ordering::Relaxed);
}

/// The counts so far.
pub fn counts() -> RequestCounts {
    let l = &LIMITER;
    let lowest = l.lowest.load(Ordering::Relaxed);
    let throttled = lowest != UNSET;
    RequestCounts {
        requests: l.requests.load(Ordering::Relaxed),
        throttled: l.throttled.load(Ordering::Relaxed),
        server_errors: l.server_errors.load(Ordering::Relaxed),
        connection_errors: l.connection_errors.load(Ordering::Relaxed),
        lowest_concurrency: throttled.then_some(lowest),
        concurrency_at_end: throttled.then(|| l.limit.load(Ordering::Relaxed)),
    }
}

impl Limiter {
    /// Waits for a place among the requests in flight.
    async fn acquire(&'static self) -> Permit {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.in_flight.load(Ordering::Acquire);
            if now < self.limit.load(Ordering::Acquire) {
                if self
                    .in_flight
                    .compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Permit;
                }
                continue;
            }
            notified.await;
        }
    }

    fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut last = self
            .last_decrease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < DECREASE_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let limit = self.limit.load(Ordering::Acquire);
        // Unset (no io_concurrency given, as in `kiln plan`): start from what is in flight.
        let from = if limit == UNSET {
            self.in_flight.load(Ordering::Acquire).max(1)
        } else {
            limit
        };
        let halved = (from / 2).max(1);
        self.limit.store(halved, Ordering::Release);
        self.successes.store(0, Ordering::Relaxed);
        self.lowest.fetch_min(halved, Ordering::Relaxed);
        tracing::debug!(
            limit = halved,
            "the store is throttling: fewer requests in flight"
        );
    }

    fn succeeded(&self) {
        let limit = self.limit.load(Ordering::Acquire);
        let max = self.max.load(Ordering::Relaxed);
        if limit >= max {
            return;
        }
        if self.successes.fetch_add(1, Ordering::AcqRel) + 1 >= limit {
            self.successes.store(0, Ordering::Relaxed);
            if self
                .limit
                .compare_exchange(limit, limit + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.freed.notify_waiters();
            }
        }
    }
}

/// A place among the requests in flight, given back when dropped.
struct Permit;

impl Drop for Permit {
    fn drop(&mut self) {
        LIMITER.in_flight.fetch_sub(1, Ordering::AcqRel);
        LIMITER.freed.notify_one();
    }
}

/// The connector every store is built with.
#[derive(Debug, Default)]
pub struct ObservedConnector(ReqwestConnector);

impl HttpConnector for ObservedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = self.0.connect(options)?;
        Ok(HttpClient::new(Observed(inner)))
    }
}

#[derive(Debug)]
struct Observed(HttpClient);

impl HttpService for Observed {
    fn call<'a, 'b>(
        &'a self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let permit = LIMITER.acquire().await;
            LIMITER.requests.fetch_add(1, Ordering::Relaxed);
            let got = self.0.execute(req).await;
            match &got {
                Ok(r) if matches!(r.status().as_u16(), 429 | 503) => LIMITER.throttled(),
                Ok(r) if r.status().is_server_error() => {
                    LIMITER.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => LIMITER.succeeded(),
                Err(_) => {
                    LIMITER.connection_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
            got.map(|r| r.map(|body| HttpResponseBody::new(CountedBody(Box::pin(body)))))
        })
    }
}

/// A response body that counts an error (a connection dropped mid-body, which
/// object_store retries from where it was).
struct CountedBody(Pin<Box<HttpResponseBody>>);

impl Body for CountedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = self.0.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            LIMITER.connection_errors.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
