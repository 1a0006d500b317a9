"""Patches: patchify against a loop over the image, the round trip, and PatchEmbedding against a strided Conv2d."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from qkv.layers.patches import PatchEmbedding, patchify, unpatchify
from qkv.positional.grid import sinusoidal_2d


def test_patchify_matches_a_loop_and_round_trips():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 8, generator=g)
    p = patchify(x, (3, 2))
    assert p.shape == (2, 2 * 4, 3 * 2 * 3)
    for gy in range(2):
        for gx in range(4):
            block = x[:, :, gy * 3:(gy + 1) * 3, gx * 2:(gx + 1) * 2]  # (B, C, ph, pw)
            want = block.permute(0, 2, 3, 1).reshape(2, -1)  # (row, column, channel) order
            torch.testing.assert_close(p[:, gy * 4 + gx], want)
    torch.testing.assert_close(unpatchify(p, (3, 2), grid=(2, 4)), x)
    assert torch.equal(patchify(x, 1), rearrange(x, "b c h w -> b (h w) c"))  # pixels as tokens
    with pytest.raises(ValueError, match="multiple"):
        patchify(x, 4)
    with pytest.raises(ValueError, match="images"):
        patchify(x[0], 2)


def test_patch_embedding_equals_a_strided_conv_plus_positions():
    """ViT's patch projection is a Conv2d with kernel = stride = patch; copy the weights across."""
    torch.manual_seed(0)
    emb = PatchEmbedding(8, 4, 3, 16, class_token=True)
    conv = torch.nn.Conv2d(3, 16, 4, stride=4)
    with torch.no_grad():  # Linear weight (E, ph*pw*C) in (row, column, channel) order -> (E, C, ph, pw)
        conv.weight.copy_(rearrange(emb.proj.weight, "e (ph pw c) -> e c ph pw", ph=4, pw=4))
        conv.bias.copy_(emb.proj.bias)
        emb.class_token.normal_()
    x = torch.randn(2, 3, 8, 8)
    out = emb(x)
    assert out.shape == (2, 1 + 4, 16) and emb.grid == (2, 2) and emb.prefix == 1
    want = rearrange(conv(x), "b e gh gw -> b (gh gw) e") + sinusoidal_2d((2, 2), 16)
    torch.testing.assert_close(out[:, 1:], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 0], emb.class_token[0].expand(2, -1))
    with pytest.raises(ValueError, match="images"):
        emb(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="image_size"):
        PatchEmbedding(9, 4, 3, 16)
