//! `plans`: what every accepted `/v1/events` filter shape costs on a large instance.
//!
//! Seeds `--rows` events with the writer's binary `COPY` in the data set of
//! `db-client`'s `test_utils::plans` (every probe value matches only rows in the middle of
//! cursor order, 5 % of the table, as when a chain or contract joins an instance late),
//! then runs the exact statement the API issues for each shape the rule accepts — first
//! page and the page after the last match, as first planned and at the seventh execution
//! (when PostgreSQL may keep a generic plan) — with `EXPLAIN (ANALYZE, FORMAT JSON)`.
//! Prints a markdown report: rows read and discarded and time per shape, grouped by
//! plan, and every shape that reads outside the matching rows.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::fixtures::create_instance;
use tidemark_db_client::test_utils::plans::{PlanCost, PlanData, Shape, Statement};
use tidemark_db_client::types::SchemaName;
use tidemark_db_client::writer::PgPool;

use crate::procs::BenchDb;

const SCHEMA: &str = "tidemark_plans";

/// Arguments of `plans`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Events to seed.
    #[arg(long, default_value_t = 10_000_000)]
    rows: i64,
}

/// One measured statement.
struct Measured {
    shape: Shape,
    page: &'static str,
    first: PlanCost,
    seventh: PlanCost,
    ms: f64,
}

pub(crate) async fn run(server: &str, args: Args) -> anyhow::Result<()> {
    let db = BenchDb::create(server, "plans").await?;
    let pool = PgPool::new(PoolConfig::new(db.url.clone()))?;
    let schema = SchemaName::new(SCHEMA)?;
    create_instance(&pool, &schema).await?;
    let client = tidemark_db_client::tls::connect(&db.url).await.context("connecting")?;

    let started = Instant::now();
    let data = PlanData::seed(&client, &schema, args.rows).await?;
    let seeded = started.elapsed().as_secs_f64();
    let size: i64 =
        client.query_one(&format!("SELECT pg_total_relation_size('{SCHEMA}.events')"), &[]).await?.get(0);
    let bound = u64::try_from(data.window.end - data.window.start)?;

    let mut measured = Vec::new();
    let mut n = 0;
    for shape in Shape::all().filter(|s| s.check().is_ok()) {
        for (page, after) in [("first page", None), ("after the last match", Some(data.last_match()))] {
            let statement = Statement::of(&schema, &data.query(shape, after)).context("a statement")?;
            n += 1;
            let name = format!("p{n}");
            client.batch_execute(&statement.prepare(&name)).await?;
            let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", statement.execute(&name));
            let first = PlanCost::of(&client.query_one(&explain, &[]).await?.get(0));
            for _ in 0..5 {
                client.batch_execute(&statement.execute(&name)).await?;
            }
            let seventh = PlanCost::of(&client.query_one(&explain, &[]).await?.get(0));
            let timed = Instant::now();
            client.batch_execute(&statement.execute(&name)).await?;
            let ms = timed.elapsed().as_secs_f64() * 1000.0;
            client.batch_execute(&format!("DEALLOCATE {name}")).await?;
            measured.push(Measured { shape, page, first, seventh, ms });
        }
    }
    report(&data, bound, seeded, size, &measured);
    db.drop_now().await
}

fn report(data: &PlanData, bound: u64, seeded: f64, size: i64, measured: &[Measured]) {
    println!("## Filter shapes at {} rows\n", data.rows);
    println!(
        "Seeded in {seeded:.0} s ({:.0} rows/s); `events` with its indexes: {:.1} GiB. Rows any probe matches: {bound} \
         (cursors {}..{}).\n",
        data.rows as f64 / seeded.max(0.001),
        size as f64 / f64::from(1u32 << 30),
        data.window.start,
        data.window.end,
    );
    let mut groups: BTreeMap<(String, &str), (usize, f64, u64, String)> = BTreeMap::new();
    for m in measured {
        let g = groups.entry((m.seventh.nodes.clone(), m.page)).or_insert((0, 0.0, 0, String::new()));
        g.0 += 1;
        if m.ms > g.1 {
            g.1 = m.ms;
            g.3 = m.shape.to_string();
        }
        g.2 = g.2.max(m.first.filtered.max(m.seventh.filtered));
    }
    println!("| plan (7th execution) | page | shapes | max ms | max rows filtered | slowest shape |");
    println!("|---|---|---:|---:|---:|---|");
    for ((plan, page), (count, ms, filtered, slowest)) in &groups {
        println!("| {plan} | {page} | {count} | {ms:.2} | {filtered} | {slowest} |");
    }
    let poor: Vec<&Measured> = measured
        .iter()
        .filter(|m| [&m.first, &m.seventh].iter().any(|c| c.seq_scan || c.filtered > bound))
        .collect();
    println!("\n{} of {} statements read outside the matching rows.", poor.len(), measured.len());
    for m in poor {
        println!(
            "- {}, {}: first {} ({} filtered), seventh {} ({} filtered), {:.1} ms",
            m.shape, m.page, m.first.nodes, m.first.filtered, m.seventh.nodes, m.seventh.filtered, m.ms
        );
    }
    println!("\n### Every accepted shape\n");
    println!(
        "`EXPLAIN (ANALYZE)` of each statement: the plan at its first execution and, where it \
         differs, at its seventh; rows the top node returned; rows filtered (first / seventh); \
         one timed execution after the explains.\n"
    );
    println!("| shape | page | plan (first) | plan (seventh, if other) | rows | filtered | ms |");
    println!("|---|---|---|---|---:|---:|---:|");
    for m in measured {
        let seventh = if m.seventh.nodes == m.first.nodes { String::new() } else { m.seventh.nodes.clone() };
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {:.2} |",
            m.shape, m.page, m.first.nodes, seventh, m.first.rows, m.first.filtered, m.seventh.filtered, m.ms
        );
    }
}
