"""Seeding and RNG-state capture, so that a resumed run repeats an uninterrupted one exactly.

Every source of randomness a training run touches is captured here: Python's ``random``,
NumPy's global generator, torch's global CPU generator (dropout, ``randn`` without a
generator) and, when present, the CUDA generators. The states are flattened into
tensors (for the safetensors file) plus a small JSON-able dict (for the metadata), because
checkpoints in qkv never pickle anything.

:func:`batch_seed` gives the seed of one batch's own randomness (masks, augmentations) from the run's seed
and the batch's example indices, so a resumed run draws the same as an uninterrupted one whatever the
global generators did in between.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch

__all__ = ["batch_seed", "capture_rng_state", "restore_rng_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Args:
        seed: a non-negative integer.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_seed(seed: int, indices: torch.Tensor) -> int:
    """A seed in ``[0, 2**63)`` for the batch of examples ``indices`` of a run seeded with ``seed``.

    The first 8 bytes (little-endian, top bit cleared) of the SHA-256 of ``"{seed}/"`` followed by the
    indices' int64 bytes: the same batch gets the same seed on every run and every resume, different
    batches or seeds get unrelated ones. Use it as ``torch.Generator().manual_seed(batch_seed(seed, indices))``.

    Args:
        seed: the run's (or the data set's) seed, an int.
        indices: ``(N,)`` integer tensor, the batch's example indices.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not isinstance(indices, torch.Tensor) or indices.ndim != 1 or indices.dtype.is_floating_point:
        raise ValueError(f"indices must be a 1-D integer tensor, got {getattr(indices, 'shape', type(indices))}")
    data = indices.detach().to("cpu", torch.int64).numpy().tobytes()
    digest = hashlib.sha256(f"{seed}/".encode() + data).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


def capture_rng_state(prefix: str = "rng.") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Snapshot all global RNG states.

    Returns:
        ``(tensors, meta)``: tensors named ``{prefix}torch``, ``{prefix}numpy.keys`` and
        ``{prefix}cuda.{i}``; ``meta`` holds the JSON-able rest (Python's Mersenne-Twister
        words and NumPy's position / cached Gaussian).
    """
    tensors: dict[str, torch.Tensor] = {f"{prefix}torch": torch.get_rng_state().clone()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{prefix}cuda.{i}"] = state.clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors[f"{prefix}numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64).copy())
    version, internal, gauss_next = random.getstate()
    meta = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "rng.") -> None:
    """Inverse of :func:`capture_rng_state`.

    Raises:
        KeyError: when ``tensors`` or ``meta`` lack an entry ``capture_rng_state`` writes.
    """
    torch.set_rng_state(tensors[f"{prefix}torch"].to(torch.uint8))
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith(f"{prefix}cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    np_meta = meta["numpy"]
    keys = tensors[f"{prefix}numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_meta["kind"], keys, np_meta["pos"], np_meta["has_gauss"], np_meta["cached_gaussian"])
    )
    py = meta["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
