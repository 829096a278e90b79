#!/usr/bin/env bash
# Tidemark's local stack in one command: PostgreSQL, NATS with JetStream, anvil (1 s
# blocks), the demo contracts, a traffic generator, the indexer with two sinks (a webhook
# to a demo receiver, NATS JetStream) and a provider webhook (the simulator pushing each
# new block), and the API (release builds).
#
#   deploy/up.sh            # Ctrl-C stops everything it started
#
# PostgreSQL: $DATABASE_URL when set and answering, else 127.0.0.1:5432 when it answers,
# else (or with TIDEMARK_LOCAL_PG=private) a private cluster under .local/. NATS: $NATS_URL
# when set and answering, else 127.0.0.1:4222 when it answers, else a private nats-server
# with JetStream (data under the stack directory).
# Ports: TIDEMARK_API_PORT (4000), TIDEMARK_INDEXER_PORT (4001), TIDEMARK_ANVIL_PORT
# (8545), TIDEMARK_RECEIVER_PORT (4010, the demo webhook receiver); a taken port is replaced by a free one. TIDEMARK_TRAFFIC_ARGS adds flags to the
# traffic generator (e.g. "--reorg-every 30 --reorg-max-depth 3").
# TIDEMARK_PROFILE=debug uses debug builds (the end-to-end test does); TIDEMARK_STACK_DIR
# (default .local/stack) holds the generated config, logs and pid files; TIDEMARK_SCHEMA
# (default tidemark_demo) names the instance schema.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

port_or_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then tidemark_free_port; else echo "$1"; fi
}

STACK_DIR="${TIDEMARK_STACK_DIR:-$LOCAL_DIR/stack}"
mkdir -p "$STACK_DIR"
SCHEMA="${TIDEMARK_SCHEMA:-tidemark_demo}"
PROFILE="${TIDEMARK_PROFILE:-release}"

ensure_postgres
ensure_anvil
ensure_nats_server

build_started=$SECONDS
case "$PROFILE" in
    release) profile_flag=(--release) ;;
    debug) profile_flag=() ;;
    *) tidemark_die "TIDEMARK_PROFILE must be release or debug" ;;
esac
tidemark_log "building $PROFILE binaries (a first release build takes several minutes)"
cargo build "${profile_flag[@]}" --locked -p tidemark-indexer -p tidemark-api -p tidemark-traffic
tidemark_log "built in $((SECONDS - build_started)) s"
BIN="$CARGO_TARGET_DIR/$PROFILE"

ANVIL_PORT=$(port_or_free "${TIDEMARK_ANVIL_PORT:-8545}")
INDEXER_PORT=$(port_or_free "${TIDEMARK_INDEXER_PORT:-4001}")
API_PORT=$(port_or_free "${TIDEMARK_API_PORT:-4000}")
RECEIVER_PORT=$(port_or_free "${TIDEMARK_RECEIVER_PORT:-4010}")
export RPC_URL="http://127.0.0.1:$ANVIL_PORT"
# The demo webhook sink's receiver and secret (a fresh secret per stack).
export ORDERS_WEBHOOK_URL="http://127.0.0.1:$RECEIVER_PORT/hooks/tidemark"
ORDERS_WEBHOOK_SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
export ORDERS_WEBHOOK_SECRET
# The signing key of the demo chain's provider webhook (the simulator plays Alchemy Notify).
ALCHEMY_SIGNING_KEY="whsec_$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
export ALCHEMY_SIGNING_KEY

