#!/usr/bin/env bash
# Install qkv with its test extras into .venv and run the default test suite.
# Extra arguments go to pytest (for example: scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The HTML report test opens the report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; the browser test will be skipped" >&2
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports --no-cache  # the import direction (contracts in pyproject.toml)
exec .venv/bin/python -m pytest "$@"
