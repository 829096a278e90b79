//! The senders: one task per delivery, sending it (and its forged copy and duplicate)
//! with provider-like retries, a bounded number of requests at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sign::sign_alchemy;
use super::{ALCHEMY_SIGNATURE_HEADER, Delivery, SimOptions, SimSummary, WebhookFormat};

/// A block to deliver and the faults drawn for it.
pub(super) struct Job {
    pub(super) delivery: Delivery,
    pub(super) forge: bool,
    pub(super) duplicate_after: Option<Duration>,
}

/// State of the senders.
pub(super) struct Shared {
    pub(super) opts: SimOptions,
    pub(super) client: reqwest::Client,
    pub(super) signer: Option<standardwebhooks::Webhook>,
    pub(super) permits: Semaphore,
    pub(super) stats: Mutex<SimSummary>,
    pub(super) down_until: Mutex<Option<Instant>>,
    pub(super) shutdown: CancellationToken,
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The receiver answered with this status.
    Answered(u16),
    /// The request failed (connection refused, timeout).
    Failed,
    /// The receiver is down (a down window): nothing was sent.
    Unreachable,
    /// Shutting down: nothing was sent.
    Skipped,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    GivenUp,
    Interrupted,
}

impl Shared {
    pub(super) fn stats(&self) -> std::sync::MutexGuard<'_, SimSummary> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_down(&self) -> bool {
        self.down_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|t| Instant::now() < t)
    }

    /// One delivery: the forged copy (if drawn), the real one until accepted, then the
    /// duplicate (if drawn, once the first was accepted).
    pub(super) async fn deliver(self: Arc<Self>, job: Job) {
        let d = &job.delivery;
        if job.forge {
            let attempt = self.attempt(d, true).await;
            if matches!(attempt, Attempt::Answered(_) | Attempt::Failed) {
                self.stats().forged += 1;
            }
            match attempt {
                Attempt::Answered(401) => self.stats().forged_rejected += 1,
                Attempt::Answered(status) if (200..300).contains(&status) => {
                    tracing::warn!(block = d.block_number, id = %d.id, status, "forged delivery accepted");
                }
                _ => {}
            }
        }
        if self.until_accepted(d).await != Outcome::Accepted {
            return;
        }
        if let Some(after) = job.duplicate_after {
            tokio::select! {
                () = tokio::time::sleep(after) => {}
                () = self.shutdown.cancelled() => return,
            }
            self.stats().duplicates_sent += 1;
            self.until_accepted(d).await;
        }
    }

    /// Sends `d` until it is answered 2xx, with exponential backoff between attempts.
    async fn until_accepted(&self, d: &Delivery) -> Outcome {
        let opts = &self.opts;
        let mut backoff = opts.retry_initial;
        for attempt in 1..=opts.max_attempts {
            if self.shutdown.is_cancelled() {
                return Outcome::Interrupted;
            }
            if attempt > 1 {
                self.stats().retries += 1;
            }
            let result = self.attempt(d, false).await;
            match result {
                Attempt::Answered(status) if (200..300).contains(&status) => {
                    self.stats().accepted += 1;
                    return Outcome::Accepted;
                }
                Attempt::Skipped => return Outcome::Interrupted,
                _ => {}
            }
            tracing::debug!(block = d.block_number, id = %d.id, attempt, ?result, "delivery failed");
            if attempt == opts.max_attempts {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.shutdown.cancelled() => return Outcome::Interrupted,
            }
            backoff = (backoff * 2).min(opts.retry_max);
        }
        self.stats().given_up += 1;
        tracing::warn!(block = d.block_number, id = %d.id, attempts = opts.max_attempts, "delivery given up");
        Outcome::GivenUp
    }

    /// One request, once a permit is free and after the configured delay.
    async fn attempt(&self, d: &Delivery, forged: bool) -> Attempt {
        let Ok(_permit) = self.permits.acquire().await else { return Attempt::Skipped };
        if !self.opts.delay.is_zero() {
            tokio::time::sleep(self.opts.delay).await;
        }
        if self.shutdown.is_cancelled() {
            return Attempt::Skipped;
        }
        if self.is_down() {
            // The connection fails without reaching the receiver.
            return Attempt::Unreachable;
        }
        // A forged copy carries the signature of a different body: well-formed, but wrong.
        let forged_body;
        let signed: &[u8] = if forged {
            forged_body = [d.body.as_slice(), b" "].concat();
            &forged_body
        } else {
            &d.body
        };
        let mut request = self
            .client
            .post(&self.opts.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.clone());
        match (&self.signer, self.opts.format) {
            (Some(signer), WebhookFormat::Standard) => {
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.as_secs() as i64);
                let signature = match signer.sign(&d.id, ts, signed) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(id = %d.id, error = %e, "cannot sign");
                        return Attempt::Failed;
                    }
                };
                request = request
                    .header("webhook-id", &d.id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature);
            }
            _ => request = request.header(ALCHEMY_SIGNATURE_HEADER, sign_alchemy(&self.opts.secret, signed)),
        }
        let result = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the answer so that the connection can be reused.
                let _ = response.bytes().await;
                Attempt::Answered(status)
            }
            Err(e) => {
                tracing::debug!(id = %d.id, error = %e, "request failed");
                Attempt::Failed
            }
        };
        let mut stats = self.stats();
        if !forged {
            stats.sent += 1;
        }
        if let Attempt::Answered(status) = result {
            *stats.statuses.entry(status).or_default() += 1;
        }
        result
    }
}
