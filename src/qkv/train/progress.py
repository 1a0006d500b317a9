"""Progress output that suits where it goes: a live bar on a terminal, a few plain lines in a log.

On a terminal (``stream.isatty()``) training shows a tqdm bar with ETA. When the output is a
file or a CI log, carriage-returned bar updates would pile up into thousands of lines, so
:class:`PlainProgress` prints instead one line at the start, one at each quarter of the run
and one at the end, each with the step, the latest postfix (loss, evaluation metrics) and
``[elapsed<remaining]`` in tqdm's format.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TextIO, TypeVar

__all__ = ["PlainProgress", "Progress", "is_terminal", "make_progress", "progress_iter"]

T = TypeVar("T")


class Progress(Protocol):
    """What the training loop calls on a progress display."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, values: dict[str, Any]) -> Any: ...

    def close(self) -> Any: ...


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """A few plain lines per run: start, every ``1/checkpoints`` of ``total``, end.

    Args:
        total: the number of steps of the whole run.
        initial: steps already done (a resumed run).
        desc: the label of each line (the variant).
        stream: where to write (default stderr).
        checkpoints: how many evenly spaced progress lines between start and end.
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "", stream: TextIO | None = None,
                 checkpoints: int = 4) -> None:
        self.total, self.n, self.desc = max(1, total), initial, desc
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, -(-self.total // max(1, checkpoints)))
        self.start_n, self.t0 = initial, time.perf_counter()
        self.postfix: dict[str, Any] = {}
        self.closed = False
        self._line("start" if initial == 0 else f"resumed at step {initial}")

    def _line(self, what: str) -> None:
        from tqdm import tqdm

        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        left = elapsed / done * (self.total - self.n) if done > 0 else None
        timing = f"[{tqdm.format_interval(elapsed)}<{tqdm.format_interval(left) if left is not None else '?'}]"
        extra = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {what}, step {self.n}/{self.total} {timing}" + (f" {extra}" if extra else ""),
              file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.n < self.total and before // self.every != self.n // self.every:
            self._line(f"{100 * self.n // self.total}%")

    def set_postfix(self, values: dict[str, Any]) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line("done" if self.n >= self.total else "stopped")


def make_progress(total: int, *, initial: int = 0, desc: str = "", enabled: bool = True,
                  stream: TextIO | None = None) -> Progress:
    """A tqdm bar on a terminal, :class:`PlainProgress` elsewhere, nothing when not ``enabled``."""
    if not enabled:
        return _Silent()
    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False,
                    file=stream)
    return PlainProgress(total, initial=initial, desc=desc, stream=stream)


def progress_iter(items: Iterable[T], *, desc: str = "", enabled: bool = True, unit: str = "batch") -> Iterator[T]:
    """Iterate ``items`` with a tqdm bar on a terminal; silently elsewhere (short loops need no log lines)."""
    if enabled and is_terminal():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, leave=False, unit=unit)
    else:
        yield from items
