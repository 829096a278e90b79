//! `check-config` prints one public config for an event however its signature is written
//! (Solidity/viem inline tuples, ethers' `tuple(…)`, unnamed components) and whether it
//! comes from a signature or an ABI file.

use serde_json::Value;
use tidemark_testkit::{SOON, indexer_process, tempdir};

/// The config of one contract on one chain with `events` (and `abi`, when given).
fn config(events: &str, abi: Option<&str>) -> String {
    let abi = abi.map(|a| format!("abi = {a:?}\n")).unwrap_or_default();
    format!(
        r#"namespace = "sig"
schema = "tidemark_sig"
database_url = "postgres://unused@127.0.0.1:1/none"
[[chains]]
chain_id = 1
rpc_url = "http://127.0.0.1:1"
[[chains.contracts]]
name = "Orders"
addresses = ["0x00000000000000000000000000000000000000aa"]
{abi}events = {events}
"#
    )
}

/// `check-config` on `text`: its public config, with `versionInfo` dropped.
async fn public_config(dir: &std::path::Path, name: &str, text: &str) -> Value {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing the config");
    let mut p = indexer_process(&path, &["check-config"]).log_dir(dir).spawn();
    assert_eq!(p.exit_code(SOON).await, 0, "{name}: {}", p.logs());
    let mut public: Value = serde_json::from_str(&p.stdout()).expect("stdout is JSON");
    public.as_object_mut().expect("object").remove("versionInfo");
    public
}

const ABI: &str = r#"[
  {"type": "event", "name": "Placed", "anonymous": false, "inputs": [
    {"name": "order", "type": "tuple", "indexed": true, "internalType": "struct Orders.Order",
     "components": [{"name": "id", "type": "uint64"}, {"name": "maker", "type": "address"}]},
    {"name": "fills", "type": "tuple[]", "indexed": false, "internalType": "struct Orders.Fill[]",
     "components": [{"name": "amount", "type": "uint256"}, {"name": "note", "type": "string"}]},
    {"name": "total", "type": "uint256", "indexed": false}]}
]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signature_form_and_the_abi_give_one_public_config() {
    let dir = tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("Orders.json"), ABI).expect("writing the ABI");
    let from_abi = public_config(dir.path(), "abi.toml", &config(r#"["Placed"]"#, Some("Orders.json"))).await;
    let events = &from_abi["chains"][0]["contracts"][0]["events"];
    assert_eq!(
        events,
        &serde_json::json!([
            "event Placed(tuple(uint64, address) indexed order, tuple(uint256, string)[] fills, uint256 total)"
        ])
    );
    let forms = [
        // Solidity and viem: inline tuples with component names.
        "event Placed((uint64 id, address maker) indexed order, (uint256 amount, string note)[] fills, uint total)",
        // ethers: tuple(…) with component names, no `event` keyword.
        "Placed(tuple(uint64 id, address maker) indexed order, tuple(uint256 amount, string note)[] fills, uint256 total)",
        // Unnamed components, extra spaces, a trailing semicolon.
        "event  Placed( (uint64,address)  indexed order ,(uint256 , string) [] fills , uint total );",
    ];
    for (i, form) in forms.iter().enumerate() {
        let public =
            public_config(dir.path(), &format!("form-{i}.toml"), &config(&format!("[{form:?}]"), None)).await;
        assert_eq!(public, from_abi, "{form}");
    }
}
