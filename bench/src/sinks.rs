//! `sinks`: the NATS sink's entries/s against the raw `async-nats` JetStream
//! publish-with-ack rate measured in the same run (the physical limit: one connection,
//! the same window of acks in flight, payloads of the same size), and the webhook sink's
//! entries/s to a local receiver (which verifies every signature) at batch 500.
//!
//! The instance holds `--events` Token `Transfer`s committed by the indexer's writer; each
//! run starts a fresh sink at cursor 0 and times it until its cursor reaches the head.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tidemark_db_client::test_utils::fixtures::create_instance;
use tidemark_db_client::test_utils::metadata;
use tidemark_db_client::writer::{PgPool, Writer};
use tidemark_db_client::{DbClient, DbClientConfig, JournalFilter, Limit, PoolConfig};
use tidemark_indexer::config::{Delivery, SinkConfig, SinkFilter, SinkTarget, Start};
use tidemark_indexer::progress::Progress;
use tidemark_indexer::sinks::{self, SinkContext};
use tidemark_shared_types::{Cursor, SchemaName};
use tidemark_testkit::{NatsServer, WebhookReceiver};
use tokio_util::sync::CancellationToken;

use crate::api::{SCHEMA, public_config, write_status};
use crate::procs::BenchDb;
use crate::stream::{PER_BLOCK, seed};

/// `sinks` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Events stored (and delivered per run).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Entries per webhook batch, and NATS acks in flight.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) async fn run(server: &str, runs: usize, args: Args) -> anyhow::Result<()> {
    let db = BenchDb::create(server, "sinks").await?;
    let pool = PgPool::new(PoolConfig::new(db.url.clone()))?;
    let schema = SchemaName::new(SCHEMA)?;
    create_instance(&pool, &schema).await?;
    metadata::write_public_config(&mut *pool.get().await?, &public_config()).await?;
    let started = Instant::now();
    let head = seed(&pool, &schema, args.events).await?;
    write_status(&pool, args.events / PER_BLOCK).await?;
    eprintln!(
        "instance: {} events in {:.1} s (head cursor {head})",
        args.events,
        started.elapsed().as_secs_f64()
    );
    let reader = DbClient::new(DbClientConfig::new(db.url.clone(), SCHEMA))?;
    reader.first_load().await;
    let payloads = payloads(&reader).await?;
    let bytes: usize = payloads.iter().map(Bytes::len).sum();
    eprintln!(
        "payloads: {} entries, {:.0} bytes each on average",
        payloads.len(),
        bytes as f64 / payloads.len() as f64
    );

    let nats = NatsServer::start().await;
    let receiver = WebhookReceiver::start(SECRET).await;
    let (mut raw, mut nats_sink, mut webhook, mut reads) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let read = read_rate(&reader).await?;
        let r = raw_publish(&nats, run, &payloads, args.batch_size).await?;
        // Each measurement starts on an empty server: a stream left behind (with its
        // messages on disk) slows the publishes of the next one, so whichever ran second
        // would be measured on a fuller server.
        drop_stream(&nats, &format!("RAW{run}")).await?;
        let n = sink_rate(
            &pool,
            &schema,
            &reader,
            nats_target(&nats, run),
            &format!("bus{run}"),
            args.batch_size,
            head,
        )
        .await?;
        drop_stream(&nats, &format!("SINK{run}")).await?;
        let w = sink_rate(
            &pool,
            &schema,
            &reader,
            webhook_target(&receiver)?,
            &format!("hooks{run}"),
            args.batch_size,
            head,
        )
        .await?;
        eprintln!(
            "run {}: journal read {read:.0}/s, raw publish-with-ack {r:.0}/s, NATS sink {n:.0}/s ({:.0} %), webhook sink {w:.0}/s",
            run + 1,
            100.0 * n / r
        );
        reads.push(read);
        raw.push(r);
        nats_sink.push(n);
        webhook.push(w);
    }
    let (r, n, w, read) = (median(raw), median(nats_sink), median(webhook), median(reads));
    // Both on these cores, one after the other: the rate if nothing overlapped.
    let serial = 1.0 / (1.0 / r + 1.0 / read);
    println!("\n## Sinks ({} events, median of {runs})\n", args.events);
    println!("| | entries/s | of the raw JetStream rate |\n|---|---:|---:|");
    println!("| raw async-nats publish with ack ({} in flight) | {r:.0} | 100 % |", args.batch_size);
    println!("| journal read alone (pages of 1,000, unparsed args) | {read:.0} | |");
    println!("| serial bound (read, then publish) | {serial:.0} | {:.0} % |", 100.0 * serial / r);
    println!("| NATS sink | {n:.0} | {:.0} % |", 100.0 * n / r);
    println!("| webhook sink, batch {} (local receiver verifying signatures) | {w:.0} | |", args.batch_size);
    drop(reader);
    db.drop_now().await?;
    Ok(())
}

