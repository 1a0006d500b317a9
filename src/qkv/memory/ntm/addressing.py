"""NTM addressing (Graves, Wayne and Danihelka 2014, §3.3, eq. 5-9) as small functions, and one ``attend`` call.

Shape legend: ``...`` leading dims (typically ``(B, H, 1)``: batch, heads, one query per head);
``N`` memory slots, ``M`` slot width, ``K = 2k + 1`` allowed shifts ``-k..k``.

A head produces a key :math:`k_t`, a key strength :math:`\\beta_t`, an interpolation gate :math:`g_t`,
a shift distribution :math:`s_t` and a sharpening exponent :math:`\\gamma_t`; its weighting is

1. content (eq. 5-6): :math:`w^c_t(i) = \\operatorname{softmax}_i\\big(\\beta_t\\, K[k_t, M_t(i)]\\big)` with the
   cosine similarity :math:`K[u, v] = u \\cdot v / (\\lVert u \\rVert \\lVert v \\rVert)` — :func:`content_weights`;
2. interpolation (eq. 7): :math:`w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}` — :func:`interpolate`;
3. circular convolution (eq. 8): :math:`\\tilde w_t(i) = \\sum_j w^g_t(j)\\, s_t(i - j \\bmod N)` — :func:`shift`;
4. sharpening (eq. 9): :math:`w_t(i) = \\tilde w_t(i)^{\\gamma_t} / \\sum_j \\tilde w_t(j)^{\\gamma_t}`
   — :func:`sharpen`.

**Content addressing is a call of** :func:`qkv.attend`: the key is the query, the memory rows the keys, the
score the cosine scaled by :math:`\\beta` — ``attend(key, memory, memory, score="cosine", scale=beta,
return_weights=True).weights`` for one scalar :math:`\\beta`. Since :math:`\\beta` differs per batch element and
head, :func:`content_weights` passes it through :class:`KeyStrengthCosine`, a ``kind = "dot"`` score whose
``dot_features`` are :math:`(\\beta\\, \\hat k, \\hat M)` (the β-cosine that ARCHITECTURE.md lists as a dot-kind
score); ``tests/memory/test_ntm.py`` checks the two calls agree. **A whole head is one call**
(:func:`address`): the same score with :class:`LocationAddressing` as the normaliser (softmax, then eq. 7-9), so
``attend(...).weights`` is :math:`w_t` and ``attend(...).output`` is the read vector of eq. 2,
:math:`r_t = \\sum_i w_t(i) M_t(i)`.

Numerical safeguards (the open implementations' users mostly report NaN):

* the cosine clamps both norms below by ``eps`` (a zero key or an all-zero slot scores 0, not 0/0);
* the softmax subtracts the row maximum, so large key strengths saturate instead of overflowing;
* sharpening is computed in log space, :math:`\\operatorname{softmax}(\\gamma \\log \\max(\\tilde w, \\epsilon))`:
  :math:`\\tilde w^\\gamma` underflows to 0 for small weights and large :math:`\\gamma`, and a row of zeros
  divided by its sum is NaN (with NaN gradients); the log-space form is exactly eq. 9 for :math:`\\tilde w > \\epsilon`
  and never divides by zero. The clamp also keeps :math:`\\log 0` (and its infinite gradient) out of the graph.
The head's parameters are kept in range by their activations (``heads``: softplus for β, 1 + softplus for γ, a
sigmoid gate, a softmax over shifts), and training clips the gradient norm (``TrainConfig.grad_clip``).

What these do not prevent (it killed a 12,000-step ``ntm-repeat-copy`` run with a NaN at step 2,058): the
derivative of eq. 9 is :math:`\\gamma (\\delta_{ij} w_i - w_i w_j) / \\tilde w_j`, of norm up to
:math:`\\gamma / \\max_j \\tilde w_j`; a uniform weighting is a fixed point of sharpening whose Jacobian is
:math:`\\gamma (I - \\mathbf 1 \\mathbf 1^\\top / N)`, so through time the gradient grows like :math:`\\gamma^T`
while the forward pass stays exact, and overflows float32 inside the backward pass. :class:`~qkv.memory.ntm.NTM`
bounds the gradient through its state at every step
(:mod:`qkv.memory.ntm.gradclip`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.normalize import Normalizer, softmax
from qkv.functional.output import AttentionOutput
from qkv.functional.scores import check_same_width, unit

__all__ = [
    "KeyStrengthCosine",
    "LocationAddressing",
    "address",
    "content_weights",
    "interpolate",
    "sharpen",
    "shift",
    "squash_head",
]

#: Below this a weight counts as 0 in the log-space sharpening (eq. 9).
SHARPEN_EPS = 1e-12


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim without a mask: :func:`torch.softmax` (which subtracts the row maximum), in float32
    for half/bfloat16 — the same numbers as :func:`qkv.functional.normalize.softmax` with ``mask=None``, in one op
    instead of ten (it runs several times per head per time step)."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        return torch.softmax(scores, -1, dtype=torch.float32).to(scores.dtype)
    return torch.softmax(scores, -1)


def _check_last(name: str, t: Tensor, size: int, what: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape[-1] != size:
        raise ValueError(f"{name} must end in {what} = {size}, got shape {tuple(t.shape)}")


class KeyStrengthCosine(nn.Module):
    """The NTM's content score :math:`\\beta\\, K[k, M(i)]` (eq. 5-6) with a per-head tensor :math:`\\beta`.

    A dot-kind score (ARCHITECTURE.md, "Scores describe their structure"): ``dot_features(q, k)`` returns
    :math:`(\\beta \\hat q, \\hat k, 1)` with :math:`\\hat x = x / \\max(\\lVert x \\rVert, \\epsilon)`, so the score is
    ``attend``'s ``"cosine"`` with ``scale=beta`` where ``beta`` is a tensor broadcasting to ``(..., L, 1)``.

    Args:
        beta: key strengths ``(..., L, 1)`` (``>= 0``), broadcasting against the queries.
        eps: lower bound of the norms (a zero vector scores 0, not NaN).
    """

    kind = "dot"
    name = "key_strength_cosine"

    def __init__(self, beta: Tensor, *, eps: float = 1e-8) -> None:
        super().__init__()
        if not isinstance(beta, Tensor):
            raise TypeError(f"beta must be a torch.Tensor (..., L, 1), got {type(beta).__name__}")
        _check_last("beta", beta, 1, "1")
        self.beta = beta
        self.eps = eps

    def dot_features(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        check_same_width(self.name, q, k)
        return unit(q, self.eps) * self.beta.to(q.dtype), unit(k, self.eps), 1.0

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        qf, kf, _ = self.dot_features(q, k)
        return qf @ kf.transpose(-1, -2)  # (..., L, S)


def content_weights(key: Tensor, memory: Tensor, beta: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Content addressing (eq. 5-6): ``softmax(beta * cosine(key, memory rows))``, one call of ``attend``.

    ``attend(key, memory, memory, score=KeyStrengthCosine(beta), return_weights=True).weights`` — for a scalar
    ``beta`` the same as ``attend(key, memory, memory, score="cosine", scale=beta, return_weights=True)``.

    Args:
        key: ``(..., L, M)`` (``L`` = 1 for one head's key).
        memory: ``(..., N, M)``; leading dims broadcast with ``key``'s.
        beta: ``(..., L, 1)``, the key strength.

    Returns:
        ``(..., L, N)`` weights, each row summing to 1.
    """
    return attend(key, memory, memory, score=KeyStrengthCosine(beta, eps=eps), return_weights=True).weights


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """Interpolation (eq. 7): :math:`w^g = g\\, w^c + (1 - g)\\, w_{t-1}`.

    Args:
        content: ``(..., N)``, :math:`w^c_t`.
        previous: ``(..., N)``, :math:`w_{t-1}`.
        gate: ``(..., 1)`` in ``[0, 1]``.
    """
    _check_last("gate", gate, 1, "1")
    return gate * content + (1.0 - gate) * previous


