"""QANet: the encoder block against a transcription of Fig. 1 (independent positional encoding, convolution and
attention maths), stochastic depth over a stack, weight sharing of the model encoder, padding, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qkv.models.qanet import EncoderBlock, EncoderStack, QANet


def pe(L, D):
    out = torch.zeros(L, D, dtype=torch.float64)
    for p in range(L):
        for i in range(D // 2):
            out[p, 2 * i] = math.sin(p / 10000 ** (2 * i / D))
            out[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / D))
    return out


def transcription(block: EncoderBlock, x, keep):
    """Fig. 1's block in eval mode, written with torch's conv1d, an explicit masked softmax and the FFN."""
    _, L, D = x.shape
    x = (x + pe(L, D)) * keep[..., None]
    for norm, conv in zip(block.conv_norms, block.convs, strict=True):
        h = (norm(x) * keep[..., None]).transpose(1, 2)
        K = conv.kernel_size
        h = F.conv1d(h, conv.depthwise.weight, conv.depthwise.bias, padding=(K - 1) // 2, groups=D)
        h = F.conv1d(h, conv.pointwise.weight, conv.pointwise.bias).transpose(1, 2)
        x = x + h * keep[..., None]
    att = block.attention
    h = block.attn_norm(x)
    H, d = att.num_heads, D // att.num_heads
    q, k, v = att.q_proj(h), att.k_proj(h), att.v_proj(h)
    heads = []
    for i in range(H):
        sl = slice(i * d, (i + 1) * d)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)
        s = s.masked_fill(~keep[:, None, :], float("-inf"))
        heads.append(torch.softmax(s, -1) @ v[..., sl])
    x = x + att.out_proj(torch.cat(heads, -1))
    h = block.ff_norm(x)
    x = x + block.ff.linear2(torch.relu(block.ff.linear1(h)))
    return x * keep[..., None]


def test_encoder_block_matches_the_transcription_of_fig_1():
    torch.manual_seed(0)
    block = EncoderBlock(8, num_convs=2, kernel_size=3, num_heads=2).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    torch.testing.assert_close(block(x, keep=keep), transcription(block, x, keep))


def test_encoder_block_float64_gradcheck():
    torch.manual_seed(1)
    block = EncoderBlock(4, num_convs=1, kernel_size=3, num_heads=2).double().eval()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[True, True, False]])
    assert torch.autograd.gradcheck(lambda t: block(t, keep=keep), (x,))


def test_stack_survival_probabilities_count_sublayers_over_the_stack():
    stack = EncoderStack(4, 3, num_convs=2, p_last=0.9)
    got = [sd.survival for block in stack.blocks for sd in block.depth]
    L = 3 * 4
    assert got == pytest.approx([1 - l / L * 0.1 for l in range(1, L + 1)])
    with pytest.raises(ValueError, match=r"survivals must give num_convs \+ 2 = 3 probabilities"):
        EncoderBlock(4, num_convs=1, survivals=(1.0,))


def test_training_drops_sublayers_and_eval_is_deterministic():
    torch.manual_seed(2)
    stack = EncoderStack(4, 2, num_convs=1, p_last=0.3)
    x = torch.randn(2, 5, 4)
    stack.eval()
    torch.testing.assert_close(stack(x), stack(x))
    stack.train()
    outs = {tuple(stack(x).flatten()[:3].tolist()) for _ in range(12)}
    assert len(outs) > 1  # different sublayers were dropped


def test_qanet_shares_the_model_encoder_across_three_passes_and_ignores_padding():
    torch.manual_seed(3)
    model = QANet(30, dim=8, num_heads=2, model_blocks=2, dropout=0.0).eval()
    calls = []
    model.model_encoder.register_forward_hook(lambda *a: calls.append(1))
    c = torch.randint(1, 30, (2, 7))
    c[1, 5:] = 0
    q = torch.randint(1, 30, (2, 4))
    q[0, 3:] = 0
    out = model(c, q, return_attention=True)
    assert len(calls) == 3
    assert out.attention.row_weights.shape == (2, 7, 4)
    # longer padding changes nothing at the real positions
    c2, q2 = F.pad(c, (0, 3)), F.pad(q, (0, 2))
    out2 = model(c2, q2)
    torch.testing.assert_close(out2.logits.start[:, :7], out.logits.start, atol=1e-5, rtol=1e-5)
    assert bool(torch.isinf(out.logits.start[1, 5:]).all())
    with pytest.raises(ValueError, match="context must be a"):
        model(c.float(), q)
    with pytest.raises(ValueError, match=r"context_keep must have shape \(B, L\) = \(2, 7\)"):
        model(c, q, context_keep=torch.ones(2, 5, dtype=torch.bool))
