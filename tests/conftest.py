"""Shared test settings."""

import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# Without a GPU, Triton kernels run on CPU tensors under Triton's interpreter; triton reads the
# variable when a kernel is defined, so it is set before any test imports qkv.kernels.triton's kernels.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The suite's tensors are small: one thread avoids oversubscribing the 2-core machines.
torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(config, items):
    """Under the interpreter a Triton call takes ~0.1-1 s: the generic suites' ``backend="triton"`` cases
    run with ``-m slow`` on a CPU (always on CUDA); tests/kernels/test_triton.py checks the kernels by default."""
    if torch.cuda.is_available():
        return
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is not None and spec.params.get("backend") == "triton" and "test_triton" not in item.nodeid:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
