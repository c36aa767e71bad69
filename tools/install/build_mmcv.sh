#!/usr/bin/env bash
# Build mmcv 2.1.0 with compiled ops from the PyPI sdist and install it into the current Python.
#
# PyPI carries mmcv as an sdist only, and its setup.py asks for -std=c++14/17, which the headers of
# torch >= 2.13 reject. We patch the flag to C++20, build against the installed torch (hence
# --no-build-isolation) and cache the wheel outside the repository, keyed by everything that makes
# the binary different, so later installs and CI runs on the same machine skip the ~18 min build.
# CUDA ops are built when torch sees a GPU or FORCE_CUDA=1 is set (mmcv's own rule).
set -euo pipefail

PYTHON=$("${PYTHON:-python}" -c "import sys; print(sys.executable)")
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE_ROOT=${VMAMBA_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmamba-mm}

variant=$("$PYTHON" - <<'EOF'
import os, sys, torch
cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1"
tag = f"cu{torch.version.cuda.replace('.', '')}" if (cuda and torch.version.cuda) else "cpu"
arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").replace(" ", "_").replace(";", "_") if cuda else ""
print(f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.split('+')[0]}-{tag}{('-' + arch) if arch else ''}")
EOF
)
wheel_dir="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-$variant"

if "$PYTHON" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  echo "[build_mmcv] mmcv $MMCV_VERSION with ops already installed"
  exit 0
fi

if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[build_mmcv] no cached wheel in $wheel_dir: building mmcv $MMCV_VERSION from source (about 18 min on 2 cores)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work" >/dev/null
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  mkdir -p "$wheel_dir.partial"
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
     "$PYTHON" -m pip wheel --no-build-isolation --no-deps -w "$wheel_dir.partial" .)
  rm -rf "$wheel_dir" && mv "$wheel_dir.partial" "$wheel_dir"
fi

"$PYTHON" -m pip install --no-deps "$wheel_dir"/mmcv-*.whl
"$PYTHON" -c "import mmcv.ops; print('[build_mmcv] mmcv', __import__('mmcv').__version__, 'ops ok')"
