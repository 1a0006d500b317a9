"""Span-extraction reading comprehension data: a seeded synthetic task, bAbI stories as span questions, tensors.

Shape legend: ``N`` examples, ``n`` context tokens (padded), ``m`` question tokens (padded).

Every example is a :class:`SpanExample`: a tokenised context (paragraph), a tokenised question, and the gold
answer as the inclusive token span ``context[start : end + 1]`` plus the gold answer strings (for SQuAD's
EM/F1, :mod:`qkv.tasks.squad_eval`).

**The synthetic task** (:func:`generate`): paragraphs of shuffled facts about coloured objects, people,
places and cities, e.g. ``the red box is in the kitchen . mary owns the green lamp . john went to the
living room . sandra was born in new york .``, and questions of five kinds whose answer is a contiguous span
of the paragraph:

====================  ==========================================  =======================
kind                  question                                    answer (span)
====================  ==========================================  =======================
``where_object``      ``where is the red box ?``                  ``kitchen`` / ``living room``
``owner``             ``who owns the green lamp ?``               ``mary``
``owned``             ``what does mary own ?``                    ``green lamp``
``where_person``      ``where did john go ?``                     ``living room``
``birthplace``        ``where was sandra born ?``                 ``new york``
====================  ==========================================  =======================

Distractors: several objects share a noun (``the red box``, ``the blue box``) and are in different places,
places and cities repeat across facts, people appear in several facts, and each answer kind has several
candidate spans of its type in the paragraph; answers are one or two tokens. The gold span is the answer's
occurrence in the fact that answers the question.

**bAbI as span questions** (:func:`babi_span_examples`): a question's context is its story's statements
before it; when the answer is a word of a supporting statement, its (last) occurrence there is the span
(e.g. task 1, "where is mary?" -> the location word of the last fact about Mary); other questions (yes/no,
counts, lists) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from qkv.tasks.babi import Story
from qkv.tasks.vocab import Vocab, word_tokenize

__all__ = [
    "KINDS",
    "SpanExample",
    "SpanTensors",
    "babi_span_examples",
    "build_vocab",
    "encode",
    "generate",
]

COLORS = ("red", "blue", "green", "yellow", "white", "black", "purple", "orange")
OBJECTS = ("box", "lamp", "ball", "book", "cup", "key", "hat", "chair")
PEOPLE = ("mary", "john", "sandra", "daniel", "fred", "bill", "julie", "emma", "lucas", "nina")
PLACES = ("kitchen", "garden", "office", "bedroom", "hallway", "bathroom", "living room", "dining room",
          "cellar", "attic")
CITIES = ("paris", "rome", "tokyo", "berlin", "new york", "san francisco", "buenos aires", "cairo", "oslo")
#: The question kinds of :func:`generate`.
KINDS = ("where_object", "owner", "owned", "where_person", "birthplace")


@dataclass(frozen=True)
class SpanExample:
    """One question over one context.

    Attributes:
        context: the paragraph's tokens.
        question: the question's tokens.
        start, end: the gold answer span, ``context[start : end + 1]`` (inclusive).
        answers: the gold answer strings (EM/F1 take the best over them).
        kind: the question kind (:data:`KINDS`, ``"babi{t}"`` or ``"squad"``).
        context_text: the context as text (for SQuAD, the original paragraph; else the joined tokens).
        offsets: each context token's ``(start, end)`` character offsets in ``context_text`` (empty if unknown).
    """

    context: tuple[str, ...]
    question: tuple[str, ...]
    start: int
    end: int
    answers: tuple[str, ...]
    kind: str
    context_text: str = ""
    offsets: tuple[tuple[int, int], ...] = ()

    @property
    def span_text(self) -> str:
        """The gold span as text (:meth:`text_of` the gold start and end)."""
        return self.text_of(self.start, self.end)

    def text_of(self, start: int, end: int) -> str:
        """The text of the inclusive token span: the original characters when ``offsets`` are known, else the
        tokens joined by spaces."""
        if not 0 <= start <= end < len(self.context):
            raise ValueError(f"span ({start}, {end}) is not inside the context's {len(self.context)} tokens")
        if self.offsets:
            return self.context_text[self.offsets[start][0]:self.offsets[end][1]]
        return " ".join(self.context[start:end + 1])


def _pick(seq: Sequence[str], k: int, g: torch.Generator) -> list[str]:
    return [seq[i] for i in torch.randperm(len(seq), generator=g)[:k].tolist()]


def _paragraph(g: torch.Generator, *, objects: int, people: int) -> tuple[list[list[str]], list[tuple]]:
    """Facts as token lists, and for each fact the questions it answers: ``(kind, question, answer_tokens)``."""
    nouns = _pick(OBJECTS, max(1, (objects + 1) // 2), g)  # few nouns: same-noun distractors
    things: list[tuple[str, str]] = []
    while len(things) < objects:
        c, o = _pick(COLORS, 1, g)[0], nouns[int(torch.randint(len(nouns), (), generator=g))]
        if (c, o) not in things:
            things.append((c, o))
    who = _pick(PEOPLE, people, g)
    facts: list[tuple[list[str], list[tuple[str, list[str], list[str]]]]] = []
    for c, o in things:
        place = PLACES[int(torch.randint(len(PLACES), (), generator=g))].split()
        facts.append((["the", c, o, "is", "in", "the", *place, "."],
                      [("where_object", ["where", "is", "the", c, o, "?"], place)]))
    owned = torch.randperm(len(things), generator=g)[:len(who)].tolist()
    for person, i in zip(who, owned, strict=False):
        c, o = things[i]
        facts.append(([person, "owns", "the", c, o, "."],
                      [("owner", ["who", "owns", "the", c, o, "?"], [person]),
                       ("owned", ["what", "does", person, "own", "?"], [c, o])]))
    for person in who:
        r = float(torch.rand((), generator=g))
        if r < 0.5:
            place = PLACES[int(torch.randint(len(PLACES), (), generator=g))].split()
            facts.append(([person, "went", "to", "the", *place, "."],
                          [("where_person", ["where", "did", person, "go", "?"], place)]))
        else:
            city = CITIES[int(torch.randint(len(CITIES), (), generator=g))].split()
            facts.append(([person, "was", "born", "in", *city, "."],
                          [("birthplace", ["where", "was", person, "born", "?"], city)]))
    order = torch.randperm(len(facts), generator=g).tolist()
    facts = [facts[i] for i in order]
    return [f for f, _ in facts], [qs for _, qs in facts]


def generate(count: int, *, generator: torch.Generator, objects: tuple[int, int] = (3, 5),
             people: tuple[int, int] = (2, 4), questions_per_paragraph: int = 4) -> list[SpanExample]:
    """``count`` synthetic span questions (``questions_per_paragraph`` per generated paragraph).

    Args:
        count: examples to generate.
        generator: the seeded generator (the only source of randomness).
        objects: ``(min, max)`` coloured objects per paragraph.
        people: ``(min, max)`` people per paragraph (each owns a distinct object while there are objects left,
            and went somewhere or was born somewhere).
        questions_per_paragraph: questions asked about each paragraph (distinct facts).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    for name, (lo, hi) in (("objects", objects), ("people", people)):
        if not 1 <= lo <= hi:
            raise ValueError(f"{name} must be (min, max) with 1 <= min <= max, got {(lo, hi)!r}")
    if people[1] > len(PEOPLE) or objects[1] > len(COLORS) * len(OBJECTS) // 2:
        raise ValueError(f"people's max must be <= {len(PEOPLE)} and objects' max <= "
                         f"{len(COLORS) * len(OBJECTS) // 2}, got people {people!r}, objects {objects!r}")
    if questions_per_paragraph < 1:
        raise ValueError(f"questions_per_paragraph must be >= 1, got {questions_per_paragraph!r}")
    out: list[SpanExample] = []
    while len(out) < count:
        k = int(torch.randint(objects[0], objects[1] + 1, (), generator=generator))
        p = int(torch.randint(people[0], people[1] + 1, (), generator=generator))
        facts, questions = _paragraph(generator, objects=k, people=p)
        context: list[str] = []
        asks = []
        for fact, qs in zip(facts, questions, strict=True):
            for kind, q, ans in qs:
                # the answer's position inside its fact: its last occurrence (the fact ends with it or with '.')
                pos = max(i for i in range(len(fact) - len(ans) + 1) if fact[i:i + len(ans)] == ans)
                asks.append((kind, q, len(context) + pos, len(context) + pos + len(ans) - 1, " ".join(ans)))
            context.extend(fact)
        for i in torch.randperm(len(asks), generator=generator)[:questions_per_paragraph].tolist():
            kind, q, s, e, ans = asks[i]
            out.append(SpanExample(tuple(context), tuple(q), s, e, (ans,), kind, " ".join(context)))
            if len(out) == count:
                break
    return out


