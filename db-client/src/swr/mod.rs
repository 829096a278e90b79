//! A stale-while-revalidate cache of one value (crate-private: the caches of
//! [`DbClient`](crate::DbClient) are built on it).
//!
//! [`Swr`] holds the last value its fetch function returned successfully and serves it
//! without waiting:
//!
//! - a **fresh** value (fetched less than [`SwrOptions::fresh_for`] ago) is returned at once;
//! - a **stale** value is returned at once too, and the read starts a revalidation in the
//!   background unless one is already running: at most one fetch is ever in flight
//!   (single flight), however many readers there are;
//! - a failed fetch is kept as an error value ([`Lookup::error`]) next to the last good
//!   value, which it never replaces;
//! - the fetch function receives the cached value, so it can compare old and new;
//! - a background task revalidates proactively — at once on construction (warming),
//!   then every [`SwrOptions::refresh_every`], or every
//!   [`SwrOptions::refresh_every_while_empty`] while the value is absent or "empty", and
//!   with exponential backoff between [`SwrOptions::retry_min`] and
//!   [`SwrOptions::retry_max`] after failures.
//!
//! Background tasks stop when the cancellation token passed to [`Swr::new`] is cancelled
//! or when the last handle to the cache is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Timing of an [`Swr`] cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwrOptions {
    /// A value fetched less than this long ago is fresh; older values are stale.
    pub(crate) fresh_for: Duration,
    /// Interval of proactive revalidation while a non-empty value is cached.
    pub(crate) refresh_every: Duration,
    /// Interval of proactive revalidation while no value, or an empty one (see
    /// [`Swr::with_empty_check`]), is cached.
    pub(crate) refresh_every_while_empty: Duration,
    /// Delay before the first retry after a failure; doubled after each further failure.
    pub(crate) retry_min: Duration,
    /// Longest delay between retries after failures.
    pub(crate) retry_max: Duration,
}

impl SwrOptions {
    /// Options where values stay fresh for `every` and are refreshed on that interval;
    /// retries back off from 100 ms up to `every` (at least 100 ms).
    pub(crate) fn every(every: Duration) -> Self {
        Self {
            fresh_for: every,
            refresh_every: every,
            refresh_every_while_empty: every,
            retry_min: Duration::from_millis(100).min(every),
            retry_max: every.max(Duration::from_millis(100)),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.retry_min.saturating_mul(1 << exp).min(self.retry_max)
    }
}

/// What a read of an [`Swr`] found.
#[derive(Debug)]
pub(crate) struct Lookup<T, E> {
    /// The last value fetched successfully, if any.
    pub(crate) value: Option<Arc<T>>,
    /// How long ago `value` was fetched.
    pub(crate) age: Option<Duration>,
    /// True when `value` is present and younger than [`SwrOptions::fresh_for`].
    pub(crate) fresh: bool,
    /// The error of the latest fetch, when it failed (cleared by the next success).
    pub(crate) error: Option<Arc<E>>,
    /// True once at least one fetch has completed, successfully or not.
    pub(crate) attempted: bool,
}

impl<T, E> Clone for Lookup<T, E> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            age: self.age,
            fresh: self.fresh,
            error: self.error.clone(),
            attempted: self.attempted,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type FetchFn<T, E> = dyn Fn(Option<Arc<T>>) -> BoxFuture<Result<T, E>> + Send + Sync;
type EmptyFn<T> = dyn Fn(&T) -> bool + Send + Sync;

/// A stale-while-revalidate cache of one value of type `T`, fetched by a function that
/// may fail with `E`. Cheap to clone; clones share the value.
pub(crate) struct Swr<T, E> {
    inner: Arc<Inner<T, E>>,
    _stop_on_drop: Arc<DropGuard>,
}

impl<T, E> Clone for Swr<T, E> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), _stop_on_drop: self._stop_on_drop.clone() }
    }
}

impl<T, E> fmt::Debug for Swr<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Swr").field("name", &self.inner.name).field("options", &self.inner.options).finish()
    }
}

struct Inner<T, E> {
    name: &'static str,
    options: SwrOptions,
    fetch: Box<FetchFn<T, E>>,
    is_empty: Option<Box<EmptyFn<T>>>,
    state: Mutex<State<T, E>>,
    /// The number of the last completed fetch; waiters watch it.
    completed: watch::Sender<u64>,
    cancel: CancellationToken,
    runtime: tokio::runtime::Handle,
}

