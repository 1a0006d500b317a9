"""The planted-evidence corpus and the IMDB loader (on a tiny generated aclImdb-layout folder)."""

from __future__ import annotations

import pytest
import torch

from qkv.tasks import imdb
from qkv.tasks.planted_text import NEGATIVE, POSITIVE, TOPICS, make_planted_docs
from qkv.tasks.vocab import Vocab


@pytest.mark.parametrize("kind", ["sentiment", "topic"])
def test_evidence_positions_hold_the_evidence_and_decide_the_label(kind):
    docs = make_planted_docs(200, kind=kind, generator=torch.Generator().manual_seed(0))
    phrases = {p: 1 for p in POSITIVE} | {p: 0 for p in NEGATIVE}
    for b in range(len(docs)):
        sentences = docs.text(b)
        s, a, n = int(docs.sentence[b]), int(docs.start[b]), int(docs.length[b])
        phrase = " ".join(sentences[s][a : a + n])
        if kind == "sentiment":
            assert phrases[phrase] == int(docs.labels[b])
            # the polarity word occurs nowhere else in the document
            polar = phrase.split()[-1] if phrase.split()[-1] not in ("all",) else phrase.split()[1]
            others = [w for i, sent in enumerate(sentences) for j, w in enumerate(sent)
                      if not (i == s and a <= j < a + n)]
            assert polar not in others
        else:
            assert n == 1 and phrase in TOPICS[int(docs.labels[b])]
    # the evidence mask marks exactly those words, and the flat view keeps them
    ev = docs.evidence()
    assert torch.equal(ev.sum((1, 2)), docs.length)
    tokens, keep, flat_ev = docs.flat()
    assert torch.equal(flat_ev.sum(-1), docs.length)
    assert torch.equal(tokens[flat_ev], docs.tokens[ev])
    assert torch.equal(keep.sum(-1), (docs.tokens != 0).sum((1, 2)))


def test_decoys_make_single_modifiers_uninformative():
    docs = make_planted_docs(400, generator=torch.Generator().manual_seed(1))
    not_id = docs.vocab.stoi["not"]
    outside = (docs.tokens == not_id) & ~docs.evidence()
    assert outside.any(-1).any(-1).float().mean() > 0.3  # "not" outside the evidence is common
    assert 0.35 < docs.labels.float().mean() < 0.65


def test_same_seed_same_corpus_and_errors():
    a = make_planted_docs(20, generator=torch.Generator().manual_seed(3))
    b = make_planted_docs(20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    with pytest.raises(ValueError, match="kind"):
        make_planted_docs(5, kind="poetry")
    with pytest.raises(ValueError, match="min_sentences"):
        make_planted_docs(5, min_sentences=4, max_sentences=2)
    with pytest.raises(ValueError, match="num_topics"):
        make_planted_docs(5, kind="topic", num_topics=99)


def _write_aclimdb(root):
    reviews = {
        ("train", "pos"): ["A great film. I loved it!<br /><br />Would watch again.", "Wonderful acting?  Yes."],
        ("train", "neg"): ["Terrible. Just terrible.", "Boring plot<br />bad acting."],
        ("test", "pos"): ["Good fun."],
        ("test", "neg"): ["Awful!"],
    }
    for (split, sub), texts in reviews.items():
        (root / "aclImdb" / split / sub).mkdir(parents=True)
        for i, t in enumerate(texts):
            (root / "aclImdb" / split / sub / f"{i}_{7 + i}.txt").write_text(t)
    return root / "aclImdb"


def test_imdb_loader_on_a_tiny_aclimdb_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    folder = _write_aclimdb(tmp_path)
    assert imdb.find_imdb_dir(tmp_path) == folder and imdb.find_imdb_dir(folder) == folder
    (tmp_path / "empty").mkdir()
    assert imdb.find_imdb_dir(tmp_path / "empty") is None
    with pytest.raises(FileNotFoundError, match=r"data_dir.*nothing"):
        imdb.find_imdb_dir(tmp_path / "nothing")
    texts, labels = imdb.load_imdb(folder, "train")
    assert labels == [0, 0, 1, 1] and texts[0].startswith("Terrible")
    assert imdb.load_imdb(folder, "train", limit=1)[1] == [0, 1]
    sents = imdb.split_sentences(texts[2])
    assert sents == [["a", "great", "film", "."], ["i", "loved", "it", "!"], ["would", "watch", "again", "."]]
    assert imdb.split_sentences(texts[1]) == [["boring", "plot"], ["bad", "acting", "."]]
    docs = [imdb.split_sentences(t) for t in texts]
    vocab = Vocab.build([[w for s in d for w in s] for d in docs])
    tokens = imdb.encode_documents(docs, vocab, max_sentences=2, max_words=3)
    assert tokens.shape == (4, 2, 3)
    assert [vocab.itos[i] for i in tokens[2, 1].tolist()] == ["i", "loved", "it"]
    with pytest.raises(ValueError, match="split"):
        imdb.load_imdb(folder, "dev")
    with pytest.raises(FileNotFoundError, match="aclImdb"):
        imdb.load_imdb(tmp_path, "train")
    assert imdb.URL.endswith("aclImdb_v1.tar.gz")
