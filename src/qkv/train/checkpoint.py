"""Checkpoints: one safetensors file holding tensors plus JSON metadata, written atomically.

Layout of a qkv checkpoint (``*.safetensors``):

* tensors: ``model.<name>`` (the ``state_dict``), ``optim.state.<param index>.<key>`` (AdamW
  moments and step counters), ``rng.*`` (see :mod:`qkv.train.seeding`), ``data.*`` (the
  data-order generator and the current epoch's permutation), and optionally ``best.<name>``
  (the best weights seen so far, for early stopping).
* the safetensors header's ``__metadata__`` (a str -> str map) holds ``format`` =
  ``"qkv-checkpoint"``, ``version`` and ``meta``: a JSON document with step, epoch, the config
  hash, the best metric, the optimizer's param groups and whatever else the loop needs.

Nothing is ever unpickled: safetensors only parses a JSON header and raw buffers. Every way a
file can be bad (missing, truncated, not safetensors, safetensors but not ours, ours but for
another config) ends in a :class:`CheckpointError` naming the file and the problem.

Writes go to a temporary file in the destination directory, are ``fsync``-ed and then
``os.replace``-d over the destination, so a reader (or a process killed mid-write) only ever
sees the old or the new complete file.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "flatten_optimizer_state",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "unflatten_optimizer_state",
]

FORMAT = "qkv-checkpoint"
VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupted, truncated, foreign or for another config."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


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


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` as a qkv safetensors checkpoint, atomically.

    Args:
        path: destination file (``*.safetensors``).
        tensors: name -> tensor. Tensors are made contiguous and un-shared before writing.
        meta: JSON-serialisable metadata (step, config hash, ...).
    """
    from safetensors.torch import save

    clean = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    header = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta, sort_keys=True)}
    atomic_write_bytes(path, save(clean, metadata=header))


def _read_header(path: Path) -> dict[str, Any]:
    """Parse and sanity-check the safetensors header of ``path`` without touching the tensors."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is truncated or not a safetensors file ({size} bytes, need at least 8)"
            )
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is truncated or not a safetensors file: header claims {n} bytes, "
                f"file has {size}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has a corrupted safetensors header (not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise CheckpointError(f"checkpoint {str(path)!r}: malformed entry for tensor {name!r}") from None
    if 8 + n + end > size:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated: tensors need {8 + n + end} bytes, file has {size}"
        )
    return header


def read_checkpoint_meta(path: str | os.PathLike[str], *, config_hash: str | None = None) -> dict[str, Any]:
    """Validate ``path`` as a qkv checkpoint and return its JSON metadata (tensors are not read).

    Raises:
        CheckpointError: missing, truncated, corrupted, foreign (not written by qkv), an unknown
            format version, or (when ``config_hash`` is given) written for a different config.
    """
    path = Path(path)
    header = _read_header(path)
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
    try:
        meta = json.loads(md["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has unreadable qkv metadata: {e}") from None
    if config_hash is not None and meta.get("config_hash") != config_hash:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written for a different config (hash {meta.get('config_hash')!r}, "
            f"this run's config has hash {config_hash!r}); resume with the same --set/--seed/--quick options, "
            "or use a fresh --out directory"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike[str], *, config_hash: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Validate and read a qkv checkpoint.

    Returns:
        ``(tensors, meta)``.

    Raises:
        CheckpointError: see :func:`read_checkpoint_meta`; also when the tensor data is unreadable.
    """
    from safetensors.torch import load

    meta = read_checkpoint_meta(path, config_hash=config_hash)
    try:
        tensors = load(Path(path).read_bytes())
    except Exception as e:  # safetensors raises its own SafetensorError; never leak it raw
        raise CheckpointError(f"checkpoint {str(path)!r} has corrupted tensor data: {e}") from None
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