def babi_span_examples(stories: Iterable[Story]) -> tuple[list[SpanExample], int]:
    """bAbI questions whose answer is a word of a supporting statement, as span examples; also the skip count.

    The context is the statements before the question, tokenised with :func:`qkv.tasks.vocab.word_tokenize`
    (lower-cased words and punctuation); the span is the answer's last occurrence in the last supporting
    statement that contains it.
    """
    out, skipped = [], 0
    for story in stories:
        for q in story.questions:
            tokens: list[str] = []
            starts = []
            for text in story.statements[:q.context]:
                starts.append(len(tokens))
                tokens.extend(word_tokenize(text))
            span = None
            for i in sorted(q.supporting, reverse=True):
                sent = word_tokenize(story.statements[i])
                hits = [j for j, t in enumerate(sent) if t == q.answer]
                if hits:
                    span = starts[i] + hits[-1]
                    break
            if span is None:
                skipped += 1
                continue
            out.append(SpanExample(tuple(tokens), tuple(word_tokenize(q.text)), span, span, (q.answer,),
                                   f"babi{story.task}", " ".join(tokens)))
    return out, skipped


def build_vocab(examples: Iterable[SpanExample]) -> Vocab:
    """A :class:`~qkv.tasks.vocab.Vocab` (id 0 = padding) over the contexts and questions."""
    return Vocab.build(seq for ex in examples for seq in (ex.context, ex.question))


