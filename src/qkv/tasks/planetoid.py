"""Citation graphs for node classification: Planetoid's Cora, Citeseer and PubMed, and Zachary's karate club.

Shape legend: ``N`` nodes, ``F`` features per node, ``E`` directed edges (each undirected edge twice),
``K`` classes.

The GAT paper's transductive benchmarks (Veličković et al. 2018, §3.1, Table 1) use the splits of
Yang et al. 2016 (Planetoid): 20 labelled nodes per class for training, 500 nodes for validation and
1000 for testing (Cora: 2708 nodes, 1433 features, 7 classes, 140/500/1000). The files are the
``ind.<name>.<part>`` Python 2 pickles of https://github.com/kimiyoung/planetoid (``x``, ``tx``,
``allx``: scipy sparse feature rows; ``y``, ``ty``, ``ally``: one-hot labels; ``graph``: a
``defaultdict`` of adjacency lists; ``test.index``: the test nodes' ids, one per line).

**Pickles are code.** They are read with :class:`RestrictedUnpickler`, whose ``find_class`` admits only
the numpy/scipy/collections classes these files need (:data:`ALLOWED_CLASSES`); any other global
(``os.system``, ``builtins.eval``, ...) is refused with an error naming the file and the class, before
anything is called.

Processing follows PyTorch Geometric's ``read_planetoid_data``: the test rows are put back at their
node ids; Citeseer's test ids are not contiguous (isolated nodes without features), so the missing
ids get zero features and label 0, as PyG does; self-loops and repeated edges in ``graph`` are
dropped and every edge is kept in both directions. Features are row-normalised (each row sums to 1,
PyG's ``NormalizeFeatures``, as in the paper's code).

Where the files come from (:func:`find_dir`): ``--data-dir``, ``$QKV_DATA_DIR``, or the cache
``$XDG_CACHE_HOME/qkv/planetoid`` (default ``~/.cache/qkv/planetoid``), which :func:`download` fills
from :data:`URL` and checks against :data:`SHA256`.

The built-in graph needing no download is Zachary's karate club (:func:`karate_club`, from
networkx, which PyTorch installs): 34 members, 78 friendships, the two clubs after the split as the
labels, one-hot node ids as features (Kipf & Welling's setting), and a seeded split.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from qkv.tasks import data_files

__all__ = [
    "ALLOWED_CLASSES",
    "NAMES",
    "PARTS",
    "SHA256",
    "URL",
    "GraphData",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "cache_dir",
    "download",
    "find_dir",
    "karate_club",
    "load_planetoid",
    "read_pickle",
]

NAMES = ("cora", "citeseer", "pubmed")
PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
URL = "https://github.com/kimiyoung/planetoid/raw/master/data/ind.{name}.{part}"

#: SHA-256 of each file. Cora's were computed from the distributed files (kimiyoung/planetoid, as PyG
#: downloads them); Citeseer's and PubMed's are not pinned (``None``: no copy was available to hash
#: when this was written), so those downloads are checked only for their format.
SHA256: dict[str, dict[str, str | None]] = {
    "cora": {
        "x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
        "tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    },
    "citeseer": dict.fromkeys(PARTS),  # not pinned: unknown
    "pubmed": dict.fromkeys(PARTS),  # not pinned: unknown
}

#: The globals a Planetoid pickle may name: numpy arrays and dtypes, scipy's CSR/CSC matrices, the
#: graph's defaultdict of lists. ``__builtin__`` is Python 2's ``builtins``.
ALLOWED_CLASSES = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("scipy.sparse.csr", "csr_matrix"),
    ("scipy.sparse._csr", "csr_matrix"),
    ("scipy.sparse.csc", "csc_matrix"),
    ("scipy.sparse._csc", "csc_matrix"),
    ("collections", "defaultdict"),
    ("__builtin__", "list"),
    ("builtins", "list"),
})

#: Where an allowed global lives in today's libraries (numpy 2 moved ``numpy.core``; scipy made its modules private).
_MODERN = {
    "numpy.core.multiarray": "numpy._core.multiarray",
    "scipy.sparse.csr": "scipy.sparse",
    "scipy.sparse._csr": "scipy.sparse",
    "scipy.sparse.csc": "scipy.sparse",
    "scipy.sparse._csc": "scipy.sparse",
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside :data:`ALLOWED_CLASSES`."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_CLASSES`; anything else raises :class:`UnsafePickleError`.

    Args:
        file: the open binary file.
        source: the file's name, for the error message.
    """

    def __init__(self, file, *, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_CLASSES:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global {module}.{name} (a Planetoid file needs only "
                "numpy arrays, scipy sparse matrices and a defaultdict of lists); the file is not a Planetoid "
                "pickle or has been tampered with"
            )
        module = _MODERN.get(module, module)
        if module == "numpy._core.multiarray" and not hasattr(np, "_core"):  # numpy < 2
            module = "numpy.core.multiarray"
        if module.startswith("scipy"):
            import scipy.sparse  # noqa: F401  (imported only when a file names it)
        return super().find_class(module, name)


def read_pickle(path: str | os.PathLike[str]) -> object:
    """One Planetoid pickle, through :class:`RestrictedUnpickler` (``encoding="latin1"``: Python 2 files)."""
    path = Path(path)
    with path.open("rb") as f:
        return RestrictedUnpickler(f, source=str(path)).load()


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/qkv/planetoid`` (default ``~/.cache/qkv/planetoid``)."""
    return data_files.cache_dir("planetoid")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    return name.lower()


def _has_files(directory: Path, name: str) -> bool:
    return all((directory / f"ind.{name}.{part}").is_file() for part in PARTS)


def find_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first directory holding all ``ind.<name>.*`` files: ``data_dir``, ``$QKV_DATA_DIR`` (or a
    ``planetoid``/``planetoid-<name>`` folder in either), then the cache; ``None`` if none does.

    Raises:
        FileNotFoundError: ``data_dir`` was given but does not exist.
    """
    name = _check_name(name)
    for d in [*data_files.search_roots(data_dir, subdirs=("planetoid", f"planetoid-{name}")), cache_dir()]:
        if _has_files(d, name):
            return d
    return None


def download(name: str, dest_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fetch the eight ``ind.<name>.*`` files from :data:`URL` into ``dest_dir`` (default the cache).

    Each is checked against :data:`SHA256` where the digest is known and parsed with the restricted
    unpickler; a file that fails either is deleted and the error raised.
    """
    name = _check_name(name)
    dest = Path(dest_dir) if dest_dir is not None else cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        target = dest / f"ind.{name}.{part}"
        if target.is_file():
            continue
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data_files.fetch(URL.format(name=name, part=part), sha256=SHA256[name][part]))
        if part != "test.index":
            try:
                read_pickle(tmp)
            except Exception:
                tmp.unlink()
                raise
        tmp.replace(target)
    return dest


@dataclass(frozen=True)
class GraphData:
    """A node-classification graph.

    Attributes:
        name: the dataset's name.
        x: ``(N, F)`` float32 node features (rows normalised to sum 1 for Planetoid).
        y: ``(N,)`` int64 labels in ``[0, K)``.
        edge_index: ``(2, E)`` int64 ``(source, target)`` pairs, both directions, no self-loops or repeats.
        train, val, test: int64 node ids of the splits.
        num_classes: ``K``.
    """

    name: str
    x: Tensor
    y: Tensor
    edge_index: Tensor
    train: Tensor
    val: Tensor
    test: Tensor
    num_classes: int

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]


def _dense(a: object, source: str) -> np.ndarray:
    if hasattr(a, "toarray"):
        return np.asarray(a.toarray(), dtype=np.float32)
    if isinstance(a, np.ndarray):
        return a.astype(np.float32)
    raise ValueError(f"{source}: expected a numpy array or scipy sparse matrix, got {type(a).__name__}")


def _undirected(graph: object, n: int, source: str) -> Tensor:
    """``(2, E)``: every listed neighbour pair in both directions, self-loops and repeats dropped."""
    if not isinstance(graph, dict):
        raise ValueError(f"{source}: expected a dict of adjacency lists, got {type(graph).__name__}")
    src, dst = [], []
    for node, neighbours in graph.items():
        for other in neighbours:
            src.append(int(node))
            dst.append(int(other))
    pairs = torch.tensor([src + dst, dst + src], dtype=torch.long)  # (2, 2E')
    pairs = pairs[:, pairs[0] != pairs[1]]
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= n):
        raise ValueError(f"{source}: node ids in [{int(pairs.min())}, {int(pairs.max())}], expected [0, {n})")
    return torch.unique(pairs, dim=1)  # (2, E), sorted by source then target


def normalize_rows(x: Tensor) -> Tensor:
    """Each row divided by its sum (rows summing to 0 stay 0): PyG's ``NormalizeFeatures``."""
    total = x.sum(-1, keepdim=True)
    return x / torch.where(total == 0, torch.ones_like(total), total)


def load_planetoid(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download_ok: bool = False
) -> GraphData:
    """Cora, Citeseer or PubMed with the standard Planetoid split (Yang et al. 2016; GAT §3.1).

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
        data_dir: a directory holding the ``ind.<name>.*`` files (see :func:`find_dir`).
        download_ok: fetch the files into the cache when they are found nowhere.

    Raises:
        FileNotFoundError: the files are not found and ``download_ok`` is false.
        UnsafePickleError: a file names a global outside :data:`ALLOWED_CLASSES`.
    """
    name = _check_name(name)
    directory = find_dir(name, data_dir)
    if directory is None:
        if not download_ok:
            raise FileNotFoundError(
                f"planetoid {name!r}: the ind.{name}.* files were not found in {data_dir or '(no --data-dir)'}, "
                f"$QKV_DATA_DIR or {cache_dir()}; pass --data-dir, or allow the download from "
                f"{URL.format(name=name, part='<part>')}"
            )
        directory = download(name)
    path = {part: directory / f"ind.{name}.{part}" for part in PARTS}
    parts = {p: read_pickle(path[p]) for p in PARTS if p != "test.index"}
    tx, allx = (_dense(parts[p], str(path[p])) for p in ("tx", "allx"))  # x: the first rows of allx
    y, ty, ally = (_dense(parts[p], str(path[p])) for p in ("y", "ty", "ally"))
    test_index = torch.tensor([int(line) for line in path["test.index"].read_text().split()], dtype=torch.long)
    sorted_test = test_index.sort().values
    lo, hi = int(sorted_test[0]), int(sorted_test[-1])
    if name == "citeseer":  # isolated test nodes have no row in tx/ty: zero features, label 0 (as PyG)
        tx_ext = np.zeros((hi - lo + 1, tx.shape[1]), dtype=np.float32)
        ty_ext = np.zeros((hi - lo + 1, ty.shape[1]), dtype=np.float32)
        tx_ext[(sorted_test - lo).numpy()] = tx
        ty_ext[(sorted_test - lo).numpy()] = ty
        tx, ty = tx_ext, ty_ext
    features = torch.from_numpy(np.concatenate([allx, tx]))  # (N, F)
    labels = torch.from_numpy(np.concatenate([ally, ty])).argmax(1)  # (N,)
    features[test_index] = features[sorted_test].clone()  # the test rows back at their node ids
    labels[test_index] = labels[sorted_test].clone()
    n = features.shape[0]
    return GraphData(
        name=name, x=normalize_rows(features), y=labels, edge_index=_undirected(parts["graph"], n, str(path["graph"])),
        train=torch.arange(y.shape[0]), val=torch.arange(y.shape[0], y.shape[0] + 500), test=sorted_test,
        num_classes=ally.shape[1],
    )


def karate_club(*, train_per_class: int = 3, val_per_class: int = 3, seed: int = 0) -> GraphData:
    """Zachary's karate club (networkx): 34 nodes, 156 directed edges, 2 classes (the club each member joined).

    Features are one-hot node ids (``F = N = 34``); the split draws ``train_per_class`` and
    ``val_per_class`` members of each club with a ``torch.Generator`` seeded by ``seed``; the rest
    are the test nodes.
    """
    import networkx as nx  # installed with torch; only this function needs it

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    labels = torch.tensor([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)])
    edges = torch.tensor(list(g.edges()), dtype=torch.long).t()  # (2, 78)
    edge_index = torch.unique(torch.cat([edges, edges.flip(0)], 1), dim=1)  # (2, 156)
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(2):
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(members.numel(), generator=gen)]
        train.append(members[:train_per_class])
        val.append(members[train_per_class:train_per_class + val_per_class])
    train_t, val_t = torch.cat(train).sort().values, torch.cat(val).sort().values
    used = torch.zeros(n, dtype=torch.bool)
    used[train_t] = used[val_t] = True
    return GraphData(name="karate-club", x=torch.eye(n), y=labels, edge_index=edge_index, train=train_t, val=val_t,
                     test=(~used).nonzero().squeeze(1), num_classes=2)
