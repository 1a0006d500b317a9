"""Pure, stateless attention maths: scores, normalizers, and :func:`attend`."""

from qkv.functional import normalize, scores
from qkv.functional.attention import attend
from qkv.functional.output import AttentionOutput

__all__ = ["AttentionOutput", "attend", "normalize", "scores"]
