"""PointerNetwork: its output IS additive attention (identity with ``attend``, the paper's eq. 3 transcribed with a
hand-run LSTM), masks (permutation, padding, fully masked steps), decoding (greedy, exact beam search), gradcheck."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from qkv import memory
from qkv.functional.attention import attend
from qkv.memory import PointerNetwork


def _net(**kw):
    torch.manual_seed(0)
    return PointerNetwork(2, 8, attention_dim=6, **kw).double()


def _points(B, N, seed=1):
    return torch.rand(B, N, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _lstm_by_hand(lstm: torch.nn.LSTM, xs: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One example's LSTM, step by step (Hochreiter and Schmidhuber; torch's gate order i, f, g, o)."""
    outs = []
    for x in xs:
        gates = lstm.weight_ih_l0 @ x + lstm.bias_ih_l0 + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0
        i, f, g, o = gates.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), h, c


def _eq3(net: PointerNetwork, points: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Vinyals et al. eq. 3 for one example: u_j = v^T tanh(W1 e_j + W2 d_i), softmax over the allowed j."""
    H = net.hidden_dim
    zero = points.new_zeros(H)
    e, h, c = _lstm_by_hand(net.encoder, points, zero, zero)
    keys = torch.cat([net.end[None], e]) if net.end_token else e
    inputs = torch.cat([points.new_zeros(1, 2), points]) if net.end_token else points
    dec_in = torch.stack([net.go] + [inputs[t] for t in targets[:-1]])
    d, _, _ = _lstm_by_hand(net.decoder, dec_in, h, c)
    rows, used = [], set()
    for i in range(len(targets)):
        u = torch.stack([net.score.v @ torch.tanh(net.score.w_k @ keys[j] + net.score.w_q @ d[i])
                         for j in range(len(keys))])
        allowed = torch.tensor([j not in used for j in range(len(keys))])
        rows.append(torch.softmax(u.masked_fill(~allowed, -math.inf), -1))
        used.add(targets[i])
        used.discard(0) if net.end_token else None
    return torch.stack(rows)


def test_listed_as_a_memory_model():
    assert PointerNetwork in memory.MEMORY_MODELS


@pytest.mark.parametrize("end_token", [False, True])
def test_pointer_distribution_is_the_additive_attention_of_attend(end_token):
    net = _net(end_token=end_token)
    x = _points(3, 5)
    targets = torch.tensor([[2, 0, 4, 1, 3], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]) + int(end_token)
    read, allowed = net.teacher_forced(x, targets)
    # the same decoder states and encoder keys, read once more through attend with the additive score
    keys, _, state = net.encode(x, torch.full((3,), 5))
    prev = net._step_inputs(x, targets[:, :-1])
    queries, _ = net.decoder(torch.cat([net.go.expand(3, 1, 2), prev], 1), state)
    ref = attend(queries, keys, keys, score=net.score, mask=allowed, return_weights=True)
    torch.testing.assert_close(read.weights, ref.weights)
    torch.testing.assert_close(net.log_probs(read, allowed).exp(), read.weights)
    # and the paper's equation 3 with an LSTM run by hand
    for b in range(3):
        torch.testing.assert_close(read.weights[b], _eq3(net, x[b], targets[b].tolist()))


def test_permutation_mask_and_padding():
    net = _net()
    x = _points(2, 5)
    lengths = torch.tensor([5, 3])
    out = net.greedy(x, lengths=lengths)
    assert sorted(out.indices[0].tolist()) == [0, 1, 2, 3, 4]
    assert sorted(out.indices[1, :3].tolist()) == [0, 1, 2] and out.indices[1, 3:].tolist() == [-1, -1]
    assert torch.all(out.weights[1, :, 3:] == 0) and torch.all(out.weights[1, 3:] == 0)
    # a padded example decodes exactly as the same example alone, whatever sits in the padding
    alone = net.greedy(x[1:, :3])
    junk = x.clone()
    junk[1, 3:] = 100.0
    padded = net.greedy(junk, lengths=lengths)
    assert padded.indices[1, :3].tolist() == alone.indices[0].tolist()
    torch.testing.assert_close(padded.weights[1, :3, :3], alone.weights[0])
    torch.testing.assert_close(padded.log_prob[1], alone.log_prob[0])


def test_fully_masked_steps_are_finite_forward_and_backward():
    net = _net()
    x = _points(2, 4).requires_grad_(True)
    targets = torch.tensor([[0, 1, 2, 3, 0], [3, 2, 1, 0, 2]])  # the 5th step has nothing left to point to
    read, allowed = net.teacher_forced(x, targets)
    assert not allowed[:, 4].any()
    assert torch.all(read.weights[:, 4] == 0) and torch.isfinite(read.weights).all()
    loss = net.loss(x, torch.where(torch.arange(5) < 4, targets, -1))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_greedy_is_the_argmax_of_its_own_teacher_forced_distributions():
    net = _net(end_token=True)
    x = _points(4, 6)
    out = net.greedy(x)
    read, allowed = net.teacher_forced(x, out.indices)
    real = out.indices >= 0
    torch.testing.assert_close(read.weights[real], out.weights[real])
    assert torch.equal(read.weights.argmax(-1)[real], out.indices[real])
    picked = net.log_probs(read, allowed).gather(-1, out.indices.clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(out.log_prob, torch.where(real, picked, 0.0).sum(-1))
    ended = (out.indices == 0).any(-1) | (out.indices.shape[1] == 7)
    assert ended.all()


def test_beam_width_one_is_greedy_and_a_wide_beam_is_exact():
    net = _net()
    x = _points(3, 4)
    greedy, beam1 = net.greedy(x), net.beam_search(x, beam_width=1)
    assert torch.equal(greedy.indices, beam1.indices)
    torch.testing.assert_close(greedy.log_prob, beam1.log_prob)
    exact = net.beam_search(x, beam_width=24)  # 4! = 24 beams hold every permutation
    perms = torch.tensor(list(itertools.permutations(range(4))))  # (24, 4)
    for b in range(3):
        read, allowed = net.teacher_forced(x[b : b + 1].expand(24, -1, -1), perms)
        ll = net.log_probs(read, allowed).gather(-1, perms[..., None])[..., 0].sum(-1)  # (24,)
        assert exact.indices[b].tolist() == perms[ll.argmax()].tolist()
        torch.testing.assert_close(exact.log_prob[b], ll.max())
        assert exact.log_prob[b] >= greedy.log_prob[b] - 1e-12
    mid = net.beam_search(x, beam_width=3)
    assert torch.all(mid.log_prob >= greedy.log_prob - 1e-12)


def test_beam_search_with_the_end_token_and_padding_returns_valid_sequences():
    net = _net(end_token=True)
    x = _points(3, 5)
    lengths = torch.tensor([5, 4, 3])
    out = net.beam_search(x, beam_width=3, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        seq = out.indices[b].tolist()
        stop = seq.index(0) if 0 in seq else len(seq)
        body = seq[:stop]
        assert all(1 <= k <= n for k in body) and len(set(body)) == len(body)
        assert all(k == -1 for k in seq[stop + 1 :])


def test_decode_in_batches_matches_one_call():
    net = _net(end_token=True)
    x = _points(5, 6)
    whole, parts = net.greedy(x), net.decode(x, batch_size=2)
    T = whole.indices.shape[1]
    assert torch.equal(parts.indices[:, :T], whole.indices) and torch.all(parts.indices[:, T:] == -1)
    torch.testing.assert_close(parts.log_prob, whole.log_prob.detach())


def test_gradcheck_float64_teacher_forced_step():
    net = _net(end_token=True)
    targets = torch.tensor([[2, 1, 0], [3, 0, -1]])

    def f(x):
        read, allowed = net.teacher_forced(x, targets)
        return read.weights, net.log_probs(read, allowed).clamp(min=-1e3)

    assert torch.autograd.gradcheck(f, (_points(2, 3).requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda x: net.loss(x, targets), (_points(2, 3).requires_grad_(True),))


def test_bad_arguments_name_themselves():
    net = _net()
    x = _points(2, 4)
    with pytest.raises(ValueError, match="inputs"):
        net.greedy(x[..., :1])
    with pytest.raises(ValueError, match="lengths"):
        net.greedy(x, lengths=torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="targets"):
        net(x, torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError, match="masked position"):
        net.loss(x, torch.tensor([[0, 0], [1, 2]]))
    with pytest.raises(ValueError, match="beam_width"):
        net.beam_search(x, beam_width=0)
    with pytest.raises(ValueError, match="hidden_dim"):
        PointerNetwork(2, 0)
    with pytest.raises(TypeError, match="end_token"):
        PointerNetwork(2, 4, end_token=1)
