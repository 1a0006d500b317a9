"""Normalizers: scores -> attention weights (the distribution over keys).

Shape legend: ``scores (..., L, S)``; ``mask`` a bool tensor broadcastable to it
(True = may attend) or ``None``. Every normalizer here gives **exactly zero** weight to
masked keys, and a query row with no allowed key gets an all-zero row and a zero
gradient, never NaN (ARCHITECTURE.md, "Conventions").

* :func:`softmax` — the attention distribution :math:`\\alpha = \\mathrm{softmax}(s)` (seed 001 §8.2).
* :func:`relu` — the lecture's "not necessarily softmax, ReLU also works" (seed 003):
  :math:`\\alpha_j = \\mathrm{ReLU}(s_j) / n`, with ``n`` the number of allowed keys (not masked,
  score not ``-inf``). It is *not*
  a distribution (rows need not sum to 1); dividing by ``n`` keeps the output's scale
  independent of the sequence length (Wortsman et al. 2023, "Replacing softmax with ReLU in
  vision transformers").
* :func:`sparsemax` — Euclidean projection onto the simplex (Martins & Astudillo 2016): sums
  to 1 like softmax but can give exact zeros.
* :func:`hard` — hard attention by argmax: a one-hot row (seed 004, Show, Attend and Tell),
  optionally with a straight-through gradient (the softmax's).
* :func:`sample` — hard attention by sampling: one key per query drawn from the softmax, with
  its log-probability for REINFORCE (Xu et al. 2015 §4.1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "NORMALIZERS",
    "Custom",
    "Hard",
    "NormalizeArg",
    "Normalizer",
    "Relu",
    "Sample",
    "Softmax",
    "Sparsemax",
    "hard",
    "log_softmax",
    "relu",
    "resolve",
    "sample",
    "softmax",
    "sparsemax",
]


def _compute_dtype(scores: Tensor) -> torch.dtype:
    # Half and bfloat16 scores are normalised in float32 and cast back.
    return torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype


def log_softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Masked log-softmax over keys; masked entries and fully masked rows are ``-inf``."""
    s = scores.to(_compute_dtype(scores))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()  # (..., L, 1)
    empty = ~torch.isfinite(m)  # fully masked rows
    z = s - torch.where(empty, torch.zeros_like(m), m)
    # logsumexp of an all -inf row has a NaN gradient: feed it zeros there instead.
    lse = torch.logsumexp(torch.where(empty, torch.zeros_like(z), z), dim=-1, keepdim=True)
    return z - torch.where(empty, torch.zeros_like(lse), lse)


def softmax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """:math:`\\alpha_j = \\exp(s_j) / \\sum_{j' \\text{ allowed}} \\exp(s_{j'})`; zero on masked keys.

    Safe on fully masked rows (zeros, zero gradient) and on ``-inf`` scores; computed in
    float32 for half/bfloat16 inputs.
    """
    s = scores.to(_compute_dtype(scores))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()  # (..., L, 1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)  # exactly 0 where s = -inf
    denom = e.sum(dim=-1, keepdim=True)
    w = e / torch.where(denom > 0, denom, torch.ones_like(denom))
    return w.to(scores.dtype)


