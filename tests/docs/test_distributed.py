"""docs/distributed.md: its Python example runs as written in one process (the ring is then one rank)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from qkv import attend, masks

PAGE = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def test_the_ring_example_runs_and_equals_attend_on_the_whole_sequence():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks
    ns: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), ns)
    ref = attend(ns["q"], ns["k"], ns["v"], score=ns["additive"], mask=masks.causal(), bias=ns["alibi"](ns["H"]))
    torch.testing.assert_close(ns["whole"], ref.output)
