"""The binary linear-chain CRF (Kim et al. 2017 §3.2): marginals against brute-force enumeration, gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch

from qkv.functional.attention import attend
from qkv.functional.crf import SegmentationMarginals, chain_log_partition, chain_marginals


def _brute(unary: torch.Tensor, pairwise: torch.Tensor, allowed: list[bool]) -> tuple[float, list[float]]:
    """log Z and p(z_i = 1) by enumerating every assignment of the allowed keys (a chain over them only)."""
    idx = [i for i, a in enumerate(allowed) if a]
    marg = [0.0] * len(allowed)
    if not idx:
        return 0.0, marg
    total = 0.0
    for z in itertools.product((0, 1), repeat=len(idx)):
        e = sum(float(unary[i]) * zi for i, zi in zip(idx, z, strict=True))
        for t in range(1, len(idx)):
            e += float(pairwise[idx[t], z[t - 1], z[t]])
        w = float(torch.tensor(e, dtype=torch.float64).exp())
        total += w
        for i, zi in zip(idx, z, strict=True):
            marg[i] += w * zi
    return float(torch.tensor(total, dtype=torch.float64).log()), [m / total for m in marg]


@pytest.mark.parametrize("per_position", [False, True])
def test_marginals_and_log_partition_equal_enumeration(per_position):
    g = torch.Generator().manual_seed(0)
    B, S = 4, 8
    unary = torch.randn(B, S, generator=g, dtype=torch.float64) * 2
    pairwise = torch.randn(*((B, S) if per_position else ()), 2, 2, generator=g, dtype=torch.float64) * 1.5
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 5:] = False  # padding
    mask[2, [0, 3, 4]] = False  # holes: the chain skips them
    mask[3] = False  # an empty chain
    unary[0, 2] = float("-inf")  # a -inf score removes the key too
    log_z = chain_log_partition(unary, pairwise, mask)
    marg = chain_marginals(unary, pairwise, mask)
    for b in range(B):
        allowed = (mask[b] & torch.isfinite(unary[b])).tolist()
        p = pairwise[b] if per_position else pairwise.expand(S, 2, 2)
        ref_z, ref_m = _brute(unary[b], p, allowed)
        assert float(log_z[b]) == pytest.approx(ref_z, abs=1e-10)
        torch.testing.assert_close(marg[b], torch.tensor(ref_m, dtype=torch.float64))
    assert torch.all(marg[3] == 0) and torch.all(marg[1, 5:] == 0) and torch.all(marg[0, 2] == 0)


def test_marginals_are_the_gradient_of_the_log_partition():
    g = torch.Generator().manual_seed(1)
    unary = torch.randn(3, 2, 7, generator=g, dtype=torch.float64).requires_grad_()
    pairwise = torch.randn(2, 2, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 2, 7, generator=g) > 0.3
    (grad,) = torch.autograd.grad(chain_log_partition(unary, pairwise, mask).sum(), unary)
    torch.testing.assert_close(chain_marginals(unary, pairwise, mask), grad)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    unary = torch.randn(2, 6, generator=g, dtype=torch.float64).requires_grad_()
    pairwise = torch.randn(2, 2, generator=g, dtype=torch.float64).requires_grad_()
    mask = torch.tensor([[True] * 6, [True, False, True, True, False, False]])
    assert torch.autograd.gradcheck(lambda u, p: chain_marginals(u, p, mask), (unary, pairwise))


def test_long_chains_are_stable():
    unary = torch.full((1, 400), 30.0)
    pairwise = torch.tensor([[0.0, -40.0], [-40.0, 50.0]])
    m = chain_marginals(unary, pairwise)
    assert torch.isfinite(m).all() and torch.allclose(m, torch.ones_like(m))


def test_as_a_normalizer_of_attend():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 1, 3, 4, generator=g) for _ in range(3))
    pairwise = torch.randn(2, 2, generator=g)
    out = attend(q, k, v, score="dot", normalize=SegmentationMarginals(pairwise), return_weights=True)
    torch.testing.assert_close(out.weights, chain_marginals(q @ k.transpose(-1, -2), pairwise))
    torch.testing.assert_close(out.output, out.weights @ v)
    renorm = attend(q, k, v, score="dot", normalize=SegmentationMarginals(pairwise, renormalize=True),
                    return_weights=True).weights
    torch.testing.assert_close(renorm.sum(-1), torch.ones(2, 1, 3))


def test_errors_name_the_argument_and_shapes():
    u = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"pairwise.*\(3, 3\)"):
        chain_marginals(u, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"pairwise.*\(4, 5, 2, 2\)"):
        chain_marginals(u, torch.zeros(4, 5, 2, 2))
    with pytest.raises(TypeError, match="mask"):
        chain_marginals(u, torch.zeros(2, 2), torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"mask.*\(3, 5\)"):
        chain_marginals(u, torch.zeros(2, 2), torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="unary"):
        chain_marginals(torch.ones(2, 5, dtype=torch.long), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="renormalize"):
        SegmentationMarginals(torch.zeros(2, 2), renormalize=1)
