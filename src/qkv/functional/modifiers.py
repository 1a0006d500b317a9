"""Weight modifiers: factors that multiply the attention weights *after* normalisation.

Shape legend: ``B`` batch, ``H`` heads, ``L`` queries, ``S`` keys, ``Tq``/``Tk`` a tile.

.. math:: \\alpha'_{ij} = \\alpha_{ij}\\, g_{ij}, \\qquad o_i = \\sum_j \\alpha'_{ij} v_j,

without renormalising. Luong's local-p Gaussian (Luong et al. 2015, eq. 10;
:class:`qkv.functional.local.GaussianWindow`) is one; memory models add others (e.g. gates
on read weights). A modifier is a :class:`~qkv.functional.lazy.Lazy` field, evaluated tile by
tile like a bias, whose :meth:`~qkv.functional.lazy.Lazy.parameters` receive gradients on every
kernel that supports modifiers (naive, tiled); it may also restrict the keys with a
:meth:`WeightModifier.support` mask, which kernels add to the call's mask (and use to skip tiles).
"""

from __future__ import annotations

from qkv.functional.lazy import Lazy
from qkv.functional.masks import Mask

__all__ = ["WeightModifier"]


class WeightModifier(Lazy):
    """A factor ``g (B, H, L, S)`` (broadcastable) applied to the weights after normalisation."""

    def support(self) -> Mask | None:
        """The keys the factor may be non-zero on (a mask kernels add to the call's), or ``None``."""
        return None
