"""BERT's masked-token objective: choose tokens to predict and corrupt them with the 80/10/10 rule.

Shape legend: ``B`` batch, ``L`` (padded) sequence length, ``V`` vocabulary size.

Devlin et al. 2019, §3.1 "Task #1: Masked LM" (seed 003): 15% of the token positions are chosen at
random; a chosen token is replaced by ``[MASK]`` 80% of the time, by a random token 10% of the time,
and left unchanged 10% of the time; the model predicts the original token at the chosen positions
only (cross-entropy with ``ignore_index = -100`` everywhere else). As in Hugging Face's
``DataCollatorForLanguageModeling``, every eligible position is chosen independently with
probability ``select_prob`` (the original script instead picks ``round(0.15 L)`` positions per
sequence); special tokens and padding are never chosen. Random replacements are drawn uniformly from
the non-special ids (``random_ids``), so a replacement never creates ``[PAD]``, ``[CLS]`` or ``[MASK]``
(Hugging Face draws from the whole vocabulary).

:func:`mask_tokens` works on any ``(B, L)`` batch of token ids; :class:`MaskedLMCollator` pads a list
of sequences and masks them, for a ``DataLoader``'s ``collate_fn``. All randomness comes from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "MaskedLMCollator", "MaskedTokens", "mask_tokens"]

#: The label of positions that are not predicted (``torch.nn.functional.cross_entropy``'s default ``ignore_index``).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class MaskedTokens:
    """A masked batch.

    Attributes:
        inputs: ``(B, L)`` the corrupted ids the model reads.
        labels: ``(B, L)`` the original id at chosen positions, :data:`IGNORE_INDEX` elsewhere.
        selected: ``(B, L)`` bool, the chosen positions (``labels != IGNORE_INDEX``).
        keep: ``(B, L)`` bool, True = a real token, False = padding (``qkv.masks.key_padding(keep)``).
    """

    inputs: Tensor
    labels: Tensor
    selected: Tensor
    keep: Tensor


def _check_prob(name: str, p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"mask_tokens: {name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_id(name: str, i: object, vocab_size: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size:
        raise ValueError(f"mask_tokens: {name} must be a token id in [0, vocab_size={vocab_size}), got {i!r}")
    return i


def mask_tokens(
    tokens: Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int] = (),
    pad_id: int | None = None,
    keep: Tensor | None = None,
    select_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
    random_ids: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """Apply BERT's masked-LM corruption (Devlin et al. 2019, §3.1 and Appendix A.1) to ``tokens``.

    Args:
        tokens: ``(B, L)`` integer token ids in ``[0, vocab_size)``.
        vocab_size: ``V``.
        mask_id: the ``[MASK]`` id.
        special_ids: ids never chosen and never drawn as a random replacement (``[CLS]``, ``[SEP]``, ...);
            ``mask_id`` and ``pad_id`` are added to them.
        pad_id: the padding id; positions holding it are padding (never chosen).
        keep: ``(B, L)`` bool, True = a real token; positions with False are padding. Combined with
            ``pad_id`` when both are given; without either, every position is real.
        select_prob: probability that an eligible position is chosen (0.15).
        mask_frac, random_frac: of the chosen positions, the fractions replaced by ``[MASK]`` (0.8) and by a
            random token (0.1); the remaining ``1 - mask_frac - random_frac`` keep their token (0.1).
        random_ids: ``(R,)`` the ids a random replacement is drawn from, uniformly (default: every id in
            ``[0, V)`` that is not special).
        generator: the source of every random draw (a CPU ``torch.Generator``); results go to ``tokens.device``.

    Returns:
        :class:`MaskedTokens` ``(inputs, labels, selected, keep)``.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point or (
        tokens.dtype == torch.bool or tokens.is_complex()
    ):
        got = (tokens.dtype, tuple(tokens.shape)) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"mask_tokens: tokens must be a (B, L) integer tensor, got {got}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"mask_tokens: vocab_size must be an int >= 2, got {vocab_size!r}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"mask_tokens: tokens must lie in [0, vocab_size={vocab_size}), "
                         f"got ids in [{int(tokens.min())}, {int(tokens.max())}]")
    select_prob = _check_prob("select_prob", select_prob)
    mask_frac, random_frac = _check_prob("mask_frac", mask_frac), _check_prob("random_frac", random_frac)
    if mask_frac + random_frac > 1.0 + 1e-12:
        raise ValueError(f"mask_tokens: mask_frac + random_frac must be <= 1, got {mask_frac} + {random_frac}")
    specials = {_check_id("mask_id", mask_id, vocab_size)}
    specials |= {_check_id("special_ids", int(i) if not isinstance(i, bool) else i, vocab_size) for i in special_ids}
    if pad_id is not None:
        specials.add(_check_id("pad_id", pad_id, vocab_size))
    device = tokens.device
    real = torch.ones(tokens.shape, dtype=torch.bool, device=device)  # (B, L)
    if keep is not None:
        if not isinstance(keep, Tensor) or keep.dtype != torch.bool or keep.shape != tokens.shape:
            got = (keep.dtype, tuple(keep.shape)) if isinstance(keep, Tensor) else type(keep).__name__
            raise ValueError(f"mask_tokens: keep must be a bool tensor of the tokens' shape {tuple(tokens.shape)}, "
                             f"got {got}")
        real = keep.to(device)
    if pad_id is not None:
        real = real & (tokens != pad_id)
    special_t = torch.tensor(sorted(specials), dtype=tokens.dtype, device=device)
    eligible = real & ~torch.isin(tokens, special_t)  # (B, L)
    if random_ids is None:
        is_special = torch.zeros(vocab_size, dtype=torch.bool)
        is_special[sorted(specials)] = True
        random_ids = torch.arange(vocab_size)[~is_special]  # (R,)
    elif not isinstance(random_ids, Tensor) or random_ids.dim() != 1 or random_ids.dtype.is_floating_point:
        got = (random_ids.dtype, tuple(random_ids.shape)) if isinstance(random_ids, Tensor) else type(random_ids)
        raise ValueError(f"mask_tokens: random_ids must be a 1-D integer tensor, got {got}")
    if random_frac > 0 and random_ids.numel() == 0:
        raise ValueError("mask_tokens: random_ids is empty (every id is special), but random_frac > 0")

    # three draws of the tokens' shape, on the generator's device (CPU), in a fixed order
    u_select = torch.rand(tokens.shape, generator=generator)  # (B, L)
    u_action = torch.rand(tokens.shape, generator=generator)  # (B, L)
    pick = torch.randint(0, max(1, random_ids.numel()), tokens.shape, generator=generator)  # (B, L)
    selected = eligible & (u_select.to(device) < select_prob)
    u_action = u_action.to(device)
    to_mask = selected & (u_action < mask_frac)
    to_random = selected & (u_action >= mask_frac) & (u_action < mask_frac + random_frac)
    inputs = torch.where(to_mask, torch.full_like(tokens, mask_id), tokens)
    if random_ids.numel():
        replacement = random_ids.to(device=device, dtype=tokens.dtype)[pick.to(device)]  # (B, L)
        inputs = torch.where(to_random, replacement, inputs)
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return MaskedTokens(inputs=inputs, labels=labels, selected=selected, keep=real)


