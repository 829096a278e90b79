//! No container engine runs on our machines, so the compose file is checked statically:
//! it parses, has the four services with ports and health checks, wires the API to the
//! database only, and points at build targets that the Dockerfile defines.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<Build>,
    #[serde(default)]
    ports: Vec<String>,
    healthcheck: Option<Healthcheck>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    depends_on: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    volumes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Build {
    context: String,
    dockerfile: String,
    target: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
}

fn compose() -> Compose {
    let path = crate::repo_root().join("deploy/compose.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/compose.yaml exists");
    serde_norway::from_str(&text).expect("deploy/compose.yaml is valid YAML of the expected shape")
}

#[test]
fn compose_has_the_stack_with_ports_and_health_checks() {
    let c = compose();
    let expect_ports = [
        ("postgres", "5432:5432"),
        ("nats", "4222:4222"),
        ("anvil", "8545:8545"),
        ("indexer", "4001:4001"),
        ("api", "4000:4000"),
    ];
    for (name, port) in expect_ports {
        let s = c.services.get(name).unwrap_or_else(|| panic!("service {name} is missing"));
        assert!(s.ports.iter().any(|p| p == port), "{name} publishes {port}: {:?}", s.ports);
        let hc = s.healthcheck.as_ref().unwrap_or_else(|| panic!("{name} has a health check"));
        assert_eq!(hc.test.first().map(String::as_str), Some("CMD"), "{name}: exec-form health check");
    }
    let indexer = &c.services["indexer"];
    let hc = indexer.healthcheck.as_ref().expect("checked above");
    assert!(
        hc.test.iter().any(|t| t.ends_with(":4001/health")),
        "indexer health check hits /health: {:?}",
        hc.test
    );
    assert!(c.services["postgres"].image.as_deref().is_some_and(|i| i.starts_with("postgres:")));
}

#[test]
fn the_api_shares_only_the_database() {
    let c = compose();
    let api = &c.services["api"];
    assert_eq!(api.depends_on.keys().collect::<Vec<_>>(), ["postgres"]);
    assert!(api.environment.contains_key("DATABASE_URL") && api.environment.contains_key("TIDEMARK_SCHEMA"));
    let mentions_indexer = api.environment.values().any(|v| v.contains("indexer") || v.contains(":4001"));
    assert!(!mentions_indexer, "the API is never given the indexer's address: {:?}", api.environment);
}

#[test]
fn build_targets_exist_in_the_dockerfile_and_config_is_mounted() {
    let c = compose();
    let root = crate::repo_root();
    for (name, s) in &c.services {
        let Some(b) = &s.build else { continue };
        assert_eq!(b.context, "..", "{name}: the build context is the repository root");
        let dockerfile = std::fs::read_to_string(root.join(&b.dockerfile)).expect("Dockerfile exists");
        assert!(
            dockerfile.lines().any(|l| l.trim_start().starts_with("FROM ")
                && l.trim_end().ends_with(&format!(" AS {}", b.target))),
            "{name}: target {} is a stage of {}",
            b.target,
            b.dockerfile
        );
        assert!(dockerfile.contains("USER 10001"), "images run as a non-root user");
    }
    let mount = c.services["indexer"].volumes.first().expect("indexer config mount");
    let host = mount.split(':').next().expect("host path");
    assert!(root.join("deploy").join(host).exists(), "mounted config {host} exists");
}
