//! The HTTP surface: JSON 404/405, OpenAPI, metrics, CORS, and the rule that the API
//! never depends on the indexer (acceptance 8).

use std::collections::{BTreeSet, HashMap};

use clap::CommandFactory;
use tidemark_api::cli::Cli;
use tidemark_db_client::test_utils::TestDb;
use tidemark_shared_types::{Cursor, EpochItem, EpochStage, EpochStageEntry, EpochSummary, EventItem};

use crate::support::{TestApi, fast_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_are_json_errors() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let r = api.get("/nope?x=1").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "not_found");
    let r = api.http.post(format!("{}/health", api.base)).send().await.expect("post");
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_endpoint_and_the_event_item() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let doc = api.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    let paths: BTreeSet<&str> =
        doc.body["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    for p in [
        "/live",
        "/health",
        "/status",
        "/config",
        "/v1/realtime",
        "/v1/events",
        "/v1/epochs",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains(p), "{p} missing from {paths:?}");
    }
    let params: BTreeSet<&str> = doc.body["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params.len(), 13, "{params:?}");
    assert!(params.contains("order"), "order=desc is documented: {params:?}");

    // The documented item has exactly the fields of the served one.
    let documented: BTreeSet<String> = doc.body["components"]["schemas"]["EventItem"]["properties"]
        .as_object()
        .expect("EventItem")
        .keys()
        .cloned()
        .collect();
    let item = EventItem {
        cursor: Cursor(1),
        chain_id: 1,
        block_number: 1,
        block_hash: String::new(),
        block_timestamp: 1,
        transaction_hash: String::new(),
        transaction_index: 0,
        log_index: 0,
        address: String::new(),
        contract: String::new(),
        event: String::new(),
        signature: String::new(),
        args: serde_json::json!({}),
        decode_error: Some("data (0 bytes) does not decode as (uint256): buffer overrun".into()),
        finalized: false,
    };
    let served: BTreeSet<String> =
        serde_json::to_value(item).expect("json").as_object().expect("object").keys().cloned().collect();
    assert_eq!(documented, served);

    // `/v1/epochs`: its four parameters, and documented epoch shapes equal to the served ones.
    let params: BTreeSet<&str> = doc.body["paths"]["/v1/epochs"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, BTreeSet::from(["chainId", "stage", "page", "size"]));
    let documented = |name: &str| -> BTreeSet<String> {
        doc.body["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} is not documented"))
            .keys()
            .cloned()
            .collect()
    };
    let keys = |v: serde_json::Value| -> BTreeSet<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    let epoch = EpochItem {
        chain_id: 1,
        epoch_id: 1,
        from_block: 0,
        to_block: 9,
        stage: EpochStage::Stored,
        stages: vec![EpochStageEntry { stage: EpochStage::Stored, at: 1.5 }],
        error: None,
        // An added source's epoch: every documented key served.
        source: Some("Registry:0a1b2c3d".into()),
    };
    let summary = EpochSummary { latest: Some(epoch.clone()), not_finalized: 1 };
    assert_eq!(documented("EpochItem"), keys(serde_json::to_value(&epoch).expect("json")));
    assert_eq!(documented("EpochStageEntry"), keys(serde_json::to_value(epoch.stages[0]).expect("json")));
    assert_eq!(documented("EpochSummary"), keys(serde_json::to_value(&summary).expect("json")));
    let stages: BTreeSet<&str> = doc.body["components"]["schemas"]["EpochStage"]["enum"]
        .as_array()
        .expect("an enum of stage names")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert_eq!(stages, EpochStage::ALL.iter().map(|s| s.as_str()).collect());
    assert_eq!(
        documented("EpochsBody"),
        ["items", "page", "pages", "size", "total"].into_iter().map(String::from).collect()
    );
    assert!(doc.body["components"]["schemas"]["StatusBody"]["properties"]["epochs"].is_object());
    // `/v1/contracts/{name}/addresses`: its parameters and the page's and items' keys.
    let params: BTreeSet<&str> = doc.body["paths"]["/v1/contracts/{name}/addresses"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, BTreeSet::from(["name", "chainId", "page", "size"]));
    assert_eq!(
        documented("AddressesBody"),
        ["items", "page", "pages", "size", "total"].into_iter().map(String::from).collect()
    );
    let child = tidemark_shared_types::ContractAddress {
        chain_id: 1,
        contract: "Pair".into(),
        address: "0x00000000000000000000000000000000000000c1".into(),
        block_number: Some(7),
        block_hash: Some("0x01".into()),
        log_index: Some(2),
        tx_hash: Some("0x02".into()),
    };
    assert_eq!(documented("ContractAddress"), keys(serde_json::to_value(&child).expect("json")));
    // `/v1/stream`: the frames' data shapes.
    assert_eq!(
        documented("RemovedItem"),
        [
            "cursor",
            "eventCursor",
            "chainId",
            "blockNumber",
            "blockHash",
            "logIndex",
            "transactionHash",
            "address",
            "contract",
            "event"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert_eq!(documented("LaggedData"), ["behind", "resumeAfter"].into_iter().map(String::from).collect());
    let stream_params: BTreeSet<&str> = doc.body["paths"]["/v1/stream"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        stream_params,
        BTreeSet::from([
            "chainId", "contract", "event", "address", "txHash", "topic1", "topic2", "topic3", "after"
        ])
    );
    for (name, fields) in [
        ("HealthBody", &["status", "role", "reasons", "warnings"][..]),
        ("ErrorBody", &["error"]),
        ("ErrorDetail", &["code", "message", "field", "reasons", "floor"]),
    ] {
        assert_eq!(documented(name), fields.iter().map(|f| f.to_string()).collect(), "{name}");
    }

    // Every reference in the document names a documented schema.
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc.body, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(doc.body["components"]["schemas"][name].is_object(), "$ref {r} names no schema");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_per_matched_route() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    for _ in 0..3 {
        api.get("/live").await;
    }
    api.get("/v1/events?limit=0").await;
    api.get("/no/such/path").await;
    let r = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/live",status="200"} 3"#), "{text}");
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/v1/events",status="400"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("tidemark_db_queries_total"), "{text}");
    assert!(text.contains("tidemark_healthy 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_any_origin_to_read() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let r = api
        .http
        .get(format!("{}/live", api.base))
        .header("origin", "https://example.org")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.as_bytes()), Some(&b"*"[..]));
    let preflight = api
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/events", api.base))
        .header("origin", "https://example.org")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    assert!(preflight.headers().contains_key("access-control-allow-methods"));
}

/// The packages `root` depends on, transitively, from `Cargo.lock`.
fn locked_dependencies(lock: &str, root: &str) -> BTreeSet<String> {
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for block in lock.split("[[package]]") {
        let Some(name) =
            block.lines().find_map(|l| l.strip_prefix("name = \"")).map(|n| n.trim_end_matches('"'))
        else {
            continue;
        };
        let list = block
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split(']').next().unwrap_or(""))
            .unwrap_or("")
            .split(',')
            .filter_map(|d| d.trim().trim_matches('"').split(' ').next().map(str::to_owned))
            .filter(|d| !d.is_empty())
            .collect();
        deps.entry(name.to_owned()).or_default().extend::<Vec<String>>(list);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        for d in deps.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_api_depends_neither_on_the_indexer_nor_on_its_address() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    assert!(!manifest.contains("tidemark-indexer"), "api/Cargo.toml names the indexer");
    let lock = std::fs::read_to_string(root.join("../Cargo.lock")).expect("Cargo.lock");
    let deps = locked_dependencies(&lock, "tidemark-api");
    assert!(deps.contains("tidemark-db-client") && deps.contains("axum"), "the lock parses: {deps:?}");
    assert!(!deps.contains("tidemark-indexer"), "tidemark-api reaches tidemark-indexer through {deps:?}");

    let cmd = Cli::command();
    for arg in cmd.get_arguments() {
        let names = [
            Some(arg.get_id().as_str().to_owned()),
            arg.get_long().map(str::to_owned),
            arg.get_env().map(|e| e.to_string_lossy().into_owned()),
        ];
        for n in names.into_iter().flatten() {
            assert!(!n.to_ascii_lowercase().contains("indexer"), "setting {n} names the indexer");
        }
    }
}
