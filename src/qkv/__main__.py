"""``python -m qkv``: the same as the ``qkv`` command."""

from __future__ import annotations

import sys

from qkv.cli import main

sys.exit(main())
