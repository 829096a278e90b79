#!/usr/bin/env bash
# Regenerates deploy/demo/out/<Contract>.{bin,abi.json} with solcjs (npm `solc`): the demo
# contracts, the benchmark's load contracts (Fungible, Collectible, Market, Multicall) and the
# factory fixtures (PairFactory and the Pair it creates).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
ensure_solc
cd "$ROOT/deploy/demo"

tmp=$(mktemp -d)
tidemark_on_exit "$(printf 'rm -rf %q' "$tmp")"
contracts=(Token Registry Payloads Fungible Collectible Market Multicall Pair PairFactory)
"$SOLCJS" --bin --abi --optimize -o "$tmp" "${contracts[@]/%/.sol}"

mkdir -p out
for c in "${contracts[@]}"; do
    # solcjs names outputs <file>_sol_<contract>.{bin,abi}; keep stable names instead.
    printf '%s\n' "$(cat "$tmp/${c}_sol_${c}.bin")" >"out/$c.bin"
    node -e 'const fs = require("fs");
        fs.writeFileSync(process.argv[2], JSON.stringify(JSON.parse(fs.readFileSync(process.argv[1], "utf8")), null, 2) + "\n")' \
        "$tmp/${c}_sol_${c}.abi" "out/$c.abi.json"
    tidemark_log "wrote deploy/demo/out/$c.bin ($(($(wc -c <"out/$c.bin") / 2)) bytes) and out/$c.abi.json"
done
