#!/usr/bin/env bash
# Runs the twill CLI in the project's environment, setting it up first if needed.
#   scripts/twill.sh demo --duration 30 --report reports/demo
#   scripts/twill.sh compare --workload paper_mix --budgets 10,15,20 --policies all --json out.json
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" >&2
# env.sh saves and restores set -u around the ROS setup files itself.
# shellcheck disable=SC1091
. "$REPO/env.sh"
# ROS processes of this run: a domain of their own (env.sh keeps discovery on this machine).
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((10 + $$ % 90))}"
exec python -m twill_ros.cli "$@"
