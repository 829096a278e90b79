//! NATS JetStream delivery: each entry published to its subject with
//! `Nats-Msg-Id: <schema>:<cursor>` (`…:rb<run>` in a rebroadcast run), acks awaited in
//! order with a bounded window in flight. The stream's duplicate window makes a re-send
//! after a crash invisible to consumers.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use bytes::Bytes;
use tidemark_shared_types::{Cursor, SchemaName};

use super::entry::Item;
use super::redact::Redactor;

/// The duplicate window of a stream this sink creates (at least the 2 min the
/// delivery contract needs).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A JetStream stream.
pub(super) struct Nats {
    url: String,
    stream: String,
    subject: String,
    schema: SchemaName,
    timeout: Duration,
    window: usize,
    context: Option<jetstream::Context>,
    /// Filled subjects by chain, contract and event.
    subjects: std::collections::HashMap<(u64, String, String), async_nats::Subject>,
}

/// A subject token for a name: NATS subjects split on `.` and treat `*`, `>` and
/// whitespace specially, so those become `_`.
fn token(name: &str) -> String {
    let t: String = name
        .chars()
        .map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c })
        .collect();
    if t.is_empty() { "_".to_owned() } else { t }
}

impl Nats {
    /// A sink publishing to `stream` (not connected yet). `window`: acks in flight.
    pub(super) fn new(
        url: String,
        stream: String,
        subject: String,
        schema: SchemaName,
        timeout: Duration,
        window: usize,
    ) -> Self {
        Self {
            url,
            stream,
            subject,
            schema,
            timeout,
            window: window.clamp(1, 4096),
            context: None,
            subjects: std::collections::HashMap::new(),
        }
    }

    /// The subject of an entry.
    pub(super) fn subject_of(&self, item: &Item) -> String {
        self.subject_for(item.chain_id, &item.contract, &item.event)
    }

    fn subject_for(&self, chain_id: u64, contract: &str, event: &str) -> String {
        self.subject
            .replace("{schema}", self.schema.as_str())
            .replace("{chainId}", &chain_id.to_string())
            .replace("{contract}", &token(contract))
            .replace("{event}", &token(event))
    }

    /// The subjects of a stream this sink creates: the template with each placeholder's
    /// token a wildcard.
    fn stream_subject(&self) -> String {
        self.subject
            .replace("{schema}", self.schema.as_str())
            .split('.')
            .map(|t| if t.contains('{') { "*" } else { t })
            .collect::<Vec<_>>()
            .join(".")
    }

