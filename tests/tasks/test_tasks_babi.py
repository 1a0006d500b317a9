"""The bAbI loader on generated files of the official format: stories, supporting facts, errors, splits, layouts."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

from qkv.tasks import babi
from qkv.tasks.babi_synthetic import generate_story, story_lines, write_task

OFFICIAL = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 John picked up the apple.
2 John went to the office.
3 Where is the apple? \toffice\t1 2
"""


def _write(tmp_path, text, name="qa1_single-supporting-fact_train.txt"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def test_parser_reads_stories_questions_and_supporting_facts(tmp_path):
    stories = babi.parse_babi(_write(tmp_path, OFFICIAL), task=1)
    assert len(stories) == 2 and stories[0].task == 1
    s0, s1 = stories
    assert s0.statements == ("Mary moved to the bathroom.", "John went to the hallway.",
                             "Daniel went back to the hallway.")
    q = s0.questions[1]
    assert (q.text, q.answer, q.context, q.supporting, q.line) == ("Where is Daniel?", "hallway", 3, (2,), 5)
    assert s1.questions[0].supporting == (0, 1) and s1.questions[0].context == 2
    assert babi.tokenize("Where is Mary?") == ("where", "is", "mary")


@pytest.mark.parametrize("task", [1, 2, 6])
def test_generated_files_parse_and_their_supporting_facts_hold(tmp_path, task):
    train, test = write_task(tmp_path, task, train_stories=30, test_stories=5, seed=3)
    assert train.name == f"qa{task}_{babi.TASK_NAMES[task]}_train.txt" and test is not None
    stories, test_stories = babi.load_task(tmp_path, task)
    assert len(stories) == 30 and len(test_stories) == 5
    assert sum(len(s.questions) for s in stories) == 150
    for story in stories:
        for q in story.questions:
            facts = [story.statements[i] for i in q.supporting]
            assert all(i < q.context for i in q.supporting)
            if task == 1:  # "Where is X?": the supporting fact is X's last move, to the answer
                person = q.text.split()[-1].rstrip("?")
                assert facts[0].startswith(person) and facts[0].endswith(f"{q.answer}.")
                later = [s for s in story.statements[q.supporting[0] + 1: q.context] if s.startswith(person)]
                assert not later
            elif task == 6:
                person, room = q.text.split()[1], q.text.split()[-1].rstrip("?")
                assert facts[0].startswith(person)
                assert q.answer == ("yes" if facts[0].endswith(f"{room}.") else "no")
            else:  # the object's holder (or dropper) and that person's move
                obj = q.text.split()[-1].rstrip("?")
                assert len(facts) == 2 and any(obj in f for f in facts)
                assert any(f.endswith(f"{q.answer}.") for f in facts)


def test_story_lines_restart_ids_and_tab_separate_questions():
    lines = story_lines(generate_story(1, questions=2, generator=torch.Generator().manual_seed(0)))
    assert [int(line.split()[0]) for line in lines] == list(range(1, 7))
    assert lines[2].count("\t") == 2 and "?" in lines[2]


@pytest.mark.parametrize("text, why", [
    ("Mary moved to the bathroom.\n", "no line id"),
    ("1 Mary moved.\n3 John moved.\n", "line id 3 does not follow 1"),
    ("1 Mary moved.\n2 Where is Mary?\n", "question without"),
    ("1 Mary moved.\n2 Where is Mary?\tbathroom\n", "question<TAB>answer"),
    ("1 Mary moved.\n2 Where is Mary?\tbathroom\t7\n", "not earlier statements"),
    ("1 Mary moved.\n2 Where is Mary?\tbathroom\tone\n", "integers"),
])
def test_corrupted_file_names_the_file_and_line(tmp_path, text, why):
    path = _write(tmp_path, text)
    with pytest.raises(babi.BabiFormatError, match=why) as info:
        babi.parse_babi(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_foreign_files_are_refused(tmp_path):
    with pytest.raises(babi.BabiFormatError, match="not text"):
        babi.parse_babi(_write(tmp_path, b"\x89PNG\r\n\x1a\n\xff\xfe\x00"))
    with pytest.raises(babi.BabiFormatError, match="empty"):
        babi.parse_babi(_write(tmp_path, "\n \n"))
    with pytest.raises(babi.BabiFormatError, match="no question"):
        babi.parse_babi(_write(tmp_path, "1 Mary moved to the bathroom.\n"))
    with pytest.raises(babi.BabiFormatError, match="line 1"):
        babi.parse_babi(_write(tmp_path, "English\tFrench\tCC-BY 2.0\n"))  # a Tatoeba line


def test_split_holds_out_ten_percent_of_the_stories(tmp_path):
    write_task(tmp_path, 1, train_stories=200, test_stories=0)
    stories, test = babi.load_task(tmp_path, 1)
    assert test is None
    train, val = babi.split_stories(stories, 0.1, generator=torch.Generator().manual_seed(0))
    assert len(val) == 20 and len(train) == 180
    assert {id(s) for s in train}.isdisjoint(id(s) for s in val)
    again = babi.split_stories(stories, 0.1, generator=torch.Generator().manual_seed(0))[1]
    assert [s.line for s in again] == [s.line for s in val]
    with pytest.raises(ValueError, match="fraction"):
        babi.split_stories(stories, 1.5)


def test_encode_keeps_the_last_memory_size_statements_and_shifts_supports(tmp_path):
    stories = babi.parse_babi(_write(tmp_path, OFFICIAL), task=1)
    vocab = babi.BabiVocab.build(stories)
    items = babi.questions_of(stories)
    t = babi.encode(items, vocab, memory_size=2)
    assert t.story.shape == (3, 2, 6) and t.query.shape == (3, 4)  # "daniel went back to the hallway"
    # question 2 ("Where is Daniel?") sees statements 1-2 of its 3; the support (statement 2) is slot 1
    assert t.offset.tolist() == [0, 1, 0] and t.support[1].tolist() == [False, True]
    assert t.memory_mask.all()
    wide = babi.encode(items, vocab, memory_size=3)
    assert wide.memory_mask.tolist() == [[True, True, False], [True, True, True], [True, True, False]]
    assert wide.support[1].tolist() == [False, False, True] and not wide.story[0, 2].any()
    assert [vocab.itos[i] for i in t.story[1, 1] if i] == ["daniel", "went", "back", "to", "the", "hallway"]
    assert vocab.itos[int(t.answer[2])] == "office"
    assert t.support[2].tolist() == [True, True]
    assert vocab.ids(["zebra"]) == [1]  # unknown words


def test_layouts_archive_and_data_dir_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    official = tmp_path / "copy" / "tasks_1-20_v1-2" / "en"
    official.mkdir(parents=True)
    write_task(official, 1, train_stories=3, test_stories=0)
    assert babi.find_babi_dir(tmp_path / "copy") == official
    assert babi.task_files(official, 1)[1] is None
    # the archive: only its en/ task files are extracted, into the cache
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in official.iterdir():
            tar.add(f, arcname=f"tasks_1-20_v1-2/en/{f.name}")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "tasks_1-20_v1-2.tar.gz").write_bytes(buf.getvalue())
    found = babi.find_babi_dir(tmp_path / "archive")
    assert found == tmp_path / "cache" / "qkv" / "babi" / "en" and babi.task_files(found, 1)[0] is not None
    assert babi.find_babi_dir(None) == found  # the cache, afterwards
    with pytest.raises(FileNotFoundError, match="does not exist"):
        babi.find_babi_dir(tmp_path / "nowhere")
    assert babi.check_data_dir(tmp_path / "archive") is None  # an archive only: used, but not a folder of files
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tasks_1-20_v1-2.tar.gz").write_text("not an archive")
    with pytest.raises(babi.BabiFormatError, match="not a tar archive"):
        babi.check_data_dir(tmp_path / "bad")
    with pytest.raises(ValueError, match="task"):
        babi.task_files(official, 21)
    assert babi.SHA256 is None or len(babi.SHA256) == 64
