"""Attention backends on this machine: time and peak memory, as a table of ratios.

The same as ``qkv bench`` (see ``benchmarks/harness.py`` for what is measured and how):

    python benchmarks/attention.py --sizes 1024,4096,16384 --markdown benchmarks/RESULTS.md
    python benchmarks/attention.py --quick          # a one-minute smoke run

The tables in benchmarks/RESULTS.md were produced by the commands recorded there.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
