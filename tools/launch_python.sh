# Sourced by dist_launch.sh and slurm_launch.sh: sets PYTHON to the interpreter the workers run,
# says which on stderr, and exits 2 when it cannot import torch (a worker would die on it later,
# once per process, with `No module named 'torch'`).
# The choice: PYTHON if set; else the project's .venv (made by `make install`); else python.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAUNCHER=$(basename "$0")
if [ -n "${PYTHON:-}" ]; then
    PYTHON_WHY="from PYTHON"
elif [ -x "$REPO_ROOT/.venv/bin/python" ]; then
    PYTHON=$REPO_ROOT/.venv/bin/python
    PYTHON_WHY="the project's .venv; set PYTHON to use another"
else
    PYTHON=$(command -v python || command -v python3 || echo python)
    PYTHON_WHY="no $REPO_ROOT/.venv (make install creates it); set PYTHON to choose"
fi
echo "$LAUNCHER: workers run $PYTHON ($PYTHON_WHY)" >&2
if ! command -v "$PYTHON" >/dev/null; then
    echo "error: $LAUNCHER: no interpreter $PYTHON; run 'make install' in $REPO_ROOT to create" \
        ".venv, or set PYTHON to an interpreter with the project's packages." >&2
    exit 2
fi
if ! PYTHON_ERROR=$("$PYTHON" -c 'import torch' 2>&1 >/dev/null); then
    echo "error: $LAUNCHER: $PYTHON cannot import torch ($(tail -n 1 <<<"$PYTHON_ERROR")); run" \
        "'make install' in $REPO_ROOT to create .venv, or set PYTHON to an interpreter with the" \
        "project's packages." >&2
    exit 2
fi
