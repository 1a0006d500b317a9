"""Show, Attend and Tell: the read is one call of attend, the step against a transcription, shapes and errors."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.functional.normalize import Sample
from qkv.models.show_attend_tell import ShowAttendTell, doubly_stochastic_penalty


def _model(attention: str = "soft", **kw) -> ShowAttendTell:
    torch.manual_seed(0)
    return ShowAttendTell(14, image_size=16, attention=attention, channels=(4, 4), annotation_dim=8, embed_dim=6,
                          hidden_dim=10, attention_dim=5, **kw)


def _inputs(B: int = 3, T: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, 1, 16, 16, generator=g), torch.randint(3, 14, (B, T + 1), generator=g)


def test_the_read_is_one_call_of_attend_soft_and_hard():
    model = _model().eval()
    images, tokens = _inputs()
    a = model.annotate(images)
    h, _ = model.init_state(a)
    ref = attend(h[:, None], a, a, score=model.score, normalize="softmax", return_weights=True)
    out = model(images, tokens)
    torch.testing.assert_close(out.weights[:, 0], ref.weights[:, 0])  # the first word's weights, from h_0
    torch.testing.assert_close(out.probs, out.weights)
    drawn = model.attention(h, a, read="sample", generator=torch.Generator().manual_seed(5))
    same = attend(h[:, None], a, a, score=model.score, normalize=Sample(generator=torch.Generator().manual_seed(5)),
                  return_weights=True)
    torch.testing.assert_close(drawn.weights, same.weights)
    torch.testing.assert_close(drawn.log_prob, same.log_prob)
    torch.testing.assert_close(drawn.output, same.output)
    top = model.attention(h, a, read="argmax")
    assert torch.equal(top.weights.argmax(-1), ref.weights.argmax(-1)) and torch.all(top.weights.sum(-1) == 1)


def test_attention_step_matches_the_papers_equations_and_passes_gradcheck():
    model = _model().double()
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 10, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    s = model.score
    # eq. 4-6 and 13 transcribed: e_i = v . tanh(W a_i + U h + b), alpha = softmax(e), z = sum_i alpha_i a_i
    e = torch.stack([torch.stack([s.v @ torch.tanh(s.w_k @ a[n, i] + s.w_q @ h[n] + s.hidden_bias)
                                  for i in range(9)]) for n in range(2)])
    alpha = torch.exp(e) / torch.exp(e).sum(-1, keepdim=True)
    out = model.attention(h, a)
    torch.testing.assert_close(out.weights[:, 0], alpha)
    torch.testing.assert_close(out.output[:, 0], (alpha[..., None] * a).sum(1))
    assert torch.autograd.gradcheck(lambda h, a: model.attention(h, a).output, (h, a))


def test_forward_and_greedy_shapes_and_hard_log_probs():
    model = _model("hard")
    images, tokens = _inputs(B=3, T=4)
    out = model(images, tokens)  # training mode: sampled locations
    assert out.logits.shape == (3, 4, 14) and out.weights.shape == (3, 4, 16) and out.log_prob.shape == (3, 4)
    assert torch.all(out.weights.sum(-1) == 1) and torch.all((out.weights == 0) | (out.weights == 1))
    chosen = (out.probs * out.weights).sum(-1).log()  # log alpha at the sampled location
    torch.testing.assert_close(out.log_prob, chosen)
    assert torch.all(out.gate > 0) and torch.all(out.gate < 1)
    assert torch.all(out.entropy <= torch.log(torch.tensor(16.0)) + 1e-6)
    out.log_prob.sum().backward()
    assert model.score.v.grad is not None and model.score.v.grad.abs().sum() > 0
    model.eval()
    dec = model.greedy(images, bos=1, eos=2, max_len=5)
    assert dec.tokens.shape[0] == 3 and dec.tokens.shape[1] <= 5 and dec.weights.shape == (3, dec.tokens.shape[1], 16)
    for row in dec.tokens.tolist():
        if 2 in row:
            assert all(t == 0 for t in row[row.index(2) + 1 :])


def test_doubly_stochastic_penalty_is_eq_14():
    g = torch.Generator().manual_seed(3)
    w = torch.softmax(torch.randn(2, 3, 5, generator=g), -1)
    steps = torch.tensor([[True, True, False], [True, True, True]])
    want = [sum((1 - sum(float(w[n, t, i]) for t in range(3) if steps[n, t])) ** 2 for i in range(5)) for n in range(2)]
    torch.testing.assert_close(doubly_stochastic_penalty(w, steps), torch.tensor(want))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="attention"):
        _model("sometimes")
    with pytest.raises(ValueError, match="image_size"):
        ShowAttendTell(14, image_size=18)
    with pytest.raises(ValueError, match="annotation_dim"):
        ShowAttendTell(14, annotation_dim=6)
    model = _model()
    images, tokens = _inputs()
    with pytest.raises(ValueError, match=r"images must be \(B, 1, 16, 16\)"):
        model(images[:, :, :8], tokens)
    with pytest.raises(ValueError, match="tokens"):
        model(images, tokens.float())
    with pytest.raises(ValueError, match="batch size"):
        model(images, tokens[:2])
    with pytest.raises(ValueError, match="read"):
        model(images, tokens, read="peek")
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, vocab_size = 14\), got min \d+, max 14"):
        model(images, torch.cat([tokens[:, :1], torch.full_like(tokens[:, 1:], 14)], dim=1))
    with pytest.raises(ValueError, match="steps"):
        doubly_stochastic_penalty(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("last_kernel", [1, 3])
def test_each_annotation_sees_the_receptive_field_of_its_block(last_kernel):
    # independent reference: RF = 1 + sum_l (k_l - 1) * jump_l = 1 + 2 + 2 + 2*2 + 4 (k - 1) = 9 + 4 (k - 1)
    model = ShowAttendTell(14, image_size=32, channels=(4, 4), annotation_dim=8, last_kernel=last_kernel).double()
    model.eval()
    images = torch.rand(1, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    images.requires_grad_(True)
    r = c = 4  # an inside cell: pixels [16, 20) x [16, 20)
    model.annotate(images)[0, r * 8 + c].sum().backward()
    rows, cols = (images.grad[0, 0] != 0).nonzero(as_tuple=True)
    side = 9 + 4 * (last_kernel - 1)
    assert int(rows.max() - rows.min()) + 1 == side and int(cols.max() - cols.min()) + 1 == side
    assert rows.min() <= 4 * r and rows.max() >= 4 * r + 3 and cols.min() <= 4 * c and cols.max() >= 4 * c + 3


def test_last_kernel_must_be_odd():
    with pytest.raises(ValueError, match="last_kernel must be odd"):
        ShowAttendTell(14, last_kernel=2)
    with pytest.raises(ValueError, match="last_kernel"):
        ShowAttendTell(14, last_kernel=0)
