"""What loading a Hugging Face ``transformers`` model into qkv needs, without importing ``transformers``.

Shape legend: ``E`` input width, ``F`` output width.

``transformers`` is a test dependency only: qkv never imports it. The ``from_hf`` methods of
:mod:`qkv.models.gpt2` and :mod:`qkv.models.bert` recognise the model by its class name
(:func:`check_hf_model`), translate its configuration's activation name (:func:`activation_from_hf`)
and copy its weights; GPT-2's ``Conv1D`` stores a linear map as ``weight (E, F)`` with
``y = x W + b``, the transpose of ``nn.Linear``'s ``(F, E)`` (:func:`conv1d_weight`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["HF_ACTIVATIONS", "activation_from_hf", "check_hf_model", "conv1d_weight", "copy_layer_norm", "copy_linear"]

#: Hugging Face activation names and :class:`~qkv.models.feedforward.FeedForward`'s equivalents. ``gelu_new``
#: (GPT-2) and ``gelu_pytorch_tanh`` are GELU's tanh approximation; ``gelu`` (BERT) is the exact GELU.
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def activation_from_hf(name: object) -> str:
    """The qkv activation for a ``transformers`` activation name, or a ``ValueError`` naming it."""
    if not isinstance(name, str) or name not in HF_ACTIVATIONS:
        raise ValueError(f"from_hf: activation {name!r} is not supported (one of {sorted(HF_ACTIVATIONS)})")
    return HF_ACTIVATIONS[name]


def check_hf_model(model: object, names: tuple[str, ...]) -> str:
    """The class name of ``model`` when it is one of ``names`` (``transformers`` classes), else a ``TypeError``."""
    name = type(model).__name__
    if not isinstance(model, nn.Module) or name not in names or not hasattr(model, "config"):
        raise TypeError(f"model must be a transformers {' or '.join(names)}, got {name}")
    return name


def conv1d_weight(conv: nn.Module) -> Tensor:
    """A ``transformers`` ``Conv1D``'s weight ``(E, F)`` as an ``nn.Linear`` weight ``(F, E)``."""
    return conv.weight.t()  # (F, E)


def copy_linear(dst: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    """Copy ``weight (F, E)`` and ``bias (F,)`` into ``dst`` (shapes checked; call under ``torch.no_grad``)."""
    if dst.weight.shape != weight.shape:
        raise ValueError(f"from_hf: weight of shape {tuple(weight.shape)} does not fit {dst}")
    dst.weight.copy_(weight)
    if (dst.bias is None) != (bias is None):
        raise ValueError(f"from_hf: the source {'has' if bias is not None else 'has no'} bias, {dst} differs")
    if bias is not None:
        dst.bias.copy_(bias)


def copy_layer_norm(dst: nn.LayerNorm, src: nn.Module) -> None:
    """Copy a LayerNorm's weight and bias (and check its epsilon)."""
    if abs(dst.eps - src.eps) > 1e-30 or dst.normalized_shape != src.normalized_shape:
        raise ValueError(f"from_hf: LayerNorm {src} does not fit {dst}")
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)
