//! End-to-end tests of Tidemark's local stack (`deploy/up.sh`) and of the deployment
//! files (`deploy/compose.yaml`, `deploy/Dockerfile`). The tests live in `tests/`; this
//! library is intentionally empty.