    pub(super) async fn context(&mut self, redactor: &Redactor) -> Result<jetstream::Context, String> {
        if let Some(c) = &self.context {
            return Ok(c.clone());
        }
        let client = tokio::time::timeout(
            self.timeout,
            async_nats::ConnectOptions::new().connection_timeout(self.timeout).connect(self.url.as_str()),
        )
        .await
        .map_err(|_| "connecting to NATS timed out".to_owned())?
        .map_err(|e| redactor.redact(&format!("cannot connect to NATS: {e}")))?;
        let context = jetstream::new(client);
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.stream_subject()],
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let info = tokio::time::timeout(self.timeout, context.get_or_create_stream(config))
            .await
            .map_err(|_| "creating the JetStream stream timed out".to_owned())?
            .map_err(|e| redactor.redact(&format!("cannot get or create stream {}: {e}", self.stream)))?
            .cached_info()
            .config
            .duplicate_window;
        if info < DUPLICATE_WINDOW {
            tracing::warn!(target: "tidemark::sinks", stream = %self.stream, window_ms = info.as_millis() as u64,
                "the stream's duplicate window is under 2 minutes: a re-send after a crash may reach consumers twice");
        }
        self.context = Some(context.clone());
        Ok(context)
    }

    /// Publishes `items` in order with `id(cursor)` as message ids; returns the cursor of
    /// the last entry acknowledged without a gap before it, and the error that stopped
    /// it, if any.
    pub(super) async fn publish(
        &mut self,
        items: &[Item],
        id: impl Fn(Cursor) -> String,
        redactor: &Redactor,
    ) -> (Option<Cursor>, Result<(), String>) {
        let context = match self.context(redactor).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        };
        let mut acked = None;
        let mut in_flight: VecDeque<(Cursor, PublishAckFuture)> = VecDeque::with_capacity(self.window);
        let mut next = items.iter();
        loop {
            // Fill the window, then await the oldest ack.
            while in_flight.len() < self.window {
                let Some(item) = next.next() else { break };
                let message = PublishMessage::build()
                    .payload(Bytes::copy_from_slice(item.json.get().as_bytes()))
                    .message_id(id(item.cursor));
                match tokio::time::timeout(self.timeout, context.send_publish(self.subject_of(item), message))
                    .await
                {
                    Ok(Ok(ack)) => in_flight.push_back((item.cursor, ack)),
                    Ok(Err(e)) => {
                        return self.failed(acked, redactor.redact(&format!("publish failed: {e}")));
                    }
                    Err(_) => return self.failed(acked, "publish timed out".to_owned()),
                }
            }
            let Some((cursor, ack)) = in_flight.pop_front() else { return (acked, Ok(())) };
            match tokio::time::timeout(self.timeout, ack).await {
                Ok(Ok(_)) => acked = Some(cursor),
                Ok(Err(e)) => return self.failed(acked, redactor.redact(&format!("no JetStream ack: {e}"))),
                Err(_) => return self.failed(acked, "JetStream ack timed out".to_owned()),
            }
        }
    }

    /// Sends one entry (the ack is awaited by the caller).
    pub(super) async fn send(
        &mut self,
        context: &jetstream::Context,
        item: Item,
        id: String,
    ) -> Result<PublishAckFuture, String> {
        // Subjects repeat: one per chain, contract and event.
        let key = (item.chain_id, item.contract, item.event);
        let subject = match self.subjects.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = async_nats::Subject::from(self.subject_for(key.0, &key.1, &key.2));
                if self.subjects.len() < 4096 {
                    self.subjects.insert(key, s.clone());
                }
                s
            }
        };
        // The entry's JSON text becomes the payload without a copy.
        let payload = Bytes::from(String::from(Box::<str>::from(item.json)));
        let message = PublishMessage::build().payload(payload).message_id(id);
        match tokio::time::timeout(self.timeout, context.send_publish(subject, message)).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(e)) => Err(format!("publish failed: {e}")),
            Err(_) => Err("publish timed out".to_owned()),
        }
    }

    /// Acks in flight at most.
    pub(super) fn window(&self) -> usize {
        self.window
    }

    /// Timeout of one publish or ack.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Forgets the connection's JetStream context: the next use connects afresh.
    pub(super) fn reset(&mut self) {
        self.context = None;
    }

    fn failed(&mut self, acked: Option<Cursor>, error: String) -> (Option<Cursor>, Result<(), String>) {
        // Connect afresh next time (the client reconnects by itself, but a stream
        // deleted meanwhile is created again only here).
        self.context = None;
        (acked, Err(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(contract: &str, event: &str) -> Item {
        Item {
            cursor: Cursor(1),
            chain_id: 31337,
            contract: contract.into(),
            event: event.into(),
            json: serde_json::value::to_raw_value(&1).expect("json"),
        }
    }

    #[test]
    fn subjects_fill_the_placeholders_with_safe_tokens() {
        let schema = SchemaName::new("tidemark_demo").expect("schema");
        let nats = Nats::new(
            "nats://127.0.0.1:4222".into(),
            "TIDEMARK".into(),
            crate::config::DEFAULT_SUBJECT.into(),
            schema,
            Duration::from_secs(1),
            10,
        );
        assert_eq!(
            nats.subject_of(&item("Token", "Transfer")),
            "tidemark.tidemark_demo.31337.Token.Transfer"
        );
        assert_eq!(
            nats.subject_of(&item("My Token.v2", "X>")),
            "tidemark.tidemark_demo.31337.My_Token_v2.X_"
        );
        assert_eq!(nats.stream_subject(), "tidemark.tidemark_demo.*.*.*");
    }
}
