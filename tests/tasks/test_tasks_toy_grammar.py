"""The masked-LM corpus grammar: generated sentences obey its agreement and selection rules."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks.toy_grammar import ANIMALS, FRUITS, check_sentence, make_sentences


def test_generated_sentences_obey_the_rules_and_are_seeded():
    sentences = make_sentences(2000, generator=torch.Generator().manual_seed(0))
    assert all(check_sentence(s) for s in sentences)
    assert sentences[:20] == make_sentences(20, generator=torch.Generator().manual_seed(0))
    templates = {("that" in s, s[2] in ("sleep", "sleeps"), s[-2] in {f for f in FRUITS} | {p for p, _ in
                                                                                          FRUITS.values()})
                 for s in sentences}
    assert len(templates) >= 3
    assert len({tuple(s) for s in sentences}) > 1000  # enough variety for held-out sentences


@pytest.mark.parametrize("text", [
    "the dog bark .", "two dog barks .", "a dogs bark .", "the dog meows .", "the cow sleeps in the nest .",
    "the cats chases the mouse .", "a cat eats a yellow apple .", "the dog that the cat see barks .",
    "the dog that two cats see meows .",
])
def test_broken_agreement_or_selection_is_rejected(text):
    assert not check_sentence(text.split())


@pytest.mark.parametrize("text", [
    "the dog barks .", "two dogs bark at night .", "the cow sleeps in the barn .", "some cats chase the mouse .",
    "a cat eats a yellow banana .", "the dog that two cats see barks .", "the old lion roars .",
])
def test_correct_sentences_are_accepted(text):
    assert check_sentence(text.split())
    assert "dog" in ANIMALS
