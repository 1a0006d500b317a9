"""LSTMBaseline against a step-by-step transcription of the LSTM equations with its own weights; argument checks."""

from __future__ import annotations

import pytest
import torch

from qkv.models.lstm_baseline import LSTMBaseline


def _lstm_loop(model: LSTMBaseline, x: torch.Tensor) -> torch.Tensor:
    """i, f, g, o = σ, σ, tanh, σ of W_i x + b_i + W_h h + b_h (PyTorch's gate order); c = f c + i g; h = o tanh c."""
    B, T, _ = x.shape
    inp = x
    for layer in range(model.layers):
        Wi, Wh = getattr(model.lstm, f"weight_ih_l{layer}"), getattr(model.lstm, f"weight_hh_l{layer}")
        b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        h = torch.zeros(B, model.hidden_dim, dtype=x.dtype)
        c = torch.zeros(B, model.hidden_dim, dtype=x.dtype)
        outs = []
        for t in range(T):
            z = inp[:, t] @ Wi.T + h @ Wh.T + b  # (B, 4H)
            i, f, g, o = z.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        inp = torch.stack(outs, 1)  # (B, T, H)
    return inp @ model.out.weight.T + model.out.bias  # (B, T, Y)


@pytest.mark.parametrize("layers", [1, 2])
def test_matches_the_lstm_equations(layers):
    torch.manual_seed(0)
    model = LSTMBaseline(5, 3, hidden_dim=7, layers=layers).double()
    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = model(x)
    assert out.shape == (2, 6, 3)
    torch.testing.assert_close(out, _lstm_loop(model, x))


@pytest.mark.parametrize(("kwargs", "name"), [({"input_dim": 0}, "input_dim"), ({"output_dim": -1}, "output_dim"),
                                              ({"hidden_dim": 2.5}, "hidden_dim"), ({"layers": True}, "layers")])
def test_rejects_bad_arguments(kwargs, name):
    args = {"input_dim": 4, "output_dim": 2, "hidden_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        LSTMBaseline(args.pop("input_dim"), args.pop("output_dim"), **args)


def test_rejects_a_wrong_input_shape():
    model = LSTMBaseline(4, 2, hidden_dim=8)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, 4\), got \(2, 3, 5\)"):
        model(torch.zeros(2, 3, 5))
