"""--set overrides on frozen (nested) dataclass configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from qkv.experiments.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_hash,
    config_keys,
    config_to_dict,
)


@dataclass(frozen=True)
class Inner:
    hidden: int = 8
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"

    def __post_init__(self):
        if self.hidden < 1:
            raise ValueError(f"inner.hidden must be >= 1, got {self.hidden}")


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    flag: bool = False
    items: tuple[str, ...] = ("p", "q")
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_overrides_parse_by_type():
    cfg = apply_overrides(Outer(), ["inner.hidden=64", "inner.rate=1e-3", "flag=yes", "items=a, b,c",
                                    "name=hello=world", "inner.mode=b", "limit=5"])
    assert cfg == Outer(name="hello=world", flag=True, items=("a", "b", "c"), limit=5,
                        inner=Inner(hidden=64, rate=1e-3, mode="b"))
    assert apply_overrides(cfg, ["limit=none"]).limit is None


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        apply_overrides(Outer(), ["inner.hiden=3"])
    msg = str(e.value)
    assert "'inner.hiden'" in msg and "inner.hidden (int)" in msg and "inner.mode ('a' | 'b')" in msg


@pytest.mark.parametrize(
    ("item", "pattern"),
    [("inner.hidden=big", "expected an int"), ("flag=maybe", "expected a bool"), ("inner.mode=c", "one of 'a', 'b'"),
     ("inner.hidden=0", "inner.hidden must be >= 1"), ("inner=3", "is a group"), ("novalue", "KEY=VALUE"),
     ("name.sub=1", "unknown key")],
)
def test_bad_values_are_clear(item, pattern):
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(Outer(), [item])


def test_keys_dict_round_trip_and_hash():
    cfg = Outer(items=("z",), inner=Inner(hidden=3))
    assert set(config_keys(cfg)) == {"name", "flag", "items", "limit", "inner.hidden", "inner.rate", "inner.mode"}
    data = config_to_dict(cfg)
    assert data["items"] == ["z"]
    assert config_from_dict(Outer, data) == cfg
    assert config_hash(data) == config_hash(config_to_dict(config_from_dict(Outer, data)))
    assert config_hash(data) != config_hash(config_to_dict(Outer()))
