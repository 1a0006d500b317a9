"""The experiment registry: ``@register`` a class, find it by name, discover built-in modules.

Every public module of the :mod:`qkv.experiments` package (other than the machinery modules
listed in ``_MACHINERY``) is imported by :func:`discover`, so adding an experiment is adding a
file that applies ``@register``. A module that fails to import is reported by ``qkv list``
instead of breaking the other experiments.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import traceback

from qkv.experiments.base import Experiment

__all__ = ["UnknownExperiment", "all_experiments", "broken_modules", "discover", "get", "register"]

_REGISTRY: dict[str, Experiment] = {}
_BROKEN: dict[str, str] = {}
_MACHINERY = {"base", "registry", "runner", "config", "seq2seq_common", "ntm_common"}  # modules that register nothing
_discovered = False


class UnknownExperiment(KeyError):
    """No experiment of that name is registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0])


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: register an :class:`Experiment` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise TypeError(f"register expects an Experiment subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} must define a non-empty class attribute `name`")
    existing = _REGISTRY.get(name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"experiment name {name!r} is already registered by {type(existing).__qualname__}")
    _REGISTRY[name] = cls()
    return cls


def discover() -> None:
    """Import every experiment module of this package once (idempotent)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import qkv.experiments as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _MACHINERY:
            continue
        try:
            importlib.import_module(f"qkv.experiments.{info.name}")
        except Exception:  # a broken experiment must not hide the others
            _BROKEN[info.name] = traceback.format_exc(limit=3)


def all_experiments() -> list[Experiment]:
    """Registered experiments, sorted by name."""
    discover()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def broken_modules() -> dict[str, str]:
    """Experiment modules that failed to import -> the (shortened) traceback."""
    discover()
    return dict(_BROKEN)


def get(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises:
        UnknownExperiment: with the registered names and close matches.
    """
    discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownExperiment(
        f"unknown experiment {name!r}.{hint} Registered experiments: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        " (see `qkv list`)"
    )
