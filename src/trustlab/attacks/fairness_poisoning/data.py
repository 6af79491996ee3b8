"""The data of one attack: the victim's fit split, the attacker's validation split and the
test split, encoded; the binary sensitive attribute's two values; and the poison space.

The attacker holds out a validation split of the training rows (seeded, stratified by
label) to score candidates on; the victim trains on the rest (the *fit* split), clean or
poisoned, so the only difference between the two is the poison. The test split is never
seen by the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from trustlab.attacks.fairness_poisoning.objective import Objective, PoisonObjective
from trustlab.attacks.fairness_poisoning.settings import PoisonGroup, PoisonLabel
from trustlab.attacks.fairness_poisoning.space import FeatureBox, PoisonSpace
from trustlab.errors import TrustlabError
from trustlab.registry import ParamError


@dataclass
class Split:
    """Encoded rows of one split, their labels and their sensitive-attribute values."""

    X: np.ndarray
    y: np.ndarray
    group: np.ndarray  # strings

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PoisoningData:
    """What :func:`prepare` returns: exactly what an attack trains and scores on."""

    fit: Split
    validation: Split
    test: Split
    feature_names: list[str]
    space: PoisonSpace
    unprivileged: str
    privileged: str


def check_dataset(name: str, options: dict[str, Any], sensitive: str, *,
                  privileged: Any = None, use_sensitive_as_feature: bool = True,
                  load: Callable[..., Any] | None = None) -> None:
    """Dataset ``name`` can be attacked: tabular, its loader ``options`` valid, ``sensitive``
    one of its binary group columns with ``privileged`` among its values. Raises a
    :class:`~trustlab.registry.ParamError` keyed like :func:`prepare`'s arguments
    (``name``, ``options.<opt>``, ``sensitive``, ``privileged``...). ``load(name, seed,
    options)`` reads the data (default :func:`trustlab.data.load_dataset`)."""
    from trustlab.data import get_spec, load_dataset
    from trustlab.data.registry import check_options

    spec = get_spec(name)
    if spec.kind != "tabular":
        raise ParamError("name", f"dataset {spec.name!r} is not tabular (it is {spec.kind})")
    check_options(spec, options)
    if sensitive not in spec.groups:
        raise ParamError("sensitive", f"dataset {spec.name!r} has no sensitive attribute "
                                      f"{sensitive!r}; choose one of: {', '.join(spec.groups)}")
    ds = (load or (lambda n, seed, o: load_dataset(n, seed=seed, **o)))(name, 0, options)
    group_values(ds, sensitive, privileged)
    if use_sensitive_as_feature:
        sensitive_feature(ds, sensitive)


def group_values(ds, sensitive: str, privileged: Any = None) -> tuple[str, str]:
    """(unprivileged, privileged) values of ``ds``'s binary sensitive attribute
    ``sensitive``; without ``privileged``, the sorted values in that order."""
    values = sorted(map(str, ds.groups[sensitive].unique()))
    if len(values) != 2:
        binary = f"{sensitive}_binary"
        hint = f"; {binary} is binary" if binary in ds.groups.columns else ""
        raise ParamError("sensitive", f"poisoning needs a binary sensitive attribute, but "
                                      f"{sensitive!r} has {len(values)} values{hint}")
    if privileged is None:
        return values[0], values[1]
    if str(privileged) not in values:
        raise ParamError("privileged", f"{privileged!r} is not a value of {sensitive!r} "
                                       f"({', '.join(values)})")
    other = next(v for v in values if v != str(privileged))
    return other, str(privileged)


def sensitive_feature(ds, sensitive: str) -> str:
    """The feature column that carries the sensitive attribute, if it is that attribute
    itself as a categorical (so the poison's group can be written into its one-hot block)."""
    import pandas as pd

    cols = ds.meta.get("sensitive_features", {}).get(sensitive, [sensitive])
    col = cols[0] if len(cols) == 1 else None
    ok = (col is not None and col in ds.X.columns
          and not pd.api.types.is_numeric_dtype(ds.X[col])
          and set(map(str, ds.X[col].unique())) == set(map(str, ds.groups[sensitive])))
    if not ok:
        raise ParamError("use_sensitive_as_feature",
                         f"the sensitive attribute {sensitive!r} of {ds.name!r} is not a "
                         "categorical feature column of its own, so poison points cannot "
                         "carry it; set use_sensitive_as_feature to false")
    return col


def prepare(ds, sensitive: str, *, privileged: Any = None,
            use_sensitive_as_feature: bool = True, val_fraction: float, n_points: int,
            poison_label: PoisonLabel, poison_group: PoisonGroup, seed: int
            ) -> PoisoningData:
    """Encoded fit / validation / test splits and the poison space of one attack.

    ``ds`` is a tabular :class:`~trustlab.data.Dataset` whose training split is the
    attacker's and victim's data (subsample it first with ``ds.with_split``);
    ``sensitive`` is a binary group column and ``privileged`` one of its values (needed
    unless ``poison_group`` is ``optimize``). With ``use_sensitive_as_feature`` the
    attribute stays a model input and a poison row's group is its value of it; otherwise
    its feature columns are dropped. ``seed`` draws the validation split.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from trustlab.training.tabular_models import encode_features

    unpriv, priv = group_values(ds, sensitive, privileged)
    group_feature = sensitive_feature(ds, sensitive) if use_sensitive_as_feature else None
    train_idx = np.asarray(ds.train_idx)
    y_all = ds.y[train_idx]
    if len(np.unique(y_all)) < 2:
        raise TrustlabError(f"the training split has a single class ({len(train_idx)} rows: "
                            "use a larger subsample)")
    try:
        fit_idx, val_idx = train_test_split(train_idx, test_size=val_fraction,
                                            random_state=seed, stratify=y_all)
    except ValueError as exc:
        raise ParamError("val_fraction", f"{val_fraction}: cannot split {len(train_idx)} "
                                         f"training rows ({exc})") from None
    fit_idx, val_idx = np.sort(fit_idx), np.sort(val_idx)
    test_idx = np.asarray(ds.test_idx)

    X = ds.X
    if not use_sensitive_as_feature:
        drop = ds.meta.get("sensitive_features", {}).get(sensitive, [sensitive])
        X = X.drop(columns=[c for c in drop if c in X.columns])
    X_fit_raw = X.iloc[fit_idx].reset_index(drop=True)
    rest = X.iloc[np.concatenate([val_idx, test_idx])].reset_index(drop=True)
    X_fit, X_rest, names = encode_features(X_fit_raw, rest)
    X_val, X_test = X_rest[:len(val_idx)], X_rest[len(val_idx):]
    categorical = {c: sorted(map(str, X_fit_raw[c].unique())) for c in X_fit_raw.columns
                   if not pd.api.types.is_numeric_dtype(X_fit_raw[c])}
    # OneHotEncoder orders levels by sorted raw value; names use str(level)
    box = FeatureBox.from_encoded(X_fit, names, categorical, group_feature)
    g = ds.groups[sensitive].astype(str).to_numpy()
    if group_feature is not None and set(box.group_columns) != {unpriv, priv}:
        raise TrustlabError(f"the fit split lacks a value of {sensitive!r}; use a larger "
                            "subsample")
    group = {"unprivileged": unpriv, "privileged": priv, "optimize": "optimize"}[poison_group]
    label = poison_label if poison_label == "optimize" else int(poison_label)
    space = PoisonSpace(box=box, n_points=n_points, label=label, group=group,
                        group_values=(unpriv, priv))
    return PoisoningData(fit=Split(X_fit, ds.y[fit_idx], g[fit_idx]),
                         validation=Split(X_val, ds.y[val_idx], g[val_idx]),
                         test=Split(X_test, ds.y[test_idx], g[test_idx]),
                         feature_names=names, space=space, unprivileged=unpriv,
                         privileged=priv)


def make_objective(data: PoisoningData, make_victim: Callable[..., Any], *,
                   objective: Objective, accuracy_floor: float | None = None,
                   protocol: str = "leak_free", robust: Any = None, seed: int = 0
                   ) -> PoisonObjective:
    """The outer objective of an attack on ``data``: ``make_victim()`` refit on the fit
    split plus a candidate poison, scored on the validation split — or on the test split
    with ``protocol="attack4good"`` (the seed's leaky evaluation).

    ``robust`` (a :class:`~.settings.RobustSettings` or its mapping) scores each candidate
    on ``folds`` x ``refits`` parts: with ``folds`` >= 2 the attacker's fit and validation
    rows are pooled and split into stratified folds (refit on the others + poison, score
    on the held-out fold); each part's victim gets its own seed (derived from ``seed``,
    never the final victim's).
    """
    from sklearn.model_selection import StratifiedKFold

    from trustlab.attacks.fairness_poisoning.objective import ScoringPart
    from trustlab.attacks.fairness_poisoning.settings import RobustSettings

    if protocol not in ("leak_free", "attack4good"):
        raise ParamError("protocol", f"unknown protocol {protocol!r}; choose leak_free or "
                                     "attack4good")
    scored = data.test if protocol == "attack4good" else data.validation
    parts = None
    r = RobustSettings.model_validate(robust) if robust is not None else None
    if r is not None:
        seeds = [seed * 1009 + 1 + j for j in range(r.refits)]
        if r.folds == 1 or protocol == "attack4good":
            if r.folds > 1:
                raise ParamError("robust.folds", "cross-fitting folds need the attacker's "
                                                 "own rows; protocol attack4good scores on "
                                                 "the test split")
            parts = [ScoringPart(data.fit.X, data.fit.y, scored.X, scored.y, scored.group, s)
                     for s in seeds]
        else:
            X = np.vstack([data.fit.X, data.validation.X])
            y = np.concatenate([data.fit.y, data.validation.y])
            g = np.concatenate([data.fit.group, data.validation.group])
            folds = StratifiedKFold(r.folds, shuffle=True, random_state=seed)
            try:
                splits = list(folds.split(X, y))
            except ValueError as exc:
                raise ParamError("robust.folds", f"{r.folds}: {exc}") from None
            parts = [ScoringPart(X[tr], y[tr], X[te], y[te], g[te], s)
                     for tr, te in splits for s in seeds]
    return PoisonObjective(make_victim, data.fit.X, data.fit.y, scored.X, scored.y,
                           scored.group, objective=objective, accuracy_floor=accuracy_floor,
                           parts=parts, spread_penalty=r.spread_penalty if r else 0.0)


__all__ = ["PoisoningData", "Split", "group_values", "make_objective", "prepare",
           "sensitive_feature"]
