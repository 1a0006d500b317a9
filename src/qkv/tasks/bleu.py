"""Corpus BLEU (Papineni et al., 2002) through sacrebleu (Post, 2018, "A Call for Clarity in Reporting BLEU Scores").

.. math::
    \\mathrm{BLEU} = \\mathrm{BP} \\cdot \\exp\\Big(\\sum_{n=1}^{4} \\tfrac14 \\log p_n\\Big),\\qquad
    \\mathrm{BP} = \\min\\big(1, e^{1 - r/c}\\big)

with ``p_n`` the corpus-level modified n-gram precisions, ``c`` the hypothesis length and ``r``
the closest reference lengths. sacrebleu computes it with its default settings (13a tokenizer,
exponential smoothing, mixed case) and returns a *signature* (``nrefs:...|case:mixed|eff:no|
tok:13a|smooth:exp|version:...``) that says exactly how; qkv records the signature with every
score so that numbers can be compared with published ones.

Hypotheses and references may be strings or token lists (joined with spaces). qkv's translation
experiment scores its word tokens (lower-cased, punctuation split) joined by spaces, so its
numbers are sacrebleu's on that text, not on detokenised, cased output (``force=True`` silences
sacrebleu's warning about tokenised input). A hypothesis may have any number of references
(sacrebleu's variable-reference mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BleuScore", "corpus_bleu"]


@dataclass(frozen=True)
class BleuScore:
    """A corpus BLEU score (0-100) with its parts and sacrebleu's signature."""

    score: float
    signature: str
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int


def _text(item: str | Sequence[str]) -> str:
    return item if isinstance(item, str) else " ".join(item)


def corpus_bleu(
    hypotheses: Sequence[str | Sequence[str]], references: Sequence[Sequence[str | Sequence[str]]]
) -> BleuScore:
    """sacrebleu's corpus BLEU of ``hypotheses``, each against one or more references.

    Args:
        hypotheses: H outputs, strings or token lists.
        references: H lists of references (strings or token lists), at least one each.

    Raises:
        ValueError: different numbers of hypotheses and reference sets, or a hypothesis without
            a reference.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"corpus_bleu: {len(hypotheses)} hypotheses but {len(references)} reference sets")
    for i, refs in enumerate(references):
        if not refs:
            raise ValueError(f"corpus_bleu: hypothesis {i} has no reference")
    width = max((len(r) for r in references), default=1)
    # sacrebleu wants reference *streams*: stream j holds every hypothesis's j-th reference (None: none)
    streams = [[_text(refs[j]) if j < len(refs) else None for refs in references] for j in range(width)]
    metric = BLEU(force=True)  # qkv's outputs are word tokens: no "forgot to detokenize" warning
    result = metric.corpus_score([_text(h) for h in hypotheses], streams)
    return BleuScore(
        score=float(result.score), signature=str(metric.get_signature()),
        precisions=tuple(float(p) for p in result.precisions), brevity_penalty=float(result.bp),
        hyp_len=int(result.sys_len), ref_len=int(result.ref_len),
    )
