"""The trial-kind registry: ``kind:`` in an experiment file -> config model + run function.

A trial kind is a function ``run(config, seed, ctx) -> metrics`` plus the pydantic model
its keys validate into. Built-in kinds are imported lazily (the tabular kind pulls in
scikit-learn; a deep kind would pull in torch), so the registry maps their names to
``module:attribute`` strings until first use. ``kind: package.module:function`` also
works, for plugins and tests: a plain function then takes a ``params: {...}`` block.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field

from trustlab.errors import TrustlabError


class GenericConfig(BaseModel):
    """Config of a ``module:function`` kind: one free-form ``params`` block."""

    model_config = {"extra": "forbid"}
    params: dict[str, Any] = Field(default_factory=dict)


@dataclass
class TrialOutput:
    """What a trial returns: flat numeric metrics and optional artifacts.

    Artifacts are bytes keyed by file name; the driver writes them to
    ``DIR/trials/<id>/`` so workers on another machine need no shared disk.
    """

    metrics: dict[str, float]
    artifacts: dict[str, bytes] = field(default_factory=dict)


@dataclass
class TrialContext:
    trial_id: str
    threads: int


@dataclass
class TrialKind:
    name: str
    run: Callable[[Any, int, TrialContext], "TrialOutput | dict[str, float]"]
    config_model: type[BaseModel] = GenericConfig
    # Raises TrustlabError for names that do not exist (model, dataset...) before any run.
    validate: Callable[[Any], None] | None = None
    # Metrics the terminal summary shows (None: every top-level numeric metric).
    summary_metrics: list[str] | None = None
    # The default x axis of the report's accuracy-vs-fairness scatter, in preference order.
    fairness_metrics: list[str] = field(default_factory=lambda: [
        "statistical_parity_difference", "demographic_parity_difference"])


KINDS: dict[str, TrialKind] = {}
BUILTIN: dict[str, str] = {
    "tabular": "trustlab.experiments.kinds.tabular:KIND",
    "deep": "trustlab.experiments.kinds.deep:KIND",
    "minority_class": "trustlab.experiments.kinds.minority_class:KIND",
    "poisoning": "trustlab.experiments.kinds.poisoning:KIND",
    "backdoor": "trustlab.experiments.kinds.backdoor:KIND",
}


def register_kind(kind: TrialKind) -> TrialKind:
    KINDS[kind.name] = kind
    return kind


def _import(spec: str, name: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise TrustlabError(f"trial kind {name!r}: cannot import {module!r} ({exc})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise TrustlabError(f"trial kind {name!r}: {module!r} has no {attr!r}") from None


def get_kind(name: str) -> TrialKind:
    if name in KINDS:
        return KINDS[name]
    if name in BUILTIN:
        obj = _import(BUILTIN[name], name)
    elif ":" in name:
        obj = _import(name, name)
    else:
        raise TrustlabError(f"unknown trial kind {name!r}; choose one of: "
                            f"{', '.join(sorted(set(BUILTIN) | set(KINDS)))} "
                            "(or module:function)")
    if isinstance(obj, TrialKind):
        kind = obj if obj.name == name else TrialKind(**{**obj.__dict__, "name": name})
    elif callable(obj):
        kind = TrialKind(name=name, run=obj)
    else:
        raise TrustlabError(f"trial kind {name!r} is neither a TrialKind nor a function")
    KINDS[name] = kind
    return kind


__all__ = ["BUILTIN", "KINDS", "GenericConfig", "TrialContext", "TrialKind", "TrialOutput",
           "get_kind", "register_kind"]
