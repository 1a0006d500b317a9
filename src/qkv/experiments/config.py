"""Frozen dataclass configs: ``--set a.b=value`` overrides, JSON round trip and a stable hash.

An experiment's Config is a frozen dataclass, possibly nesting others (``train``, ``model``,
``task``). ``--set model.hidden=64`` is parsed by the type annotation of that field:
``int``, ``float``, ``bool`` (true/false/1/0/yes/no), ``str``, ``Literal[...]``, ``X | None``
(``none``) and ``tuple[X, ...]`` (comma-separated). Unknown keys and unparsable values raise
:class:`ConfigError` listing what exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

__all__ = [
    "ConfigError",
    "apply_overrides",
    "apply_values",
    "config_from_dict",
    "config_hash",
    "config_keys",
    "config_to_dict",
]


class ConfigError(ValueError):
    """A ``--set`` key or value does not fit the experiment's Config."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_keys(config: Any, prefix: str = "") -> dict[str, str]:
    """Every settable dotted key of ``config`` -> a readable type name (nested dataclasses expanded)."""
    out: dict[str, str] = {}
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(config_keys(value, key + "."))
        else:
            out[key] = _type_name(hints[f.name])
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        return f"tuple[{_type_name(args[0])}, ...]" if args else "tuple"
    return getattr(tp, "__name__", str(tp))


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse(text: str, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and text.strip().lower() in ("none", "null", ""):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse(text, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"--set {key}={text!r}: expected {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ConfigError(f"--set {key}={text!r}: expected one of {', '.join(repr(c) for c in choices)}")
    if origin is tuple:
        args = get_args(tp)
        items = [t.strip() for t in text.split(",") if t.strip()] if text.strip() else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(item, args[0], key) for item in items)
        if len(items) != len(args):
            raise ConfigError(f"--set {key}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_parse(item, a, key) for item, a in zip(items, args, strict=True))
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"--set {key}={text!r}: expected a bool (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--set {key}={text!r}: expected an int") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--set {key}={text!r}: expected a float") from None
    if tp is str:
        return text
    raise ConfigError(f"--set {key}: fields of type {_type_name(tp)} cannot be set from the command line")


def _replace_path(config: Any, path: list[str], text: str, full_key: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    head = path[0]
    if head not in names:
        raise KeyError(head)
    value = getattr(config, head)
    if len(path) == 1:
        if dataclasses.is_dataclass(value):
            raise ConfigError(f"--set {full_key}: {full_key!r} is a group; set one of its fields instead")
        new = _parse(text, _hints(type(config))[head], full_key)
    else:
        if not dataclasses.is_dataclass(value):
            raise KeyError(head)
        new = _replace_path(value, path[1:], text, full_key)
    try:
        return dataclasses.replace(config, **{head: new})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--set {full_key}={text!r}: {e}") from None


def apply_overrides(config: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Return ``config`` with each ``"dotted.key=value"`` of ``overrides`` applied (left to right).

    Raises:
        ConfigError: malformed item (no ``=``), unknown key (the message lists valid keys), or a
            value that does not parse as the field's type or fails the Config's validation.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            config = _replace_path(config, key.split("."), text, key)
        except KeyError:
            valid = config_keys(config)
            listing = "\n".join(f"  {k} ({t})" for k, t in valid.items())
            raise ConfigError(f"--set: unknown key {key!r}. Valid keys:\n{listing}") from None
    return config


def _replace_value(config: Any, path: list[str], value: Any, full_key: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    head = path[0]
    if head not in names:
        raise KeyError(head)
    current = getattr(config, head)
    if len(path) == 1:
        if dataclasses.is_dataclass(current) and not dataclasses.is_dataclass(value):
            raise ConfigError(f"{full_key}: {full_key!r} is a group; set one of its fields instead")
        new = tuple(value) if isinstance(value, list) else value
    else:
        if not dataclasses.is_dataclass(current):
            raise KeyError(head)
        new = _replace_value(current, path[1:], value, full_key)
    try:
        return dataclasses.replace(config, **{head: new})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{full_key}={value!r}: {e}") from None


def apply_values(config: Any, values: dict[str, Any]) -> Any:
    """Return ``config`` with typed values set by dotted key: ``{"train.max_steps": 600, "model.window": 3}``.

    This is how an experiment states its quick settings: as overrides of its default config,
    so the quick run differs from the full one only where it says so.

    Raises:
        ConfigError: an unknown key (the message lists valid keys) or a value the Config rejects.
    """
    for key, value in values.items():
        try:
            config = _replace_value(config, key.split("."), value, key)
        except KeyError:
            listing = "\n".join(f"  {k} ({t})" for k, t in config_keys(config).items())
            raise ConfigError(f"unknown key {key!r}. Valid keys:\n{listing}") from None
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config of type ``cls`` from :func:`config_to_dict`'s output."""
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(tp):
            value = config_from_dict(tp, value)
        elif get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def config_hash(data: dict[str, Any]) -> str:
    """A short, stable hash of JSON-able ``data`` (sorted keys)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
