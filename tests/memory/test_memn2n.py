"""MemN2N: each hop is the ``attend`` call it claims, PE against the paper's formula, tying, LS, RN, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from qkv import memory
from qkv.functional.attention import attend
from qkv.memory.memn2n import LINEAR, MemN2N, position_encoding, temporal_noise

V, D, B, S, J, JQ = 11, 6, 3, 5, 4, 3


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    story = torch.randint(1, V, (B, S, J), generator=g)
    story[:, :, -1] = 0  # every statement one word shorter than the width
    story[0, 3:] = 0  # question 0 has 3 statements, question 1 has 4
    story[1, 4:] = 0
    story[2, 1, 1:] = 0  # a one-word statement
    query = torch.randint(1, V, (B, JQ), generator=g)
    query[1, -1] = 0
    return story, query


def _model(seed: int = 0, **kw) -> MemN2N:
    torch.manual_seed(seed)
    return MemN2N(V, embed_dim=D, memory_size=8, **kw).double()


def _bag_loop(table: torch.Tensor, words: torch.Tensor, encoding: str, scale: float = 1.0) -> torch.Tensor:
    """sum_j (scale l_kj) A x_j with l_kj written out entry by entry (§4.1), for one sentence ``words (J,)``."""
    n = int((words != 0).sum())
    d = table.shape[1]
    rows, ids = table.tolist(), words.tolist()
    out = [0.0] * d
    for j in range(1, n + 1):
        for k in range(1, d + 1):
            lkj = 1.0 if encoding == "bow" else scale * ((1 - j / n) - (k / d) * (1 - 2 * j / n))
            out[k - 1] += lkj * rows[ids[j - 1]][k - 1]
    return torch.tensor(out, dtype=table.dtype)


def _reference(model: MemN2N, story, query, linear=False):
    """Eq. 1-3 transcribed with loops: embeddings, p_i = softmax(u^T m_i), o = sum p_i c_i, u <- (H) u + o.

    With ``empty_memories`` the softmax also counts the ``memory_size - n`` empty slots, each with score 0."""
    enc = model.encoding
    tabs = list(model.word)
    mask = (story != 0).any(-1)
    logits, all_p = [], []
    for b in range(story.shape[0]):
        n = int(mask[b].sum())
        qtab = tabs[0] if model.tying == "adjacent" else model.query_word
        u = _bag_loop(qtab, query[b], enc)
        ps = []
        for hop in range(model.hops):
            ia, ic = (hop, hop + 1) if model.tying == "adjacent" else (0, 1)
            m = torch.stack([_bag_loop(tabs[ia], story[b, i], enc) + model.time[ia][n - 1 - i] for i in range(n)])
            c = torch.stack([_bag_loop(tabs[ic], story[b, i], enc) + model.time[ic][n - 1 - i] for i in range(n)])
            s = torch.stack([u @ m[i] for i in range(n)])
            empty = model.memory_size - n if model.empty_memories else 0  # zero vectors: exp(0) each
            p = s if linear else torch.exp(s) / (torch.exp(s).sum() + empty)
            o = sum(p[i] * c[i] for i in range(n))
            u = (model.H(u) if model.tying == "layerwise" else u) + o
            ps.append(F.pad(p, (0, story.shape[1] - n)))
        logits.append(u @ tabs[-1].t() if model.tying == "adjacent" else model.W(u))
        all_p.append(torch.stack(ps))
    return torch.stack(logits), torch.stack(all_p)


def test_listed_as_a_memory_model():
    assert memory.MemN2N is MemN2N and MemN2N in memory.MEMORY_MODELS


def test_position_encoding_is_the_papers_formula():
    lengths = torch.tensor([[1, 3], [4, 0]])
    pe = position_encoding(lengths, 5, 7)
    assert pe.shape == (2, 2, 5, 7)
    for idx in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        n = int(lengths[idx])
        for j in range(1, 6):
            for k in range(1, 8):
                want = (1 - j / n) - (k / 7) * (1 - 2 * j / n) if j <= n else 0.0
                assert pe[idx][j - 1, k - 1].item() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("encoding", ["position", "bow"])
def test_statement_embeddings_equal_the_direct_loop(encoding):
    model = _model(encoding=encoding, temporal=False)
    story, query = _inputs()
    mems = model.memories(story)
    for b in range(B):
        for i in range(S):
            for t in (0, len(model.word) - 1):
                torch.testing.assert_close(mems[t][b, i], _bag_loop(model.word[t], story[b, i], encoding))
    torch.testing.assert_close(model.embed_query(query)[1], _bag_loop(model.word[0], query[1], encoding))


@pytest.mark.parametrize("encoding", ["position", "bow"])
def test_position_scale_multiplies_the_pe_weights_only(encoding):
    model = _model(encoding=encoding, temporal=False, position_scale=2.0)
    story, query = _inputs()
    scale = 2.0 if encoding == "position" else 1.0  # BoW has no PE weights to scale
    mems = model.memories(story)
    for b in range(B):
        for i in range(S):
            torch.testing.assert_close(mems[1][b, i], _bag_loop(model.word[1], story[b, i], encoding, scale))
    torch.testing.assert_close(model.embed_query(query)[2], _bag_loop(model.word[0], query[2], encoding, scale))


def test_position_encoding_distinguishes_word_order_and_bow_does_not():
    story, query = _inputs()
    swapped = story.clone()
    swapped[..., [0, 1]] = swapped[..., [1, 0]]
    pe, bow = _model(encoding="position"), _model(encoding="bow")
    assert not torch.allclose(pe(story, query).logits, pe(swapped, query).logits)
    torch.testing.assert_close(bow(story, query).logits, bow(swapped, query).logits)


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("hops", [1, 3])
@pytest.mark.parametrize("linear", [False, True])
@pytest.mark.parametrize("empty_memories", [False, True])
def test_network_equals_equations_1_to_3_transcribed(tying, hops, linear, empty_memories):
    model = _model(tying=tying, hops=hops, empty_memories=empty_memories)
    story, query = _inputs()
    out = model(story, query, linear=linear)
    logits, p = _reference(model, story, query, linear=linear)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.weights, p)
    assert out.weights.shape == (B, hops, S)


@pytest.mark.parametrize("linear", [False, True])
def test_each_hop_is_one_attend_call(linear):
    """The hop's read and weights are attend(u, m, c, score="dot", mask, normalize=softmax | LS identity)."""
    model = _model(hops=3)
    story, query = _inputs()
    mask = (story != 0).any(-1)
    out = model(story, query, linear=linear)
    mems, u = model.memories(story), model.embed_query(query)
    for hop in range(3):
        read = attend(u[:, None], mems[hop], mems[hop + 1], score="dot", mask=mask[:, None],
                      normalize=LINEAR if linear else "softmax", return_weights=True)
        torch.testing.assert_close(out.weights[:, hop], read.weights[:, 0])
        u = u + read.output[:, 0]
    torch.testing.assert_close(out.state, u)
    torch.testing.assert_close(out.logits, u @ model.word[-1].t())


