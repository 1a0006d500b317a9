"""Shared fixtures of the loaders' tests."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest


class _Response(io.BytesIO):
    """What ``urllib.request.urlopen`` returns, as a context manager over fixed bytes."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def serve_bytes(monkeypatch) -> Callable[[bytes], list[str]]:
    """``serve_bytes(payload)``: every ``urlopen`` returns ``payload``; returns the list of URLs requested."""

    def serve(payload: bytes) -> list[str]:
        seen: list[str] = []

        def fake_urlopen(request, timeout):
            seen.append(request.full_url)
            return _Response(payload)

        monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
        return seen

    return serve
