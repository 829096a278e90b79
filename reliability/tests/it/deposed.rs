//! Scenario 4b — a deposed writer writes nothing (DESIGN §3, invariant 6): two indexers on
//! one schema, the writer's lock connection alone terminated (`pg_terminate_backend`),
//! its pool connections left alone. Once the next writer holds the lock, the audit
//! trigger (data tables, epochs and `tidemark.metadata`, i.e. the status snapshot too)
//! must show no write from any other backend.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use tidemark_reliability::{audit, summary};

use crate::common::{Traffic, audited_writer, secs};
use tidemark_testkit::{SOON, Stack};

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Text)]
    now: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_writer_writes_nothing_after_the_takeover() {
    summary::run("4b deposed writer", |rec| async move {
        rec.step("a writer and a standby");
        let stack = Stack::private("tidemark_rel_deposed").await;
        let (cfg, mut a) = audited_writer(&stack).await;
        let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
        let mut b = stack.spawn(&cfg.clone().with_fresh_http_port());
        b.wait_role("standby", SOON).await;
        let load = Traffic::start(&stack.demo, 4, 50..150);
        tokio::time::sleep(Duration::from_secs(3)).await;

        rec.step("terminate the writer's lock connection");
        let old = audit::lock_holder(&mut admin, &stack.schema).await.expect("pg_locks").expect("a holder");
        diesel::sql_query(format!("SELECT pg_terminate_backend({old})"))
            .execute(&mut admin)
            .await
            .expect("terminate");
        let cut = Instant::now();
        let (new, since) = loop {
            if let Some(pid) = audit::lock_holder(&mut admin, &stack.schema).await.expect("pg_locks")
                && pid != old
            {
                let now: Now = diesel::sql_query("SELECT clock_timestamp()::text AS now")
                    .get_result(&mut admin)
                    .await
                    .expect("now");
                break (pid, now.now);
            }
            assert!(cut.elapsed() < Duration::from_secs(30), "no new writer within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took_over = cut.elapsed();
        // Both processes keep running meanwhile: the deposed one with its pool, status
        // loop and epoch recorder, until its term notices.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let sent = load.stop().await;
        let (total, others, tables) =
            audit::writes_by_others_since(&mut admin, new, &since).await.expect("audit");
        let (audited, unfenced) = audit::counts(&mut admin).await.expect("audit");
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let c = stack.compare(&mut db).await;
        let running = a.proc.is_running() && b.proc.is_running();
        rec.record(
            "writer's lock connection terminated under traffic; standby takes over; 8 s audited",
            format!(
                "{others} of {total} writes after the takeover by another backend than the new writer ({})\
                 ; {unfenced} of {audited} audited writes without the lock; both running: {running}",
                if tables.is_empty() { "-" } else { &tables }
            ),
            others == 0 && unfenced == 0 && total > 0 && running,
            format!("new writer after {} s; {sent} events sent", secs(took_over)),
        );
        rec.record(
            "data after the takeover",
            format!("missing {}, duplicated {}, orphaned {}", c.missing, c.duplicated, c.orphaned),
            c.is_exact(),
            format!("{} events stored", c.stored),
        );
        let (ea, eb) = (a.stop(Duration::from_secs(10)).await, b.stop(Duration::from_secs(10)).await);
        assert_eq!((ea, eb), (0, 0), "exit codes");
    })
    .await;
}
