use std::path::Path;

use super::*;

const EXAMPLE: &str = r#"
namespace = "demo"
schema = "tidemark_demo"
database_url = "${DATABASE_URL}"

[[chains]]
chain_id = 31337
rpc_url = "${RPC_URL}"
finality_depth = 12

[[chains.contracts]]
name = "Token"
addresses = ["0x5FbDB2315678afecb367f032d93F642f64180aa3"]
start_block = 0
events = ["event Transfer(address indexed from, address indexed to, uint value)"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "DATABASE_URL" => Some("postgres://u:secret@db/x".into()),
        "RPC_URL" => Some("http://127.0.0.1:8545/?apikey=k3y".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<IndexerConfig, ConfigError> {
    IndexerConfig::parse(text, Path::new("."), &env)
}

#[test]
fn the_example_gives_the_documented_public_config() {
    let cfg = parse(EXAMPLE).expect("valid");
    let public = serde_json::to_value(cfg.public()).expect("json");
    let expected = serde_json::json!({"namespace": "demo", "instanceSchema": "tidemark_demo",
        "chains": [{"chainId": 31337, "finalityDepth": 12,
          "contracts": [{"name": "Token", "addresses": ["0x5fbdb2315678afecb367f032d93f642f64180aa3"], "startBlock": 0, "endBlock": null,
            "events": ["event Transfer(address indexed from, address indexed to, uint256 value)"]}]}],
        "versionInfo": {"tidemark": env!("CARGO_PKG_VERSION"), "schemaVersion": tidemark_shared_types::config::SCHEMA_VERSION}});
    assert_eq!(public, expected);
    // Secrets never reach the public view or the debug output.
    let text = format!("{public} {cfg:?}");
    assert!(!text.contains("k3y") && !text.contains("secret"), "{text}");
}

#[test]
fn a_missing_variable_names_it_and_the_key() {
    let text = EXAMPLE.replace("${RPC_URL}", "${NOPE_URL}");
    let err = parse(&text).expect_err("error");
    assert_eq!(err.path, "chains[0].rpc_url");
    assert!(err.message.contains("NOPE_URL"), "{err}");
}

#[test]
fn a_value_from_the_environment_that_does_not_fit_is_named_by_key_not_shown() {
    // A secret put in the wrong variable: the error names the key and hides the value.
    let text = EXAMPLE.replace("finality_depth = 12", "finality_depth = \"${DATABASE_URL}\"");
    let err = parse(&text).expect_err("error");
    assert_eq!(err.path, "chains[0].finality_depth", "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(err.message.contains("expected"), "{err}");
}

#[test]
fn chain_ids_beyond_a_signed_64_bit_integer_are_rejected() {
    let text = EXAMPLE.replace("chain_id = 31337", &format!("chain_id = {}", u64::MAX));
    // TOML integers are signed 64-bit: the parser refuses it, naming the line.
    let err = parse(&text).expect_err("error");
    assert!(err.path.starts_with("line ") && err.message.contains("too large"), "{err}");
    let text = EXAMPLE.replace("chain_id = 31337", &format!("chain_id = {}", i64::MAX));
    assert!(parse(&text).is_ok());
}

#[test]
fn type_errors_name_the_key_path() {
    let text = EXAMPLE.replace("start_block = 0", "start_block = \"zero\"");
    let err = parse(&text).expect_err("error");
    assert_eq!(err.path, "chains[0].contracts[0].start_block", "{err}");
}

#[test]
fn unknown_keys_and_bad_toml_are_errors() {
    let err = parse(&EXAMPLE.replace("finality_depth", "finality_dpth")).expect_err("unknown key");
    assert!(err.to_string().contains("finality_dpth"), "{err}");
    let err = parse("namespace = ").expect_err("bad toml");
    assert!(err.path.starts_with("line 1"), "{err}");
}

#[test]
fn bad_values_are_rejected_with_their_path() {
    let cases = [
        (
            EXAMPLE.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x12"),
            "chains[0].contracts[0].addresses[0]",
        ),
        (EXAMPLE.replace("tidemark_demo", "Public"), "schema"),
        (
            EXAMPLE.replace("event Transfer(", "event Transfer(uint999 x, "),
            "chains[0].contracts[0].events[0]",
        ),
        (
            EXAMPLE.replace("start_block = 0", "start_block = 9\nend_block = 3"),
            "chains[0].contracts[0].end_block",
        ),
        (EXAMPLE.replace("${RPC_URL}", "ftp://x"), "chains[0].rpc_url"),
        (EXAMPLE.replace("[[chains]]", "journal_retention_ms = 0\n\n[[chains]]"), "journal_retention_ms"),
    ];
    for (text, path) in cases {
        let err = parse(&text).expect_err("error");
        assert_eq!(err.path, path, "{err}");
    }
}

#[test]
fn abi_files_resolve_named_events() {
    let dir = std::env::temp_dir().join(format!("tidemark-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("Token.json"),
        r#"[{"type":"event","name":"Transfer","anonymous":false,"inputs":[
            {"name":"from","type":"address","indexed":true},{"name":"to","type":"address","indexed":true},
            {"name":"value","type":"uint256","indexed":false}]}]"#,
    )
    .expect("write");
    let text = EXAMPLE.replace(
        r#"events = ["event Transfer(address indexed from, address indexed to, uint value)"]"#,
        "abi = \"Token.json\"\nevents = [\"Transfer\"]",
    );
    let cfg = IndexerConfig::parse(&text, &dir, &env).expect("valid");
    assert_eq!(
        cfg.public().chains[0].contracts[0].events,
        ["event Transfer(address indexed from, address indexed to, uint256 value)"]
    );
    let err =
        IndexerConfig::parse(&text.replace("[\"Transfer\"]", "[\"Nope\"]"), &dir, &env).expect_err("missing");
    assert_eq!(err.path, "chains[0].contracts[0].events[0]");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_address_belongs_to_one_contract_per_chain() {
    let second = r#"
[[chains.contracts]]
name = "Other"
addresses = ["0x00000000000000000000000000000000000000aa", "0x5fbdb2315678afecb367f032d93f642f64180aa3"]
start_block = 5
events = ["event Ping(uint256 n)"]
"#;
    let err = parse(&format!("{EXAMPLE}{second}")).expect_err("duplicate address");
    assert_eq!(err.path, "chains[0].contracts[1].addresses[1]", "{err}");
    assert!(err.message.contains("0x5fbdb2315678afecb367f032d93f642f64180aa3"), "{err}");
    assert!(err.message.contains("\"Token\""), "{err}");
    // The same address on another chain is fine, and so is a repeat within one contract.
    let other_chain = r#"
[[chains]]
chain_id = 1
rpc_url = "${RPC_URL}"
[[chains.contracts]]
name = "Other"
addresses = ["0x5fbdb2315678afecb367f032d93f642f64180aa3"]
events = ["event Ping(uint256 n)"]
"#;
    parse(&format!("{EXAMPLE}{other_chain}")).expect("another chain");
    let twice = EXAMPLE.replace(
        r#"addresses = ["0x5FbDB2315678afecb367f032d93F642f64180aa3"]"#,
        r#"addresses = ["0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x5fbdb2315678afecb367f032d93f642f64180aa3"]"#,
    );
    parse(&twice).expect("a repeat within one contract");
}

/// A config with one contract listing `events`.
fn with_events(events: &str) -> String {
    EXAMPLE.replace(
        r#"events = ["event Transfer(address indexed from, address indexed to, uint value)"]"#,
        &format!("events = {events}"),
    )
}

fn public_events(cfg: &IndexerConfig) -> Vec<String> {
    cfg.public().chains[0].contracts[0].events.clone()
}

#[test]
fn every_signature_form_gives_the_canonical_event_of_the_abi() {
    let canonical = "event Foo(tuple(uint64, address) indexed key, tuple(uint64, address)[] ps, uint256 n)";
    let forms = [
        "event Foo((uint64 a, address b) indexed key, (uint64 a, address b)[] ps, uint n)",
        "Foo(tuple(uint64 a, address b) indexed key, tuple(uint64 a, address b)[] ps, uint256 n)",
        "event Foo((uint64,address) indexed key, (uint64,address)[] ps, uint n);",
        "  event  Foo( (uint64  a ,address b)  indexed  key , ( uint64 , address ) [ ] ps ,uint n ) ",
        canonical,
    ];
    let dir = std::env::temp_dir().join(format!("tidemark-sig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let component = |name: &str, ty: &str| format!(r#"{{"name":"{name}","type":"{ty}"}}"#);
    let components = format!("[{},{}]", component("a", "uint64"), component("b", "address"));
    std::fs::write(
        dir.join("Foo.json"),
        format!(
            r#"[{{"type":"event","name":"Foo","anonymous":false,"inputs":[
              {{"name":"key","type":"tuple","indexed":true,"components":{components}}},
              {{"name":"ps","type":"tuple[]","indexed":false,"components":{components}}},
              {{"name":"n","type":"uint256","indexed":false}}]}}]"#
        ),
    )
    .expect("write");
    let from_abi = with_events(r#"["Foo"]"#).replace("events = ", "abi = \"Foo.json\"\nevents = ");
    let from_abi = IndexerConfig::parse(&from_abi, &dir, &env).expect("abi config");
    assert_eq!(public_events(&from_abi), [canonical]);
    let topic0 = from_abi.chains[0].contracts[0].events[0].topic0;
    for form in forms {
        let cfg = parse(&with_events(&format!("[{form:?}]"))).unwrap_or_else(|e| panic!("{form}: {e}"));
        assert_eq!(cfg.public(), from_abi.public(), "{form}");
        assert_eq!(cfg.chains[0].contracts[0].events[0].topic0, topic0, "{form}");
    }
    // The canonical form parses back with alloy's own parser, to the same event.
    let again = Event::parse(canonical).expect("alloy reads the canonical form");
    assert_eq!(again.selector(), topic0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_signatures_name_the_event_key() {
    for bad in ["event Foo(uint a", "event Foo((uint a indexed) p)", "event Foo(Info info)"] {
        let err = parse(&with_events(&format!("[{bad:?}]"))).expect_err(bad);
        assert_eq!(err.path, "chains[0].contracts[0].events[0]", "{err}");
    }
}

/// The `[[sinks]]` of the sinks' issue, verbatim (its filter names chain 1).
const SINKS: &str = r#"
[[sinks]]
name = "orders-webhook"
kind = "webhook"
url = "${ORDERS_WEBHOOK_URL}"        # private: never stored, logged or served
secret = "${ORDERS_WEBHOOK_SECRET}"  # private
filter = { chain_ids = [1], contracts = ["Token"], events = ["Transfer"] }   # optional; default everything
batch_size = 500                     # entries per POST, default 500
max_batch_bytes = 1048576            # a batch is also cut at this body size (default 1 MiB)
timeout_ms = 10000
delivery = "instant"                 # or "finalized": only entries older than finality, so never a `removed`
rebroadcast_every_ms = 86400000      # optional, see below
start = "beginning"                  # or "head": skip history (only when the sink is first seen)

[[sinks]]
name = "bus"
kind = "nats"
url = "${NATS_URL}"                  # private; e.g. nats://127.0.0.1:4222
stream = "TIDEMARK"                  # created if missing, with a duplicate window ≥ 2 min
subject = "tidemark.{schema}.{chainId}.{contract}.{event}"
"#;

fn sink_env(name: &str) -> Option<String> {
    match name {
        "ORDERS_WEBHOOK_URL" => Some("https://hooks.example/orders?token=t0k".into()),
        "ORDERS_WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        "NATS_URL" => Some("nats://127.0.0.1:4222".into()),
        other => env(other),
    }
}

#[test]
fn sinks_parse_and_stay_out_of_the_public_config() {
    // The example's chain as chain 1, which the issue's filter names.
    let example = EXAMPLE.replace("chain_id = 31337", "chain_id = 1");
    let text = format!("{example}{SINKS}");
    let cfg = IndexerConfig::parse(&text, Path::new("."), &sink_env).expect("valid");
    assert_eq!(cfg.sinks.len(), 2);
    let hook = &cfg.sinks[0];
    assert_eq!((hook.name.as_str(), hook.kind(), hook.batch_size), ("orders-webhook", "webhook", 500));
    assert_eq!(hook.rebroadcast_every, Some(Duration::from_secs(86_400)));
    assert!(hook.filter.matches(1, "Token", "Transfer"));
    assert!(!hook.filter.matches(1, "Token", "Approval"));
    assert!(!hook.filter.matches(31337, "Token", "Transfer"));
    assert_eq!(cfg.sinks[1].kind(), "nats");
    let without = parse(&example).expect("valid");
    assert_eq!(cfg.public(), without.public(), "sinks never change the public config");
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("hooks.example") && !debug.contains("whsec_") && !debug.contains("4222"),
        "{debug}"
    );
}

#[test]
fn sink_errors_name_the_key_and_never_echo_the_url_or_secret() {
    let cases = [
        ("name = \"Orders\"", "sinks[0].name"),
        ("kind = \"kafka\"", "sinks[0].kind"),
        ("url = \"ftp://hooks.example/secret-path\"", "sinks[0].url"),
        ("secret = \"not-base64!\"", "sinks[0].secret"),
        ("filter = { contracts = [\"Tokn\"] }", "sinks[0].filter.contracts[0]"),
        ("filter = { events = [\"Approval\"] }", "sinks[0].filter.events[0]"),
        ("filter = { chain_ids = [1] }", "sinks[0].filter.chain_ids[0]"),
        ("delivery = \"eventually\"", "sinks[0].delivery"),
        ("stream = \"X\"", "sinks[0].stream"),
        ("colour = \"blue\"", "sinks[0]"),
    ];
    for (line, key) in cases {
        let mut table = vec![
            ("name", "name = \"hooks\""),
            ("kind", "kind = \"webhook\""),
            ("url", "url = \"https://hooks.example/secret-path\""),
            ("secret", "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\""),
        ];
        let k = line.split(' ').next().unwrap_or_default();
        table.retain(|(name, _)| *name != k);
        let body: Vec<&str> = table.iter().map(|(_, l)| *l).chain([line]).collect();
        let text = format!("{EXAMPLE}\n[[sinks]]\n{}\n", body.join("\n"));
        let e = parse(&text).expect_err(line);
        assert!(e.path.starts_with(key), "{line}: {e}");
        assert!(!e.to_string().contains("secret-path") && !e.to_string().contains("MfKQ9r8"), "{line}: {e}");
    }
    let twice = format!(
        "{EXAMPLE}\n[[sinks]]\nname = \"a\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\
         [[sinks]]\nname = \"a\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n"
    );
    assert_eq!(parse(&twice).expect_err("twice").path, "sinks[1].name");
}

/// The issue's webhook snippet, verbatim, after the chain's contracts.
const WEBHOOKS: &str = r#"
[[chains.webhooks]]
provider = "alchemy"                 # Alchemy Notify custom (GraphQL) webhooks; or "standard" (below)
secret = "${ALCHEMY_SIGNING_KEY}"    # private: the webhook's signing key (a `whsec_…` secret for "standard")
"#;

fn webhook_env(name: &str) -> Option<String> {
    match name {
        "ALCHEMY_SIGNING_KEY" => Some("whsec_alchemy-signing-key-T0p".into()),
        other => env(other),
    }
}

#[test]
fn webhooks_parse_and_stay_out_of_the_public_config() {
    // With webhooks carrying latency, polling is the safety net: a long interval.
    let chain = EXAMPLE.replace("finality_depth = 12\n", "finality_depth = 12\npoll_interval_ms = 30000\n");
    let text = format!("{chain}{WEBHOOKS}");
    let cfg = IndexerConfig::parse(&text, Path::new("."), &webhook_env).expect("valid");
    let hooks = &cfg.chains[0].webhooks;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].provider, super::Provider::Alchemy);
    // Alchemy signs with the key's text as given.
    assert_eq!(hooks[0].key, b"whsec_alchemy-signing-key-T0p".to_vec());
    assert_eq!(cfg.chains[0].poll_interval, Duration::from_secs(30));
    assert_eq!(cfg.pending_ttl, Duration::from_secs(3600));
    assert_eq!(cfg.webhook_retention, Duration::from_secs(86_400));
    assert_eq!(cfg.webhook_max_body_bytes, 5 * 1024 * 1024);
    assert_eq!(
        cfg.public(),
        parse(EXAMPLE).expect("valid").public(),
        "webhooks never change the public config"
    );
    assert!(!format!("{cfg:?}").contains("T0p"));

    let standard = text.replace("\"alchemy\"", "\"standard\"");
    let e = IndexerConfig::parse(&standard, Path::new("."), &webhook_env).expect_err("not base64");
    assert_eq!(e.path, "chains[0].webhooks[0].secret");
    assert!(!e.to_string().contains("T0p"), "{e}");
    let lookup = |name: &str| match name {
        "ALCHEMY_SIGNING_KEY" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
        other => env(other),
    };
    let cfg = IndexerConfig::parse(&standard, Path::new("."), &lookup).expect("a whsec_ secret");
    assert_eq!(cfg.chains[0].webhooks[0].provider, super::Provider::Standard);
    let unknown = text.replace("\"alchemy\"", "\"quicknode\"");
    let e = IndexerConfig::parse(&unknown, Path::new("."), &webhook_env).expect_err("unknown provider");
    assert!(e.path.starts_with("chains[0].webhooks[0].provider"), "{e}");
}

