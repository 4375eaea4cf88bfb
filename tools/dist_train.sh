#!/usr/bin/env bash
# Train with N processes through torchrun: N GPUs (NCCL), or N CPU processes (gloo) when no GPU.
#   bash tools/dist_train.sh CONFIG N [tools/train.py options...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) as for torchrun.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py options]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [[ -x "$ROOT/.venv/bin/python" ]] && echo "$ROOT/.venv/bin/python" || echo python)}"

# Bad input gets the tool's one-line error here, not once per process plus torchrun's traceback.
"$PYTHON" "$ROOT/tools/train.py" "$CONFIG" --check "$@" >/dev/null || exit $?

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
