"""Vocabularies and tokenizers."""

from __future__ import annotations

import torch

from qkv.tasks.vocab import Vocab, char_tokenize, word_tokenize


def test_tokenizers():
    assert word_tokenize("Don't go, Tom!") == ["don", "'", "t", "go", ",", "tom", "!"]
    assert word_tokenize("Ils l'ont déporté.") == ["ils", "l", "'", "ont", "déporté", "."]
    assert char_tokenize("21 Nov") == ["2", "1", " ", "N", "o", "v"]


def test_vocab_encode_decode_pad():
    v = Vocab.build([["b", "a", "b"], ["c"]], min_freq=1)
    assert v.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert v.itos[4] == "b"  # most frequent first
    ids = v.encode(["a", "zz"], bos=True)
    assert ids == [v.bos, v.stoi["a"], v.unk, v.eos]
    assert v.decode([*ids, v.stoi["c"]]) == ["a", "<unk>"]  # stops at <eos>
    padded, lengths = v.pad_batch([[5, 6, 7], [5]])
    assert padded.tolist() == [[5, 6, 7], [5, 0, 0]] and lengths.tolist() == [3, 1]
    assert padded.dtype == torch.long
    assert len(Vocab.build([["x"], ["y"], ["y"]], min_freq=2)) == 5
