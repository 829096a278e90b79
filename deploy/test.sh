#!/usr/bin/env bash
# Tidemark's test command: `deploy/test.sh [cargo test args...]`.
# Uses the PostgreSQL at $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# or a private throwaway cluster (always with TIDEMARK_LOCAL_PG=private), and anvil from
# PATH or the npm registry, and Debian's faketime (the clock-skew test) and pgbouncer (the
# pooler tests), nats-server (the sink tests) and chromium with chromium-driver (the
# dashboard's browser test) when missing. Extra arguments go to `cargo test`, e.g.
# `deploy/test.sh -p tidemark-api`.
# CARGO overrides the cargo command (e.g. CARGO=echo for a dry run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

ensure_postgres
ensure_anvil
ensure_faketime
ensure_pgbouncer
ensure_nats_server
ensure_chromium

# The whole workspace, unless the arguments (before `--`) pick packages: cargo would
# otherwise let --workspace win over -p and run every test.
scope=(--workspace)
for arg in "$@"; do
    case $arg in
        --) break ;;
        -p | --package | --package=* | -p?* | --manifest-path | --manifest-path=*) scope=() ;;
    esac
done

rc=0
"${CARGO:-cargo}" test "${scope[@]}" "$@" || rc=$?
exit "$rc"
