"""A seeded probabilistic grammar of short English sentences whose words can be predicted from context.

Shape legend: none (sentences are lists of word tokens).

The default corpus of the ``masked-lm`` experiment: small enough to train on a CPU in seconds, yet
with structure a masked-token model must learn from context (Devlin et al. 2019 §3.1 motivate the
masked-LM objective by bidirectional context). A sentence is drawn from one of six templates; what makes a
masked word predictable:

* **number agreement** — the determiner (``a``/``one``/``this`` vs ``two``/``some``/``these``), the noun's
  form and the verb's form agree (``the dog barks``, ``two dogs bark``);
* **selection** — each animal has its own sound (``dog -> barks``), home (``cow -> barn``), prey
  (``cat -> mouse``), and each fruit its colour (``banana -> yellow``);
* **long-range agreement** across a relative clause: ``the dog that the cats see barks .``.

Some slots are free (sizes, times of day, which animal or fruit), so not everything is predictable: the
best achievable masked-token accuracy is well below 1 and well above predicting the commonest word.
:func:`make_sentences` draws sentences with a ``torch.Generator``; :data:`ANIMALS` and :data:`FRUITS`
are the lexicon (:func:`check_sentence` verifies a sentence against it — the reference the tests use).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qkv.functional.checks import check_positive_int

__all__ = ["ANIMALS", "FRUITS", "TEMPLATES", "check_sentence", "make_sentences"]

#: animal -> (plural, sound (3rd person singular), sound (plural), home, prey)
ANIMALS: dict[str, tuple[str, str, str, str, str]] = {
    "dog": ("dogs", "barks", "bark", "kennel", "cat"),
    "cat": ("cats", "meows", "meow", "house", "mouse"),
    "cow": ("cows", "moos", "moo", "barn", "grass"),
    "bird": ("birds", "sings", "sing", "nest", "worm"),
    "duck": ("ducks", "quacks", "quack", "pond", "fish"),
    "horse": ("horses", "neighs", "neigh", "stable", "hay"),
    "bee": ("bees", "buzzes", "buzz", "hive", "flower"),
    "lion": ("lions", "roars", "roar", "den", "zebra"),
}
#: fruit -> (plural, colour)
FRUITS: dict[str, tuple[str, str]] = {
    "banana": ("bananas", "yellow"), "apple": ("apples", "red"), "grape": ("grapes", "purple"),
    "lime": ("limes", "green"), "orange": ("oranges", "orange"), "plum": ("plums", "blue"),
}
SINGULAR_DET = ("a", "one", "this", "the")
PLURAL_DET = ("two", "some", "these", "the")
SIZES = ("big", "small", "old", "young", "happy", "tired")
TIMES = ("in the morning", "at night", "every day", "after lunch")
#: the templates, in the order of their weights in :func:`make_sentences`
TEMPLATES = ("sound", "sized-sound", "home", "prey", "fruit", "relative")


def _pick(options: Sequence[str], gen: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=gen))]


def _noun_phrase(animal: str, plural: bool, gen: torch.Generator) -> list[str]:
    det = _pick(PLURAL_DET if plural else SINGULAR_DET, gen)
    return [det, ANIMALS[animal][0] if plural else animal]


def _sound(animal: str, plural: bool) -> str:
    return ANIMALS[animal][2] if plural else ANIMALS[animal][1]


def _sentence(gen: torch.Generator) -> list[str]:
    template = _pick(TEMPLATES, gen)
    animal = _pick(tuple(ANIMALS), gen)
    plural = bool(torch.randint(2, (1,), generator=gen))
    verb = {"home": ("sleep", "sleeps"), "prey": ("chase", "chases"), "fruit": ("eat", "eats")}
    np_ = _noun_phrase(animal, plural, gen)
    if template == "sound":
        words = [*np_, _sound(animal, plural), *_pick(TIMES, gen).split()]
    elif template == "sized-sound":
        words = [np_[0], _pick(SIZES, gen), np_[1], _sound(animal, plural)]
    elif template == "home":
        words = [*np_, verb["home"][not plural], "in", "the", ANIMALS[animal][3]]
    elif template == "prey":
        words = [*np_, verb["prey"][not plural], "the", ANIMALS[animal][4]]
    elif template == "fruit":
        fruit = _pick(tuple(FRUITS), gen)
        many = bool(torch.randint(2, (1,), generator=gen))
        colour = FRUITS[fruit][1]
        obj = ([_pick(PLURAL_DET[:3], gen), colour, FRUITS[fruit][0]] if many
               else ["an" if colour[0] in "aeiou" else "a", colour, fruit])
        words = [*np_, verb["fruit"][not plural], *obj]
    else:  # relative: the head noun's verb comes after a clause with another subject
        other = _pick(tuple(a for a in ANIMALS if a != animal), gen)
        other_plural = bool(torch.randint(2, (1,), generator=gen))
        words = [*np_, "that", *_noun_phrase(other, other_plural, gen), "see" if other_plural else "sees",
                 _sound(animal, plural)]
    return [*words, "."]


def make_sentences(count: int, *, generator: torch.Generator) -> list[list[str]]:
    """``count`` sentences (word lists ending in ``"."``), every draw from ``generator``."""
    check_positive_int("count", count)
    return [_sentence(generator) for _ in range(count)]


def _subject(det: str, noun: str) -> tuple[str, bool] | None:
    """``(animal, plural)`` when ``det noun`` is a noun phrase whose determiner agrees, else None."""
    for animal, forms in ANIMALS.items():
        if noun in (animal, forms[0]):
            plural = noun != animal
            return (animal, plural) if det in (PLURAL_DET if plural else SINGULAR_DET) else None
    return None


def check_sentence(words: Sequence[str]) -> bool:
    """Whether ``words`` obeys the grammar's agreement and selection rules (the tests' reference).

    Checks what makes words predictable: the subject's determiner, noun form and verb form agree in
    number, and the sound, home, prey and fruit colour belong to the animal or fruit named.
    """
    words = list(words)
    if len(words) < 4 or words[-1] != ".":
        return False
    sized = words[1] in SIZES
    subject = _subject(words[0], words[2] if sized else words[1])
    if subject is None:
        return False
    animal, plural = subject
    rest = words[3:-1] if sized else words[2:-1]
    sound = _sound(animal, plural)
    if sized:
        return rest == [sound]
    if rest[0] == sound:
        return len(rest) == 1 or " ".join(rest[1:]) in TIMES
    if rest[0] == "that":  # that DET NOUN see(s) SOUND
        inner = _subject(*rest[1:3]) if len(rest) == 5 else None
        return inner is not None and rest[3] == ("see" if inner[1] else "sees") and rest[4] == sound
    singular_verb = {"sleep": "sleeps", "chase": "chases", "eat": "eats"}
    verb = rest[0] if plural else next((v for v, s in singular_verb.items() if s == rest[0]), None)
    if verb not in singular_verb:
        return False
    if verb == "sleep":
        return rest[1:] == ["in", "the", ANIMALS[animal][3]]
    if verb == "chase":
        return rest[1:] == ["the", ANIMALS[animal][4]]
    fruit = next((f for f, (p, _) in FRUITS.items() if rest[-1] in (f, p)), None)
    return fruit is not None and len(rest) == 4 and rest[2] == FRUITS[fruit][1]