@dataclass
class SpanTensors:
    """Examples as padded id tensors: ``context (N, n)``, ``question (N, m)`` (0 = padding), ``start``/``end`` ``(N,)``.
    """

    context: torch.Tensor
    question: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    examples: list[SpanExample]

    def __len__(self) -> int:
        return len(self.examples)


def encode(examples: Sequence[SpanExample], vocab: Vocab, *, max_context: int | None = None) -> SpanTensors:
    """Pad the examples into :class:`SpanTensors`; examples whose span ends past ``max_context`` are dropped.

    Contexts longer than ``max_context`` are truncated to it.
    """
    if not examples:
        raise ValueError("encode: examples is empty")
    kept = [ex for ex in examples if max_context is None or ex.end < max_context]
    if not kept:
        raise ValueError(f"encode: no example's answer ends before max_context={max_context}")
    ctx, _ = vocab.pad_batch([vocab.encode(ex.context[:max_context], eos=False) for ex in kept])  # (N, n)
    qst, _ = vocab.pad_batch([vocab.encode(ex.question, eos=False) for ex in kept])  # (N, m)
    start = torch.tensor([ex.start for ex in kept], dtype=torch.long)
    end = torch.tensor([ex.end for ex in kept], dtype=torch.long)
    return SpanTensors(ctx, qst, start, end, list(kept))
