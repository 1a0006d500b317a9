"""The synthetic span task (answer span text equals the answer, kinds, distractors, seeds), bAbI as spans, tensors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from qkv.tasks.babi import parse_babi
from qkv.tasks.span_qa import KINDS, babi_span_examples, build_vocab, encode, generate


def _gen(n=400, seed=0, **kw):
    return generate(n, generator=torch.Generator().manual_seed(seed), **kw)


def test_every_gold_span_is_the_answer_and_answers_the_question():
    examples = _gen()
    assert len(examples) == 400
    for ex in examples:
        assert ex.span_text == ex.answers[0]
        assert " ".join(ex.context[ex.start:ex.end + 1]) == ex.answers[0]
        q = ex.question
        # the fact holding the span mentions what the question asks about
        dots = [i for i, t in enumerate(ex.context) if t == "."]
        lo = max([-1, *[i for i in dots if i < ex.start]]) + 1
        hi = min(i for i in dots if i > ex.end)
        fact = " ".join(ex.context[lo:hi])
        if ex.kind == "where_object":
            assert fact.startswith(f"the {q[3]} {q[4]} is in the ")
        elif ex.kind == "owner":
            assert fact.endswith(f"owns the {q[3]} {q[4]}")
        elif ex.kind == "owned":
            assert fact.startswith(f"{q[2]} owns the ")
        elif ex.kind == "where_person":
            assert fact.startswith(f"{q[2]} went to the ")
        else:
            assert fact.startswith(f"{q[2]} was born in ")


def test_kinds_distractors_and_multi_token_answers():
    examples = _gen()
    kinds = Counter(ex.kind for ex in examples)
    assert set(kinds) == set(KINDS)
    assert any(ex.end > ex.start for ex in examples)  # multi-token answers
    # same-noun distractors: some where_object question's noun occurs with another colour in its paragraph
    distract = 0
    for ex in examples:
        if ex.kind == "where_object":
            colour, noun = ex.question[3], ex.question[4]
            pairs = {(ex.context[i - 1], ex.context[i]) for i in range(1, len(ex.context)) if ex.context[i] == noun}
            distract += any(c != colour for c, _ in pairs)
    assert distract > 20
    # the answer type appears elsewhere in the paragraph: a trivial "first place" guess is often wrong
    assert sum(len(set(ex.context) & {"kitchen", "garden", "office", "attic", "cellar"}) > 1 for ex in examples) > 50


def test_seeded_and_validated():
    a, b, c = _gen(50, seed=1), _gen(50, seed=1), _gen(50, seed=2)
    assert a == b and a != c
    with pytest.raises(ValueError, match=r"objects must be \(min, max\)"):
        _gen(5, objects=(4, 2))
    with pytest.raises(ValueError, match="count must be an int >= 0, got -1"):
        _gen(-1)


def test_encode_pads_and_keeps_spans():
    examples = _gen(20)
    vocab = build_vocab(examples)
    t = encode(examples, vocab)
    assert t.context.shape[0] == 20 == len(t)
    for i, ex in enumerate(examples):
        ids = t.context[i, t.start[i]:t.end[i] + 1].tolist()
        assert vocab.decode(ids) == list(ex.context[ex.start:ex.end + 1])
        assert int((t.context[i] != 0).sum()) == len(ex.context)
    short = encode(examples, vocab, max_context=30)
    assert short.context.shape[1] <= 30 and all(ex.end < 30 for ex in short.examples)


STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Mary travelled to the office.
6 Where is Mary? \toffice\t5
7 Is John in the hallway? \tyes\t2
"""


def test_babi_questions_become_spans(tmp_path: Path):
    path = tmp_path / "qa1_single-supporting-fact_train.txt"
    path.write_text(STORY)
    examples, skipped = babi_span_examples(parse_babi(path, task=1))
    assert skipped == 1  # 'yes' is not a word of the story
    assert [ex.span_text for ex in examples] == ["bathroom", "office"]
    assert examples[1].context[examples[1].start] == "office" and examples[1].start == 23
    assert examples[0].question == ("where", "is", "mary", "?")


@pytest.mark.skipif(not Path("/work/shared/data/babi-en-1k").is_dir(), reason="no local bAbI copy")
def test_real_babi_task1_all_questions_are_spans():
    d = Path("/work/shared/data/babi-en-1k")
    path = next(d.glob("qa1_*_train.txt"))
    examples, skipped = babi_span_examples(parse_babi(path, task=1))
    assert skipped == 0 and len(examples) == 1000
    assert all(ex.span_text == ex.answers[0] for ex in examples)
