"""The general form of attention: score, mask, normalise, read.

Shape legend: ``...`` leading dims that broadcast (typically ``(B, H)``); ``L`` queries
(target length), ``S`` keys (source length), ``D`` query/key width, ``Dv`` value width.

Seed 001 §8.2 and the survey (seed 004): every attention mechanism scores each key
against the query, normalises the scores into a distribution over keys, and reads the
values with it,

.. math::  \\alpha_{ij} = \\mathrm{normalize}_j\\big(s(k_j, q_i) + b_{ij}\\big)\\;[\\text{mask}_{ij}],
           \\qquad o_i = \\sum_j \\alpha_{ij} v_j = \\mathbb{E}_{z \\sim \\alpha_i}[v_z].

Soft attention is that expectation; hard attention replaces it with one sampled (or argmax)
key. :func:`attend` is the one entry point; a backend (:mod:`qkv.kernels`) computes it.
"""

from __future__ import annotations

from torch import Tensor

from qkv import kernels
from qkv.functional.biases import BiasLike
from qkv.functional.masks import MaskLike
from qkv.functional.modifiers import WeightModifier
from qkv.functional.normalize import NormalizeArg
from qkv.functional.output import AttentionOutput
from qkv.functional.scores import ScoreFn
from qkv.kernels.call import AttentionCall

__all__ = ["attend"]


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score: str | ScoreFn = "scaled_dot",
    mask: MaskLike | None = None,
    bias: BiasLike | None = None,
    normalize: NormalizeArg = "softmax",
    scale: float | None = None,
    dropout: float = 0.0,
    modifier: WeightModifier | None = None,
    return_weights: bool = False,
    return_scores: bool = False,
    backend: str = "auto",
    group=None,
) -> AttentionOutput:
    """Attention in its general form: score each key, mask, normalise, read the values.

    Args:
        q: queries ``(..., L, D)``.
        k: keys ``(..., S, D)`` (``D`` may differ from q's for parametric scores).
        v: values ``(..., S, Dv)``. Leading dims of q, k, v broadcast.
        score: ``"dot"``, ``"scaled_dot"``, ``"cosine"``, or any callable ``(q, k) -> (..., L, S)``,
            including the modules of :mod:`qkv.layers.scores` (bilinear/"general",
            additive/"concat"/"mlp"). A score may declare its structure (``kind``, see
            :mod:`qkv.functional.scores`) so that fast kernels can take it.
        mask: bool tensor broadcastable to ``(..., L, S)``, **True = may attend**, or a lazy
            :class:`qkv.masks.Mask` (:func:`~qkv.masks.causal`, :func:`~qkv.masks.window`,
            :func:`~qkv.masks.padding`, :func:`~qkv.masks.key_padding`, combined with ``&``/``|``).
        bias: additive float scores broadcastable to ``(..., L, S)`` (any rank; ``-inf`` forbids a
            key), or a lazy :class:`~qkv.functional.biases.Bias` (:mod:`qkv.positional`: ALiBi,
            relative positions), summed with ``+``.
        normalize: ``"softmax"``, ``"relu"`` (``ReLU(s) / n_allowed``, not summing to 1),
            ``"sparsemax"``, ``"hard"`` (argmax one-hot), ``"sample"`` (one key drawn per query;
            its log-probability is returned for REINFORCE), a
            :class:`~qkv.functional.normalize.Normalizer` carrying options
            (``Hard(straight_through=True)``, ``Sample(generator=g)``), or a callable
            ``(scores, mask) -> weights``. See :mod:`qkv.functional.normalize`.
        scale: a finite real multiplier of the scores; ``None`` is the score's own (``1/sqrt(D)``
            for ``scaled_dot``, 1 otherwise).
        dropout: probability of zeroing a weight (applied whenever > 0, as in
            ``scaled_dot_product_attention``; modules pass 0 in eval mode).
        modifier: a :class:`~qkv.functional.modifiers.WeightModifier` multiplying the weights after
            normalisation, without renormalising (Luong's local-p Gaussian,
            :class:`qkv.functional.local.GaussianWindow`); its support joins the mask.
        return_weights: also return the weights ``(..., L, S)``.
        return_scores: also return the raw scores ``(..., L, S)`` (after bias, before masking).
        backend: ``"auto"`` (fastest that supports the call), ``"naive"`` (reference),
            ``"sdpa"``, ``"tiled"`` (online softmax, linear memory, any score) or ``"flex"``;
            see :mod:`qkv.kernels`. ``return_weights``/``return_scores`` need ``"naive"``. ``"ring"``:
            sequence-parallel ring attention (:mod:`qkv.kernels.ring`); q, k, v are this rank's shards.
        group: backend ``"ring"`` only: a ``torch.distributed`` process group or a
            :class:`~qkv.kernels.ring.SequenceParallel` (default: the enclosing
            :func:`~qkv.kernels.ring.sequence_parallel` block, else the default group; one process, the
            tiled kernel, when ``torch.distributed`` is not initialised). Masks and biases then describe
            the whole sequence (global positions).

    Returns:
        :class:`AttentionOutput` with ``output (..., L, Dv)`` and, as requested, ``weights``,
        ``scores`` and ``log_prob``. A query with no allowed key gets zero weights and a zero
        output (and zero gradient), never NaN.
    """
    call = AttentionCall.build(
        q, k, v, score=score, mask=mask, bias=bias, normalize=normalize, scale=scale, dropout=dropout,
        modifier=modifier, return_weights=return_weights, return_scores=return_scores,
        group=kernels.ring.resolve_group(group, backend),
    )
    return kernels.run(call, backend)
