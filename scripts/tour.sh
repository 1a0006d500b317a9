#!/usr/bin/env bash
# Install qkv into .venv and run the experiment tour (quick settings); prints the report's path.
# Extra arguments go to `qkv tour` (for example: scripts/tour.sh --out runs/full --full, or --offline
# to skip the translation experiment instead of downloading its data on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/qkv tour --quick "$@"
