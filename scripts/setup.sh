#!/usr/bin/env bash
# Create (or reuse) .venv and install qkv into it, editable, with the given extras.
#
# torch is an ordinary dependency (torch>=2.4). When the environment has none, we install it
# first, pinned to QKV_TORCH (default 2.13.0), choosing the build:
#   - a machine with an NVIDIA driver gets the default (CUDA) build;
#   - otherwise the CPU build "+cpu": pip takes it from a local wheel where pip is set up with
#     one (as on our CI machines), and from PyTorch's CPU-only index elsewhere — never the
#     multi-GB CUDA build on a CPU-only machine.
# Set QKV_TORCH="" to let pip choose freely.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
vpy=.venv/bin/python
torch_pin="${QKV_TORCH-2.13.0}"
pip_install() { "$vpy" -m pip install --quiet "$@"; }
if [ -n "$torch_pin" ] && ! "$vpy" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "torch==${torch_pin}"
  elif ! pip_install "torch==${torch_pin}+cpu" 2>/dev/null; then
    pip_install "torch==${torch_pin}" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
pip_install -e "$spec"
