"""HAN (Yang et al. 2016) and the flat pooled classifier: shapes, padding, the pooling identity, errors."""

from __future__ import annotations

import pytest
import torch

from qkv.functional.attention import attend
from qkv.models.han import HAN
from qkv.models.text_classifier import POOLINGS, PooledClassifier


def _docs():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 30, (3, 4, 6), generator=g)
    tokens[0, 2:] = 0  # two padded sentences
    tokens[1, :, 4:] = 0  # short sentences
    return tokens


def test_han_weights_are_distributions_and_ignore_padding():
    torch.manual_seed(0)
    model = HAN(30, 3, embed_dim=8, hidden_dim=6).eval()
    tokens = _docs()
    out = model(tokens, return_weights=True)
    assert out.logits.shape == (3, 3) and out.word_weights.shape == (3, 4, 6) and out.sentence_weights.shape == (3, 4)
    torch.testing.assert_close(out.sentence_weights.sum(-1), torch.ones(3))
    assert torch.all(out.sentence_weights[0, 2:] == 0) and torch.all(out.word_weights[1, :, 4:] == 0)
    torch.testing.assert_close(out.word_weights[0, :2].sum(-1), torch.ones(2))
    # padding changes nothing: a document with one more padded sentence gives the same logits
    wider = torch.cat([tokens, torch.zeros(3, 1, 6, dtype=torch.long)], 1)
    torch.testing.assert_close(model(wider).logits, out.logits)


def test_han_sentence_read_is_the_attend_call():
    torch.manual_seed(0)
    model = HAN(30, 2, embed_dim=8, hidden_dim=6).eval()
    tokens = _docs()[:1, :2]
    seen = {}
    model.sentence_attention.register_forward_hook(lambda m, a, k, o: seen.update(h=a[0], mask=k["mask"], o=o),
                                                   with_kwargs=True)
    out = model(tokens, return_weights=True)
    pool = model.sentence_attention
    ref = attend(pool.query[None, None], seen["h"].unsqueeze(1), seen["h"].unsqueeze(1), score=pool.score,
                 mask=seen["mask"], return_weights=True)
    torch.testing.assert_close(out.sentence_weights, ref.weights[:, 0, 0])


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooled_classifier_weights(pooling):
    torch.manual_seed(0)
    model = PooledClassifier(30, 2, pooling=pooling, embed_dim=8, hidden_dim=4).eval()
    tokens = _docs().flatten(1)
    out = model(tokens, return_weights=True)
    assert out.logits.shape == (3, 2) and out.weights.shape == tokens.shape
    assert torch.all(out.weights[tokens == 0] == 0)
    model.train()
    model(tokens).logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "embed" not in n)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="tokens"):
        HAN(10, 2)(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens"):
        PooledClassifier(10, 2)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="pooling"):
        PooledClassifier(10, 2, pooling="max")
    with pytest.raises(ValueError, match="num_classes"):
        HAN(10, 0)