class MaskedLMCollator:
    """A ``collate_fn``: right-pads a list of 1-D token sequences with ``pad_id`` and applies :func:`mask_tokens`.

    Args:
        pad_id, vocab_size, mask_id, special_ids, select_prob, mask_frac, random_frac, random_ids: as in
            :func:`mask_tokens`.
        max_length: truncate longer sequences to this many tokens (default: no truncation).
        generator: the collator's own generator (a fresh one seeded with ``seed`` when omitted), so a
            data loader's masks are reproducible.
    """

    def __init__(
        self, *, pad_id: int, vocab_size: int, mask_id: int, special_ids: Iterable[int] = (),
        select_prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
        random_ids: Tensor | None = None, max_length: int | None = None, generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise ValueError(f"MaskedLMCollator: max_length must be None or a positive int, got {max_length!r}")
        self.pad_id, self.max_length = pad_id, max_length
        self.options = {
            "vocab_size": vocab_size, "mask_id": mask_id, "special_ids": tuple(special_ids), "pad_id": pad_id,
            "select_prob": select_prob, "mask_frac": mask_frac, "random_frac": random_frac, "random_ids": random_ids,
        }
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        # validate once, on a one-token batch, so a bad option fails here rather than inside a DataLoader
        mask_tokens(torch.full((1, 1), pad_id, dtype=torch.long), generator=torch.Generator(), **self.options)

    def pad(self, sequences: Sequence[Sequence[int] | Tensor]) -> tuple[Tensor, Tensor]:
        """Right-pad to ``(B, L)`` with ``pad_id``; also return ``keep`` ``(B, L)`` (True = a real token)."""
        if not sequences:
            raise ValueError("MaskedLMCollator: the batch is empty")
        seqs = [torch.as_tensor(s, dtype=torch.long).flatten()[: self.max_length] for s in sequences]
        lengths = torch.tensor([len(s) for s in seqs])  # (B,)
        out = torch.full((len(seqs), max(1, int(lengths.max()))), self.pad_id, dtype=torch.long)  # (B, L)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        keep = torch.arange(out.shape[1])[None, :] < lengths[:, None]  # (B, L)
        return out, keep

    def __call__(self, sequences: Sequence[Sequence[int] | Tensor]) -> MaskedTokens:
        tokens, keep = self.pad(sequences)
        return mask_tokens(tokens, keep=keep, generator=self.generator, **self.options)
