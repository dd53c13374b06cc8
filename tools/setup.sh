#!/usr/bin/env bash
# Set up (or refresh) vimamba's virtual environment in .venv: torch, the package, its extras and mmcv.
# Idempotent: a second run with nothing changed takes seconds. The exact versions come from constraints.txt.
#
# Usage: bash tools/setup.sh            then use .venv/bin/python
# Env:   VIMAMBA_VENV (default .venv), PYTHON (default python3.11, else python3), VIMAMBA_NO_MM=1 to skip
#        the OpenMMLab stack (no mmcv build), VIMAMBA_CACHE for the mmcv wheel cache (default ~/.cache/vimamba)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VIMAMBA_VENV:-$ROOT/.venv}
say() { echo "[setup] $*" >&2; }
die() { echo "[setup] error: $*" >&2; exit 1; }

if [ -z "${PYTHON:-}" ]; then
    PYTHON=$(command -v python3.11 || command -v python3 || true)
fi
[ -n "$PYTHON" ] || die "no python3 found; install Python 3.10-3.12"
"$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))' \
    || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); vimamba needs 3.10-3.12"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt")

# Skip pip entirely when nothing it depends on changed since the last successful run.
EXTRAS="bench,dev,deploy,wavelets"
[ "${VIMAMBA_NO_MM:-0}" = 1 ] || EXTRAS="$EXTRAS,mm"
stamp="$VENV/.vimamba-setup"
want=$(cat pyproject.toml setup.py constraints.txt | sha256sum | cut -c1-16)-$EXTRAS
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import vimamba' 2>/dev/null; then
    say "environment up to date ($VENV)"
    exit 0
fi

say "installing torch, torchvision and build tools (a few minutes the first time)"
"${PIP[@]}" --upgrade pip
"${PIP[@]}" torch torchvision setuptools wheel numpy

FIND_LINKS=()
if [ "${VIMAMBA_NO_MM:-0}" != 1 ]; then
    say "getting mmcv with compiled ops (built once, then taken from the cache)"
    wheel=$(bash "$ROOT/tools/build_mmcv.sh" "$PY" | tail -n 1)
    FIND_LINKS=(--find-links "$(dirname "$wheel")")
fi

say "installing vimamba[$EXTRAS] in editable mode"
"${PIP[@]}" "${FIND_LINKS[@]}" --no-build-isolation -e ".[$EXTRAS]"
"$PY" -c 'import vimamba' || die "vimamba does not import after installation"
echo "$want" > "$stamp"
say "done in $(( $(date +%s) - start ))s: $VENV"
