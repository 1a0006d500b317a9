"""Pure, stateless attention maths: scores, normalizers, and :func:`attend`."""

from qkv.functional import normalize, scores
from qkv.functional.output import AttentionOutput
from qkv.functional.attention import attend  # noqa: I001  (after output: kernels import it)

__all__ = ["AttentionOutput", "attend", "normalize", "scores"]