/// The entries as the sink sends them (the `/v1/stream` data of each `log` entry), for
/// the raw rate's payloads.
async fn payloads(reader: &DbClient) -> anyhow::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut after = Cursor(0);
    let limit = Limit::new(1000)?;
    loop {
        let page =
            reader.journal_after_since(Cursor(i64::MAX), after, &JournalFilter::default(), limit).await?;
        for entry in &page.entries {
            let tidemark_shared_types::JournalEntry::Log(e) = entry else { continue };
            let mut v = serde_json::to_value(e)?;
            v["kind"] = "log".into();
            out.push(Bytes::from(serde_json::to_vec(&v)?));
        }
        match page.next_cursor {
            Some(c) => after = c,
            None => return Ok(out),
        }
    }
}

/// The journal read alone, as a sink reads it: entries per second.
async fn read_rate(reader: &DbClient) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (mut after, mut n) = (Cursor(0), 0usize);
    let limit = Limit::new(1000)?;
    loop {
        let page =
            reader.journal_after_raw(Cursor(i64::MAX), after, &JournalFilter::default(), limit).await?;
        n += page.entries.len();
        match page.next_cursor {
            Some(c) => after = c,
            None => return Ok(n as f64 / started.elapsed().as_secs_f64()),
        }
    }
}

/// Raw JetStream publishes with acks, `window` in flight, in order: messages per second.
async fn raw_publish(
    nats: &NatsServer,
    run: usize,
    payloads: &[Bytes],
    window: usize,
) -> anyhow::Result<f64> {
    use async_nats::jetstream::{context::PublishAckFuture, message::PublishMessage, stream};
    let js = nats.jetstream().await;
    js.get_or_create_stream(stream::Config {
        name: format!("RAW{run}"),
        subjects: vec![format!("raw{run}.>")],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .context("raw stream")?;
    let started = Instant::now();
    let mut in_flight: std::collections::VecDeque<PublishAckFuture> = std::collections::VecDeque::new();
    for (i, p) in payloads.iter().enumerate() {
        if in_flight.len() >= window
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await.context("raw ack")?;
        }
        let message = PublishMessage::build().payload(p.clone()).message_id(format!("raw:{i}"));
        in_flight.push_back(js.send_publish(format!("raw{run}.31337.Token.Transfer"), message).await?);
    }
    for ack in in_flight {
        ack.await.context("raw ack")?;
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// Deletes a JetStream stream and its messages.
async fn drop_stream(nats: &NatsServer, name: &str) -> anyhow::Result<()> {
    nats.jetstream().await.delete_stream(name).await.with_context(|| format!("deleting stream {name}"))?;
    Ok(())
}

fn nats_target(nats: &NatsServer, run: usize) -> SinkTarget {
    SinkTarget::Nats {
        url: nats.url(),
        stream: format!("SINK{run}"),
        subject: format!("sink{run}.{{chainId}}.{{contract}}.{{event}}"),
    }
}

fn webhook_target(receiver: &WebhookReceiver) -> anyhow::Result<SinkTarget> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_"))?;
    Ok(SinkTarget::Webhook { url: receiver.url().parse()?, key })
}

/// A new sink from cursor 0 to `head`: entries per second.
async fn sink_rate(
    pool: &PgPool,
    schema: &SchemaName,
    reader: &DbClient,
    target: SinkTarget,
    name: &str,
    batch_size: usize,
    head: u64,
) -> anyhow::Result<f64> {
    let writer = Writer::try_acquire(pool, schema).await?.context("the writer lock is free")?;
    let progress = Progress::new([(31337, None)]);
    let config = SinkConfig {
        name: name.to_owned(),
        target,
        filter: SinkFilter::default(),
        batch_size,
        max_batch_bytes: 1 << 20,
        timeout: Duration::from_secs(10),
        delivery: Delivery::Instant,
        rebroadcast_every: None,
        start: Start::Beginning,
    };
    let ctx = SinkContext {
        schema: schema.clone(),
        writer: std::sync::Arc::new(tokio::sync::Mutex::new(writer)),
        db: reader.clone(),
        pool: pool.clone(),
        progress: progress.clone(),
        metrics: tidemark_indexer::telemetry::Metrics::new(),
    };
    let token = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(sinks::run(vec![config], ctx, token.clone()));
    loop {
        let cursor = progress.sinks().get(name).map_or(0, |s| s.cursor.0);
        if cursor >= head as i64 {
            break;
        }
        if task.is_finished() {
            anyhow::bail!("the sink stopped: {:?}", task.await);
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("sink {name} did not reach the head in 10 minutes (at {cursor} of {head})");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = head as f64 / started.elapsed().as_secs_f64();
    token.cancel();
    task.await??;
    Ok(rate)
}
