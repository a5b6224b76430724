#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), runs the pure core's tests under Python 3.10
# (scripts/test_py310.sh), lints, and runs the whole test suite.
#   scripts/test.sh [pytest args...]
# ROS tests run inside a private network namespace with only loopback up when this machine
# permits `unshare -n` (root in CI); DDS discovery is limited to localhost either way
# (env.sh exports ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and ROS_LOCALHOST_ONLY=1).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

"$REPO/scripts/setup.sh"
"$REPO/scripts/test_py310.sh"
# env.sh saves and restores set -u around the ROS setup files itself.
# shellcheck disable=SC1091
. "$REPO/env.sh"

echo "[test] ruff (target py310)"
ruff check .

# A domain of this run's own, so parallel runs on one machine never answer each other.
export ROS_DOMAIN_ID=$((10 + $$ % 90))

PYTEST=(python -m pytest -ra -p no:cacheprovider "$@")
if command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  echo "[test] pytest in a private network namespace (loopback only)"
  exec unshare -n bash -c 'ip link set lo up && exec "$@"' _ "${PYTEST[@]}"
fi
echo "[test] pytest (unshare -n not permitted here; DDS limited to localhost)"
exec "${PYTEST[@]}"
