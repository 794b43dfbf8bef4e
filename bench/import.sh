#!/usr/bin/env bash
# Import rate and peak memory of `tidelog import`: a 100k-step W&B offline run written by
# the real wandb package and a 100k-event TensorBoard file written by tensorboardX, plus
# a note on `wandb sync` (its reading cannot be measured offline: see the end).
# Usage: bench/import.sh [STEPS]   (needs scripts/setup's venv, or TIDELOG_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-100000}
PY=${TIDELOG_PYTHON:-$PWD/target/pyenv/bin/python}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --bin tidelog -q
BIN=$TARGET/release/tidelog
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Peak RSS (kB) and wall seconds of a command, from /proc via /usr/bin/time when present.
measure() {
  local label=$1; shift
  local start end rss
  start=$(date +%s.%N)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$WORK/rss" "$@" > "$WORK/out" 2>&1 || { cat "$WORK/out"; return 1; }
    rss=$(tail -1 "$WORK/rss")
  else
    "$@" > "$WORK/out" 2>&1 &
    local pid=$! peak=0
    while kill -0 "$pid" 2>/dev/null; do
      local now; now=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${now:-0}" -gt "$peak" ] && peak=$now
      sleep 0.01
    done
    wait "$pid" || { cat "$WORK/out"; return 1; }
    rss=$peak
  fi
  end=$(date +%s.%N)
  SECS=$(echo "$end - $start" | bc)
  echo "$label: $SECS s, peak RSS ${rss} kB"
}

# Records (and steps) per second of the last import, from its "imported ..." line.
rate() {
  local line records steps
  line=$(grep imported "$WORK/out")
  records=$(echo "$line" | grep -o '[0-9]* records' | cut -d' ' -f1)
  steps=$(echo "$line" | grep -o '[0-9]* steps' | cut -d' ' -f1)
  echo "  $records records, $steps steps: $(echo "$records / $SECS" | bc) records/s, $(echo "$steps / $SECS" | bc) steps/s"
}

echo "writing a $STEPS-step W&B offline run (wandb $("$PY" -c 'import wandb; print(wandb.__version__)'))"
"$PY" tests/import/write_wandb.py "$WORK/wb" "$STEPS" > "$WORK/wb.json"
WANDB_FILE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["file"])' "$WORK/wb.json")
echo "  $(stat -c %s "$WANDB_FILE") bytes"
echo "writing $((STEPS / 2)) steps x 2 tags = $STEPS TensorBoard events (tensorboardX)"
"$PY" tests/import/write_tensorboard.py "$WORK/tb" $((STEPS / 2))
echo "  $(du -b "$WORK"/tb/events.* | cut -f1) bytes"

measure "tidelog import wandb ($STEPS steps)" "$BIN" import wandb "$WANDB_FILE" --dir "$WORK/out-wb"
rate
measure "tidelog import tensorboard ($STEPS events)" "$BIN" import tensorboard "$WORK/tb" --dir "$WORK/out-tb" --project bench
rate
# `wandb sync`'s own reading cannot be timed offline: wandb 0.31 has no `--view`, and
# `--dry-run` only lists the files; a real sync reads the log inside wandb-core while it
# uploads, so it needs a W&B server and key.
echo "wandb sync: not measurable offline ($("$PY" -m wandb sync --dry-run "$(dirname "$WANDB_FILE")" 2>&1 | head -1))"
