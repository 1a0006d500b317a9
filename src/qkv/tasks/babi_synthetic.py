"""Generated bAbI-style tasks, written in the official file format, so runs and tests need no download.

The generator imitates three of the 20 tasks of Weston et al. 2015 with the same vocabulary and
sentence shapes (not the same stories, and fewer distractor kinds):

* task 1, single supporting fact: people move between rooms; "Where is Mary?" - the last move of Mary;
* task 2, two supporting facts: people also pick up and drop objects; "Where is the football?" - the
  pick-up (or drop) and the holder's last move before it is answered;
* task 6, yes/no questions: "Is Mary in the kitchen?" - yes or no from Mary's last move.

Each story is written as :mod:`qkv.tasks.babi` reads it: line ids restarting at 1, questions with a
tab-separated answer and supporting-fact ids, ``qa{t}_{name}_{train,test}.txt`` file names.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from qkv.tasks.babi import TASK_NAMES
from qkv.train.io import atomic_write_bytes

__all__ = ["GENERATED_TASKS", "generate_story", "story_lines", "write_task"]

PEOPLE = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "bedroom", "kitchen")
MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")
OBJECTS = ("football", "milk", "apple")
GRABS = ("picked up", "got", "grabbed", "took")
DROPS = ("dropped", "discarded", "put down", "left")

#: The tasks the generator writes.
GENERATED_TASKS = (1, 2, 6)

# A story as the generator builds it: ("s", statement) or ("q", question, answer, supporting statement indices).
Entry = tuple


def _pick(seq, g: torch.Generator):
    return seq[int(torch.randint(len(seq), (1,), generator=g))]


def _coin(p: float, g: torch.Generator) -> bool:
    return float(torch.rand((), generator=g)) < p


def generate_story(task: int, *, questions: int = 5, generator: torch.Generator) -> list[Entry]:
    """One story of ``task`` (1, 2 or 6) with ``questions`` questions."""
    if task not in GENERATED_TASKS:
        raise ValueError(f"task must be one of the generated tasks {GENERATED_TASKS}, got {task!r}")
    if questions < 1:
        raise ValueError(f"questions must be >= 1, got {questions!r}")
    g = generator
    entries: list[Entry] = []
    where: dict[str, tuple[str, int]] = {}  # person -> (room, index of the statement that put them there)
    held: dict[str, tuple[str, int]] = {}  # object -> (holder, index of the pick-up)
    lying: dict[str, tuple[str, tuple[int, ...]]] = {}  # object -> (room, (drop index, move index))

    def say(text: str) -> int:
        entries.append(("s", text))
        return sum(1 for e in entries if e[0] == "s") - 1

    def move() -> None:
        person, room = _pick(PEOPLE, g), _pick(PLACES, g)
        where[person] = (room, say(f"{person} {_pick(MOVES, g)} the {room}."))

    def handle() -> bool:
        """Pick up a free object or drop a held one (task 2); False if nothing could be done."""
        placed = [p for p in PEOPLE if p in where]
        if held and _coin(0.4, g):
            obj = _pick(sorted(held), g)
            person, _ = held.pop(obj)
            room, moved = where[person]
            lying[obj] = (room, (say(f"{person} {_pick(DROPS, g)} the {obj}."), moved))
            return True
        free = [o for o in OBJECTS if o not in held]
        if placed and free:
            obj, person = _pick(free, g), _pick(placed, g)
            lying.pop(obj, None)
            held[obj] = (person, say(f"{person} {_pick(GRABS, g)} the {obj} there."))
            return True
        return False

    for _ in range(questions):
        for _ in range(int(torch.randint(2, 4, (1,), generator=g)) if task == 2 else 2):
            if task == 2 and _coin(0.45, g) and handle():
                continue
            move()
        if task == 2:
            known = [o for o in OBJECTS if o in lying or o in held]
            while not known:
                if not handle():
                    move()
                known = [o for o in OBJECTS if o in lying or o in held]
            obj = _pick(known, g)
            if obj in held:
                person, grabbed = held[obj]
                room, moved = where[person]
                support: tuple[int, ...] = (grabbed, moved)
            else:
                room, support = lying[obj]
            entries.append(("q", f"Where is the {obj}?", room, tuple(sorted(set(support)))))
            continue
        person = _pick(sorted(where), g)
        room, moved = where[person]
        if task == 1:
            entries.append(("q", f"Where is {person}?", room, (moved,)))
        else:
            asked = room if _coin(0.5, g) else _pick([p for p in PLACES if p != room], g)
            entries.append(("q", f"Is {person} in the {asked}?", "yes" if asked == room else "no", (moved,)))
    return entries


def story_lines(entries: list[Entry]) -> list[str]:
    """The story in the official format: ``'<id> <text>'`` lines, ids from 1, questions tab-separated."""
    lines, ids = [], []
    for entry in entries:
        n = len(lines) + 1
        if entry[0] == "s":
            ids.append(n)
            lines.append(f"{n} {entry[1]}")
        else:
            _, text, answer, support = entry
            lines.append(f"{n} {text} \t{answer}\t{' '.join(str(ids[i]) for i in support)}")
    return lines


def write_task(directory: str | os.PathLike[str], task: int, *, train_stories: int = 200, test_stories: int = 200,
               questions: int = 5, seed: int = 0) -> tuple[Path, Path | None]:
    """Write ``qa{task}_{name}_train.txt`` (and ``_test.txt`` when ``test_stories > 0``) into ``directory``.

    With the defaults a task has 1000 training questions, like the bAbI 1k set.
    """
    if train_stories < 1 or test_stories < 0:
        raise ValueError(f"need train_stories >= 1 and test_stories >= 0, got {train_stories}, {test_stories}")
    g = torch.Generator().manual_seed(seed * 1000 + task)
    d = Path(directory)
    stem = f"qa{task}_{TASK_NAMES.get(task, 'unknown')}"
    out: list[Path] = []
    for split, count in (("train", train_stories), ("test", test_stories)):
        if count == 0:
            continue
        lines = [line for _ in range(count) for line in story_lines(generate_story(task, questions=questions,
                                                                                    generator=g))]
        path = d / f"{stem}_{split}.txt"
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        out.append(path)
    return out[0], (out[1] if len(out) > 1 else None)
