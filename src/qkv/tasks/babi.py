"""The bAbI question-answering tasks (Weston et al. 2015, "Towards AI-Complete Question Answering"), v1.2.

Shape legend (:func:`encode`): ``N`` questions, ``S`` memory slots (the story's statements before the
question, at most ``memory_size``, oldest first, padded at the end), ``J`` words per statement, ``Jq``
words per question.

File format (``tasks_1-20_v1-2/en/qa{t}_{name}_{train,test}.txt``, ASCII): one line per statement or
question, each starting with its line id; the id restarts at 1 where a new story starts. A question line
holds three tab-separated fields: the question, the answer (one word, or comma-separated words for tasks
8 and 19, kept as one answer symbol as in Sukhbaatar et al. 2015) and the space-separated ids of the
supporting statements::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? \tbathroom\t1

Where the data come from, in order: ``data_dir`` (the ``--data-dir`` option: the ``en`` folder itself,
a folder holding ``en/`` or ``tasks_1-20_v1-2/en/``, or the archive ``tasks_1-20_v1-2.tar.gz``), then
``$QKV_DATA_DIR`` searched the same way, then the cache ``$XDG_CACHE_HOME/qkv/babi`` filled by
:func:`download`. A folder with only ``*_train.txt`` files is usable: the test split is evaluated
whenever the ``*_test.txt`` files are present.

Checksum: :data:`SHA256` is the digest of the archive at :data:`URL` recorded by the Hugging Face
``datasets`` library (``datasets/babi_qa/dataset_infos.json``, 15,719,851 bytes); it could not be
re-computed here (no network access to the site when this was written).

The held-out split: :func:`split_stories` keeps 10% of each task's *training stories* for validation,
as Sukhbaatar et al. 2015 (§4.2) do; whole stories are held out, so that no validation question shares
its story with a training question.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from qkv.tasks import data_files
from qkv.train.io import atomic_write_bytes

__all__ = [
    "NIL",
    "SHA256",
    "TASK_NAMES",
    "UNK",
    "URL",
    "BabiFormatError",
    "BabiTensors",
    "BabiVocab",
    "Question",
    "Story",
    "cache_dir",
    "check_data_dir",
    "download",
    "encode",
    "find_babi_dir",
    "load_task",
    "missing_data_message",
    "parse_babi",
    "questions_of",
    "split_stories",
    "task_files",
    "tokenize",
]

URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
#: SHA-256 of ``tasks_1-20_v1-2.tar.gz`` as recorded by Hugging Face ``datasets`` (see the module docstring).
SHA256: str | None = "0364ebde659f14d11bc21744516c5ec49d3d06cb692733f66680771244998898"
_ARCHIVE = "tasks_1-20_v1-2.tar.gz"

#: The file stem of each task in the official layout (``qa{t}_{name}_train.txt``).
TASK_NAMES: dict[int, str] = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}

NIL, UNK = "<nil>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")
_LINE = re.compile(r"^(\d+) (.*)$")


class BabiFormatError(ValueError):
    """A file that should be a bAbI task file is not in its format (the message names file and line)."""


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-cased words without punctuation (``"Where is Mary?"`` -> ``where is mary``)."""
    return tuple(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Question:
    """One question of a story.

    Attributes:
        text: the question as written.
        answer: the answer symbol (``"bathroom"``, ``"yes"``, ``"s,e"``).
        context: how many of the story's statements precede it (its memory is ``statements[:context]``).
        supporting: 0-based indices of its supporting statements in the story's ``statements``.
        line: its line number in the file (1-based).
    """

    text: str
    answer: str
    context: int
    supporting: tuple[int, ...]
    line: int


@dataclass(frozen=True)
class Story:
    """A story: its statements in order and its questions; ``task`` is the bAbI task number."""

    statements: tuple[str, ...]
    questions: tuple[Question, ...]
    task: int
    line: int  # where it starts in the file


def _fail(path: Path, number: int, why: str, line: str) -> BabiFormatError:
    return BabiFormatError(f"{path}, line {number}: {why} (got {line[:80]!r}); expected a bAbI task file "
                           "('<id> <statement>' or '<id> <question>\\t<answer>\\t<supporting ids>' lines)")


def parse_babi(path: str | os.PathLike[str], *, task: int = 0) -> list[Story]:
    """Read a bAbI task file into stories.

    Args:
        path: a ``qa{t}_*_{train,test}.txt`` file.
        task: the task number recorded in each story (0: unknown).

    Raises:
        FileNotFoundError: no such file.
        BabiFormatError: the file is empty, not text, or a line breaks the format (a missing or
            non-consecutive line id, a question without answer or supporting ids, a supporting id that
            is not an earlier statement of its story); the message names the file and the line.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BabiFormatError(f"{path} is not text ({e}); expected a bAbI task file") from None
    if not text.strip():
        raise BabiFormatError(f"{path} is empty; expected a bAbI task file")
    stories: list[Story] = []
    statements: list[str] = []
    questions: list[Question] = []
    index_of: dict[int, int] = {}  # line id -> statement index, within the current story
    last_id, start = 0, 1

    def close() -> None:
        if statements or questions:
            stories.append(Story(tuple(statements), tuple(questions), task, start))

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip("\r"))
        if m is None:
            raise _fail(path, number, "no line id", line)
        line_id, body = int(m.group(1)), m.group(2)
        if line_id == 1:
            close()
            statements, questions, index_of, start = [], [], {}, number
        elif line_id != last_id + 1:
            raise _fail(path, number, f"line id {line_id} does not follow {last_id}", line)
        last_id = line_id
        if "\t" not in body:
            if "?" in body or not tokenize(body):
                raise _fail(path, number, "a question without its tab-separated answer", line)
            index_of[line_id] = len(statements)
            statements.append(body.strip())
            continue
        fields = body.split("\t")
        if len(fields) != 3 or not tokenize(fields[0]) or not fields[1].strip():
            raise _fail(path, number, "a question line needs 'question<TAB>answer<TAB>supporting ids'", line)
        try:
            ids = [int(x) for x in fields[2].split()]
        except ValueError:
            raise _fail(path, number, "supporting ids must be integers", line) from None
        if not ids or any(i not in index_of for i in ids):
            raise _fail(path, number, f"supporting ids {ids} are not earlier statements of the story", line)
        questions.append(Question(fields[0].strip(), fields[1].strip().lower(), len(statements),
                                  tuple(index_of[i] for i in ids), number))
    close()
    if not any(s.questions for s in stories):
        raise BabiFormatError(f"{path} holds no question; expected a bAbI task file")
    return stories


# -- where the files are -------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/babi`` (default ``~/.cache/qkv/babi``)."""
    return data_files.cache_dir("babi")


def _task_dir(directory: Path) -> Path | None:
    for candidate in (directory, directory / "en", directory / "tasks_1-20_v1-2" / "en"):
        if candidate.is_dir() and any(candidate.glob("qa*_train.txt")):
            return candidate
    return None


def _extract(archive: Path, dest: Path) -> Path:
    """Extract the ``en/`` files of the official archive into ``dest`` (only those; no other paths)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and re.fullmatch(r"tasks_1-20_v1-2/en/qa\d+_[a-z-]+_(train|test)\.txt", m.name)]
            if not members:
                raise BabiFormatError(f"{archive} holds no tasks_1-20_v1-2/en/qa*_train.txt files")
            for m in members:
                f = tar.extractfile(m)
                assert f is not None
                atomic_write_bytes(dest / Path(m.name).name, f.read())
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BabiFormatError(f"{archive} is not a readable .tar.gz archive ({e})") from None
    return dest


def _search(directory: Path) -> Path | None:
    found = _task_dir(directory)
    if found is not None:
        return found
    archive = directory / _ARCHIVE
    if archive.is_file():
        return _extract(archive, cache_dir() / "en")
    return None


def find_babi_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding the ``qa*_train.txt`` files: in ``data_dir``, ``$QKV_DATA_DIR`` or the cache.

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    for root in data_files.search_roots(data_dir, subdirs=("babi", "babi-en-1k")):
        found = _search(root)
        if found is not None:
            return found
    return _task_dir(cache_dir() / "en")


def check_data_dir(data_dir: str | os.PathLike[str]) -> Path | None:
    """Validate a ``--data-dir``: it must exist; the bAbI folder found in it (None: it holds no bAbI files).

    Raises:
        FileNotFoundError: it does not exist.
        BabiFormatError: a ``tasks_1-20_v1-2.tar.gz`` in it is not an archive.
    """
    d = Path(data_dir).expanduser()
    if not d.exists():
        raise FileNotFoundError(f"{str(d)!r} does not exist")
    found = _task_dir(d) if d.is_dir() else None
    if found is None and d.is_dir() and (d / _ARCHIVE).exists() and not tarfile.is_tarfile(d / _ARCHIVE):
        raise BabiFormatError(f"{d / _ARCHIVE} is not a tar archive (expected the bAbI {_ARCHIVE})")
    return found


def task_files(directory: str | os.PathLike[str], task: int) -> tuple[Path | None, Path | None]:
    """``(train, test)`` files of ``task`` in ``directory`` (``None`` where absent)."""
    if task not in TASK_NAMES:
        raise ValueError(f"task must be a bAbI task number 1-20, got {task!r}")
    d = Path(directory)
    stem = f"qa{task}_{TASK_NAMES[task]}"
    train, test = d / f"{stem}_train.txt", d / f"{stem}_test.txt"
    return (train if train.is_file() else None), (test if test.is_file() else None)


def load_task(directory: str | os.PathLike[str], task: int) -> tuple[list[Story], list[Story] | None]:
    """Parse ``task``'s training stories and, if its test file exists, its test stories.

    Raises:
        FileNotFoundError: the training file is missing.
        BabiFormatError: a file is not in the format.
    """
    train, test = task_files(directory, task)
    if train is None:
        raise FileNotFoundError(f"{directory} has no qa{task}_{TASK_NAMES[task]}_train.txt")
    return parse_babi(train, task=task), (parse_babi(test, task=task) if test is not None else None)


def missing_data_message(data_dir: str | None = None) -> str:
    """What to tell the user when the bAbI files are nowhere to be found."""
    where = f"in {data_dir!r}, " if data_dir else ""
    return (
        f"the bAbI tasks (qa*_train.txt) were not found {where}in $QKV_DATA_DIR or in {cache_dir()}.\n"
        "Supply them with one of:\n"
        "  qkv run memn2n-babi --data-dir PATH       # PATH holds tasks_1-20_v1-2/en, en/, the qa*.txt files,\n"
        "                                            # or tasks_1-20_v1-2.tar.gz\n"
        "  qkv run memn2n-babi --set download=true   # fetch " + URL + " (needs network access)\n"
        "  qkv run memn2n-babi --set data=generated  # the built-in generated tasks (1, 2 and 6)"
    )


def download(dest_dir: str | os.PathLike[str] | None = None, *, sha256: str | None = None,
             timeout: float = 60.0) -> Path:
    """Download :data:`URL`, verify its SHA-256 and extract the ``en`` tasks into the cache; returns that folder.

    Raises:
        OSError: the download failed.
        ValueError: the archive's SHA-256 differs from the expected digest.
        BabiFormatError: the archive is not the bAbI archive.
    """
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    data = data_files.fetch(URL, sha256=sha256 or os.environ.get("QKV_BABI_SHA256") or SHA256, timeout=timeout)
    archive = dest / _ARCHIVE
    atomic_write_bytes(archive, data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz"):
        pass  # a quick validity check before extracting from the file
    return _extract(archive, dest / "en")


# -- splits and tensors --------------------------------------------------------------------------------


def split_stories(stories: Sequence[Story], fraction: float = 0.1, *,
                  generator: torch.Generator | None = None) -> tuple[list[Story], list[Story]]:
    """``(train, validation)``: ``round(fraction * len)`` (at least 1) random stories held out for validation."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if len(stories) < 2:
        raise ValueError(f"need at least 2 stories to hold some out, got {len(stories)}")
    n_val = min(len(stories) - 1, max(1, round(fraction * len(stories))))
    perm = torch.randperm(len(stories), generator=generator).tolist()
    held = set(perm[:n_val])
    return ([s for i, s in enumerate(stories) if i not in held], [s for i, s in enumerate(stories) if i in held])


def questions_of(stories: Iterable[Story]) -> list[tuple[Story, Question]]:
    """Every ``(story, question)`` pair, in file order."""
    return [(s, q) for s in stories for q in s.questions]


class BabiVocab:
    """Words and answer symbols <-> ids; id 0 is the nil (padding) word, id 1 the unknown word."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.itos: list[str] = [NIL, UNK]
        seen = set(self.itos)
        for t in tokens:
            if t not in seen:
                seen.add(t)
                self.itos.append(t)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, stories: Iterable[Story]) -> BabiVocab:
        """Every word of the statements and questions and every answer symbol, sorted."""
        words: set[str] = set()
        for s in stories:
            for text in s.statements:
                words.update(tokenize(text))
            for q in s.questions:
                words.update(tokenize(q.text))
                words.add(q.answer)
        return cls(sorted(words))

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(t, 1) for t in tokens]


@dataclass
class BabiTensors:
    """Questions as tensors (see the module's shape legend); ``memory`` is left-aligned, oldest first.

    Attributes:
        story: ``(N, S, J)`` word ids of the memory statements (0 = padding).
        query: ``(N, Jq)`` word ids of the question.
        answer: ``(N,)`` id of the answer symbol.
        memory_mask: ``(N, S)`` True on real statements.
        support: ``(N, S)`` True on the supporting statements (those still in memory).
        task: ``(N,)`` task number.
        items: the ``(story, question)`` pairs, for drawing.
        offset: ``(N,)`` index in the story of memory slot 0 (> 0 when the story was cut to ``memory_size``).
    """

    story: torch.Tensor
    query: torch.Tensor
    answer: torch.Tensor
    memory_mask: torch.Tensor
    support: torch.Tensor
    task: torch.Tensor
    offset: torch.Tensor
    items: list[tuple[Story, Question]]

    def __len__(self) -> int:
        return self.answer.shape[0]


def encode(items: Sequence[tuple[Story, Question]], vocab: BabiVocab, *, memory_size: int = 50,
           sentence_length: int | None = None, query_length: int | None = None) -> BabiTensors:
    """Tensors of the questions ``items``; each memory is the last ``memory_size`` statements before it.

    Sukhbaatar et al. 2015 §4.2: "the capacity of memory is restricted to the most recent 50 sentences".

    Args:
        sentence_length, query_length: pad to these widths (default: the longest here); longer ones raise.
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be >= 1, got {memory_size!r}")
    if not items:
        raise ValueError("encode: no questions")
    mems, qs, offsets = [], [], []
    for story, q in items:
        first = max(0, q.context - memory_size)
        mems.append([vocab.ids(tokenize(t)) for t in story.statements[first: q.context]])
        qs.append(vocab.ids(tokenize(q.text)))
        offsets.append(first)
    S = max(1, max(len(m) for m in mems))
    J = max(len(w) for m in mems for w in m) if any(mems) else 1
    Jq = max(len(w) for w in qs)
    for name, want, got in (("sentence_length", sentence_length, J), ("query_length", query_length, Jq)):
        if want is not None and want < got:
            raise ValueError(f"{name}={want} is shorter than the longest one here ({got})")
    J, Jq = sentence_length or J, query_length or Jq
    N = len(items)
    story_t = torch.zeros(N, S, J, dtype=torch.long)  # (N, S, J)
    query_t = torch.zeros(N, Jq, dtype=torch.long)  # (N, Jq)
    support = torch.zeros(N, S, dtype=torch.bool)  # (N, S)
    mask = torch.zeros(N, S, dtype=torch.bool)
    for n, (mem, words, (_, q), first) in enumerate(zip(mems, qs, items, offsets, strict=True)):
        for s, sent in enumerate(mem):
            story_t[n, s, : len(sent)] = torch.tensor(sent, dtype=torch.long)
        mask[n, : len(mem)] = True
        query_t[n, : len(words)] = torch.tensor(words, dtype=torch.long)
        for i in q.supporting:
            if i >= first:
                support[n, i - first] = True
    answer = torch.tensor([vocab.stoi.get(q.answer, 1) for _, q in items], dtype=torch.long)
    task = torch.tensor([s.task for s, _ in items], dtype=torch.long)
    return BabiTensors(story_t, query_t, answer, mask, support, task, torch.tensor(offsets), list(items))
