"""Positional information for attention: additive position biases evaluated lazily.

* :func:`alibi` — ALiBi (Press, Smith & Lewis 2022), fixed per-head linear distance penalties.
* :func:`relative` — learned clipped relative-position bias (Shaw, Uszkoreit & Vaswani 2018).

Both are :class:`qkv.functional.biases.Bias` objects: pass them as ``bias=`` to :func:`qkv.attend`
or any layer; every kernel evaluates them tile by tile.

* :func:`t5` / :class:`T5RelativeBias` — T5's bucketed relative-position bias (Raffel et al. 2020), lazy too.
* :class:`Rotary` / :func:`apply_rotary` — RoPE (Su et al. 2021), rotating queries and keys before the score.
* :func:`sinusoidal` / :class:`SinusoidalPositions` (Vaswani et al. 2017, with :func:`sinusoidal_shift`)
  and :class:`LearnedPositions` — absolute positions added to the input.
"""

from qkv.positional.alibi import Alibi, alibi, alibi_slopes
from qkv.positional.learned import LearnedPositions
from qkv.positional.relative import RelativeBias, relative
from qkv.positional.rotary import Rotary, apply_rotary, rotary_frequencies
from qkv.positional.sinusoidal import SinusoidalPositions, sinusoidal, sinusoidal_frequencies, sinusoidal_shift
from qkv.positional.t5 import T5Bias, T5RelativeBias, relative_position_bucket, t5

__all__ = ["Alibi", "RelativeBias", "alibi", "alibi_slopes", "relative"]
__all__ += [
    "LearnedPositions",
    "Rotary",
    "SinusoidalPositions",
    "T5Bias",
    "T5RelativeBias",
    "apply_rotary",
    "relative_position_bucket",
    "rotary_frequencies",
    "sinusoidal",
    "sinusoidal_frequencies",
    "sinusoidal_shift",
    "t5",
]

# 2-D positions for image patches or pixels (grid.py): sine-cosine embeddings and a lazy (dy, dx) bias
from qkv.positional.grid import (  # noqa: E402
    GridRelativeBias,
    GridRelativePositionBias,
    grid_relative,
    sinusoidal_2d,
)

__all__ += ["GridRelativeBias", "GridRelativePositionBias", "grid_relative", "sinusoidal_2d"]
