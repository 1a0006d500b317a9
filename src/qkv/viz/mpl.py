"""matplotlib set-up shared by every figure: a non-interactive backend, imported lazily.

``import qkv`` must not import matplotlib (it is slow and opens no window anyway), so each
plotting function calls :func:`pyplot` when it draws.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (unless a backend was already chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
