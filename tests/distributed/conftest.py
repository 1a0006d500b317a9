"""Helpers for multi-process tests: a free localhost port and spawning gloo workers."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))  # spawned children import the worker modules by name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spawn():
    """``spawn(fn, world, *args)`` runs ``fn(rank, world, port, *args)`` in ``world`` processes."""

    def run(fn, world: int, *args) -> None:
        mp.spawn(fn, args=(world, free_port(), *args), nprocs=world, join=True)

    return run
