# shellcheck shell=bash
# Shared helpers for Tidemark's scripts. Source it; do not run it:
#
#   source "$(dirname "$0")/lib/common.sh"
#   ensure_postgres   # exports DATABASE_URL (private throwaway cluster if needed)
#   ensure_anvil      # puts anvil and cast on PATH, exports ANVIL_BIN and CAST_BIN
#   ensure_faketime   # installs Debian's faketime when libfaketime is missing
#
# Safe under `set -euo pipefail`. Cleanups run on EXIT, INT and TERM; add your
# own with `tidemark_on_exit 'command'` instead of calling `trap` yourself.

TIDEMARK_FOUNDRY_VERSION=1.7.1
TIDEMARK_SOLC_VERSION=0.8.37

tidemark_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

ROOT="$(tidemark_root)"
LOCAL_DIR="$ROOT/.local"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark-target}"

tidemark_log() { printf 'tidemark: %s\n' "$*" >&2; }
tidemark_die() { tidemark_log "error: $*"; exit 1; }

# ---- cleanup registry -------------------------------------------------------
# Cleanups run once, most recent first, whatever way the shell ends.
_TIDEMARK_CLEANUPS=()

tidemark_on_exit() { _TIDEMARK_CLEANUPS+=("$1"); }

_tidemark_run_cleanups() {
    local i
    for ((i = ${#_TIDEMARK_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${_TIDEMARK_CLEANUPS[i]}" || true
    done
    _TIDEMARK_CLEANUPS=()
}

trap '_tidemark_run_cleanups' EXIT
trap '_tidemark_run_cleanups; exit 130' INT
trap '_tidemark_run_cleanups; exit 143' TERM

# ---- small utilities --------------------------------------------------------
# Print a TCP port on 127.0.0.1 that nothing listens on.
tidemark_free_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    tidemark_die "no free TCP port found"
}

# Hide the password in a connection URL before printing it.
tidemark_redact_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

_tidemark_root_cmd() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else tidemark_die "need root to run: $*"
    fi
}

# ---- PostgreSQL --------------------------------------------------------------
_tidemark_pg_bindir() {
    local dirs
    dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V) || true
    [[ -n $dirs && -x "${dirs##*$'\n'}/initdb" ]] && echo "${dirs##*$'\n'}"
}

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
_tidemark_as_pg() {
    if [[ $EUID -ne 0 ]]; then "$@"
    elif command -v runuser >/dev/null; then runuser -u postgres -- "$@"
    else su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
}

# True if a PostgreSQL server answers a query at the given URL within 3 s.
tidemark_pg_answers() {
    local psql
    psql=$(command -v psql || true)
    [[ -n $psql ]] || psql="$(_tidemark_pg_bindir || true)/psql"
    [[ -x $psql ]] || return 1
    PGCONNECT_TIMEOUT=3 timeout 5 "$psql" -d "$1" -Atqc 'select 1' >/dev/null 2>&1
}