# Children are stopped newest first: traffic, API, indexer, anvil; then PostgreSQL.
stop_pid() {
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
    tidemark_log "$name did not stop in 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# The services run in their own sessions, so a Ctrl-C in the terminal reaches this script
# alone and it stops them in order (traffic, API, indexer with its final status, anvil,
# PostgreSQL) instead of all of them dying at once.
DETACH=()
command -v setsid >/dev/null && DETACH=(setsid)

nats_answers() { local hp=${1#*://}; hp=${hp##*@}; (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; }
if [[ -n "${NATS_URL:-}" ]] && nats_answers "$NATS_URL"; then
    tidemark_log "using the NATS server at NATS_URL"
elif nats_answers nats://127.0.0.1:4222; then
    export NATS_URL=nats://127.0.0.1:4222
    tidemark_log "using the NATS server at 127.0.0.1:4222"
else
    NATS_PORT=$(tidemark_free_port)
    export NATS_URL="nats://127.0.0.1:$NATS_PORT"
    mkdir -p "$STACK_DIR/nats"
    "${DETACH[@]}" nats-server -js -sd "$STACK_DIR/nats" -a 127.0.0.1 -p "$NATS_PORT" >"$STACK_DIR/nats.log" 2>&1 &
    NATS_PID=$!
    echo "$NATS_PID" >"$STACK_DIR/nats.pid"
    tidemark_on_exit "stop_pid $NATS_PID nats-server"
    for _ in $(seq 1 100); do nats_answers "$NATS_URL" && break; sleep 0.1; done
    nats_answers "$NATS_URL" || tidemark_die "nats-server did not start (see $STACK_DIR/nats.log)"
    tidemark_log "started a private nats-server with JetStream at $NATS_URL"
fi

"${DETACH[@]}" "$BIN/tidemark-traffic" receive --listen "127.0.0.1:$RECEIVER_PORT" --secret "$ORDERS_WEBHOOK_SECRET" \
    >"$STACK_DIR/receiver.log" 2>&1 &
RECEIVER_PID=$!
echo "$RECEIVER_PID" >"$STACK_DIR/receiver.pid"
tidemark_on_exit "stop_pid $RECEIVER_PID receiver"

"${DETACH[@]}" "$ANVIL_BIN" --host 127.0.0.1 --port "$ANVIL_PORT" --block-time 1 >"$STACK_DIR/anvil.log" 2>&1 &
ANVIL_PID=$!
echo "$ANVIL_PID" >"$STACK_DIR/anvil.pid"
tidemark_on_exit "stop_pid $ANVIL_PID anvil"
for _ in $(seq 1 100); do "$CAST_BIN" block-number --rpc-url "$RPC_URL" >/dev/null 2>&1 && break; sleep 0.1; done
"$CAST_BIN" block-number --rpc-url "$RPC_URL" >/dev/null || tidemark_die "anvil did not start (see $STACK_DIR/anvil.log)"

tidemark_log "deploying the demo contracts"
"$BIN/tidemark-traffic" --rpc-url "$RPC_URL" deploy >"$STACK_DIR/contracts.json"
TOKEN=$(sed -E 's/.*"token" *: *"([^"]+)".*/\1/' "$STACK_DIR/contracts.json")
REGISTRY=$(sed -E 's/.*"registry" *: *"([^"]+)".*/\1/' "$STACK_DIR/contracts.json")

cat >"$STACK_DIR/tidemark.toml" <<TOML
# Generated by deploy/up.sh. Secrets come from the environment.
namespace = "demo"
schema = "$SCHEMA"
database_url = "\${DATABASE_URL}"

[http]
listen = "127.0.0.1:$INDEXER_PORT"

[[chains]]
chain_id = 31337
rpc_url = "\${RPC_URL}"
finality_depth = 5
# New blocks arrive by webhook (the provider simulator); polling is the safety net.
poll_interval_ms = 2000

[[chains.contracts]]
name = "Token"
addresses = ["$TOKEN"]
abi = "$ROOT/deploy/demo/out/Token.abi.json"
events = ["Transfer", "Approval"]

[[chains.contracts]]
name = "Registry"
addresses = ["$REGISTRY"]
abi = "$ROOT/deploy/demo/out/Registry.abi.json"
events = ["Registered", "Tagged", "Updated", "Burst"]

[[chains.webhooks]]
provider = "alchemy"
secret = "\${ALCHEMY_SIGNING_KEY}"

# Sinks are private config (not stored, not compared): URLs and secrets from the environment.
[[sinks]]
name = "orders-webhook"
kind = "webhook"
url = "\${ORDERS_WEBHOOK_URL}"
secret = "\${ORDERS_WEBHOOK_SECRET}"
filter = { contracts = ["Token"] }
batch_size = 100

[[sinks]]
name = "bus"
kind = "nats"
url = "\${NATS_URL}"
stream = "${SCHEMA^^}"
subject = "tidemark.{schema}.{chainId}.{contract}.{event}"
TOML

"${DETACH[@]}" "$BIN/tidemark-indexer" --config "$STACK_DIR/tidemark.toml" >"$STACK_DIR/indexer.log" 2>&1 &
INDEXER_PID=$!
echo "$INDEXER_PID" >"$STACK_DIR/indexer.pid"
tidemark_on_exit "stop_pid $INDEXER_PID indexer"

TIDEMARK_SCHEMA=$SCHEMA TIDEMARK_API_LISTEN="127.0.0.1:$API_PORT" "${DETACH[@]}" "$BIN/tidemark-api" >"$STACK_DIR/api.log" 2>&1 &
API_PID=$!
echo "$API_PID" >"$STACK_DIR/api.pid"
tidemark_on_exit "stop_pid $API_PID api"

# shellcheck disable=SC2086
"${DETACH[@]}" "$BIN/tidemark-traffic" --rpc-url "$RPC_URL" run --token "$TOKEN" --registry "$REGISTRY" ${TIDEMARK_TRAFFIC_ARGS:-} \
    >"$STACK_DIR/traffic.log" 2>&1 &
TRAFFIC_PID=$!
echo "$TRAFFIC_PID" >"$STACK_DIR/traffic.pid"
tidemark_on_exit "stop_pid $TRAFFIC_PID traffic"

# The provider simulator pushes each new block to the indexer's webhook endpoint.
WEBHOOK_SIGNING_KEY=$ALCHEMY_SIGNING_KEY "${DETACH[@]}" "$BIN/tidemark-traffic" --rpc-url "$RPC_URL" webhook-sim \
    --endpoint "http://127.0.0.1:$INDEXER_PORT/v1/webhooks/alchemy/31337" --provider alchemy \
    >"$STACK_DIR/webhooks.log" 2>&1 &
SIM_PID=$!
echo "$SIM_PID" >"$STACK_DIR/webhooks.pid"
tidemark_on_exit "stop_pid $SIM_PID webhook-sim"
# What a restart of one piece needs (used by the end-to-end test; no secrets beyond the URLs).
printf 'DATABASE_URL=%s\nRPC_URL=%s\nINDEXER_BIN=%s\nAPI_PORT=%s\nINDEXER_PORT=%s\nORDERS_WEBHOOK_URL=%s\nORDERS_WEBHOOK_SECRET=%s\nNATS_URL=%s\nALCHEMY_SIGNING_KEY=%s\n' \
    "$DATABASE_URL" "$RPC_URL" "$BIN/tidemark-indexer" "$API_PORT" "$INDEXER_PORT" "$ORDERS_WEBHOOK_URL" \
    "$ORDERS_WEBHOOK_SECRET" "$NATS_URL" "$ALCHEMY_SIGNING_KEY" >"$STACK_DIR/stack.env"

cat >&2 <<MSG

Tidemark is up.
  API         http://127.0.0.1:$API_PORT   (/status /health /v1/events /openapi.json /metrics)
  indexer     http://127.0.0.1:$INDEXER_PORT   (/status /health /metrics)
  chain       $RPC_URL   (anvil, chain id 31337, 1 s blocks)
  database    $(tidemark_redact_url "$DATABASE_URL")   (schema $SCHEMA)
  contracts   Token $TOKEN, Registry $REGISTRY
  sinks       orders-webhook -> $ORDERS_WEBHOOK_URL (log: $STACK_DIR/receiver.log)
              bus -> NATS JetStream $NATS_URL, stream ${SCHEMA^^}, subjects tidemark.$SCHEMA.>
  webhooks    the provider simulator -> /v1/webhooks/alchemy/31337 (log: $STACK_DIR/webhooks.log)
  logs        $STACK_DIR/{anvil,indexer,api,traffic,receiver,webhooks}.log
  watch       tail -f $STACK_DIR/receiver.log
              (set -a; . $STACK_DIR/stack.env; $BIN/tidemark-indexer sink list --config $STACK_DIR/tidemark.toml)
  try         curl -s http://127.0.0.1:$API_PORT/status
              curl -s 'http://127.0.0.1:$API_PORT/v1/events?limit=5'
Press Ctrl-C to stop.
MSG

# Stay up until Ctrl-C or until anvil or the API dies. The indexer may stop (or be stopped
# and restarted by hand): the API keeps serving what is stored, so that is only reported.
indexer_reported=0
while true; do
    for pid_name in "$ANVIL_PID:anvil" "$API_PID:api"; do
        if ! kill -0 "${pid_name%%:*}" 2>/dev/null; then
            wait "${pid_name%%:*}" && rc=0 || rc=$?
            tidemark_die "${pid_name#*:} exited with code $rc (see $STACK_DIR/${pid_name#*:}.log)"
        fi
    done
    if ((indexer_reported == 0)) && ! kill -0 "$INDEXER_PID" 2>/dev/null; then
        wait "$INDEXER_PID" && rc=0 || rc=$?
        tidemark_log "the indexer exited with code $rc (see $STACK_DIR/indexer.log); the API keeps serving stored data"
        indexer_reported=1
    fi
    sleep 1
done
