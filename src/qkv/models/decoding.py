"""Autoregressive generation: greedy search, beam search with GNMT's length penalty, and sampling.

Shape legend: ``B`` batch, ``K`` beams, ``T`` tokens given to a step, ``T0`` prompt length,
``n`` generated tokens, ``V`` vocabulary.

Every function is written against one interface, so that any model decodes with it::

    step(tokens (B, T) int64, cache) -> (logits (B, T, V), cache)

``step`` receives only the tokens it has not seen yet (the whole prompt on the first call, with
``cache=None`` unless one is given; then one token per row) and returns the next-token logits of
each position together with its updated cache; the last position's logits choose the next token.
A model with a key/value cache (:mod:`qkv.layers.cache`) makes each step cost one position;
:func:`recompute` turns a plain ``forward(tokens (B, T)) -> logits (B, T, V)`` into a ``step``
whose "cache" is the token prefix, re-running the whole prefix each step (the reference the cache
is checked against). Beam search reorders the cache with :func:`qkv.layers.cache.reorder_cache`
(tensors, objects with ``reorder(index)``, and tuples/lists/dicts of them).

* :func:`greedy` — the most likely next token each step.
* :func:`sample` — a token drawn from ``softmax(logits / temperature)`` restricted to the ``top_k`` most
  likely tokens (Fan et al. 2018) and/or the smallest set whose probability reaches ``top_p``
  (nucleus sampling, Holtzman et al. 2020); a ``torch.Generator`` makes it reproducible.
* :func:`beam_search` — ``K`` hypotheses per row, ranked by :math:`\\log P(Y) / lp(Y)` with GNMT's length
  penalty :math:`lp(Y) = ((5 + |Y|) / 6)^{\\alpha}` (Wu et al. 2016, eq. 14; no coverage penalty).
  A hypothesis that has produced ``eos_id`` keeps its score and length and stays in the beam
  (it competes with the live ones), padded with ``pad_id``; search stops when all ``K`` are finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from qkv.functional.checks import check_positive_int
from qkv.layers.cache import reorder_cache

__all__ = [
    "BeamSearchOutput",
    "GenerationOutput",
    "StepFn",
    "beam_search",
    "filter_logits",
    "greedy",
    "length_penalty",
    "recompute",
    "sample",
]

#: ``step(tokens (B, T), cache) -> (logits (B, T, V), cache)``.
StepFn = Callable[[Tensor, object], tuple[Tensor, object]]


@dataclass(frozen=True)
class GenerationOutput:
    """Greedy or sampled generation.

    Attributes:
        tokens: ``(B, T0 + n)``, the prompt followed by the generated tokens (``pad_id`` after ``eos_id``).
        logits: ``(B, n, V)``, the logits each generated token was chosen from (before temperature and filtering).
        cache: the step's cache after the last step.
    """

    tokens: Tensor
    logits: Tensor
    cache: object | None = None


@dataclass(frozen=True)
class BeamSearchOutput:
    """Beam search, hypotheses best first.

    Attributes:
        tokens: ``(B, K, T0 + n)``.
        scores: ``(B, K)``, :math:`\\log P(Y) / lp(Y)`.
        log_probs: ``(B, K)``, :math:`\\log P(Y)` of the generated tokens (``eos_id`` included).
        lengths: ``(B, K)``, the generated lengths :math:`|Y|` (``eos_id`` included, padding not).
    """

    tokens: Tensor
    scores: Tensor
    log_probs: Tensor
    lengths: Tensor


def recompute(forward: Callable[[Tensor], Tensor]) -> StepFn:
    """A ``step`` that re-runs ``forward(tokens (B, T)) -> logits (B, T, V)`` on the whole prefix (no cache)."""

    def step(tokens: Tensor, prefix: object) -> tuple[Tensor, Tensor]:
        seq = tokens if prefix is None else torch.cat((prefix, tokens), dim=1)  # (B, T_all)
        return forward(seq), seq

    return step


def _check_prompt(prompt: object) -> Tensor:
    if not isinstance(prompt, Tensor) or prompt.dim() != 2 or prompt.dtype.is_floating_point or prompt.shape[1] < 1:
        got = (prompt.dtype, tuple(prompt.shape)) if isinstance(prompt, Tensor) else type(prompt).__name__
        raise ValueError(f"prompt must be an integer tensor (B, T0) with T0 >= 1, got {got}")
    return prompt.long()


def _check_token(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a token id (int >= 0) or None, got {value!r}")
    return value


def _last_logits(logits: object, batch: int) -> Tensor:
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[0] != batch:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"step must return logits (B, T, V) with B = {batch}, got {got}")
    return logits[:, -1]  # (B, V)


def _decode(step: StepFn, prompt: Tensor, choose: Callable[[Tensor], Tensor], max_new_tokens: int,
            eos_id: int | None, pad_id: int | None, cache: object) -> GenerationOutput:
    prompt = _check_prompt(prompt)
    n = check_positive_int("max_new_tokens", max_new_tokens)
    eos, pad = _check_token("eos_id", eos_id), _check_token("pad_id", pad_id)
    pad = eos if pad is None else pad
    B = prompt.shape[0]
    logits, cache = step(prompt, cache)
    last = _last_logits(logits, B)
    finished = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    new_tokens, chosen_from = [], []
    for t in range(n):
        token = choose(last)  # (B,)
        if eos is not None:
            token = torch.where(finished, torch.full_like(token, pad), token)
            finished = finished | (token == eos)
        new_tokens.append(token)
        chosen_from.append(last)
        if t == n - 1 or (eos is not None and bool(finished.all())):
            break
        logits, cache = step(token[:, None], cache)
        last = _last_logits(logits, B)
    tokens = torch.cat((prompt, torch.stack(new_tokens, dim=1)), dim=1)  # (B, T0 + n)
    return GenerationOutput(tokens=tokens, logits=torch.stack(chosen_from, dim=1), cache=cache)  # (B, n, V)


def greedy(
    step: StepFn, prompt: Tensor, *, max_new_tokens: int, eos_id: int | None = None, pad_id: int | None = None,
    cache: object = None,
) -> GenerationOutput:
    """Greedy search: each step appends ``argmax`` of the last logits.

    Args:
        step: ``step(tokens (B, T), cache) -> (logits (B, T, V), cache)``.
        prompt: ``(B, T0)`` token ids.
        max_new_tokens: ``n``, at most this many tokens are generated.
        eos_id: a row that produces it is finished (then padded with ``pad_id``, default ``eos_id``);
            generation stops early when every row is.
        cache: the step's initial cache (``None`` for the step's own default).
    """
    return _decode(step, prompt, lambda last: last.argmax(dim=-1), max_new_tokens, eos_id, pad_id, cache)


def filter_logits(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """``logits (..., V) / temperature`` with ``-inf`` outside the top-k tokens and outside the nucleus.

    The nucleus (Holtzman et al. 2020, eq. 2) is the smallest set of most likely tokens whose probability
    reaches ``top_p``; the most likely token is always kept. With both, top-k applies first and the nucleus
    is taken in the renormalised top-k distribution (Hugging Face's order). Ties at the ``top_k``-th logit
    keep every tied token.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0 (use greedy for 0), got {temperature!r}")
    if top_k is not None:
        check_positive_int("top_k", top_k)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)  # (..., V)
        before = probs.cumsum(dim=-1) - probs  # the mass of the more likely tokens
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(
    step: StepFn,
    prompt: Tensor,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
    cache: object = None,
) -> GenerationOutput:
    """Ancestral sampling from ``softmax(filter_logits(last, temperature, top_k, top_p))``.

    Args: as :func:`greedy`, plus ``temperature``, ``top_k``, ``top_p`` (:func:`filter_logits`) and
    ``generator`` (a ``torch.Generator`` on the logits' device, for reproducible draws).
    """
    filter_logits(torch.zeros(1, 1), temperature=temperature, top_k=top_k, top_p=top_p)  # validate up front

    def choose(last: Tensor) -> Tensor:
        probs = filter_logits(last, temperature=temperature, top_k=top_k, top_p=top_p).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)

    return _decode(step, prompt, choose, max_new_tokens, eos_id, pad_id, cache)


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT's :math:`lp(Y) = ((5 + |Y|) / 6)^{\\alpha}` (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length.to(torch.float32)) / 6.0) ** alpha


