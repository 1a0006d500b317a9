"""Pure, stateless attention maths: scores, masks, biases, normalizers, modifiers and :func:`attend`."""

from qkv.functional import biases, masks, modifiers, normalize, scores
from qkv.functional.attention import attend
from qkv.functional.output import AttentionOutput

__all__ = ["AttentionOutput", "attend", "biases", "masks", "modifiers", "normalize", "scores"]
