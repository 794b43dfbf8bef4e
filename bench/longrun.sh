#!/usr/bin/env bash
# Long runs, client side (issue 10): at each size (default 1 M, 5 M and 10 M steps of 10
# scalars; SIZES="..." to choose), natively and from Node, the peak RSS (/usr/bin/time -v) of
# the logging process across finish() and across a resume, of `tidelog sync` and of
# `tidelog.sync()`, a re-sync after one new step next to a 10-step run's sync, bundle
# building rows/s and the log() rates. Release builds; needs pkg/ (scripts/build-pkg).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000000 5000000 10000000"}
TARGET=$(realpath "${CARGO_TARGET_DIR:-target}")
cargo build --quiet --release --bin tidelog
BIN="$TARGET/release/tidelog"
BENCH=$(cargo bench --quiet --bench longrun --no-run --message-format=json \
  | grep -o '"executable":"[^"]*longrun[^"]*"' | tail -1 | cut -d'"' -f4)
[ -f pkg/node.js ] || scripts/build-pkg

# Runs a command under /usr/bin/time; prints its output and "label: peak RSS N MB, wall S s".
measure() {
  local label=$1; shift
  local out; out=$(mktemp)
  /usr/bin/time -v "$@" 2>"$out" | sed 's/^/  /'
  local kb wall
  kb=$(grep 'Maximum resident set size' "$out" | awk '{print $NF}')
  wall=$(grep 'Elapsed (wall clock)' "$out" | awk '{print $NF}')
  echo "$label: peak RSS $((kb / 1024)) MB, wall $wall"
  rm -f "$out"
}

DATA=$(mktemp -d)
KEY=$("$BIN" admin create-key --account bench --data "$DATA")
"$BIN" serve --addr 127.0.0.1:0 --data "$DATA" >"$DATA/serve.out" 2>/dev/null &
SERVER=$!
trap 'kill $SERVER; rm -rf "$DATA"' EXIT
until grep -q listening "$DATA/serve.out"; do sleep 0.1; done
export TIDELOG_BASE_URL; TIDELOG_BASE_URL=$(sed 's/tidelog server listening on //' "$DATA/serve.out" | head -1)
export TIDELOG_API_KEY=$KEY

echo "== the cost of any sync: a 10-step run"
SMALL=$(mktemp -d)
"$BENCH" log "$SMALL" 10 >/dev/null
(cd "$SMALL" && measure "tidelog sync, 10-step run" "$BIN" sync >/dev/null)
rm -rf "$SMALL"

for N in $SIZES; do
  echo "== $N steps x 10 scalars"
  W=$(mktemp -d)
  measure "native log + finish" "$BENCH" log "$W" "$N"
  echo "  log: $(du -m "$W"/tidelog/run-*/records.tlog | cut -f1) MB"
  measure "native resume + 1 step + finish" "$BENCH" resume "$W"
  "$BENCH" bundle "$W" | sed 's/^/  /'
  (cd "$W" && measure "tidelog sync" "$BIN" sync)
  "$BENCH" resume "$W" >/dev/null
  (cd "$W" && measure "tidelog sync after one new step" "$BIN" sync)
  rm -rf "$W"

  W=$(mktemp -d)
  measure "node log + finish" node bench/longrun-node.mjs log "$W" "$N"
  measure "node resume + 1 step + finish" node bench/longrun-node.mjs resume "$W"
  measure "tidelog.sync() from node" node bench/longrun-node.mjs sync "$W"
  node bench/longrun-node.mjs resume "$W" >/dev/null
  measure "tidelog.sync() from node after one new step" node bench/longrun-node.mjs sync "$W"
  rm -rf "$W"
done