def shift(weights: Tensor, shifts: Tensor) -> Tensor:
    """Circular convolution (eq. 8): :math:`\\tilde w(i) = \\sum_j w(j)\\, s(i - j \\bmod N)`.

    Args:
        weights: ``(..., N)``.
        shifts: ``(..., K)`` with ``K = 2k + 1`` odd: the probabilities of the shifts ``-k, ..., k``
            (``shifts[..., k]`` is "stay"; shift +1 moves the focus to the next slot).

    Returns:
        ``(..., N)``: :math:`\\sum_{m=-k}^{k} s(m)\\, w(i - m)`, i.e. ``roll(w, m)`` weighted by ``s(m)``.
    """
    K = shifts.shape[-1]
    if K % 2 != 1:
        raise ValueError(f"shifts must end in an odd number K = 2k + 1 of shifts -k..k, "
                         f"got shape {tuple(shifts.shape)}")
    k, N = K // 2, weights.shape[-1]
    if k == 0:
        return weights * shifts
    # circular padding, then the K windows of length N: window j is roll(w, k - j), i.e. the shifts k, ..., -k
    idx = torch.arange(-k, N + k, device=weights.device) % N  # (N + 2k,)
    windows = weights[..., idx].unfold(-1, N, 1)  # (..., K, N)
    return (shifts.flip(-1).unsqueeze(-2) @ windows).squeeze(-2)  # (..., N)