struct State<T, E> {
    value: Option<(Arc<T>, Instant)>,
    error: Option<Arc<E>>,
    /// Number of the fetch in flight, if any.
    in_flight: Option<u64>,
    /// Fetches started so far (the number of the latest one).
    started: u64,
    attempted: bool,
    failures: u32,
    last_failure: Option<Instant>,
    /// When the proactive loop revalidates next.
    next_due: Instant,
}

impl<T, E> Inner<T, E> {
    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn empty(&self, value: &T) -> bool {
        self.is_empty.as_ref().is_some_and(|f| f(value))
    }
}

impl<T, E> Swr<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Builds the cache and starts warming it at once: the first fetch runs in the
    /// background right away, then the proactive loop keeps the value fresh until
    /// `cancel` is cancelled or every handle is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the background task).
    pub(crate) fn new<F, Fut>(
        name: &'static str,
        options: SwrOptions,
        cancel: CancellationToken,
        fetch: F,
    ) -> Self
    where
        F: Fn(Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Self::build(name, options, cancel, Box::new(move |prev| Box::pin(fetch(prev))), None)
    }

    /// Like [`Swr::new`], with a predicate saying when a successfully fetched value is
    /// "empty" (e.g. "no row yet"): while it is, the proactive loop uses
    /// [`SwrOptions::refresh_every_while_empty`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub(crate) fn with_empty_check<F, Fut, P>(
        name: &'static str,
        options: SwrOptions,
        cancel: CancellationToken,
        is_empty: P,
        fetch: F,
    ) -> Self
    where
        F: Fn(Option<Arc<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        P: Fn(&T) -> bool + Send + Sync + 'static,
    {
        Self::build(
            name,
            options,
            cancel,
            Box::new(move |prev| Box::pin(fetch(prev))),
            Some(Box::new(is_empty)),
        )
    }

    fn build(
        name: &'static str,
        options: SwrOptions,
        cancel: CancellationToken,
        fetch: Box<FetchFn<T, E>>,
        is_empty: Option<Box<EmptyFn<T>>>,
    ) -> Self {
        let cancel = cancel.child_token();
        let inner = Arc::new(Inner {
            name,
            options,
            fetch,
            is_empty,
            state: Mutex::new(State {
                value: None,
                error: None,
                in_flight: None,
                started: 0,
                attempted: false,
                failures: 0,
                last_failure: None,
                next_due: Instant::now(),
            }),
            completed: watch::Sender::new(0),
            cancel: cancel.clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let swr = Self { inner: inner.clone(), _stop_on_drop: Arc::new(cancel.drop_guard()) };
        inner.runtime.spawn(proactive_loop(inner.clone()));
        swr
    }

    /// Returns the cached value at once, fresh or stale, never waiting for the database.
    ///
    /// **Freshness invariant** (enforced here): the lookup is `fresh` iff the value was
    /// fetched less than `fresh_for` ago. A read that finds no fresh value starts a
    /// revalidation unless one is already in flight or the last fetch failed less than
    /// the current backoff ago; so at most one fetch is ever in flight, and a failing
    /// source sees at most one attempt per backoff period however many readers there
    /// are. A failed fetch never replaces the value: it is reported in `error` alongside.
    pub(crate) fn get(&self) -> Lookup<T, E> {
        let now = Instant::now();
        let mut state = self.inner.lock();
        let lookup = lookup(&state, &self.inner.options, now);
        if !lookup.fresh && may_start(&state, &self.inner.options, now) {
            start(&self.inner, &mut state);
        }
        lookup
    }

    /// Returns the cached value like [`Swr::get`] without ever starting a revalidation.
    pub(crate) fn peek(&self) -> Lookup<T, E> {
        let state = self.inner.lock();
        lookup(&state, &self.inner.options, Instant::now())
    }

    /// Starts a revalidation now unless one is in flight or the source is backing off
    /// after a failure, and returns without waiting. Returns true when one was started.
    pub(crate) fn trigger(&self) -> bool {
        let mut state = self.inner.lock();
        if may_start(&state, &self.inner.options, Instant::now()) {
            start(&self.inner, &mut state);
            true
        } else {
            false
        }
    }

    /// Revalidates now — joining the fetch in flight, if any, instead of starting a
    /// second one — and waits for it to complete (or for the cache to be shut down).
    #[cfg(test)]
    pub(crate) async fn revalidate(&self) -> Lookup<T, E> {
        revalidate(&self.inner).await;
        self.peek()
    }

    /// Waits until at least one fetch has completed (successfully or not), or the cache
    /// is shut down.
    pub(crate) async fn first_attempt(&self) {
        let mut rx = self.inner.completed.subscribe();
        tokio::select! {
            _ = self.inner.cancel.cancelled() => {}
            _ = rx.wait_for(|done| *done > 0) => {}
        }
    }

    /// How many fetches have been started since construction.
    #[cfg(test)]
    pub(crate) fn fetches_started(&self) -> u64 {
        self.inner.lock().started
    }
}

fn lookup<T, E>(state: &State<T, E>, options: &SwrOptions, now: Instant) -> Lookup<T, E> {
    let age = state.value.as_ref().map(|(_, at)| now.saturating_duration_since(*at));
    Lookup {
        value: state.value.as_ref().map(|(v, _)| v.clone()),
        age,
        fresh: age.is_some_and(|a| a < options.fresh_for),
        error: state.error.clone(),
        attempted: state.attempted,
    }
}

fn may_start<T, E>(state: &State<T, E>, options: &SwrOptions, now: Instant) -> bool {
    if state.in_flight.is_some() {
        return false;
    }
    match state.last_failure {
        Some(at) if state.failures > 0 => {
            now.saturating_duration_since(at) >= options.backoff(state.failures)
        }
        _ => true,
    }
}

/// Starts a fetch; the caller holds the lock and has checked that none is in flight.
fn start<T, E>(inner: &Arc<Inner<T, E>>, state: &mut State<T, E>) -> u64
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    state.started += 1;
    let number = state.started;
    state.in_flight = Some(number);
    let previous = state.value.as_ref().map(|(v, _)| v.clone());
    inner.runtime.spawn(run_fetch(inner.clone(), number, previous));
    number
}

/// Completes a fetch when dropped, even if the fetch panicked or was cancelled, so that
/// `in_flight` never stays set.
struct Flight<T, E> {
    inner: Arc<Inner<T, E>>,
    number: u64,
    result: Option<Result<T, E>>,
}

impl<T, E> Drop for Flight<T, E> {
    fn drop(&mut self) {
        let inner = &self.inner;
        let now = Instant::now();
        {
            let mut state = inner.lock();
            if state.in_flight == Some(self.number) {
                state.in_flight = None;
            }
            state.attempted = true;
            match self.result.take() {
                Some(Ok(value)) => {
                    let every = if inner.empty(&value) {
                        inner.options.refresh_every_while_empty
                    } else {
                        inner.options.refresh_every
                    };
                    state.value = Some((Arc::new(value), now));
                    state.error = None;
                    state.failures = 0;
                    state.last_failure = None;
                    state.next_due = now + every;
                }
                Some(Err(error)) => {
                    state.error = Some(Arc::new(error));
                    state.failures = state.failures.saturating_add(1);
                    state.last_failure = Some(now);
                    state.next_due = now + inner.options.backoff(state.failures);
                    tracing::debug!(target: "tidemark_db_client::swr", cache = inner.name,
                        failures = state.failures, "revalidation failed; keeping the last good value");
                }
                None => {
                    // Panicked or cancelled: count it as a failure without an error value.
                    state.failures = state.failures.saturating_add(1);
                    state.last_failure = Some(now);
                    state.next_due = now + inner.options.backoff(state.failures);
                }
            }
        }
        inner.completed.send_replace(self.number);
    }
}

async fn run_fetch<T, E>(inner: Arc<Inner<T, E>>, number: u64, previous: Option<Arc<T>>)
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let mut flight = Flight { inner: inner.clone(), number, result: None };
    let fetch = (inner.fetch)(previous);
    tokio::select! {
        _ = inner.cancel.cancelled() => {}
        result = fetch => flight.result = Some(result),
    }
}

/// Starts a fetch (or joins the one in flight) and waits for it.
async fn revalidate<T, E>(inner: &Arc<Inner<T, E>>)
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let mut rx = inner.completed.subscribe();
    let target = {
        let mut state = inner.lock();
        match state.in_flight {
            Some(n) => n,
            None => start(inner, &mut state),
        }
    };
    tokio::select! {
        _ = inner.cancel.cancelled() => {}
        _ = rx.wait_for(|done| *done >= target) => {}
    }
}

/// Revalidates whenever the value comes due; the schedule is recomputed after every
/// completed fetch, whoever started it.
async fn proactive_loop<T, E>(inner: Arc<Inner<T, E>>)
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let mut completed = inner.completed.subscribe();
    loop {
        let due = inner.lock().next_due;
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            changed = completed.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(due) => {}
        }
        revalidate(&inner).await;
        completed.borrow_and_update();
    }
}

#[cfg(test)]
mod tests;
