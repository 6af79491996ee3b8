"""Model selection as DomainBed and SubpopBench do it: random search over each method's
declared hyper-parameter distributions, each candidate trained on the fitted rows and
scored on the validation split only, the best kept. The test split is never looked at.

    search = HparamSearch(n=8, select_by="val_worst_group_accuracy")
    result = search_network(ds, "group", search, network="mlp", network_params={},
                            method="group_dro", method_params={}, options=options, seed=0)
    result.trained          # the selected candidate (a Trained)
    result.selected         # its hyper-parameters
    result.candidates       # every candidate: params and validation score

The draws come from optuna's ``RandomSampler`` seeded with the trial's seed (same seed,
same candidates). Every hyper-parameter of the method's search space is searched, except
those listed in ``fixed`` (they keep their ``method.params`` value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import typing
from typing import Any, Literal

from pydantic import Field

from trustlab.registry import ParamError, Params

SelectBy = Literal["val_worst_group_accuracy", "val_accuracy"]
SELECT_BY: tuple[str, ...] = typing.get_args(SelectBy)  # the validation metrics that select


class HparamSearch(Params):
    """``hparam_search:`` of a deep trial: how many random candidates, and the validation
    metric (higher is better) that picks one."""

    n: int = Field(8, ge=1, description="random candidates per trial")
    select_by: SelectBy = Field(
        "val_worst_group_accuracy", description="validation metric that selects (never test)")
    fixed: list[str] = Field(default_factory=list,
                             description="hyper-parameters not searched: they keep their "
                                         "method.params value")

    def check(self, method: str, val_fraction: float) -> None:
        """A validation split to select on, and ``fixed`` names in ``method``'s search
        space: a :class:`~trustlab.registry.ParamError` otherwise (before anything runs)."""
        from trustlab.training.deep.methods import METHODS

        if val_fraction <= 0:
            raise ParamError("training.val_fraction", "hparam_search selects on a "
                                                      "validation split: set val_fraction > 0")
        space = METHODS.get(method).search_space
        unknown = [k for k in self.fixed if k not in space]
        if unknown:
            raise ParamError("hparam_search.fixed", f"{unknown[0]!r} is not searched for "
                                                    f"{method}; its search space: "
                                                    f"{', '.join(space)}")


def distributions(method_cls, fixed) -> dict[str, Any]:
    """The optuna distributions of ``method_cls.search_space`` minus the ``fixed`` keys."""
    import optuna.distributions as od

    out = {}
    for name, spec in method_cls.search_space.items():
        if name in fixed:
            continue
        kind = spec[0]
        if kind == "log":
            out[name] = od.FloatDistribution(spec[1], spec[2], log=True)
        elif kind == "uniform":
            out[name] = od.FloatDistribution(spec[1], spec[2])
        elif kind == "int":
            out[name] = od.IntDistribution(spec[1], spec[2])
        elif kind == "choice":
            out[name] = od.CategoricalDistribution(list(spec[1]))
        else:  # a declaration error of the method, not of the user's config
            raise ValueError(f"{method_cls.__name__}.search_space[{name!r}]: unknown "
                             f"kind {kind!r}")
    return out


def validation_score(history, metric: str) -> float:
    """``metric`` of the model the training returns: measured after the method's
    post-training step when it has one (embedding SMOTE), else the restored best epoch
    under early stopping, else the last epoch."""
    if metric in history.after_finish:
        return float(history.after_finish[metric])
    epochs = history.epochs
    record = epochs[history.best_epoch - 1] if history.best_epoch else epochs[-1]
    return float(record.get(metric, float("nan")))


@dataclass
class SearchResult:
    trained: Any
    selected: dict[str, Any]
    score: float
    candidates: list[dict[str, Any]] = field(default_factory=list)


def search_network(ds, group: str, search: HparamSearch, *, network: str,
                   network_params: dict[str, Any] | None, method: str,
                   method_params: dict[str, Any] | None, options, seed: int) -> SearchResult:
    """Train ``search.n`` candidates of ``method`` (hyper-parameters drawn from its search
    space, except ``search.fixed``, on top of ``method_params``) and keep the best on the
    validation split.
    ``options.val_fraction`` must be > 0."""
    import math

    import optuna

    from trustlab.training.deep.methods import METHODS
    from trustlab.training.deep.pipeline import train_network

    search.check(method, options.val_fraction)
    params_given = dict(method_params or {})
    space = distributions(METHODS.get(method), set(search.fixed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=int(seed)))
    best: SearchResult | None = None
    candidates = []
    for _ in range(int(search.n)):
        trial = study.ask(space)
        params = {**params_given, **trial.params}
        trained = train_network(ds, group, network=network, network_params=network_params,
                                method=method, method_params=params, options=options,
                                seed=seed)
        score = validation_score(trained.history, search.select_by)
        study.tell(trial, score if math.isfinite(score) else float("-inf"))
        candidates.append({"params": trial.params, search.select_by: score})
        if best is None or (math.isfinite(score) and not score <= best.score):
            best = SearchResult(trained, trial.params, score)
    assert best is not None
    best.candidates = candidates
    return best


__all__ = ["HparamSearch", "SELECT_BY", "SearchResult", "distributions", "search_network",
           "validation_score"]
