"""Checkpoints: one safetensors file holding tensors plus JSON metadata, written atomically.

Layout of a qkv checkpoint (``*.safetensors``):

* tensors: ``model.<name>`` (the ``state_dict``), ``optim.state.<param index>.<key>`` (AdamW
  moments and step counters), ``rng.*`` (see :mod:`qkv.train.seeding`), ``data.*`` (the
  data-order generator and the current epoch's permutation), and optionally ``best.<name>``
  (the best weights seen so far, for early stopping).
* the safetensors header's ``__metadata__`` (a str -> str map) holds ``format`` =
  ``"qkv-checkpoint"``, ``version``, ``sha256`` and ``meta``: a JSON document with step, epoch,
  the config hash, the best metric, the optimizer's param groups and whatever else the loop needs.

Integrity: safetensors has no checksum, so a flipped bit in the tensor data would load as a
silently wrong weight (issue 8, defect 2). ``sha256`` is the SHA-256 of the whole file as
written, with that field's own 64 hex digits read as ``0``; :func:`read_checkpoint_meta` and
:func:`load_checkpoint` recompute it, so any changed, missing or appended byte (header,
metadata or data) is detected. A file whose digest is right but whose floating-point tensors
hold NaN or infinity (written deliberately, or by a run that diverged) is refused as well, and
the loop range-checks restored indices (:func:`check_permutation`).

Nothing is ever unpickled: safetensors only parses a JSON header and raw buffers. Every way a
file can be bad (missing, truncated, not safetensors, safetensors but not ours, damaged, ours
but for another config) ends in a :class:`CheckpointError` naming the file and the problem.

Writes are atomic (:func:`qkv.train.io.atomic_write_bytes`): a reader, or a process killed
mid-write, only ever sees the old or the new complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qkv.train.io import atomic_write_bytes

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "check_permutation",
    "flatten_optimizer_state",
    "load_checkpoint",
    "load_model_weights",
    "read_checkpoint_meta",
    "save_checkpoint",
    "unflatten_optimizer_state",
]

FORMAT = "qkv-checkpoint"
VERSION = "2"  # 2: the metadata holds the file's SHA-256
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_ZERO_DIGEST = "0" * 64
_DIGEST_RE = re.compile(rb'"sha256":"([0-9a-f]{64})"')


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupted, truncated, foreign or for another config."""


