"""The modern Hopfield network: the update is one call of attend (eq. 3), the energy (eq. 2), one-step retrieval."""

from __future__ import annotations

import math

import pytest
import torch

import qkv
from qkv.memory.hopfield import modern
from qkv.tasks.corruption import corrupt, random_patterns


def _paper_update(xi: torch.Tensor, X: torch.Tensor, beta: float) -> torch.Tensor:
    """Ramsauer et al. eq. 3, transcribed with column vectors: xi_new = X softmax(beta X^T xi), X (d, N)."""
    return X @ torch.softmax(beta * (X.T @ xi), dim=0)


def _paper_energy(xi: torch.Tensor, X: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 2: E = -lse(beta, X^T xi) + 1/2 xi^T xi + 1/beta log N + 1/2 M^2, lse = 1/beta log sum exp(beta z)."""
    n = X.shape[1]
    lse = torch.log(torch.exp(beta * (X.T @ xi)).sum()) / beta
    m = max(torch.linalg.norm(X[:, i]) for i in range(n))
    return -lse + 0.5 * xi @ xi + math.log(n) / beta + 0.5 * m**2


@pytest.mark.parametrize("beta", [0.1, 1.0, 8.0])
def test_update_is_one_attend_call_and_equals_the_papers_equation(beta):
    g = torch.Generator().manual_seed(0)
    state = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)  # (B, L, D)
    patterns = torch.randn(2, 9, 16, generator=g, dtype=torch.float64)  # (B, N, D)
    got = modern.update(state, patterns, beta=beta)
    # the identity: one call of attend, dot score scaled by beta, patterns as keys and values
    torch.testing.assert_close(got, qkv.attend(state, patterns, patterns, score="dot", scale=beta).output)
    for b in range(2):
        for i in range(5):
            torch.testing.assert_close(got[b, i], _paper_update(state[b, i], patterns[b].T, beta))


def test_energy_equals_the_papers_equation_and_never_increases():
    g = torch.Generator().manual_seed(1)
    patterns = torch.randn(12, 8, generator=g, dtype=torch.float64)
    xi = torch.randn(4, 8, generator=g, dtype=torch.float64)
    for beta in (0.3, 2.0):
        e = modern.energy(xi, patterns, beta=beta)
        for i in range(4):
            torch.testing.assert_close(e[i], _paper_energy(xi[i], patterns.T, beta))
        state = xi
        for _ in range(6):  # the update is a CCCP step: the energy never increases (Ramsauer et al. §2)
            new = modern.update(state, patterns, beta=beta)
            e_old, e_new = modern.energy(state, patterns, beta=beta), modern.energy(new, patterns, beta=beta)
            assert torch.all(e_new <= e_old + 1e-9)
            state = new
        assert torch.all(modern.energy(state, patterns, beta=beta) >= 0)


def test_one_update_retrieves_well_separated_patterns():
    """Issue 12's regime: 10^4 random patterns of dimension 64, retrieved in one step (here 2,000 probed)."""
    g = torch.Generator().manual_seed(0)
    x = random_patterns(10_000, 64, generator=g)
    probes = corrupt(x[:2000], 0.1, generator=g)
    new = modern.update(probes, x, beta=1.0)
    assert torch.equal(torch.sign(new), x[:2000])
    assert (new - x[:2000]).abs().max() < 1e-3  # and the state is at the pattern, not just on its side


def test_small_beta_gives_metastable_averages():
    g = torch.Generator().manual_seed(0)
    a, b = random_patterns(2, 64, generator=g)
    similar = torch.stack([a, corrupt(a[None], 0.05, generator=g)[0]])  # two close patterns
    x = torch.cat([similar, b[None]])  # (3, 64): a pair of similar patterns and a distant one
    # beta small relative to the pair's separation (Delta = 64 - 0.9 * 64 = 6.4): the pair's average
    fixed = modern.retrieve(similar[:1], x, beta=0.05, steps=50)
    torch.testing.assert_close(fixed[0], similar.mean(0), atol=0.1, rtol=0)
    # beta large: the pattern itself
    torch.testing.assert_close(modern.retrieve(similar[:1], x, beta=4.0)[0], similar[0], atol=1e-6, rtol=0)
    # beta -> 0: the mean of all patterns in one step
    torch.testing.assert_close(modern.update(b[None], x, beta=1e-9)[0], x.mean(0), atol=1e-6, rtol=0)
    assert modern.separation(x)[0] == pytest.approx(64 - similar[0] @ similar[1])


def test_gradcheck_of_the_update():
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, p: modern.update(s, p, beta=0.7), (xi, x))
    assert torch.autograd.gradcheck(lambda s, p: modern.energy(s, p, beta=0.7), (xi, x))


def test_errors_name_the_argument():
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="beta"):
        modern.update(torch.randn(2, 4), x, beta=0.0)
    with pytest.raises(TypeError, match="beta"):
        modern.update(torch.randn(2, 4), x, beta="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state"):
        modern.update(torch.randn(2, 3), x, beta=1.0)
    with pytest.raises(TypeError, match="patterns"):
        modern.energy(torch.randn(2, 4), x.long(), beta=1.0)
    with pytest.raises(ValueError, match="steps"):
        modern.retrieve(torch.randn(2, 4), x, beta=1.0, steps=0)


def test_more_errors_name_the_argument():
    x = torch.randn(5, 4)
    for bad in (-1.0, float("nan"), float("inf"), "0.1"):
        with pytest.raises((ValueError, TypeError), match="tol"):
            modern.retrieve(torch.randn(2, 4), x, beta=1.0, steps=3, tol=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="values"):
        modern.update(torch.randn(2, 4), x, beta=1.0, values=torch.randn(4, 3))  # 4 rows for 5 patterns
    with pytest.raises(ValueError, match="patterns"):
        modern.energy(torch.randn(2, 4), torch.randn(0, 4), beta=1.0)  # log N needs N >= 1
    for bad in (None, 0, -2.0, float("inf"), 10**400):
        with pytest.raises((ValueError, TypeError), match="beta") as info:
            modern.update(torch.randn(2, 4), x, beta=bad)  # type: ignore[arg-type]
        assert "or None" not in str(info.value)
    assert modern.check_beta(2) == 2.0


def test_energy_is_finite_and_right_for_huge_beta():
    """beta * scores overflows for beta = 1e300; the shifted lse does not: E -> -max z + 1/2 xi.xi + 1/2 M^2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    xi = torch.randn(3, 4, generator=g, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        e = modern.energy(xi.to(dtype), x.to(dtype), beta=1e300)
        assert torch.isfinite(e).all()
        limit = -(xi @ x.T).amax(-1) + 0.5 * (xi * xi).sum(-1) + 0.5 * x.norm(dim=-1).max() ** 2
        torch.testing.assert_close(e.double(), limit, rtol=1e-5, atol=1e-5)
    # and it still matches eq. 2 where the naive formula does not overflow
    torch.testing.assert_close(modern.energy(xi, x, beta=50.0)[0], _paper_energy(xi[0], x.T, 50.0))
