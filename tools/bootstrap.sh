#!/usr/bin/env bash
# Create .venv/ at the repository root with the pinned OpenMMLab stack and this project (editable).
#
# Idempotent: a stamp file records a hash of the requirement files and setup.py; when nothing changed,
# the script exits in a second. The one slow step is mmcv 2.1.0, which has no wheel on PyPI for our
# torch and is compiled from source with its C++ ops (measured 10-20 minutes on a 2-core CPU; pip
# caches the built wheel, so later environments reuse it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.bootstrap-stamp"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[bootstrap] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

stamp_hash() {
    cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/bootstrap.sh" | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_hash)" ]]; then
    say "environment up to date ($VENV)"
    exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found. Install Python 3.11 or set PYTHON=/path/to/python3.11."

step() {  # step "description" command...
    local what="$1"; shift
    say "$what"
    "$@" || die "step failed: $what
  command: $*
  Fix the cause above and rerun 'make setup' (finished steps are skipped by pip)."
}

if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating virtual environment $VENV" "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "installing build requirements (torch 2.13.0 CPU, setuptools<82)" \
    "${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"
step "installing mmengine 0.10.7" "${PIP[@]}" install -q mmengine==0.10.7

if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    if "${PIP[@]}" cache list 2>/dev/null | grep -q 'mmcv-2.1.0'; then
        say "installing mmcv 2.1.0 from pip's cache of an earlier build"
    else
        say "building mmcv 2.1.0 from source with its C++ ops."
        say "This takes 10-20 minutes on a 2-core CPU (once: pip caches the wheel). Please wait."
    fi
    step "installing mmcv 2.1.0 (MMCV_WITH_OPS=1)" \
        env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" FORCE_CUDA=0 \
        "${PIP[@]}" install --no-build-isolation mmcv==2.1.0
fi

step "installing mmdet 3.3.0 and runtime requirements" \
    "${PIP[@]}" install -q -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/deploy.txt"
step "installing iresnet-mmdet (editable)" \
    "${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
step "checking the installation" "$VENV/bin/python" -c \
    "import torch, mmcv, mmdet, mmengine, iresnet_mmdet; from mmcv.ops import nms; \
print('torch', torch.__version__, '| mmengine', mmengine.__version__, '| mmcv', mmcv.__version__, \
'| mmdet', mmdet.__version__, '| iresnet_mmdet', iresnet_mmdet.__version__)"

stamp_hash > "$STAMP"
say "done: $VENV"
