"""A multiple-instance classifier: instance encoder, ``HopfieldPooling``, a linear read-out.

Shape legend: ``B`` bags, ``S`` instances, ``F`` instance features, ``E`` embedding width, ``H`` heads.

Ramsauer et al. 2020 §4 (multiple-instance learning with ``HopfieldPooling``): each instance is
embedded, a learned state pattern retrieves from the bag (one modern-Hopfield update, eq. 11), and the
pooled vector is classified. The pooling weights show which instances the decision rests on.
"""

from __future__ import annotations

from torch import Tensor, nn

from qkv.functional.masks import key_padding
from qkv.functional.output import AttentionOutput
from qkv.memory.hopfield.pooling import HopfieldPooling

__all__ = ["HopfieldMIL"]


class HopfieldMIL(nn.Module):
    """Bag classifier: ``MLP -> HopfieldPooling -> Linear``.

    Args:
        feature_dim: instance width ``F``.
        embed_dim: embedding width ``E``.
        num_heads: pooling heads.
        beta: the pooling's initial :math:`\\beta` (learned).
    """

    def __init__(self, feature_dim: int, *, embed_dim: int = 64, num_heads: int = 1, beta: float = 1.0) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(feature_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim),
                                     nn.ReLU())
        self.pool = HopfieldPooling(embed_dim, num_queries=1, num_heads=num_heads, beta=beta, learn_beta=True)
        self.head = nn.Linear(embed_dim, 1)

    def forward(self, instances: Tensor, keep: Tensor, *,
                return_weights: bool = False) -> tuple[Tensor, AttentionOutput]:
        """``instances (B, S, F)``, ``keep (B, S)`` (True = a real instance) -> logits ``(B,)`` and the pooling output.

        The pooling weights are ``(B, H, 1, S)``.
        """
        h = self.encoder(instances)  # (B, S, E)
        pooled = self.pool(h, mask=key_padding(keep), return_weights=return_weights)  # output (B, 1, E)
        return self.head(pooled.output[:, 0]).squeeze(-1), pooled  # (B,)
