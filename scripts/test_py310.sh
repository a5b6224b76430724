#!/usr/bin/env bash
# The pure core, platforms and ONNX analysis under Python 3.10, the interpreter robots run
# (JetPack 6 / Humble), with the core compiled by mypyc as setup.sh builds it there (and
# test_native.py comparing it with the Python modules). ruff only checks syntax for py310.
#   scripts/test_py310.sh [pytest args...]
# Uses python3.10 from PATH or pyenv; without one it says so and exits 0 (nothing to run).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY310=""
for candidate in "$(command -v python3.10 || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python3.10; do
  # a pyenv shim exists without the version being enabled: it must really run
  if [[ -x "$candidate" ]] && "$candidate" -c 'import sys' 2>/dev/null; then
    PY310="$candidate"
    break
  fi
done
if [[ -z "$PY310" ]]; then
  echo "[py310] no python3.10 on this machine: the Python 3.10 run is skipped"
  exit 0
fi
VENV="$REPO/.venv310"
REQS="$REPO/scripts/requirements-py310.txt"
if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$REQS" "$VENV/requirements.txt"; then
  rm -rf "$VENV"
  "$PY310" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$VENV/requirements.txt"
fi
cd "$REPO"
# the core compiled under 3.10 too, as scripts/setup.sh does on a robot
"$VENV/bin/python" scripts/build_native.py --if-stale
echo "[py310] $("$VENV/bin/python" --version): core (compiled and Python), platforms and ONNX analysis tests"
PYTHONPATH="$REPO:$REPO/test" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  test/test_scheduler.py test/test_policies.py test/test_simulator.py test/test_power.py \
  test/test_workload.py test/test_profiler.py test/test_metrics.py test/test_catalog.py \
  test/test_platform.py test/test_platform_jetson.py test/test_platform_host.py \
  test/test_onnx_analysis.py test/test_native.py "$@"
