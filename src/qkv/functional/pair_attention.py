"""The attention matrix between two sentences (ABCNN, MPCNN's attention interaction).

Shape legend: ``B`` pairs, ``L`` units (words or convolution columns) of sentence 0, ``S`` units of
sentence 1, ``D`` unit width.

ABCNN (Yin et al. 2016, §4.1 eq. 1) and attention-based MPCNN (He et al. 2016, §2.1) both compare every
unit of sentence 0 with every unit of sentence 1 by a parameter-free score; the matrix of scores is the
attention matrix ``A (B, L, S)``. Here it is the ``scores`` field of one :func:`qkv.attend` call with
sentence 0 as queries and sentence 1 as keys,

    ``A = attend(x0, x1, x1, score=score, return_scores=True, backend="naive").scores``

(the scores before masking and normalisation; the read-out is not used), with the rows and columns of
padding set to zero so that they never win an argmax or add to a row or column sum.
"""

from __future__ import annotations

from torch import Tensor

from qkv.functional.attention import attend
from qkv.functional.scores import ScoreFn

__all__ = ["pair_attention_matrix"]


def _check_keep(name: str, keep: Tensor | None, x: Tensor) -> None:
    if keep is not None and (keep.dim() != 2 or tuple(keep.shape) != tuple(x.shape[:2])):
        raise ValueError(f"{name} must be a (B, length) = {tuple(x.shape[:2])} bool tensor matching its "
                         f"sentence {tuple(x.shape)}, got shape {tuple(keep.shape)}")


def pair_attention_matrix(x0: Tensor, x1: Tensor, *, score: str | ScoreFn, keep0: Tensor | None = None,
                          keep1: Tensor | None = None) -> Tensor:
    """The attention matrix :math:`A_{ij} = \\mathrm{score}(x_{0,i}, x_{1,j})` of a batch of sentence pairs.

    Args:
        x0: sentence 0's units ``(B, L, D)`` (the columns of the paper's feature map ``F0``).
        x1: sentence 1's units ``(B, S, D)``.
        score: any score of :func:`qkv.attend` (``"cosine"``,
            :class:`~qkv.functional.match_scores.EuclideanMatch`, ...).
        keep0: optional ``(B, L)`` bool, True at real (non-padding) units of sentence 0.
        keep1: optional ``(B, S)`` bool, the same for sentence 1.

    Returns:
        ``A (B, L, S)``: ``attend(x0, x1, x1, score=score, return_scores=True).scores``, zero in the rows
        and columns of padding.

    Raises:
        ValueError: ``x0``/``x1`` are not 3-D with one batch size, or a ``keep`` does not match its sentence.
    """
    if x0.dim() != 3 or x1.dim() != 3 or x0.shape[0] != x1.shape[0]:
        raise ValueError(f"x0 and x1 must be (B, L, D) and (B, S, D) with one B, got x0 {tuple(x0.shape)} "
                         f"and x1 {tuple(x1.shape)}")
    _check_keep("keep0", keep0, x0)
    _check_keep("keep1", keep1, x1)
    scores = attend(x0, x1, x1, score=score, return_scores=True, backend="naive").scores  # (B, L, S)
    assert scores is not None
    if keep0 is not None:
        scores = scores * keep0.unsqueeze(-1).to(scores.dtype)
    if keep1 is not None:
        scores = scores * keep1.unsqueeze(-2).to(scores.dtype)
    return scores
