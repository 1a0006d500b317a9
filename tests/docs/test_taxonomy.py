"""docs/taxonomy.md: every code block runs (its asserts hold), in order, in one namespace; named code exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "taxonomy.md"


def test_every_example_runs_and_its_asserts_hold():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)


def test_no_placeholder_is_left():
    assert not re.findall(r"@[A-Z_]+@", PAGE.read_text()), "an entry was left unfilled"


def test_every_named_qkv_object_exists():
    names = set(re.findall(r"`(qkv(?:\.\w+)+)", PAGE.read_text()))
    assert len(names) >= 5
    for name in sorted(names):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr)  # AttributeError names what the page promises but the code lacks
            break
