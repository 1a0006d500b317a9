"""Positional information for attention: additive position biases evaluated lazily.

* :func:`alibi` — ALiBi (Press, Smith & Lewis 2022), fixed per-head linear distance penalties.
* :func:`relative` — learned clipped relative-position bias (Shaw, Uszkoreit & Vaswani 2018).

Both are :class:`qkv.functional.biases.Bias` objects: pass them as ``bias=`` to :func:`qkv.attend`
or any layer; every kernel evaluates them tile by tile.
"""

from qkv.positional.alibi import Alibi, alibi, alibi_slopes
from qkv.positional.relative import RelativeBias, relative

__all__ = ["Alibi", "RelativeBias", "alibi", "alibi_slopes", "relative"]