def beam_search(
    step: StepFn,
    prompt: Tensor,
    *,
    beam_width: int,
    max_new_tokens: int,
    eos_id: int | None = None,
    pad_id: int | None = None,
    alpha: float = 0.0,
    cache: object = None,
) -> BeamSearchOutput:
    """Beam search ranking hypotheses by :math:`\\log P(Y) / lp(Y)` (GNMT, Wu et al. 2016, §7).

    Args:
        step, prompt, max_new_tokens, eos_id, pad_id, cache: as :func:`greedy` (the prompt is run once,
            then its cache is copied to the ``K`` beams).
        beam_width: ``K``.
        alpha: the length-penalty exponent :math:`\\alpha` (0: plain log-probability; GNMT used 0.2–0.6).

    Returns:
        :class:`BeamSearchOutput`, best first.
    """
    prompt = _check_prompt(prompt)
    K = check_positive_int("beam_width", beam_width)
    n = check_positive_int("max_new_tokens", max_new_tokens)
    eos, pad = _check_token("eos_id", eos_id), _check_token("pad_id", pad_id)
    pad = eos if pad is None else pad
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0 or alpha == float("inf"):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    B, device = prompt.shape[0], prompt.device
    logits, cache = step(prompt, cache)
    last = _last_logits(logits, B)  # (B, V)
    V = last.shape[-1]
    rows = torch.arange(B, device=device).repeat_interleave(K)  # (B·K,): beam k of row b is row b·K + k
    cache = reorder_cache(cache, rows)
    last = last[rows]  # (B·K, V)
    tokens = prompt[rows]  # (B·K, T0)
    log_p = torch.full((B, K), float("-inf"), device=device)
    log_p[:, 0] = 0.0  # one live hypothesis to start with: no duplicates
    lengths = torch.zeros((B, K), dtype=torch.long, device=device)
    finished = torch.zeros((B, K), dtype=torch.bool, device=device)
    if eos is not None:
        frozen = torch.full((V,), float("-inf"), device=device)
        frozen[pad] = 0.0  # a finished hypothesis continues with padding, at no cost
    for t in range(n):
        lp = torch.log_softmax(last.float(), dim=-1).view(B, K, V)  # (B, K, V)
        if eos is not None:
            lp = torch.where(finished[..., None], frozen, lp)
        cand = log_p[..., None] + lp  # (B, K, V)
        cand_len = (lengths + (~finished).long())[..., None].expand(B, K, V)  # (B, K, V)
        score = cand / length_penalty(cand_len, alpha)
        best = score.reshape(B, K * V).topk(K, dim=-1).indices  # (B, K)
        beam, token = best // V, best % V  # (B, K) each
        log_p = cand.reshape(B, K * V).gather(1, best)  # (B, K·V) -> (B, K)
        lengths = cand_len.reshape(B, K * V).gather(1, best)  # (B, K·V) -> (B, K)
        finished = finished.gather(1, beam)
        if eos is not None:
            finished = finished | (token == eos)
        src = (torch.arange(B, device=device)[:, None] * K + beam).reshape(-1)  # (B·K,)
        tokens = torch.cat((tokens[src], token.reshape(-1, 1)), dim=1)  # (B·K, T0 + t + 1)
        if t == n - 1 or bool((finished | log_p.isneginf()).all()):  # (-inf: fewer than K hypotheses exist)
            break
        cache = reorder_cache(cache, src)
        logits, cache = step(token.reshape(-1, 1), cache)  # token (B, K) -> (B·K, 1)
        last = _last_logits(logits, B * K)
    scores = log_p / length_penalty(lengths, alpha)
    order = scores.sort(dim=-1, descending=True).indices  # (B, K): topk is sorted, finished rows may not be
    pick = lambda x: x.gather(1, order)  # noqa: E731
    tokens = tokens.view(B, K, -1).gather(1, order[..., None].expand(B, K, tokens.shape[-1]))  # (B, K, T0 + n)
    return BeamSearchOutput(tokens=tokens, scores=pick(scores), log_probs=pick(log_p), lengths=pick(lengths))