_tidemark_install_postgres() {
    tidemark_log "no PostgreSQL server binaries under /usr/lib/postgresql; installing Debian's postgresql package"
    _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Start a throwaway cluster and export DATABASE_URL for it; stopped and removed on exit.
tidemark_start_private_postgres() {
    local bin dir port attempt
    bin=$(_tidemark_pg_bindir) || { _tidemark_install_postgres; bin=$(_tidemark_pg_bindir); } ||
        tidemark_die "PostgreSQL server binaries still missing after apt-get install"
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        tidemark_die "running as root but there is no 'postgres' user to own the cluster"
    fi

    # Under .local when we can write there, the owner can reach it and the socket path stays short.
    mkdir -p "$LOCAL_DIR" 2>/dev/null || true
    local parent="$LOCAL_DIR"
    if ((${#parent} > 60)) || [[ ! -w $parent ]] || ! _tidemark_as_pg test -x "$parent" 2>/dev/null; then
        parent="${TMPDIR:-/tmp}"
    fi
    dir=$(mktemp -d "$parent/pg-$$-XXXXXX")
    chmod 700 "$dir"
    [[ $EUID -eq 0 ]] && chown postgres: "$dir"
    tidemark_on_exit "$(printf '_tidemark_stop_private_postgres %q %q' "$bin" "$dir")"

    _tidemark_as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; tidemark_die "initdb failed"; }
    # TLS like the development machines' server (a self-signed certificate for localhost and
    # 127.0.0.1), so that sslmode=require works against it; plain TCP when openssl is missing.
    local ssl_opts=""
    if command -v openssl >/dev/null &&
        _tidemark_as_pg openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
            -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
            -keyout "$dir/data/server.key" -out "$dir/data/server.crt" >/dev/null 2>&1; then
        _tidemark_as_pg chmod 600 "$dir/data/server.key"
        ssl_opts=" -c ssl=on"
    else
        tidemark_log "openssl not found: the private PostgreSQL serves no TLS"
    fi

    for attempt in 1 2 3; do
        port=$(tidemark_free_port)
        if _tidemark_as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200$ssl_opts" \
            start >/dev/null; then
            export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            tidemark_pg_answers "$DATABASE_URL" || tidemark_die "private PostgreSQL started but does not answer"
            tidemark_log "using private PostgreSQL $(basename "$(dirname "$bin")") at $DATABASE_URL (data in $dir, removed on exit)"
            return 0
        fi
        tidemark_log "private PostgreSQL did not start on port $port (attempt $attempt)"
    done
    tail -n 20 "$dir/log" >&2 || true
    tidemark_die "could not start a private PostgreSQL"
}

_tidemark_stop_private_postgres() {
    local bin=$1 dir=$2
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        _tidemark_as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

# Decide DATABASE_URL: the server at $DATABASE_URL if set and answering, else the one at
# 127.0.0.1:5432 if it answers, else a private throwaway cluster.
# TIDEMARK_LOCAL_PG=private forces the private cluster.
ensure_postgres() {
    local default_url="postgres://postgres@127.0.0.1:5432/postgres" candidate
    if [[ ${TIDEMARK_LOCAL_PG:-} != private ]]; then
        for candidate in ${DATABASE_URL:+"$DATABASE_URL"} "$default_url"; do
            if tidemark_pg_answers "$candidate"; then
                export DATABASE_URL="$candidate"
                tidemark_log "using PostgreSQL at $(tidemark_redact_url "$DATABASE_URL")"
                return 0
            fi
            tidemark_log "nothing answers at $(tidemark_redact_url "$candidate")"
        done
        tidemark_log "starting a private PostgreSQL cluster"
    fi
    tidemark_start_private_postgres
}

# Put pgbouncer on PATH (the connection-pooler tests start private ones); installs
# Debian's pgbouncer package when it is missing.
ensure_pgbouncer() {
    if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
        tidemark_log "pgbouncer is missing; installing Debian's pgbouncer package"
        _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null ||
            tidemark_die "cannot install pgbouncer (the pooler tests need it)"
    fi
    command -v pgbouncer >/dev/null || export PATH="$PATH:/usr/sbin"
}

# Headless Chromium and ChromeDriver for the dashboard's browser test (Debian's chromium
# and chromium-driver packages, installed when missing).
ensure_chromium() {
    if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
        tidemark_log "chromium or chromedriver is missing; installing Debian's chromium and chromium-driver"
        _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
            { _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
            tidemark_die "cannot install chromium and chromium-driver (the dashboard's browser test needs them)"
    fi
}

# Put nats-server on PATH (the sink tests start private ones with JetStream); installs
# Debian's nats-server package when it is missing.
ensure_nats_server() {
    if ! command -v nats-server >/dev/null && [[ ! -x /usr/sbin/nats-server ]]; then
        tidemark_log "nats-server is missing; installing Debian's nats-server package"
        _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null ||
            tidemark_die "cannot install nats-server (the sink tests need it)"
    fi
    command -v nats-server >/dev/null || export PATH="$PATH:/usr/sbin"
}

# ---- chain tools (npm registry) ---------------------------------------------
_tidemark_npm_install() {
    command -v npm >/dev/null || tidemark_die "npm is needed to install $*"
    tidemark_log "installing $* into $LOCAL_DIR/tools"
    mkdir -p "$LOCAL_DIR/tools"
    npm install --prefix "$LOCAL_DIR/tools" --no-audit --no-fund --loglevel=error "$@" >/dev/null
}

# Put anvil and cast on PATH; export ANVIL_BIN and CAST_BIN (absolute paths).
ensure_anvil() {
    local bin="$LOCAL_DIR/tools/node_modules/.bin"
    if ! command -v anvil >/dev/null || ! command -v cast >/dev/null; then
        if [[ ! -x "$bin/anvil" || ! -x "$bin/cast" ]]; then
            _tidemark_npm_install "@foundry-rs/anvil-linux-amd64@$TIDEMARK_FOUNDRY_VERSION" \
                "@foundry-rs/cast-linux-amd64@$TIDEMARK_FOUNDRY_VERSION"
        fi
        export PATH="$bin:$PATH"
    fi
    ANVIL_BIN=$(readlink -f "$(command -v anvil)")
    CAST_BIN=$(readlink -f "$(command -v cast)")
    export ANVIL_BIN CAST_BIN
    tidemark_log "using $("$ANVIL_BIN" --version | head -n 1 | sed "s/ Version://") at $ANVIL_BIN, cast at $CAST_BIN"
}

# Make libfaketime available (the API's clock-skew test runs its binary under it).
TIDEMARK_LIBFAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
ensure_faketime() {
    if [[ ! -e $TIDEMARK_LIBFAKETIME ]]; then
        tidemark_log "libfaketime missing; installing Debian's faketime package"
        _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _tidemark_root_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
    fi
    [[ -e $TIDEMARK_LIBFAKETIME ]] || tidemark_die "libfaketime still missing after apt-get install faketime"
}

# Make solcjs available (only needed to regenerate the demo contracts); exports SOLCJS.
ensure_solc() {
    SOLCJS="$LOCAL_DIR/tools/node_modules/.bin/solcjs"
    if [[ ! -x $SOLCJS ]] || [[ $("$SOLCJS" --version) != "$TIDEMARK_SOLC_VERSION"* ]]; then
        _tidemark_npm_install "solc@$TIDEMARK_SOLC_VERSION"
    fi
    export SOLCJS
    tidemark_log "using solcjs $("$SOLCJS" --version)"
}