@pytest.mark.parametrize("linear", [False, True])
def test_with_empty_memories_each_hop_is_one_attend_call_over_the_full_memory(linear):
    """The story's slots (padding zeroed) then memory_size - S zero slots, no mask; the weights keep the story's."""
    model = _model(hops=3, empty_memories=True)
    story, query = _inputs()
    mask = (story != 0).any(-1)
    out = model(story, query, linear=linear)
    full = [torch.cat([m * mask[..., None], torch.zeros(B, model.memory_size - S, D, dtype=m.dtype)], 1)
            for m in model.memories(story)]  # (B, memory_size, d)
    u = model.embed_query(query)
    for hop in range(3):
        read = attend(u[:, None], full[hop], full[hop + 1], score="dot", normalize=LINEAR if linear else "softmax",
                      return_weights=True)
        torch.testing.assert_close(out.weights[:, hop], read.weights[:, 0, :S] * mask)  # padding's share not shown
        u = u + read.output[:, 0]
    torch.testing.assert_close(out.logits, u @ model.word[-1].t())
    if not linear:  # the empty slots took some of the attention
        assert torch.all(out.weights.sum(-1) < 1)
    with pytest.raises(ValueError, match="memory_size=8"):  # without time tables too
        _model(empty_memories=True, temporal=False)(torch.ones(B, 9, J, dtype=torch.long), query)


def test_with_empty_memories_a_full_memory_is_plain_softmax():
    """A story that fills all memory_size slots leaves no empty slot: the weights sum to 1 and match eq. 1-3."""
    story, query = _inputs()
    full = story.clone()
    full[:, :, 0] = torch.arange(1, S + 1).clamp_max(V - 1)  # every slot a statement: S = memory_size
    torch.manual_seed(0)
    model = MemN2N(V, embed_dim=D, memory_size=S, empty_memories=True).double()
    out = model(full, query)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(B, 3, dtype=torch.float64))
    logits, p = _reference(model, full, query)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.weights, p)


def test_linear_start_removes_the_softmax():
    model = _model()
    story, query = _inputs()
    mask = (story != 0).any(-1)
    soft, lin = model(story, query), model(story, query, linear=True)
    torch.testing.assert_close(soft.weights.sum(-1), torch.ones(B, 3, dtype=torch.float64))
    u, m = model.embed_query(query), model.memories(story)[0]
    torch.testing.assert_close(lin.weights[:, 0], torch.einsum("bd,bsd->bs", u, m) * mask)  # raw scores u^T m_i
    assert not torch.allclose(lin.logits, soft.logits)
    assert torch.all(lin.weights[~mask[:, None].expand(-1, 3, -1)] == 0)


