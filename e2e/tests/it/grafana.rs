//! `deploy/grafana/tidemark.json` and `docs/metrics.md` against running services: every
//! metric the dashboard queries is exported by the indexer or the API, and every metric
//! they export is documented.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tidemark_testkit::{NatsServer, RpcProxy, SOON, Stack, eventually, get_text};

/// Every `expr` in the dashboard (panels nested in rows included).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: identifiers followed by `{`, `[` or `)` or
/// the end, that are not functions, keywords or label names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut in_braces = 0u32;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if in_string {
            in_string = c != '"';
            i += 1;
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => in_braces += 1,
            '}' => in_braces = in_braces.saturating_sub(1),
            _ => {}
        }
        if in_braces == 0 && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            let function = next == Some('(');
            let after_by = expr[..start].trim_end().ends_with('(')
                && ["by", "without", "on", "ignoring", "group_left", "group_right"]
                    .iter()
                    .any(|k| expr[..start].trim_end().trim_end_matches('(').trim_end().ends_with(k));
            if !function && !after_by && (word.starts_with("tidemark_") || word.starts_with("http_")) {
                names.insert(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    names
}

/// The series names of a Prometheus text exposition (histogram and summary parts
/// included: `_bucket`, `_sum`, `_count`).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// A metric family's name: the series name without a histogram or summary suffix when
/// the exposition declares the family.
fn family(series: &str, text: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix)
            && (text.contains(&format!("# TYPE {base} histogram"))
                || text.contains(&format!("# TYPE {base} summary")))
        {
            return base.to_owned();
        }
    }
    series.to_owned()
}

#[test]
fn promql_names_are_found() {
    let e = r#"sum by (instance, phase) (rate(tidemark_commit_seconds_sum{job=~"$j",x="a{b}"}[$__rate_interval])) / histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))"#;
    let names: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(names, ["http_request_duration_seconds_bucket", "tidemark_commit_seconds_sum"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_is_exported_and_every_exported_metric_is_documented() {
    let root = crate::repo_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/tidemark.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() > 20, "the dashboard has its queries ({})", all.len());
    let queried: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();

    // Both services with what the dashboard shows: traffic, a NATS sink, a stream client,
    // RPC errors (the node unreachable for a while).
    let stack = Stack::shared("tidemark_grafana").await;
    let nats = NatsServer::start().await;
    stack.demo.mixed(10, |i| 1 + i % 3).await.expect("traffic");
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    let spec = stack.chain_spec().rpc_urls(vec![proxy.url().to_owned()]).poll_interval_ms(200);
    let config = tidemark_testkit::IndexerConfigBuilder::new(stack.schema.clone(), stack.db_url.clone())
        .chain(spec)
        .sink(&format!("name = \"bus\"\nkind = \"nats\"\nurl = \"{}\"\ntimeout_ms = 2000", nats.url()));
    let indexer = stack.spawn(&config);
    let api = stack.spawn_api(&[]);
    api.wait_healthy(SOON).await;
    eventually(SOON, "the sink delivering", async || {
        indexer.sink_status("bus").await.is_some_and(|s| s["state"] == "caught-up")
    })
    .await;
    let http = reqwest::Client::new();
    let mut stream =
        tidemark_testkit::SseReader::connect(&http, &format!("{}/v1/stream?after=0", api.http), None)
            .await
            .expect("a stream");
    stack.demo.mixed(3, |_| 2).await.expect("traffic");
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.next_event()).await;
    proxy.set_down(true);
    eventually(SOON, "RPC errors counted", async || {
        get_text(&format!("{}/metrics", indexer.http))
            .await
            .is_some_and(|(_, t)| t.contains("tidemark_rpc_errors_total{"))
    })
    .await;
    proxy.set_down(false);
    for route in ["/status", "/v1/events", "/v1/epochs", "/health"] {
        let _ = get_text(&format!("{}{route}", api.http)).await;
    }

    let (_, indexer_text) =
        get_text(&format!("{}/metrics", indexer.http)).await.expect("the indexer's /metrics");
    let (_, api_text) = get_text(&format!("{}/metrics", api.http)).await.expect("the API's /metrics");
    for (service, text) in [("indexer", &indexer_text), ("api", &api_text)] {
        assert!(
            text.contains(&format!("tidemark_db_pool_connections{{pool=\"{service}\",state=\"in_use\"}}")),
            "{service} exports its pool usage"
        );
    }
    let series: BTreeSet<String> = exported(&indexer_text).union(&exported(&api_text)).cloned().collect();
    let missing: Vec<&String> = queried.iter().filter(|m| !series.contains(*m)).collect();
    assert!(missing.is_empty(), "queried by the dashboard but exported by neither service: {missing:?}");

    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
    let families: BTreeSet<String> = exported(&indexer_text)
        .iter()
        .map(|s| family(s, &indexer_text))
        .chain(exported(&api_text).iter().map(|s| family(s, &api_text)))
        .collect();
    let undocumented: Vec<&String> = families.iter().filter(|f| !docs.contains(&format!("`{f}`"))).collect();
    assert!(undocumented.is_empty(), "exported but not in docs/metrics.md: {undocumented:?}");
    println!("dashboard queries {} metrics; the services export {} families", queried.len(), families.len());
}
