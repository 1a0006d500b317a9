"""Linear-chain CRF over binary "attend / ignore" variables: forward-backward marginals as attention weights.

Shape legend: ``...`` leading dims that broadcast (typically ``(B, H, L)``: one chain per query row);
``S`` keys (chain positions); the last two dims ``(2, 2)`` of a pairwise potential are
``(z_prev, z_i)`` with state 0 = ignore, 1 = attend.

Kim, Denton, Hoang and Rush 2017, "Structured Attention Networks", §3.2 (segmentation attention):
a binary latent :math:`z_i` per key says whether key ``i`` is attended; the distribution is a
linear-chain CRF

.. math::  p(z) \\propto \\exp\\Big(\\sum_i \\theta_i(z_i) + \\sum_{i>1} \\theta_{i-1,i}(z_{i-1}, z_i)\\Big),

with unary :math:`\\theta_i(1) = s(q, k_i)` (any attention score; :math:`\\theta_i(0) = 0`) and
pairwise potentials :math:`\\theta_{i-1,i}` (a learned 2x2 table, or one per position). The attention
weights are the marginals :math:`p(z_i = 1) = \\partial \\log Z / \\partial \\theta_i(1)`, computed by
forward-backward in log space (eq. 4 of the paper's appendix: :math:`\\alpha`, :math:`\\beta` recursions);
the context is :math:`c = \\sum_i p(z_i = 1)\\, x_i` (Kim et al. eq. 7), optionally renormalised.

**Masking.** A masked key (mask False, or a ``-inf`` score) is removed from the chain: it is forced to
:math:`z_i = 0` with no potentials, and its allowed neighbours become adjacent (the pairwise potential
used between two allowed keys is the one stored at the later key). For key padding this is exactly the
shorter chain. A row with no allowed key has :math:`\\log Z = 0` and all-zero marginals.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv.functional.checks import check_flag, check_tensor
from qkv.functional.normalize import Normalizer

__all__ = ["SegmentationMarginals", "chain_log_partition", "chain_marginals"]


def _prepare(unary: object, pairwise: object, mask: object) -> tuple[Tensor, Tensor, Tensor]:
    """Validated ``(u, P, allowed)``: ``u (..., S)`` with 0 where not allowed, ``P (..., S, 2, 2)``."""
    unary = check_tensor("unary", unary, min_dim=1)
    if not isinstance(pairwise, Tensor) or not pairwise.dtype.is_floating_point:
        raise TypeError(f"pairwise must be a floating-point torch.Tensor, got "
                        f"{type(pairwise).__name__ if not isinstance(pairwise, Tensor) else pairwise.dtype}")
    if pairwise.dim() < 2 or pairwise.shape[-2:] != (2, 2):
        raise ValueError(f"pairwise must have shape (2, 2) or (..., S, 2, 2) (z_prev, z_i), got shape "
                         f"{tuple(pairwise.shape)} for unary {tuple(unary.shape)}")
    if pairwise.dim() == 2:
        pairwise = pairwise.reshape(*([1] * unary.dim()), 2, 2)  # (1.., 1, 2, 2)
    try:
        pairwise = pairwise.expand(*unary.shape, 2, 2)  # (..., S, 2, 2)
    except RuntimeError:
        raise ValueError(f"pairwise of shape {tuple(pairwise.shape)} does not broadcast to unary "
                         f"{tuple(unary.shape)} + (2, 2)") from None
    allowed = torch.isfinite(unary)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got "
                            f"{type(mask).__name__ if not isinstance(mask, Tensor) else mask.dtype}")
        try:
            allowed = allowed & mask.expand(unary.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to unary "
                             f"{tuple(unary.shape)}") from None
    u = torch.where(allowed, unary, torch.zeros_like(unary))  # no gradient reaches a masked key
    return u, pairwise.to(u.dtype), allowed


def _states(u_i: Tensor) -> Tensor:
    """Unary potentials of both states at one position: ``(..., 2)`` = ``(0, u_i)``."""
    return torch.stack([torch.zeros_like(u_i), u_i], dim=-1)  # (..., 2)


def _forward(u: Tensor, P: Tensor, allowed: Tensor) -> tuple[list[Tensor], Tensor]:
    """The alpha recursion: ``alpha_i(z) = log sum over z_{<i}`` (unary of ``i`` included) and ``log Z``."""
    alpha = u.new_zeros(*u.shape[:-1], 2)  # (..., 2)
    started = torch.zeros(u.shape[:-1], dtype=torch.bool, device=u.device)  # (...,)
    alphas = []
    for i in range(u.shape[-1]):
        here = _states(u[..., i])  # (..., 2)
        step = torch.logsumexp(alpha.unsqueeze(-1) + P[..., i, :, :], dim=-2) + here  # (..., 2) over z_i
        new = torch.where(started.unsqueeze(-1), step, here)
        alpha = torch.where(allowed[..., i, None], new, alpha)
        started = started | allowed[..., i]
        alphas.append(alpha)
    log_z = torch.where(started, torch.logsumexp(alpha, dim=-1), torch.zeros_like(alpha[..., 0]))  # (...,)
    return alphas, log_z


def chain_log_partition(unary: Tensor, pairwise: Tensor, mask: Tensor | None = None) -> Tensor:
    """:math:`\\log Z` of the binary linear-chain CRF (Kim et al. 2017 §3.2).

    Args:
        unary: ``(..., S)`` potentials :math:`\\theta_i(1)` (state 0 has 0); ``-inf`` removes a key.
        pairwise: ``(2, 2)`` or ``(..., S, 2, 2)`` potentials :math:`\\theta(z_{prev}, z_i)`.
        mask: bool, broadcastable to ``(..., S)``, True = the key is in the chain.

    Returns:
        ``(...,)`` the log-partition (0 for a chain with no allowed key).
    """
    u, P, allowed = _prepare(unary, pairwise, mask)
    return _forward(u, P, allowed)[1]


def chain_marginals(unary: Tensor, pairwise: Tensor, mask: Tensor | None = None) -> Tensor:
    """Marginals :math:`p(z_i = 1)` by forward-backward in log space (Kim et al. 2017 §3.2).

    Differentiable (autograd through the recursions); batched over the leading dims; exactly 0 on
    masked keys. Arguments as in :func:`chain_log_partition`.

    Returns:
        ``(..., S)`` the marginals, each in ``[0, 1]`` (they need not sum to 1).
    """
    u, P, allowed = _prepare(unary, pairwise, mask)
    alphas, log_z = _forward(u, P, allowed)
    carry = u.new_zeros(*u.shape[:-1], 2)  # (..., 2): message from the next allowed key into z_prev
    marginals = [u.new_zeros(u.shape[:-1])] * u.shape[-1]
    for i in reversed(range(u.shape[-1])):
        beta = carry  # (..., 2) beta_i(z): log-sum over z_{>i} given z_i
        log_p1 = alphas[i][..., 1] + beta[..., 1] - log_z
        marginals[i] = torch.where(allowed[..., i], torch.exp(torch.where(allowed[..., i], log_p1, 0.0)), 0.0)
        msg = torch.logsumexp(P[..., i, :, :] + (beta + _states(u[..., i])).unsqueeze(-2), dim=-1)  # (..., 2)
        carry = torch.where(allowed[..., i, None], msg, carry)
    return torch.stack(marginals, dim=-1)  # (..., S)


class SegmentationMarginals(Normalizer):
    """A normaliser for :func:`qkv.attend`: the scores are the CRF's unary potentials, the weights its marginals.

    ``attend(q, k, v, score=s, normalize=SegmentationMarginals(pairwise))`` is Kim et al.'s segmentation
    attention :math:`c = \\sum_i p(z_i = 1 \\mid q, x)\\, v_i` (one chain per query row ``(..., L, :)``).

    Args:
        pairwise: ``(2, 2)`` (or ``(..., L, S, 2, 2)``) pairwise potentials; may be a learned parameter.
        renormalize: divide the marginals by their sum, so that the weights form a distribution.
    """

    name = "segmentation"

    def __init__(self, pairwise: Tensor, *, renormalize: bool = False) -> None:
        if not isinstance(pairwise, Tensor) or pairwise.dim() < 2 or pairwise.shape[-2:] != (2, 2):
            got = tuple(pairwise.shape) if isinstance(pairwise, Tensor) else type(pairwise).__name__
            raise ValueError(f"SegmentationMarginals: pairwise must be a tensor of shape (..., 2, 2), got {got}")
        self.pairwise = pairwise
        self.renormalize = check_flag("renormalize", renormalize)

    def normalize(self, scores, mask):
        marginals = chain_marginals(scores, self.pairwise, mask)  # (..., L, S)
        if self.renormalize:
            total = marginals.sum(-1, keepdim=True)
            marginals = marginals / torch.where(total > 0, total, torch.ones_like(total))
        return marginals, None

    def __repr__(self) -> str:
        return f"SegmentationMarginals(renormalize={self.renormalize})"
