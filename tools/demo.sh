#!/usr/bin/env bash
# `make demo`: the main job on a laptop CPU, end to end.
#   1. write the bundled synthetic COCO-format dataset (once) to data/synthetic_coco/;
#   2. train SSD300 with an iResNet-18 backbone on it (configs/demo/), logging progress;
#   3. evaluate the final checkpoint and print the COCO AP/AR figures;
#   4. say where the checkpoint, the logs and the results are.
# Minutes on a CPU (measured times: docs/training.md). Environment knobs: PYTHON,
# DEMO_CONFIG, DEMO_WORK_DIR, DEMO_DATA (the data directory must match the config's data_root),
# DEMO_TCMALLOC=0 (no TCMalloc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONFIG="${DEMO_CONFIG:-configs/demo/ssd300_iresnet18_synthetic.py}"
DATA="${DEMO_DATA:-data/synthetic_coco}"
WORK_DIR="${DEMO_WORK_DIR:-work_dirs/$(basename "$CONFIG" .py)}"
METRICS="$WORK_DIR/test_metrics.json"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning}"
# OpenMP threads that sleep instead of spinning while waiting: on a busy laptop (or 2 shared cores)
# spinning threads slow training down several times; on an idle machine it costs nothing.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# TCMalloc where installed (Debian: apt-get install libtcmalloc-minimal4): it keeps freed large
# blocks that glibc returns to the system, so activations are not page-faulted in again every step
# (docs/training.md: 4 min 22 s instead of 5 min 0 s). DEMO_TCMALLOC=0 runs without it.
find_tcmalloc() {
    local lib
    lib="$(ldconfig -p 2>/dev/null | awk '/libtcmalloc_minimal\.so\.4 /{print $NF; exit}')"
    [[ -n "$lib" && -f "$lib" ]] && { echo "$lib"; return; }
    for lib in /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib64/libtcmalloc_minimal.so.4 \
               /usr/local/lib/libtcmalloc_minimal.so.4; do
        [[ -f "$lib" ]] && { echo "$lib"; return; }
    done
}
TCMALLOC=""
if [[ "${DEMO_TCMALLOC:-1}" != 0 && "${LD_PRELOAD:-}" != *tcmalloc* ]]; then
    TCMALLOC="$(find_tcmalloc || true)"
fi
if [[ -n "$TCMALLOC" ]]; then
    export LD_PRELOAD="$TCMALLOC${LD_PRELOAD:+ $LD_PRELOAD}"
fi

say() { printf '\n\033[1m[demo]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[demo] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

[[ -x "$PYTHON" ]] || die "$PYTHON not found: run 'make setup' first (or set PYTHON=...)"
START=$(date +%s)
if [[ -n "$TCMALLOC" ]]; then
    say "allocator: TCMalloc ($TCMALLOC)"
elif [[ "${LD_PRELOAD:-}" == *tcmalloc* ]]; then
    say "allocator: TCMalloc (LD_PRELOAD=$LD_PRELOAD)"
else
    say "allocator: glibc (no libtcmalloc_minimal.so.4; apt-get install libtcmalloc-minimal4)"
fi

say "1/3 data: synthetic COCO-format shapes dataset in $DATA (written once)"
"$PYTHON" tools/data/make_synthetic_coco.py --out "$DATA"

say "2/3 training $CONFIG (progress below; minutes on a CPU, see docs/training.md)"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
[[ -f "$WORK_DIR/last_checkpoint" ]] || die "training wrote no checkpoint to $WORK_DIR"
CHECKPOINT="$(cat "$WORK_DIR/last_checkpoint")"

say "3/3 evaluating $CHECKPOINT on the validation images"
"$PYTHON" tools/test.py "$CONFIG" "$CHECKPOINT" --work-dir "$WORK_DIR/test" \
    --metrics-out "$METRICS"

ELAPSED=$(( $(date +%s) - START ))
"$PYTHON" - "$METRICS" <<'EOF'
import json
import sys

metrics = json.load(open(sys.argv[1]))
rows = [('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'), ('AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')]
if all(f'coco/bbox_{name}' in metrics for row in rows for name in row):
    print('\nCOCO bbox results on the validation images (percent):')
    for row in rows:
        print('  ' + '  '.join(f'{name:>5}' for name in row))
        print('  ' + '  '.join(f'{100 * metrics[f"coco/bbox_{name}"]:5.1f}' for name in row))
else:  # another metric: print what it reported
    print('\nResults:')
    for key, value in metrics.items():
        print(f'  {key}: {value}')
EOF
LOG="$(ls -1t "$WORK_DIR"/*/*.log 2>/dev/null | grep -v "/test/" | head -n 1 || true)"
cat <<EOF

[demo] finished in $((ELAPSED / 60)) min $((ELAPSED % 60)) s
  checkpoint:    $CHECKPOINT
  training log:  ${LOG:-$WORK_DIR/<timestamp>/<timestamp>.log}
  metrics:       $METRICS (test log under $WORK_DIR/test/)
  curves:        $PYTHON tools/analysis/plot_curves.py $WORK_DIR --out $WORK_DIR/curves.png
EOF