def relu(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """:math:`\\alpha_j = \\mathrm{ReLU}(s_j) / n` with ``n`` allowed keys in the row (not a distribution)."""
    allowed = scores > float("-inf")  # a -inf score (from a bias) forbids a key, as a mask does
    if mask is not None:
        allowed = allowed & mask
    n = allowed.sum(dim=-1, keepdim=True).clamp_min(1).to(scores.dtype)  # (..., L, 1)
    return torch.where(allowed, torch.relu(scores), torch.zeros_like(scores)) / n


def sparsemax(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sparsemax (Martins & Astudillo 2016, eq. 2).

    :math:`\\alpha = \\arg\\min_{p \\in \\Delta} \\lVert p - s \\rVert^2`, the projection onto the simplex.

    Closed form :math:`\\alpha_j = \\max(s_j - \\tau, 0)` with :math:`\\tau` chosen so the row sums to 1.
    Masked keys are excluded from the simplex; fully masked rows are all zero.
    """
    s = scores.to(_compute_dtype(scores))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()
    empty = ~torch.isfinite(m)  # (..., L, 1) fully masked rows
    s = s - torch.where(empty, torch.zeros_like(m), m)
    s = torch.where(empty, torch.zeros_like(s), s)  # keep empty rows finite, zeroed below
    z, _ = torch.sort(s, dim=-1, descending=True)  # (..., L, S)
    finite = torch.isfinite(z)
    zf = torch.where(finite, z, torch.zeros_like(z))
    ks = torch.arange(1, s.shape[-1] + 1, device=s.device, dtype=s.dtype)  # (S,)
    cums = zf.cumsum(dim=-1)
    support = finite & (1 + ks * zf > cums)  # (..., L, S), a prefix of the sorted row
    k = support.sum(dim=-1, keepdim=True).clamp_min(1)  # (..., L, 1)
    tau = (cums.gather(-1, k - 1) - 1) / k.to(s.dtype)
    w = torch.clamp(s - tau, min=0)
    w = torch.where(torch.isfinite(s) & ~empty, w, torch.zeros_like(w))
    return w.to(scores.dtype)


def hard(scores: Tensor, mask: Tensor | None = None, *, straight_through: bool = False) -> Tensor:
    """One-hot weights on the best allowed key (argmax; ties go to the first).

    With ``straight_through=True`` the forward value is the one-hot row and the gradient is the
    softmax's (Bengio et al. 2013); otherwise the weights carry no gradient.
    """
    p = softmax(scores, mask)
    s = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
    idx = s.argmax(dim=-1, keepdim=True)  # (..., L, 1)
    # rows with no allowed key (by mask or by -inf scores) have p == 0 and stay zero
    one_hot = torch.zeros_like(p).scatter(-1, idx, 1.0) * (p.detach().sum(dim=-1, keepdim=True) > 0)
    if straight_through:
        return one_hot + (p - p.detach())
    return one_hot


def sample(
    scores: Tensor, mask: Tensor | None = None, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw one key per query from :math:`\\mathrm{softmax}(s)`; return one-hot weights and log-probabilities.

    Stochastic hard attention (Xu et al. 2015, eq. 8–12): the weights carry no gradient; train
    the scores with REINFORCE through ``log_prob`` (``(..., L)``, differentiable). Rows with no
    allowed key give zero weights and ``log_prob = 0``.

    Args:
        generator: the random source, for reproducible draws.
    """
    logp = log_softmax(scores, mask)  # (..., L, S)
    p = logp.detach().exp()
    flat = p.reshape(-1, p.shape[-1])  # (N, S)
    empty = flat.sum(dim=-1) == 0  # (N,)
    flat = torch.where(empty.unsqueeze(-1), torch.ones_like(flat), flat)
    idx = torch.multinomial(flat, 1, generator=generator).reshape(*p.shape[:-1], 1)  # (..., L, 1)
    allowed = ~empty.reshape(*p.shape[:-1], 1)
    one_hot = torch.zeros_like(p).scatter(-1, idx, 1.0) * allowed
    log_prob = torch.where(allowed, logp.gather(-1, idx), torch.zeros_like(p[..., :1]))
    return one_hot.to(scores.dtype), log_prob.squeeze(-1).to(scores.dtype)


class Normalizer:
    """A normaliser: ``(scores, mask) -> weights``, carrying its own options.

    :meth:`normalize` also returns a log-probability (``None`` except for :class:`Sample`).
    Kernels that compute only softmax attention (SDPA, tiled, flex) accept :class:`Softmax`.
    """

    name = "custom"

    def __call__(self, scores: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.normalize(scores, mask)[0]

    def normalize(self, scores: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Softmax(Normalizer):
    """:func:`softmax`."""

    name = "softmax"

    def normalize(self, scores, mask):
        return softmax(scores, mask), None


class Relu(Normalizer):
    """:func:`relu` (``ReLU(s) / n_allowed``; not a distribution)."""

    name = "relu"

    def normalize(self, scores, mask):
        return relu(scores, mask), None


class Sparsemax(Normalizer):
    """:func:`sparsemax`."""

    name = "sparsemax"

    def normalize(self, scores, mask):
        return sparsemax(scores, mask), None


class Hard(Normalizer):
    """:func:`hard`: argmax one-hot; ``straight_through=True`` for the softmax's gradient."""

    name = "hard"

    def __init__(self, *, straight_through: bool = False) -> None:
        if not isinstance(straight_through, bool):
            raise TypeError(f"Hard: straight_through must be a bool, got {type(straight_through).__name__}")
        self.straight_through = straight_through

    def normalize(self, scores, mask):
        return hard(scores, mask, straight_through=self.straight_through), None

    def __repr__(self) -> str:
        return f"Hard(straight_through={self.straight_through})"


class Sample(Normalizer):
    """:func:`sample`: one key drawn per query; returns its log-probability for REINFORCE."""

    name = "sample"

    def __init__(self, *, generator: torch.Generator | None = None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Sample: generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator

    def normalize(self, scores, mask):
        return sample(scores, mask, generator=self.generator)


class Custom(Normalizer):
    """A user callable ``(scores, mask) -> weights``; weight it leaks onto masked keys is zeroed."""

    def __init__(self, fn: Callable[[Tensor, Tensor | None], Tensor]) -> None:
        self.fn = fn

    def normalize(self, scores, mask):
        weights = self.fn(scores, mask)
        if not isinstance(weights, Tensor) or weights.shape != scores.shape:
            got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
            raise ValueError(f"normalize must return weights of the scores' shape {tuple(scores.shape)}, got {got}")
        return (weights if mask is None else weights.masked_fill(~mask, 0.0)), None

    def __repr__(self) -> str:
        return f"Custom({getattr(self.fn, '__name__', self.fn)!r})"


#: Normalisers by name (the classes; :func:`resolve` builds one with default options).
NORMALIZERS: dict[str, type[Normalizer]] = {
    "softmax": Softmax,
    "relu": Relu,
    "sparsemax": Sparsemax,
    "hard": Hard,
    "sample": Sample,
}

NormalizeArg = str | Normalizer | Callable[[Tensor, Tensor | None], Tensor]


def resolve(normalize: NormalizeArg) -> Normalizer:
    """The ``normalize`` argument of :func:`qkv.attend` as a :class:`Normalizer`."""
    if isinstance(normalize, Normalizer):
        return normalize
    if isinstance(normalize, str):
        if normalize not in NORMALIZERS:
            raise ValueError(f"normalize must be one of {sorted(NORMALIZERS)}, a Normalizer or a callable, "
                             f"got {normalize!r}")
        return NORMALIZERS[normalize]()
    if not callable(normalize):
        raise TypeError(f"normalize must be a name, a Normalizer or a callable, got {type(normalize).__name__}")
    return Custom(normalize)
