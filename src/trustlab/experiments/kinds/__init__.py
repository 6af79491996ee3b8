"""The trial-kind registry: ``kind:`` in an experiment file -> config model + run function.

A trial kind is a function ``run(config, seed, ctx) -> TrialOutput`` plus the pydantic
model its keys validate into. Kinds wire domain code (data, attacks, mitigations,
training, defenses, metrics) and name the metrics; they hold no pipeline of their own and
know nothing of the report. Built-in kinds load on first use (the tabular kind pulls in
scikit-learn, the deep ones torch). Other kinds come from entry points (group
``trustlab.kinds``) or :func:`register_kind`; a YAML file can only name registered kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field

from trustlab.registry import Registry


class GenericConfig(BaseModel):
    """Config of a kind that takes one free-form ``params`` block."""

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
    # Raises TrustlabError for what the config model cannot check alone (values that
    # depend on the data, combinations) before any trial runs.
    validate: Callable[[Any], None] | None = None
    # Metrics the terminal summary shows (None: every top-level numeric metric).
    summary_metrics: list[str] | None = None
    description: str = ""

    @property
    def Params(self) -> type[BaseModel]:  # noqa: N802 - the registry's entry protocol
        """A kind's parameters are the keys of its config model."""
        return self.config_model


KINDS = Registry("kinds", "trial kind", {
    "tabular": "trustlab.experiments.kinds.tabular:KIND",
    "deep": "trustlab.experiments.kinds.deep:KIND",
    "minority_class": "trustlab.experiments.kinds.minority_class:KIND",
    "poisoning": "trustlab.experiments.kinds.poisoning:KIND",
    "backdoor": "trustlab.experiments.kinds.backdoor:KIND",
})


def register_kind(kind: TrialKind) -> TrialKind:
    """Make ``kind`` available to experiment files as ``kind: <kind.name>``."""
    if not isinstance(kind, TrialKind):
        raise TypeError(f"register_kind expects a TrialKind, got {kind!r}")
    return KINDS.register(kind)


def get_kind(name: str) -> TrialKind:
    return KINDS.get(name)


__all__ = ["GenericConfig", "KINDS", "TrialContext", "TrialKind", "TrialOutput", "get_kind",
           "register_kind"]
