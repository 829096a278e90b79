//! Unit tests of the stale-while-revalidate cache, on Tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn options() -> SwrOptions {
    SwrOptions {
        fresh_for: Duration::from_secs(1),
        refresh_every: Duration::from_secs(3600),
        refresh_every_while_empty: Duration::from_secs(3600),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
    }
}

/// A fetch counting its calls, taking 50 ms, returning the call number.
fn counting(calls: Arc<AtomicU64>) -> impl Fn(Option<Arc<u64>>) -> BoxFuture<Result<u64, String>> {
    move |_prev| {
        let calls = calls.clone();
        Box::pin(async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(n)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn warming_starts_at_construction() {
    let calls = Arc::new(AtomicU64::new(0));
    let swr = Swr::new("t", options(), CancellationToken::new(), counting(calls.clone()));
    assert!(swr.peek().value.is_none());
    swr.first_attempt().await;
    let l = swr.peek();
    assert_eq!(l.value.as_deref(), Some(&1));
    assert!(l.fresh);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_value_returns_at_once_without_fetching() {
    let calls = Arc::new(AtomicU64::new(0));
    let swr = Swr::new("t", options(), CancellationToken::new(), counting(calls.clone()));
    swr.first_attempt().await;
    for _ in 0..1000 {
        assert!(swr.get().fresh);
    }
    assert_eq!(swr.fetches_started(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_readers_of_a_stale_entry_trigger_one_revalidation() {
    let calls = Arc::new(AtomicU64::new(0));
    let swr = Swr::new("t", options(), CancellationToken::new(), counting(calls.clone()));
    swr.first_attempt().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let swr = swr.clone();
            tokio::spawn(async move { swr.get() })
        })
        .collect();
    for r in readers {
        let l = r.await.unwrap();
        // Stale, but served at once.
        assert_eq!(l.value.as_deref(), Some(&1));
        assert!(!l.fresh);
    }
    let l = swr.revalidate().await; // joins the one in flight
    assert_eq!(l.value.as_deref(), Some(&2));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one revalidation");
}

#[tokio::test(start_paused = true)]
async fn an_error_keeps_the_last_good_value() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fail.clone();
    let swr = Swr::new("t", options(), CancellationToken::new(), move |_prev: Option<Arc<u64>>| {
        let fail = f.load(Ordering::SeqCst);
        async move { if fail { Err("down".to_owned()) } else { Ok(7u64) } }
    });
    swr.first_attempt().await;
    fail.store(true, Ordering::SeqCst);
    let l = swr.revalidate().await;
    assert_eq!(l.value.as_deref(), Some(&7));
    assert_eq!(l.error.as_deref().map(String::as_str), Some("down"));
    // The next success clears the error.
    fail.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(2)).await;
    let l = swr.revalidate().await;
    assert_eq!(l.value.as_deref(), Some(&7));
    assert!(l.error.is_none());
}

#[tokio::test(start_paused = true)]
async fn the_fetch_sees_the_previous_value() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let swr = Swr::new("t", options(), CancellationToken::new(), move |prev: Option<Arc<u64>>| {
        s.lock().unwrap().push(prev.as_deref().copied());
        let next = prev.as_deref().copied().unwrap_or(0) + 10;
        async move { Ok::<_, String>(next) }
    });
    swr.first_attempt().await;
    swr.revalidate().await;
    swr.revalidate().await;
    assert_eq!(*seen.lock().unwrap(), vec![None, Some(10), Some(20)]);
    assert_eq!(swr.peek().value.as_deref(), Some(&30));
}

#[tokio::test(start_paused = true)]
async fn proactive_revalidation_runs_on_its_interval() {
    let calls = Arc::new(AtomicU64::new(0));
    let mut opts = options();
    opts.refresh_every = Duration::from_secs(10);
    let swr = Swr::new("t", opts, CancellationToken::new(), counting(calls.clone()));
    swr.first_attempt().await;
    tokio::time::sleep(Duration::from_secs(35)).await;
    // Warm-up at 0 s, then about 10.05 s, 20.1 s and 30.15 s.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(swr.peek().value.as_deref(), Some(&4));
}

#[tokio::test(start_paused = true)]
async fn empty_values_are_refreshed_on_the_short_interval() {
    let calls = Arc::new(AtomicU64::new(0));
    let mut opts = options();
    opts.refresh_every = Duration::from_secs(60);
    opts.refresh_every_while_empty = Duration::from_secs(1);
    let c = calls.clone();
    // Empty (0) for the first three fetches, then 1.
    let swr = Swr::with_empty_check(
        "t",
        opts,
        CancellationToken::new(),
        |v: &u64| *v == 0,
        move |_prev| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<u64, String>(u64::from(n > 3)) }
        },
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(swr.peek().value.as_deref(), Some(&1));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "back on the long interval");
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let mut opts = options();
    opts.retry_min = Duration::from_millis(100);
    opts.retry_max = Duration::from_millis(800);
    let swr = Swr::new("t", opts, CancellationToken::new(), move |_prev: Option<Arc<u64>>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<u64, _>("down") }
    });
    // Attempts at 0, 0.1, 0.3, 0.7, 1.5, 2.3, 3.1 s: the delay doubles up to 800 ms.
    tokio::time::sleep(Duration::from_millis(3150)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    // Readers do not add attempts while backing off.
    for _ in 0..100 {
        let l = swr.get();
        assert!(l.value.is_none() && l.attempted && l.error.is_some());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_fetch_does_not_wedge_the_cache() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let swr = Swr::new("t", options(), CancellationToken::new(), move |_prev: Option<Arc<u64>>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(n != 0, "first fetch panics");
            Ok::<u64, String>(n)
        }
    });
    swr.first_attempt().await;
    assert!(swr.peek().value.is_none());
    let l = swr.revalidate().await;
    assert_eq!(l.value.as_deref(), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn background_tasks_stop_on_cancel_and_on_drop() {
    let calls = Arc::new(AtomicU64::new(0));
    let mut opts = options();
    opts.refresh_every = Duration::from_secs(1);
    let cancel = CancellationToken::new();
    let swr = Swr::new("t", opts, cancel.clone(), counting(calls.clone()));
    swr.first_attempt().await;
    cancel.cancel();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = Arc::new(AtomicU64::new(0));
    let swr = Swr::new("t", opts, CancellationToken::new(), counting(calls.clone()));
    swr.first_attempt().await;
    drop(swr);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
