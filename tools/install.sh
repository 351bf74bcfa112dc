#!/usr/bin/env bash
# Install the mmmaskclip stack into a virtual environment (default: ./.venv).
#
#   bash tools/install.sh            # fresh machine: ~34 min on 2 cores (mmcv builds from source)
#   bash tools/install.sh            # again, nothing changed: < 1 min
#
# Environment variables:
#   VENV=path         where the venv lives (default: <repo>/.venv)
#   PYTHON=python3.11 interpreter used to create the venv
#   TORCH_SPEC        torch pin (default torch==2.14.1 torchvision==0.29.1)
#   MAX_JOBS=2        parallel compile jobs for mmcv
#   FORCE_CUDA=1      build mmcv's CUDA ops (needs nvcc and a CUDA torch)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
python="${PYTHON:-python3.11}"
torch_spec="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
export MAX_JOBS="${MAX_JOBS:-2}"

log() { printf '\033[1;34m[install]\033[0m %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating venv at $venv"
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
pip() { "$py" -m pip "$@"; }
pip install -q --upgrade 'pip>=23.2' >/dev/null

log "torch ($torch_spec)"
# shellcheck disable=SC2086
pip install -q $torch_spec

# Order matters: torch raises setuptools, mmcv's setup.py needs pkg_resources.
log "build tools"
pip install -q -r "$repo/requirements/build.txt"

mmcv_ok() { "$py" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' >/dev/null 2>&1; }

build_mmcv() {
  # torch >= 2.14 headers need C++20 but mmcv's setup.py forces -std=c++17:
  # a compiler wrapper appends -std=c++20 last, which wins.
  local wrap; wrap="$(mktemp -d)"
  printf '#!/bin/sh\nexec g++ "$@" -std=c++20\n' > "$wrap/cxx20"
  chmod +x "$wrap/cxx20"
  log "building mmcv 2.1.0 from source (~21 min on 2 cores; MAX_JOBS=$MAX_JOBS) $*"
  CXX="$wrap/cxx20" pip install --no-build-isolation "$@" mmcv==2.1.0
  rm -rf "$wrap"
}

if ! mmcv_ok; then
  # pip's wheel cache is keyed by the sdist, not by torch: a cached wheel may
  # have been built against another torch. Try it, and rebuild if it fails.
  build_mmcv
  if ! mmcv_ok; then
    log "cached mmcv wheel does not import with this torch; rebuilding without cache"
    pip uninstall -y -q mmcv
    build_mmcv --no-cache-dir
  fi
fi
mmcv_ok || { echo "mmcv.ops failed to import after a rebuild:"; "$py" -c 'import mmcv.ops'; exit 1; }

log "OpenMMLab, open_clip and evaluation packages"
pip install -q -r "$repo/requirements/runtime.txt" -r "$repo/requirements/tests.txt" \
  -r "$repo/requirements/optional.txt" -r "$repo/requirements/demo.txt"

log "mmmaskclip (editable)"
pip install -q --no-build-isolation --no-deps -e "$repo"
# mim looks for the .mim folder (configs, tools) next to the distribution's
# metadata, which for a PEP 660 editable install is site-packages: link it.
"$py" "$repo/tools/misc/link_for_mim.py"

"$py" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmseg, mmengine, open_clip, torch, mmmaskclip
print(f'[install] ok: torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine '
      f'{mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'open_clip {open_clip.__version__}, mmmaskclip {mmmaskclip.__version__}')
PY