def sharpen(weights: Tensor, gamma: Tensor, *, eps: float = SHARPEN_EPS) -> Tensor:
    """Sharpening (eq. 9): :math:`w^\\gamma / \\sum_j w_j^\\gamma`, computed as ``softmax(gamma * log(max(w, eps)))``.

    The log-space form never divides 0 by 0 (``w ** gamma`` underflows for large ``gamma``) and keeps
    ``log 0`` out of the graph; it equals eq. 9 wherever every weight exceeds ``eps``.

    Args:
        weights: ``(..., N)``, non-negative.
        gamma: ``(..., 1)``, ``>= 1``.
    """
    _check_last("gamma", gamma, 1, "1")
    return _softmax(gamma * torch.log(weights.clamp_min(eps)))


class LocationAddressing(Normalizer):
    """The NTM's normaliser: the content softmax (eq. 6), then interpolation, shift and sharpening (eq. 7-9).

    As the ``normalize`` of :func:`qkv.attend` it turns the β-cosine scores of one step into the head's final
    weighting :math:`w_t`. Every argument broadcasts against the scores ``(..., L, N)``.

    Args:
        previous: ``(..., L, N)``, :math:`w_{t-1}`.
        gate: ``(..., L, 1)``, :math:`g_t`.
        shifts: ``(..., L, K)``, :math:`s_t`.
        gamma: ``(..., L, 1)``, :math:`\\gamma_t`.
    """

    name = "ntm_location"

    def __init__(self, previous: Tensor, gate: Tensor, shifts: Tensor, gamma: Tensor) -> None:
        self.previous, self.gate, self.shifts, self.gamma = previous, gate, shifts, gamma

    def normalize(self, scores: Tensor, mask: Tensor | None) -> tuple[Tensor, None]:
        w = interpolate(_softmax(scores) if mask is None else softmax(scores, mask), self.previous, self.gate)
        return sharpen(shift(w, self.shifts), self.gamma), None


def address(
    key: Tensor,
    memory: Tensor,
    *,
    beta: Tensor,
    gate: Tensor,
    shifts: Tensor,
    gamma: Tensor,
    previous: Tensor,
    eps: float = 1e-8,
) -> AttentionOutput:
    """One head's addressing and read (eq. 2, 5-9) as one call of :func:`qkv.attend`.

    ``attend(key, memory, memory, score=KeyStrengthCosine(beta), normalize=LocationAddressing(previous, gate,
    shifts, gamma), return_weights=True)``: ``.weights`` is the weighting :math:`w_t` ``(..., L, N)``, ``.output``
    the read vector :math:`r_t = \\sum_i w_t(i) M_t(i)` ``(..., L, M)``.

    Args:
        key: ``(..., L, M)``; memory ``(..., N, M)``; beta, gate, gamma ``(..., L, 1)``; shifts ``(..., L, K)``;
            previous ``(..., L, N)``.
    """
    _check_last("previous", previous, memory.shape[-2], "N (memory slots)")
    return attend(
        key, memory, memory, score=KeyStrengthCosine(beta, eps=eps),
        normalize=LocationAddressing(previous, gate, shifts, gamma), return_weights=True,
    )


def squash_head(raw: Tensor, *, width: int, shifts: int) -> dict[str, Tensor]:
    """Split one head's raw controller outputs and bound them (the activations of §3.3 plus safeguards).

    ``raw (..., M + 3 + K)`` -> ``key (..., M)`` (unbounded; the cosine normalises it), ``beta = softplus``
    (``>= 0``, eq. 5), ``gate = sigmoid`` (``[0, 1]``, eq. 7), ``shifts = softmax`` (a distribution, eq. 8),
    ``gamma = 1 + softplus`` (``>= 1``, eq. 9).
    """
    key, beta, gate, s, gamma = torch.split(raw, [width, 1, 1, shifts, 1], dim=-1)
    return {"key": key, "beta": F.softplus(beta), "gate": torch.sigmoid(gate), "shifts": torch.softmax(s, -1),
            "gamma": 1.0 + F.softplus(gamma)}