def flatten_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optim.state.<i>.<key>``) and JSON (the rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.state.{idx}.{key}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim.state."):
            continue
        idx, key = name[len("optim.state.") :].split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _file_digest(raw: bytes | bytearray, start: int) -> str:
    """SHA-256 of ``raw`` with the 64 hex digits at ``raw[start:start + 64]`` read as zeros."""
    h = hashlib.sha256()
    h.update(raw[:start])
    h.update(_ZERO_DIGEST.encode())
    h.update(raw[start + 64 :])
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` as a qkv safetensors checkpoint, atomically.

    Args:
        path: destination file (``*.safetensors``).
        tensors: name -> tensor. Tensors are made contiguous and un-shared before writing.
        meta: JSON-serialisable metadata (step, config hash, ...).
    """
    from safetensors.torch import save

    clean = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    header = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta, sort_keys=True), "sha256": _ZERO_DIGEST}
    raw = bytearray(save(clean, metadata=header))
    (n,) = struct.unpack("<Q", raw[:8])
    spots = [m.start(1) for m in _DIGEST_RE.finditer(raw, 8, 8 + n) if m.group(1) == _ZERO_DIGEST.encode()]
    if len(spots) != 1:  # pragma: no cover - safetensors writes compact JSON, the field once
        raise RuntimeError(f"save_checkpoint: cannot place the digest in the header of {str(path)!r}")
    raw[spots[0] : spots[0] + 64] = _file_digest(raw, spots[0]).encode()
    atomic_write_bytes(path, bytes(raw))


def check_permutation(perm: Any, n: int, *, path: str | os.PathLike[str], name: str = "data.perm") -> torch.Tensor:
    """``perm`` if it is an integer tensor holding a permutation of ``range(n)``; else a :class:`CheckpointError`.

    Restored indices are range-checked before use, so a damaged data order cannot surface later
    as an ``IndexError`` or as a silently different order.
    """
    ok = (
        isinstance(perm, torch.Tensor)
        and perm.dtype in (torch.int64, torch.int32)
        and tuple(perm.shape) == (n,)
        and torch.equal(torch.sort(perm).values, torch.arange(n, dtype=perm.dtype))
    )
    if not ok:
        got = f"{perm.dtype} {tuple(perm.shape)}" if isinstance(perm, torch.Tensor) else type(perm).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r}: tensor {name!r} is not a permutation of range({n}) (got {got}); "
            "the file is damaged"
        )
    return perm


def _read(path: Path) -> tuple[bytes, dict[str, Any], int]:
    """The file's bytes, its parsed safetensors header and the header's length, sanity-checked."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {e}") from None
    size = len(raw)
    if size < 8:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or not a safetensors file ({size} bytes, need at least 8)"
        )
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or not a safetensors file: header claims {n} bytes, "
            f"file has {size}"
        )
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted safetensors header (not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError, OverflowError):
            raise CheckpointError(f"checkpoint {str(path)!r}: malformed entry for tensor {name!r}") from None
    if 8 + n + end > size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated: tensors need {8 + n + end} bytes, file has {size}"
        )
    return raw, header, n


def _verify(path: Path, raw: bytes, header: dict[str, Any], n: int, config_hash: str | None) -> dict[str, Any]:
    """Check format, version, the file's digest and (optionally) the config hash; return ``meta``."""
    md = header.get("__metadata__") or {}
    if not isinstance(md, dict) or md.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file but not a qkv checkpoint "
            f"(metadata format={md.get('format') if isinstance(md, dict) else None!r}, expected {FORMAT!r})"
        )
    if md.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {md.get('version')!r}; this qkv reads {VERSION!r}"
        )
    stored = md.get("sha256")
    spots = [m.start(1) for m in _DIGEST_RE.finditer(raw, 8, 8 + n) if m.group(1).decode() == stored]
    if not isinstance(stored, str) or len(spots) != 1:
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its SHA-256 digest is missing or unreadable")
    actual = _file_digest(raw, spots[0])
    if actual != stored:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its SHA-256 is {actual[:16]}..., but it was written with "
            f"{stored[:16]}... (changed, missing or appended bytes)"
        )
    try:
        meta = json.loads(md["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has unreadable qkv metadata: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has unreadable qkv metadata (not a JSON object)")
    if config_hash is not None and meta.get("config_hash") != config_hash:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written for a different config (hash {meta.get('config_hash')!r}, "
            f"this run's config has hash {config_hash!r}); resume with the same --set/--seed/--quick options, "
            "or use a fresh --out directory"
        )
    return meta


def read_checkpoint_meta(path: str | os.PathLike[str], *, config_hash: str | None = None) -> dict[str, Any]:
    """Validate ``path`` as a qkv checkpoint and return its JSON metadata (tensors are not decoded).

    The whole file is read to check its digest (the checkpoints of these models are small).

    Raises:
        CheckpointError: missing, truncated, damaged (digest mismatch), foreign (not written by
            qkv), an unknown format version, or (when ``config_hash`` is given) written for a
            different config.
    """
    path = Path(path)
    raw, header, n = _read(path)
    return _verify(path, raw, header, n, config_hash)


def load_checkpoint(
    path: str | os.PathLike[str], *, config_hash: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Validate and read a qkv checkpoint.

    Returns:
        ``(tensors, meta)``.

    Raises:
        CheckpointError: see :func:`read_checkpoint_meta`; also when the tensor data is unreadable
            or a floating-point tensor holds NaN or infinity.
    """
    from safetensors.torch import load

    path = Path(path)
    raw, header, n = _read(path)
    meta = _verify(path, raw, header, n, config_hash)
    try:
        tensors = load(raw)
    except Exception as e:  # safetensors raises its own SafetensorError; never leak it raw
        raise CheckpointError(f"checkpoint {str(path)!r} has corrupted tensor data: {e}") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: tensor {name!r} holds NaN or infinite values; refusing to load it"
            )
    return tensors, meta


def load_model_weights(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: str = "") -> None:
    """Load ``{prefix}<name>`` tensors into ``module``, with a :class:`CheckpointError` on mismatch."""
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path!r} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, value in sd.items():
        if value.shape != expected[name].shape:
            raise CheckpointError(
                f"checkpoint {path!r}: tensor {name!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    module.load_state_dict(sd)
