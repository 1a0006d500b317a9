"""``metrics.jsonl``: one JSON object per line, appended as training goes.

Each record has at least ``variant`` (which model of the experiment), ``step`` and ``split``
(``"train"`` or ``"eval"``), plus the metric values. On ``--resume`` the records written after
the checkpoint being resumed from are dropped (:meth:`MetricsLog.truncate_after`), so the file
of a killed-and-resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from qkv.train.io import atomic_write_text

__all__ = ["MetricsLog"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the information as text
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class MetricsLog:
    """Append-only JSON-lines metrics file.

    Args:
        path: the ``metrics.jsonl`` file; created on first append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (flushed and fsync-ed so a kill loses at most the line being written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: _jsonable(v) for k, v in record.items()}, sort_keys=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        """All complete records; a torn last line (process killed mid-write) is ignored."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int, *, variant: str) -> None:
        """Drop records of ``variant`` with ``step > step`` (``step=-1`` drops all of that variant)."""
        if not self.path.exists():
            return
        kept = [r for r in self.read() if not (r.get("variant") == variant and int(r.get("step", 0)) > step)]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
