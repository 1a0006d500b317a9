"""Seq2Seq with attention: shapes, masking of padding, vectorised pass == step-by-step pass."""

from __future__ import annotations

import pytest
import torch

from qkv.models.seq2seq import Seq2Seq, Seq2SeqConfig

VARIANTS = [("global", s) for s in ("additive", "dot", "general", "concat")] + [
    ("local-m", "general"), ("local-p", "general"), ("local-p", "dot")]


def _batch():
    src = torch.tensor([[4, 5, 6, 7, 8], [9, 10, 11, 0, 0]])  # (B=2, S=5), second row padded
    src_len = torch.tensor([5, 3])
    tgt_in = torch.tensor([[1, 4, 5, 6], [1, 7, 8, 0]])  # (B, T=4)
    return src, src_len, tgt_in


@pytest.mark.parametrize(("position", "score"), VARIANTS)
def test_shapes_and_padding_gets_no_attention(position, score):
    model = Seq2Seq(12, 10, Seq2SeqConfig(embed_dim=8, hidden=16, position=position, score=score, window=2))
    src, src_len, tgt_in = _batch()
    out = model(src, src_len, tgt_in)
    assert out.logits.shape == (2, 4, 10) and out.weights.shape == (2, 4, 5)
    assert torch.all(out.weights[1, :, 3:] == 0)  # padded source positions
    if position != "local-p":  # local-p multiplies by a Gaussian without renormalising (Luong eq. 10)
        torch.testing.assert_close(out.weights.sum(-1), torch.ones(2, 4))
    else:
        assert torch.all(out.weights.sum(-1) <= 1 + 1e-6)
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(("position", "score"), VARIANTS)
def test_vectorised_teacher_forcing_equals_step_by_step(position, score):
    torch.manual_seed(1)
    model = Seq2Seq(12, 10, Seq2SeqConfig(embed_dim=8, hidden=16, position=position, score=score, window=2)).eval()
    src, src_len, tgt_in = _batch()
    whole = model(src, src_len, tgt_in)
    memory, state = model.encode(src, src_len)
    steps = model._run_steps(memory, state, src_len, tgt_in.shape[1], tgt_in=tgt_in)
    torch.testing.assert_close(whole.logits, steps.logits)
    torch.testing.assert_close(whole.weights, steps.weights)


def test_local_m_window_is_centred_on_the_step():
    model = Seq2Seq(12, 10, Seq2SeqConfig(embed_dim=8, hidden=16, position="local-m", window=1)).eval()
    src, src_len, tgt_in = _batch()
    w = model(src, src_len, tgt_in).weights[0]  # (T, S)
    for t in range(4):
        outside = [s for s in range(5) if abs(s - t) > 1]
        assert torch.all(w[t, outside] == 0)


def test_greedy_decoding_and_input_feeding():
    model = Seq2Seq(12, 10, Seq2SeqConfig(embed_dim=8, hidden=16, input_feeding=True)).eval()
    src, src_len, tgt_in = _batch()
    out = model.greedy(src, src_len, max_len=6)
    assert out.tokens.shape[0] == 2 and out.tokens.shape[1] <= 6
    assert out.weights.shape == (2, out.tokens.shape[1], 5)
    assert model(src, src_len, tgt_in).logits.shape == (2, 4, 10)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match=r"model\.hidden"):
        Seq2SeqConfig(hidden=15)
    with pytest.raises(ValueError, match=r"model\.window"):
        Seq2SeqConfig(window=0)
    model = Seq2Seq(12, 10, Seq2SeqConfig(embed_dim=8, hidden=16))
    with pytest.raises(ValueError, match="src must be"):
        model(torch.zeros(2, 3, 4, dtype=torch.long), torch.tensor([3, 3]), torch.zeros(2, 2, dtype=torch.long))


def test_learns_to_copy():
    """A hundred and fifty steps are enough to learn to copy short sequences (the model can learn)."""
    torch.manual_seed(0)
    model = Seq2Seq(10, 10, Seq2SeqConfig(embed_dim=16, hidden=32, score="dot"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        src = torch.randint(3, 10, (32, 4), generator=g)
        tgt = torch.cat([torch.ones(32, 1, dtype=torch.long), src, torch.full((32, 1), 2)], 1)
        out = model(src, torch.full((32,), 4), tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 10), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    src = torch.randint(3, 10, (64, 4), generator=g)
    pred = model.greedy(src, torch.full((64,), 4), max_len=5).tokens[:, :4]
    assert (pred == src).all(-1).float().mean() > 0.8
