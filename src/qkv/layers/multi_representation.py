"""Multi-representational attention: per token, weigh several representations of it (dynamic meta-embeddings).

Shape legend: ``B`` batch, ``L`` tokens, ``R`` representations, ``D_r`` width of representation ``r``,
``E`` the common (output) width.

The survey's "number of representations" axis (Chaudhari et al., "An Attentive Survey of Attention
Models"; seed 004): a model holds several feature representations of the same input (embeddings from
different corpora, different encoders) and attention assigns them importance weights, keeping the relevant
aspects and ignoring noisy or redundant ones. This is Kiela, Wang and Cho (2018, "Dynamic Meta-Embeddings
for Improved Sentence Representations", §2.2, eq. 3-4): each representation is projected to a common width,
:math:`w'_{i,r} = P_r w_{i,r} + b_r`, scored by a learned vector,
:math:`\\alpha_{i,r} = \\mathrm{softmax}_r(a^\\top w'_{i,r} + b)`, and mixed,
:math:`w^{\\mathrm{DME}}_i = \\sum_r \\alpha_{i,r} w'_{i,r}`. (The constant ``b`` cancels in the softmax.)

The read is one call of :func:`qkv.attend`: the query is the learned vector ``a``, the keys and values are
the ``R`` projected representations of each token (keys over the representation axis, so ``S = R``), and
the score is ``"dot"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from qkv.functional.attention import attend
from qkv.functional.checks import check_positive_int
from qkv.functional.output import AttentionOutput
from qkv.layers.common import check_input, check_keep

__all__ = ["MultiRepresentationalAttention"]


class MultiRepresentationalAttention(nn.Module):
    """Attention over ``R`` representations of each token (Kiela et al. 2018, eq. 3-4).

    Args:
        input_dims: the widths ``D_r`` of the ``R >= 1`` representations.
        embed_dim: the common width ``E`` each is projected to (and the output width).

    Call it with a sequence of ``R`` tensors ``(B, L, D_r)`` (in ``input_dims``' order) and an optional
    ``keep (B, L)`` bool (True = a real token; padded tokens get a zero output). It returns an
    :class:`qkv.AttentionOutput` with ``output (B, L, E)`` and, with ``return_weights=True``,
    ``weights (B, L, R)``: how much each token takes from each representation.
    """

    def __init__(self, input_dims: Sequence[int], *, embed_dim: int) -> None:
        super().__init__()
        if isinstance(input_dims, int) or not isinstance(input_dims, Sequence) or len(input_dims) == 0:
            raise ValueError(f"input_dims must be a non-empty sequence of widths, got {input_dims!r}")
        self.input_dims = tuple(check_positive_int(f"input_dims[{r}]", d) for r, d in enumerate(input_dims))
        self.embed_dim = check_positive_int("embed_dim", embed_dim)
        self.projections = nn.ModuleList(nn.Linear(d, self.embed_dim) for d in self.input_dims)
        self.query = nn.Parameter(torch.randn(self.embed_dim) / self.embed_dim**0.5)  # a in eq. 3

    def forward(
        self, representations: Sequence[Tensor], *, keep: Tensor | None = None, return_weights: bool = False
    ) -> AttentionOutput:
        """Mix each token's representations; see the class docstring for shapes."""
        if isinstance(representations, Tensor) or len(representations) != len(self.input_dims):
            got = "a tensor" if isinstance(representations, Tensor) else f"{len(representations)}"
            raise ValueError(f"representations must be a sequence of {len(self.input_dims)} tensors, got {got}")
        reps = [
            check_input(f"representations[{r}]", x, dims=(3,), width=d)
            for r, (x, d) in enumerate(zip(representations, self.input_dims, strict=True))
        ]
        if any(x.shape[:2] != reps[0].shape[:2] for x in reps):
            raise ValueError(
                f"representations must agree on (B, L), got shapes {[tuple(x.shape) for x in reps]}"
            )
        B, L = reps[0].shape[:2]
        keep = check_keep("keep", keep, reps[0])
        projected = torch.stack([proj(x) for proj, x in zip(self.projections, reps, strict=True)], dim=2)
        # projected: (B, L, R, E); one query per token: (B, L, 1, E)
        query = self.query.to(projected.dtype).expand(B, L, 1, self.embed_dim)
        out = attend(query, projected, projected, score="dot", return_weights=return_weights)
        output = rearrange(out.output, "b l 1 e -> b l e")  # (B, L, E)
        weights = None if out.weights is None else rearrange(out.weights, "b l 1 r -> b l r")  # (B, L, R)
        if keep is not None:
            output = output * rearrange(keep, "b l -> b l 1").to(output.dtype)
            if weights is not None:
                weights = weights * rearrange(keep, "b l -> b l 1").to(weights.dtype)
        return AttentionOutput(output=output, weights=weights)