def test_adjacent_tying_shares_tables_between_hops():
    """A^{k+1} = C^k, W^T = C^K, B = A^1: K + 1 word and time tables, no H or W."""
    model = _model(hops=3)
    assert len(model.word) == 4 and len(model.time) == 4
    assert not hasattr(model, "H") and not hasattr(model, "W")
    story, query = _inputs()
    # the gradient of hop 2's input table reaches word[1], the table that is also hop 1's output
    out = model(story, query)
    out.weights[:, 1].sum().backward()
    assert model.word[1].grad is not None and model.word[1].grad.abs().sum() > 0
    # B = A^1: a question equal to a statement embeds like that statement's hop-1 input (without time)
    plain = _model(hops=3, temporal=False)
    torch.testing.assert_close(plain.embed_query(story[:, 0]), plain.memories(story)[0][:, 0])


def test_layerwise_tying_shares_tables_and_applies_H():
    """A^1 = A^2 = ..., C^1 = C^2 = ..., u^{k+1} = H u^k + o^k, separate B and W."""
    model = _model(tying="layerwise", hops=3)
    assert len(model.word) == 2 and len(model.time) == 2 and model.H.weight.shape == (D, D)
    assert len(list(model.parameters())) == 2 + 2 + 3  # A, C, T_A, T_C, B, H, W
    story, query = _inputs()
    out = model(story, query)
    mems, u = model.memories(story), model.embed_query(query)
    mask = (story != 0).any(-1)
    for hop in range(3):  # every hop reads the same A and C
        read = attend(u[:, None], mems[0], mems[1], score="dot", mask=mask[:, None], return_weights=True)
        torch.testing.assert_close(out.weights[:, hop], read.weights[:, 0])
        u = model.H(u) + read.output[:, 0]
    torch.testing.assert_close(out.logits, model.W(u))
    with torch.no_grad():
        model.H.weight.mul_(2.0)
    assert not torch.allclose(model(story, query).logits, out.logits)


@pytest.mark.parametrize("empty_memories", [False, True])
def test_padding_slots_change_nothing(empty_memories):
    model = _model(empty_memories=empty_memories)
    story, query = _inputs()
    wider = torch.cat([story, torch.zeros(B, 2, J, dtype=story.dtype)], 1)  # (B, S + 2, J)
    a, b = model(story, query), model(wider, query)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(b.weights[..., :S], a.weights)
    assert torch.all(b.weights[..., S:] == 0)


def test_gradcheck_float64_tiny_model():
    torch.manual_seed(0)
    model = MemN2N(6, embed_dim=3, hops=2, memory_size=3).double()
    story, query = _inputs()
    story, query = story[:2, :3, :3] % 6, query[:2] % 6
    story[:, 0, 0], story[1, 2] = 1, 0  # every question has a statement; one has a padding slot
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def f(*ps):
        return functional_call(model, dict(zip(names, ps, strict=True)), (story, query)).logits

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, fast_mode=True)


def test_temporal_noise_keeps_order_and_inserts_at_most_ten_percent():
    mask = torch.zeros(64, 30, dtype=torch.bool)
    lengths = torch.randint(1, 31, (64,), generator=torch.Generator().manual_seed(0))
    for b, n in enumerate(lengths.tolist()):
        mask[b, :n] = True
    g = torch.Generator().manual_seed(1)
    time = temporal_noise(mask, fraction=0.1, generator=g)
    shifted = 0
    for b, n in enumerate(lengths.tolist()):
        t = time[b, :n]
        assert torch.all(t[:-1] > t[1:]), "the order of the statements is kept, most recent smallest"
        assert int(t[0]) <= n - 1 + math.ceil(0.1 * n)
        assert torch.all(time[b, n:] == 0)
        shifted += int(t[0]) > n - 1
    assert shifted > 0
    model = MemN2N(V, memory_size=30)
    torch.testing.assert_close(temporal_noise(mask, fraction=0.0), model.default_time(mask))
    assert int(temporal_noise(mask, fraction=0.5, size=20).max()) == 19


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="hops"):
        MemN2N(V, hops=0)
    with pytest.raises(ValueError, match="encoding"):
        MemN2N(V, encoding="onehot")
    with pytest.raises(ValueError, match="tying"):
        MemN2N(V, tying="none")
    with pytest.raises(ValueError, match="position_scale"):
        MemN2N(V, position_scale=0.0)
    model = MemN2N(V, memory_size=4)
    story, query = _inputs()
    with pytest.raises(ValueError, match="memory_size"):
        model(story, query)
    with pytest.raises(ValueError, match="story"):
        model(story[0], query)
    with pytest.raises(ValueError, match="fraction"):
        temporal_noise(torch.ones(2, 3, dtype=torch.bool), fraction=2.0)
