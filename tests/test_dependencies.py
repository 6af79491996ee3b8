"""What the package imports is what it declares: every third-party module imported under
src/trustlab comes from a distribution named in pyproject's dependencies, and every
declared distribution is imported somewhere (or is there on purpose)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Declared without an import statement, on purpose: pandas reads parquet through pyarrow;
# xgboost's classifier is named by a registry entry ("xgboost:XGBClassifier").
INDIRECT = {"pyarrow", "xgboost"}
# Imported from a distribution that the declared one pins exactly (pydantic's own core).
PART_OF = {"pydantic-core": "pydantic"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_normal(re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0]) for d in deps}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "trustlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"trustlab", "__future__"}


def test_every_import_is_declared_and_every_declaration_used():
    dists = importlib.metadata.packages_distributions()
    declared = _declared()
    used: set[str] = set()
    for module in _imported_top_levels():
        owners = {PART_OF.get(_normal(d), _normal(d)) for d in dists.get(module, [])}
        assert owners, f"{module} is imported but no installed distribution provides it"
        assert owners & declared, f"{module} (from {owners}) is imported but not declared"
        used |= owners & declared
    assert declared - used - INDIRECT == set(), "declared but never imported"
