#!/usr/bin/env bash
# Tidemark's test command: `deploy/test.sh [cargo test args...]`.
# Uses the PostgreSQL at $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# or a private throwaway cluster (always with TIDEMARK_LOCAL_PG=private), and anvil from
# PATH or the npm registry. Extra arguments go to `cargo test`, e.g. `deploy/test.sh -p tidemark-api`.
# CARGO overrides the cargo command (e.g. CARGO=echo for a dry run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

ensure_postgres
ensure_anvil

rc=0
"${CARGO:-cargo}" test --workspace "$@" || rc=$?
exit "$rc"