/// A UniswapV2-shaped config: `Factory` with an ABI file, `Pair` a factory contract.
fn factory_config(factory_events: &str, factory: &str) -> String {
    format!(
        r#"
namespace = "dex"
schema = "tidemark_dex"
database_url = "${{DATABASE_URL}}"

[[chains]]
chain_id = 1
rpc_url = "${{RPC_URL}}"

[[chains.contracts]]
name = "Factory"
addresses = ["0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"]
abi = "PairFactory.abi.json"
events = {factory_events}
start_block = 10000835

[[chains.contracts]]
name = "Pair"
factory = {factory}
abi = "Pair.abi.json"
events = ["Swap", "Sync"]
start_block = 10000835
"#
    )
}

fn demo_abis() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/out").to_path_buf()
}

fn parse_factory(events: &str, factory: &str) -> Result<IndexerConfig, ConfigError> {
    // The committed ABIs are named `<Contract>.abi.json`, as the example expects.
    IndexerConfig::parse(&factory_config(events, factory), &demo_abis(), &env)
}

#[test]
fn a_factory_contract_takes_its_addresses_from_the_creating_event() {
    let spec = r#"{ contract = "Factory", event = "PairCreated", parameter = "pair" }"#;
    let cfg = parse_factory(r#"["PairCreated"]"#, spec).expect("valid");
    let chain = &cfg.chains[0];
    let (pair, f) = chain.factories().next().expect("a factory contract");
    assert_eq!(pair.name, "Pair");
    assert!(pair.addresses.is_empty());
    // `pair` is the third input and the first non-indexed one.
    assert_eq!(f.location, ParamLocation::Data(0));
    assert_eq!(f.addresses, chain.contracts[0].addresses);
    assert_eq!(f.start_block, 10000835);
    // The static filter asks the factory for its creating event; children's topics apart.
    assert!(chain.topic0s().contains(&f.event.topic0));
    assert_eq!(chain.child_topic0s().len(), 2);
    let public = serde_json::to_value(cfg.public()).expect("json");
    let pair = &public["chains"][0]["contracts"][1];
    assert_eq!(pair["addresses"], serde_json::json!([]));
    assert_eq!(
        pair["factory"],
        serde_json::json!({"contract": "Factory", "event": "PairCreated", "parameter": "pair"})
    );
    // The factory's own events need not include the creating event.
    let cfg = parse_factory(r#"["PairListed"]"#, spec).expect("creating event not indexed");
    let (_, f) = cfg.chains[0].factories().next().expect("factory");
    assert_eq!(f.event.event.name, "PairCreated");
    // An indexed address parameter, and the event by its full signature.
    let listed =
        r#"{ contract = "Factory", event = "event PairListed(address indexed pair)", parameter = "pair" }"#;
    let cfg = parse_factory(r#"["PairCreated"]"#, listed).expect("indexed parameter");
    let (_, f) = cfg.chains[0].factories().next().expect("factory");
    assert_eq!(f.location, ParamLocation::Topic(1));
    assert_eq!(
        cfg.public().chains[0].contracts[1].factory.as_ref().map(|f| f.event.as_str()),
        Some("event PairListed(address indexed pair)")
    );
}

#[test]
fn factory_errors_name_the_key() {
    let cases = [
        (
            r#"{ contract = "Factory", event = "PairCreated", parameter = "token9" }"#,
            "chains[0].contracts[1].factory.parameter",
            "no parameter",
        ),
        // `count` is a uint256, not an address (and unnamed in the ABI: `_3`).
        (
            r#"{ contract = "Factory", event = "PairCreated", parameter = "" }"#,
            "chains[0].contracts[1].factory.parameter",
            "not an address",
        ),
        (
            r#"{ contract = "Factory", event = "Nope", parameter = "pair" }"#,
            "chains[0].contracts[1].factory.event",
            "Nope",
        ),
        (
            r#"{ contract = "Router", event = "PairCreated", parameter = "pair" }"#,
            "chains[0].contracts[1].factory.contract",
            "Router",
        ),
        (
            r#"{ contract = "Pair", event = "Swap", parameter = "to" }"#,
            "chains[0].contracts[1].factory.contract",
            "own factory",
        ),
        (r#"{ contract = "Factory", event = "PairCreated" }"#, "chains[0].contracts[1].factory", "parameter"),
    ];
    for (spec, path, words) in cases {
        let err = parse_factory(r#"["PairCreated"]"#, spec).expect_err(spec);
        assert_eq!(err.path, path, "{spec}: {err}");
        assert!(err.message.contains(words), "{spec}: {err}");
    }
    // Both addresses and a factory; neither.
    let both = factory_config(
        r#"["PairCreated"]"#,
        r#"{ contract = "Factory", event = "PairCreated", parameter = "pair" }"#,
    )
    .replace(
        "name = \"Pair\"\n",
        "name = \"Pair\"\naddresses = [\"0x00000000000000000000000000000000000000aa\"]\n",
    );
    let err = IndexerConfig::parse(&both, &demo_abis(), &env).expect_err("both");
    assert_eq!(err.path, "chains[0].contracts[1].addresses");
    let neither = factory_config(r#"["PairCreated"]"#, "{}").replace("factory = {}\n", "");
    let err = IndexerConfig::parse(&neither, &demo_abis(), &env).expect_err("neither");
    assert_eq!(err.path, "chains[0].contracts[1].addresses");
    // A factory of a factory.
    let nested = format!(
        "{}\n[[chains.contracts]]\nname = \"Grandchild\"\nfactory = {{ contract = \"Pair\", event = \"Swap\", parameter = \"to\" }}\nabi = \"Pair.abi.json\"\nevents = [\"Sync\"]\n",
        factory_config(
            r#"["PairCreated"]"#,
            r#"{ contract = "Factory", event = "PairCreated", parameter = "pair" }"#
        )
    );
    let err = IndexerConfig::parse(&nested, &demo_abis(), &env).expect_err("nested");
    assert_eq!(err.path, "chains[0].contracts[2].factory.contract");
    assert!(err.message.contains("itself a factory"), "{err}");
}

#[test]
fn the_documented_factory_snippet_and_signatures_copied_from_other_tools_parse() {
    let dir = std::env::temp_dir().join(format!("tidemark-factory-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("abis")).expect("dir");
    std::fs::copy(demo_abis().join("PairFactory.abi.json"), dir.join("abis/Factory.json")).expect("copy");
    std::fs::copy(demo_abis().join("Pair.abi.json"), dir.join("abis/Pair.json")).expect("copy");
    let chain = "namespace = \"dex\"\nschema = \"tidemark_dex\"\ndatabase_url = \"x\"\n[[chains]]\nchain_id = 1\nrpc_url = \"http://127.0.0.1:1\"\n";
    // The snippet as the docs give it (UniswapV2's factory address for the `0x…`).
    let snippet = r#"
[[chains.contracts]]
name = "Factory"
addresses = ["0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"]
abi = "abis/Factory.json"
events = ["PairCreated"]

[[chains.contracts]]
name = "Pair"
factory = { contract = "Factory", event = "PairCreated", parameter = "pair" }   # instead of addresses
abi = "abis/Pair.json"
events = ["Swap", "Sync"]
start_block = 0
"#;
    let cfg = IndexerConfig::parse(&format!("{chain}{snippet}"), &dir, &env).expect("the snippet parses");
    let (_, f) = cfg.chains[0].factories().next().expect("factory");
    assert_eq!(f.location, ParamLocation::Data(0));
    // The creating event as Ponder (viem's `parseAbiItem`), ethers and the Solidity source
    // write it: the same event of the ABI.
    for event in [
        "event PairCreated(address indexed token0, address indexed token1, address pair, uint256)",
        "PairCreated(address indexed token0, address indexed token1, address pair, uint)",
        "event PairCreated(address indexed token0,address indexed token1,address pair,uint256 )",
    ] {
        let text = snippet.replace(r#"event = "PairCreated""#, &format!("event = {event:?}"));
        let cfg = IndexerConfig::parse(&format!("{chain}{text}"), &dir, &env)
            .unwrap_or_else(|e| panic!("{event}: {e}"));
        let (_, f) = cfg.chains[0].factories().next().expect("factory");
        assert_eq!(f.event.event.name, "PairCreated", "{event}");
        assert_eq!(f.location, ParamLocation::Data(0), "{event}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
