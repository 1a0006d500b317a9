#!/usr/bin/env bash
# Create (or reuse) .venv and install qkv into it, editable, with the given extras.
#
# torch is an ordinary dependency (torch>=2.4). We install it first, pinned to
# QKV_TORCH (default 2.13.0), only when the environment has none: on machines whose
# pip is set up with a local CPU wheel of that version, this takes the local build
# instead of pulling the multi-GB CUDA build from the registry; elsewhere it is a
# normal install of that release. Set QKV_TORCH="" to let pip choose freely.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
vpy=.venv/bin/python
torch_pin="${QKV_TORCH-2.13.0}"
if ! "$vpy" -c "import torch" >/dev/null 2>&1; then
  if [ -n "$torch_pin" ]; then
    "$vpy" -m pip install --quiet "torch==${torch_pin}"
  fi
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
"$vpy" -m pip install --quiet -e "$spec"
