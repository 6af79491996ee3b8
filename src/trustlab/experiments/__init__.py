"""Experiments: YAML sweeps -> trials -> executors -> a resumable SQLite store.

Light on purpose: executor worker processes import this package before numpy, so the
public names are loaded on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "load_experiment": "trustlab.experiments.config",
    "build_experiment": "trustlab.experiments.config",
    "Experiment": "trustlab.experiments.config",
    "Trial": "trustlab.experiments.config",
    "run_experiment": "trustlab.experiments.runner",
    "RunSummary": "trustlab.experiments.runner",
    "load_results": "trustlab.experiments.results",
    "Results": "trustlab.experiments.results",
    "TrialKind": "trustlab.experiments.kinds",
    "TrialOutput": "trustlab.experiments.kinds",
    "register_kind": "trustlab.experiments.kinds",
    "get_kind": "trustlab.experiments.kinds",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trustlab.experiments' has no attribute {name!r}")


def demo_config_path():
    """The embedded demo experiment (`trustlab demo`)."""
    from importlib.resources import files

    return files("trustlab.experiments") / "configs" / "demo.yaml"


__all__ = sorted(_EXPORTS) + ["demo_config_path"]
