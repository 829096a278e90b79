//! Scenario 7 — secrets (DESIGN §2, §8 "Sinks"): an RPC URL carrying an API key (in the
//! user-info, the path, the query string or a host name label, given through `${VAR}`),
//! the database password, and the sinks' URLs (the key in a webhook's path and query, a
//! NATS URL's user-info) and webhook secret never appear in the database (all of `tidemark.metadata` and every
//! table of the instance), in the logs of either service — even at trace level, where
//! the HTTP client libraries print the URLs and hosts they connect to unless capped, and
//! while endpoints fail and errors are logged — or in any response of either service.

use std::time::Duration;

use tidemark_reliability::fuzz::Service;
use tidemark_reliability::summary;
use tidemark_testkit::{SOON, Stack, free_port};

use crate::common::{Frozen, traffic};

const KEY: &str = "k3yR3liab1lity7Secret";
/// The database password of both services (the test server trusts any password).
const PASSWORD: &str = "pw7Reliab1lityDbSecret";
/// The base64 part of the webhook sink's `whsec_` secret.
const SINK_SECRET: &str = "S1nkS3cretMark3rS1nkS3cretMark3r";

/// Whether `text` holds the key or the password, in any letter case: a host name comes
/// out of URL parsing in lowercase.
fn holds_a_secret(text: &str) -> bool {
    let text = text.to_lowercase();
    [KEY, PASSWORD, SINK_SECRET].iter().any(|secret| text.contains(&secret.to_lowercase()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_key_appears_nowhere() {
    summary::run("7 secrets", |rec| async move {
        rec.step("indexer with keyed RPC URLs (two dead ones first), and the API, both at trace level");
        let stack = Stack::shared("tidemark_rel_secrets").await;
        traffic(&stack.demo, 8, 4).await;
        let dead = format!("http://user:{KEY}@127.0.0.1:{}/v2/{KEY}?apikey={KEY}", free_port());
        // Resolving `.invalid` fails at once, after the client libraries logged the host.
        let unresolvable = format!("http://{KEY}.invalid/v2/{KEY}?apikey={KEY}");
        let live = format!("http://user:{KEY}@127.0.0.1:{}/?apikey={KEY}", stack.anvil.port());
        let mut database_url = reqwest::Url::parse(&stack.db_url).expect("the database URL");
        database_url.set_password(Some(PASSWORD)).expect("a database URL takes a password");
        let mut cfg = stack.config();
        cfg.database_url = "${TIDEMARK_REL_DATABASE_URL}".into();
        cfg.chains[0] = cfg.chains[0].clone().rpc_urls(vec![
            "${TIDEMARK_REL_DEAD_RPC}".into(),
            "${TIDEMARK_REL_UNRESOLVABLE_RPC}".into(),
            "${TIDEMARK_REL_LIVE_RPC}".into(),
        ]);
        cfg.chains[0].request_timeout_ms = Some(500);
        // A webhook receiver that fails a third of the time (errors get logged and stored),
        // and a NATS sink whose server is down.
        let receiver = tidemark_testkit::WebhookReceiver::start(&format!("whsec_{SINK_SECRET}")).await;
        receiver.set_faults(tidemark_testkit::WebhookFaults { error: 0.3, ..Default::default() });
        let hook_url = format!("{}/{KEY}?token={KEY}", receiver.url());
        let nats_url = format!("nats://user:{KEY}@127.0.0.1:{}", free_port());
        let sink_secret = format!("whsec_{SINK_SECRET}");
        let cfg = cfg
            .sink("name = \"hooks\"\nkind = \"webhook\"\nurl = \"${TIDEMARK_REL_HOOK_URL}\"\nsecret = \"${TIDEMARK_REL_HOOK_SECRET}\"\nbatch_size = 5")
            .sink("name = \"bus\"\nkind = \"nats\"\nurl = \"${TIDEMARK_REL_NATS_URL}\"\ntimeout_ms = 500");
        let env = [
            ("TIDEMARK_REL_HOOK_URL", hook_url.as_str()),
            ("TIDEMARK_REL_HOOK_SECRET", sink_secret.as_str()),
            ("TIDEMARK_REL_NATS_URL", nats_url.as_str()),
            ("TIDEMARK_REL_DEAD_RPC", dead.as_str()),
            ("TIDEMARK_REL_UNRESOLVABLE_RPC", unresolvable.as_str()),
            ("TIDEMARK_REL_LIVE_RPC", live.as_str()),
            ("TIDEMARK_REL_DATABASE_URL", database_url.as_str()),
            ("RUST_LOG", "trace"),
        ];
        let mut indexer = stack.spawn_env(&cfg, &env);
        let mut api = stack.spawn_api_env(
            &stack.schema,
            &[("DATABASE_URL", database_url.as_str()), ("RUST_LOG", "trace")],
            &[],
        );
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        api.wait_healthy(SOON).await;

        rec.step("the live endpoint frozen for 3 s (errors get logged)");
        let frozen = Frozen::freeze(stack.anvil.pid());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = indexer.health().await;
        frozen.thaw();
        traffic(&stack.demo, 3, 3).await;
        stack.wait_synced(&mut db, SOON).await;

        rec.step("every endpoint of both services");
        let mut responses = String::new();
        let mut asked = 0;
        tidemark_db_client::tls::install_crypto_provider();
        for service in [Service::Api, Service::Indexer] {
            let base = if service == Service::Api { &api.http } else { &indexer.http };
            let extra = ["/nope", "/v1/events?limit=1000", "/v1/events?limit=x", "/v1/epochs?size=100", "/v1/realtime?maxWorstCaseDistance=0"];
            for path in service.endpoints().iter().copied().chain(extra) {
                let r = reqwest::Client::new()
                    .get(format!("{base}{path}"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if let Ok(r) = r {
                    asked += 1;
                    responses.push_str(&format!("{:?}", r.headers()));
                    responses.push_str(&r.text().await.unwrap_or_default());
                }
            }
        }
        let dump = db.dump_text().await.expect("dumping the database");

        rec.step("check-config and a configuration error");
        let (code, check) = stack.run_command_env(&cfg, &["check-config"], &env).await;
        assert_eq!(code, 0, "check-config: {}", check.logs());
        let mut broken = cfg.clone();
        broken.chains[0] = broken.chains[0].clone().rpc_urls(vec![format!("ftp://u:{KEY}@127.0.0.1/{KEY}")]);
        let (code, broken_run) = stack.run_command_env(&broken, &[], &env).await;

        let ei = indexer.stop(Duration::from_secs(10)).await;
        api.proc.sigterm();
        let ea = api.proc.exit_code(Duration::from_secs(10)).await;
        let places = [
            ("database (tidemark.metadata and the instance tables)", dump.as_str()),
            ("indexer logs (RUST_LOG=trace)", &indexer.proc.logs()),
            ("API logs (RUST_LOG=trace)", &api.proc.logs()),
            ("responses of both services", responses.as_str()),
            ("check-config output", &check.logs()),
            ("configuration error output", &broken_run.logs()),
        ];
        let sink_errors_logged = indexer.proc.logs().contains("sink=bus") && indexer.proc.logs().contains("sink=hooks");
        let delivered = !receiver.accepted_items().is_empty();
        let leaks: Vec<&str> = places.iter().filter(|(_, text)| holds_a_secret(text)).map(|(name, _)| *name).collect();
        for (name, text) in &places {
            for line in text.lines().filter(|l| holds_a_secret(l)).take(3) {
                eprintln!("[secrets] leak in {name}: {}", line.chars().take(400).collect::<String>());
            }
        }
        let errors_logged = ["rpc[0]", "rpc[1]"].iter().all(|label| indexer.proc.logs().contains(label));
        rec.record(
            "RPC key in user-info, path, query string and host name; two dead endpoints and a frozen one; database password; sink URLs and webhook secret (failing receiver, dead NATS); trace logs",
            if leaks.is_empty() {
                "neither the key nor the password appears anywhere".to_owned()
            } else {
                format!("the key or the password leaks into: {}", leaks.join(", "))
            },
            leaks.is_empty() && errors_logged && sink_errors_logged && delivered && code == 2 && (ei, ea) == (0, 0),
            format!(
                "{asked} responses, {} bytes of database dump, {} + {} bytes of logs checked; endpoint errors logged: {errors_logged}; sink failures logged: {sink_errors_logged}; webhook delivered: {delivered}; health while frozen: {:?}; bad-URL config exit {code}",
                dump.len(),
                indexer.proc.logs().len(),
                api.proc.logs().len(),
                during.map(|h| h.reasons),
            ),
        );
    })
    .await;
}
