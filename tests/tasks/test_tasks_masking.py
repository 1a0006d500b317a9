"""BERT's 80/10/10 masked-token rule: proportions within statistical tolerance, invariants exactly."""

from __future__ import annotations

import math

import pytest
import torch

from qkv.tasks.masking import IGNORE_INDEX, MaskedLMCollator, mask_tokens

V, PAD, CLS, SEP, MASK = 50, 0, 1, 2, 3


def _batch(B=300, L=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, V, (B, L), generator=g)
    tokens[:, 0], tokens[:, -1] = CLS, SEP
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    keep = torch.arange(L)[None, :] < lengths[:, None]
    tokens[~keep] = PAD
    return tokens, keep


def _within(count, n, p, sigmas=5.0):
    """``count`` successes in ``n`` Bernoulli(p) trials lies within ``sigmas`` standard deviations."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_proportions_follow_the_80_10_10_rule():
    tokens, keep = _batch()
    out = mask_tokens(tokens, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP), pad_id=PAD,
                      generator=torch.Generator().manual_seed(1))
    eligible = keep & (tokens != CLS) & (tokens != SEP)
    n_elig, n_sel = int(eligible.sum()), int(out.selected.sum())
    assert _within(n_sel, n_elig, 0.15)
    sel = out.selected
    masked = int((out.inputs[sel] == MASK).sum())
    changed = int(((out.inputs[sel] != MASK) & (out.inputs[sel] != tokens[sel])).sum())
    R = V - 4  # random replacements are uniform over the non-special ids
    assert _within(masked, n_sel, 0.8)
    assert _within(changed, n_sel, 0.1 * (1 - 1 / R))  # a random draw equal to the token leaves it unchanged
    assert _within(n_sel - masked - changed, n_sel, 0.1 + 0.1 / R)
    # the random tokens are uniform over the R non-special ids: a chi-square-like bound on the counts
    rand = out.inputs[sel & (out.inputs != MASK) & (out.inputs != tokens)]
    counts = torch.bincount(rand, minlength=V)[4:].double()
    assert counts.min() > 0 and ((counts - counts.mean()) ** 2 / counts.mean()).sum() < R + 6 * math.sqrt(2 * R)


def test_invariants_hold_exactly():
    tokens, keep = _batch(B=50, L=60, seed=2)
    out = mask_tokens(tokens, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP), keep=keep,
                      select_prob=0.5, generator=torch.Generator().manual_seed(3))
    special = (tokens == CLS) | (tokens == SEP)
    assert not (out.selected & (special | ~keep)).any()  # specials and padding are never chosen
    assert torch.equal(out.labels == IGNORE_INDEX, ~out.selected)
    assert torch.equal(out.labels[out.selected], tokens[out.selected])
    assert torch.equal(out.inputs[~out.selected], tokens[~out.selected])  # nothing else changes
    # a random replacement is never a declared special (PAD is not declared here: keep marks the padding)
    assert not torch.isin(out.inputs[out.selected & (out.inputs != MASK)], torch.tensor([CLS, SEP])).any()
    assert torch.equal(out.keep, keep)
    again = mask_tokens(tokens, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP), keep=keep,
                        select_prob=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.inputs, out.inputs) and torch.equal(again.labels, out.labels)
    other = mask_tokens(tokens, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP), keep=keep,
                        select_prob=0.5, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other.selected, out.selected)
    # the fractions at their extremes: every chosen token becomes [MASK], or none is chosen
    allmask = mask_tokens(tokens, vocab_size=V, mask_id=MASK, keep=keep, special_ids=(CLS, SEP), select_prob=1.0,
                          mask_frac=1.0, random_frac=0.0, generator=torch.Generator())
    assert torch.equal(allmask.selected, keep & ~special) and (allmask.inputs[allmask.selected] == MASK).all()
    none = mask_tokens(tokens, vocab_size=V, mask_id=MASK, select_prob=0.0, generator=torch.Generator())
    assert torch.equal(none.inputs, tokens) and (none.labels == IGNORE_INDEX).all()


def test_cross_entropy_ignores_unselected_positions():
    tokens, _ = _batch(B=4, L=20)
    out = mask_tokens(tokens, vocab_size=V, mask_id=MASK, pad_id=PAD, select_prob=0.5,
                      generator=torch.Generator().manual_seed(0))
    logits = torch.randn(4, 20, V)
    got = torch.nn.functional.cross_entropy(logits.reshape(-1, V), out.labels.reshape(-1))
    sel = out.selected
    want = torch.nn.functional.cross_entropy(logits[sel], tokens[sel])
    torch.testing.assert_close(got, want)


def test_collator_pads_and_masks_reproducibly():
    seqs = [[CLS, 5, 6, 7, SEP], [CLS, 8, SEP], torch.tensor([CLS, 9, 10, 11, 12, 13, SEP])]
    make = lambda: MaskedLMCollator(pad_id=PAD, vocab_size=V, mask_id=MASK, special_ids=(CLS, SEP),  # noqa: E731
                                    select_prob=0.6, max_length=6, seed=7)
    a, b = make()(seqs), make()(seqs)
    assert a.inputs.shape == (3, 6)
    assert a.keep.tolist() == [[True] * 5 + [False], [True] * 3 + [False] * 3, [True] * 6]
    assert (a.inputs[~a.keep] == PAD).all() and not (a.selected & ~a.keep).any()
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)


def test_errors_name_the_argument():
    tokens, _ = _batch(B=2, L=5)
    with pytest.raises(ValueError, match="tokens"):
        mask_tokens(tokens.float(), vocab_size=V, mask_id=MASK)
    with pytest.raises(ValueError, match="tokens must lie"):
        mask_tokens(tokens, vocab_size=10, mask_id=MASK)
    with pytest.raises(ValueError, match="select_prob"):
        mask_tokens(tokens, vocab_size=V, mask_id=MASK, select_prob=1.5)
    with pytest.raises(ValueError, match="mask_frac"):
        mask_tokens(tokens, vocab_size=V, mask_id=MASK, mask_frac=0.95, random_frac=0.1)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(tokens, vocab_size=V, mask_id=V)
    with pytest.raises(ValueError, match="keep"):
        mask_tokens(tokens, vocab_size=V, mask_id=MASK, keep=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_length"):
        MaskedLMCollator(pad_id=PAD, vocab_size=V, mask_id=MASK, max_length=0)
