#!/usr/bin/env bash
# Test a checkpoint with N processes through torchrun: N GPUs (NCCL), or N CPU processes (gloo).
#   bash tools/dist_test.sh CONFIG CHECKPOINT N [tools/test.py options...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) as for torchrun.
set -euo pipefail
if [[ $# -lt 3 ]]; then
    echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [test.py options]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python)}"

# Bad input gets the tool's one-line error here, not once per process plus torchrun's traceback.
"$PYTHON" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --check "$@" >/dev/null || exit $?

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
