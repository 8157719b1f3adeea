#!/usr/bin/env bash
# Install gato_robot into ./.venv: system packages first (where this machine can install them),
# then the Python package with the extras named as arguments (default: deploy).
#   bash scripts/install.sh            # runtime: simulation, evaluation, ONNX Runtime
#   bash scripts/install.sh dev        # + tests
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-deploy,sim}"

# Offscreen rendering for MuJoCo (EGL with Mesa's software rasterizer, or OSMesa) comes from
# Debian's Mesa packages; PyBullet's TinyRenderer needs nothing.
apt_packages=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libosmesa6)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" = none ]; then
    echo "warning: cannot install ${missing[*]} (not root, no sudo); offscreen rendering may fail" >&2
  else
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch is pinned in pyproject.toml to a range whose newest release is 2.13.0 (CPU wheel on the
# dev machines); on a GPU machine install the CUDA build of torch first and pip keeps it.
log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]" >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
.venv/bin/python -c "import gato_robot" && echo "gato_robot installed in .venv (extras: ${extras})"
