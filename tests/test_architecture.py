"""Conventions of the package that no linter checks: no module imports another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import qkv

SRC = Path(qkv.__file__).parent


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qkv"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                parts = [p for p in (node.module or "").split(".") if p.startswith("_")]
                if private or parts:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} from {node.module} import {private}")
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)
