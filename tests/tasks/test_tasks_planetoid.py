"""Planetoid loader: a generated ``ind.<name>.*`` directory read as PyTorch Geometric reads it, the restricted
unpickler (a malicious pickle is refused, not run), checksums, the karate club."""

from __future__ import annotations

import collections
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.io import read_planetoid_data  # the peer reader (test dependency)

from qkv.tasks import planetoid
from qkv.tasks.planetoid import UnsafePickleError, karate_club, load_planetoid, read_pickle


def _write(directory, name: str, *, gap: bool = False, seed: int = 0) -> dict:
    """A tiny Planetoid-format dataset: 3 classes, 6 train (x/y), 4 more (allx/ally), 5 test nodes at shuffled ids
    after them (and, with ``gap``, one missing test id: an isolated node, as in Citeseer); 500 validation nodes
    are what the split takes after the training nodes, so the graph has 520 nodes."""
    rng = np.random.default_rng(seed)
    n_all, n_test, feats, k = 515, 5, 7, 3
    ids = n_all + rng.permutation(n_test + (1 if gap else 0))
    if gap:
        ids = np.delete(ids, np.argmax(ids == n_all + 2))  # id n_all + 2 is missing
    allx = sp.csr_matrix(rng.integers(0, 2, (n_all, feats)).astype(np.float32))
    tx = sp.csr_matrix(rng.integers(0, 3, (n_test, feats)).astype(np.float32))
    onehot = lambda n: np.eye(k)[rng.integers(0, k, n)]  # noqa: E731
    ally, ty = onehot(n_all), onehot(n_test)
    n = n_all + n_test + (1 if gap else 0)
    graph = collections.defaultdict(list)
    for _ in range(2000):
        u, v = rng.integers(0, n, 2)
        graph[int(u)].append(int(v))  # symmetric, with repeats and self-loops, as in the real files
        graph[int(v)].append(int(u))
    parts = {"x": allx[:6], "y": ally[:6], "allx": allx, "ally": ally, "tx": tx, "ty": ty, "graph": graph}
    for part, obj in parts.items():
        with open(directory / f"ind.{name}.{part}", "wb") as f:
            pickle.dump(obj, f, protocol=4)  # (Python 3 protocol 2 would encode bytes with _codecs)
    (directory / f"ind.{name}.test.index").write_text("\n".join(str(i) for i in ids) + "\n")
    return {"n": n, "ids": ids}


@pytest.mark.parametrize(("name", "gap"), [("cora", False), ("citeseer", True)])
def test_matches_torch_geometrics_reader(tmp_path, name, gap):
    info = _write(tmp_path, name, gap=gap)
    ours = load_planetoid(name, tmp_path)
    peer = read_planetoid_data(str(tmp_path), name)
    assert ours.num_nodes == peer.num_nodes == info["n"]
    x = peer.x / peer.x.sum(-1, keepdim=True).clamp_min(1e-12)  # NormalizeFeatures
    torch.testing.assert_close(ours.x, x)
    assert torch.equal(ours.y, peer.y)
    assert torch.equal(ours.edge_index, peer.edge_index.unique(dim=1))  # the same pairs (PyG sorts by target)
    for split, mask in (("train", peer.train_mask), ("val", peer.val_mask), ("test", peer.test_mask)):
        assert torch.equal(getattr(ours, split), mask.nonzero().squeeze(1)), split
    assert (len(ours.train), len(ours.val)) == (6, 500) and ours.num_classes == 3
    assert torch.all(ours.edge_index[0] != ours.edge_index[1])
    assert torch.equal(ours.edge_index.flip(0).unique(dim=1), ours.edge_index)  # both directions
    if gap:
        isolated = 515 + 2  # the missing test id: zero features, label 0 (as PyG)
        assert isolated not in info["ids"] and torch.all(ours.x[isolated] == 0) and ours.y[isolated] == 0


def test_a_malicious_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class Eval:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()",))

    _write(tmp_path, "cora")
    for payload, asked in ((Evil(), "system"), (Eval(), r"builtin\w*\.eval")):
        path = tmp_path / "ind.cora.graph"
        path.write_bytes(pickle.dumps({"graph": payload}, protocol=2))
        with pytest.raises(UnsafePickleError, match=asked) as err:
            load_planetoid("cora", tmp_path)
        assert str(path) in str(err.value)
        assert not marker.exists()
    # the real files' types are allowed
    (tmp_path / "ok").write_bytes(pickle.dumps(collections.defaultdict(list, {0: [1]}), protocol=2))
    assert read_pickle(tmp_path / "ok") == {0: [1]}


def test_missing_files_checksums_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("QKV_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"ind\.cora"):
        load_planetoid("cora", tmp_path)
    with pytest.raises(ValueError, match="name"):
        load_planetoid("reddit", tmp_path)
    assert planetoid.find_dir("cora", tmp_path) is None
    _write(tmp_path / "planetoid-cora" if (tmp_path / "planetoid-cora").mkdir() is None else tmp_path, "cora")
    assert planetoid.find_dir("cora", tmp_path) == tmp_path / "planetoid-cora"
    assert all(len(h) == 64 for h in planetoid.SHA256["cora"].values())
    assert set(planetoid.SHA256["cora"]) == set(planetoid.PARTS)
    assert planetoid.URL.format(name="cora", part="x").endswith("/ind.cora.x")


def test_karate_club_split():
    g = karate_club(seed=1)
    assert g.num_nodes == 34 and g.edge_index.shape == (2, 156) and g.num_classes == 2
    assert int(g.y.sum()) == 17
    every = torch.cat([g.train, g.val, g.test]).sort().values
    assert torch.equal(every, torch.arange(34))
    assert [int((g.y[g.train] == c).sum()) for c in (0, 1)] == [3, 3]
    assert torch.equal(karate_club(seed=1).train, g.train) and not torch.equal(karate_club(seed=2).train, g.train)
