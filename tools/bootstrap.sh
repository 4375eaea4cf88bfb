#!/usr/bin/env bash
# Create a virtual environment with the pinned OpenMMLab stack and this project (editable).
#
#   bash tools/bootstrap.sh                  # .venv/: Python 3.11, torch 2.13 (make setup)
#   PROFILE=floor bash tools/bootstrap.sh    # .venv-floor/: the oldest supported stack, Python
#                                            # 3.10 and torch 2.1.2 (make floor-setup)
#
# Idempotent: a stamp file records a hash of the files a profile reads (its requirement files,
# setup.py and this script); when nothing changed, the script exits in a second. The one slow step
# is mmcv 2.1.0, which has no wheel on PyPI and is compiled from source with its C++ ops (time:
# docs/install.md); pip caches the built wheel, so later environments reuse it. The floor profile
# keeps its own pip cache, so that its mmcv wheel (built for torch 2.1) and the main one (built for
# torch 2.13, same version number) never stand in for each other.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${PROFILE:-main}"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[bootstrap] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

REQ="$ROOT/requirements"
case "$PROFILE" in
    main)
        VENV="${VENV:-$ROOT/.venv}"
        PYTHON="${PYTHON:-python3.11}"
        BUILD_REQS="$REQ/build.txt"
        DESCRIPTION="torch 2.13.0 CPU, setuptools<82"
        EXTRA_REQS=("$REQ/deploy.txt")
        CONSTRAINT=()
        ;;
    floor)
        VENV="${VENV:-$ROOT/.venv-floor}"
        PYTHON="${PYTHON:-python3.10}"
        BUILD_REQS="$REQ/floor.txt"
        DESCRIPTION="torch 2.1.2, numpy<2, setuptools<70"
        EXTRA_REQS=()  # ONNX export needs torch >= 2.6 (docs/deploy.md)
        CONSTRAINT=(-c "$BUILD_REQS")
        export PIP_CACHE_DIR="${FLOOR_PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip-floor}"
        ;;
    *) die "unknown PROFILE '$PROFILE': use main or floor" ;;
esac
STAMP="$VENV/.bootstrap-stamp"

stamp_hash() {
    cat "$BUILD_REQS" "$REQ/mminstall.txt" "$REQ/runtime.txt" "$REQ/tests.txt" \
        ${EXTRA_REQS[@]+"${EXTRA_REQS[@]}"} "$ROOT/setup.py" "$ROOT/tools/bootstrap.sh" \
        | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_hash)" ]]; then
    say "environment up to date ($VENV)"
    exit 0
fi

resolve_python() {  # a pyenv shim fails for a version that is installed but not selected
    "$PYTHON" -c '' 2>/dev/null && return
    if command -v pyenv >/dev/null && [[ "$PYTHON" != */* ]]; then
        local version
        version="$(pyenv whence "$PYTHON" 2>/dev/null | tail -1)"
        if [[ -n "$version" && -x "$(pyenv root)/versions/$version/bin/$PYTHON" ]]; then
            PYTHON="$(pyenv root)/versions/$version/bin/$PYTHON"
            return
        fi
    fi
    die "$PYTHON not found. Install it or set PYTHON=/path/to/$PYTHON."
}
resolve_python

step() {  # step "description" command...
    local what="$1"; shift
    say "$what"
    "$@" || die "step failed: $what
  command: $*
  Fix the cause above and rerun (finished steps are skipped by pip)."
}

if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating virtual environment $VENV" "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "installing build requirements ($DESCRIPTION)" \
    "${PIP[@]}" install -q -r "$BUILD_REQS"
step "installing mmengine 0.10.7" \
    "${PIP[@]}" install -q mmengine==0.10.7 ${CONSTRAINT[@]+"${CONSTRAINT[@]}"}

if ! "$VENV/bin/python" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    if "${PIP[@]}" cache list 2>/dev/null | grep -q 'mmcv-2.1.0'; then
        say "installing mmcv 2.1.0 from pip's cache of an earlier build"
    else
        say "building mmcv 2.1.0 from source with its C++ ops."
        say "This takes minutes (measured times: docs/install.md; once: pip caches the wheel)."
    fi
    step "installing mmcv 2.1.0 (MMCV_WITH_OPS=1)" \
        env MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" FORCE_CUDA=0 \
        "${PIP[@]}" install --no-build-isolation mmcv==2.1.0 ${CONSTRAINT[@]+"${CONSTRAINT[@]}"}
fi

REQ_ARGS=()
for file in "$REQ/mminstall.txt" "$REQ/runtime.txt" "$REQ/tests.txt" ${EXTRA_REQS[@]+"${EXTRA_REQS[@]}"}; do
    REQ_ARGS+=(-r "$file")
done
step "installing mmdet 3.3.0 and runtime requirements" \
    "${PIP[@]}" install -q "${REQ_ARGS[@]}" ${CONSTRAINT[@]+"${CONSTRAINT[@]}"}
step "installing iresnet-mmdet (editable)" \
    "${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
step "checking the installation" "$VENV/bin/python" -c \
    "import torch, mmcv, mmdet, mmengine, iresnet_mmdet; from mmcv.ops import nms; \
print('torch', torch.__version__, '| mmengine', mmengine.__version__, '| mmcv', mmcv.__version__, \
'| mmdet', mmdet.__version__, '| iresnet_mmdet', iresnet_mmdet.__version__)"

stamp_hash > "$STAMP"
say "done: $VENV"
