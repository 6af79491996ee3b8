"""Backdoor poisoning, all-to-one: a ``poison_rate`` share of the rows the trigger may
poison (its :meth:`~trustlab.attacks.backdoor.triggers.Trigger.poison_candidates`: the
non-target images, or the target's own for a clean-label attack) gets the trigger and the
``target`` label. The poisoned rows are copies added beside the originals, or replace
them for a trigger whose ``replaces_originals`` is set (SIG); a trigger may also add extra
rows that keep their true labels (:meth:`~.triggers.Trigger.cross_samples`, WaNet's noise
mode)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.registry import check_params


class PoisonSettings(registry.Params):
    """The target label and the poisoning rate (the backdoor kind's ``attack:`` block
    holds them beside the trigger and its parameters)."""

    target: int = Field(0, ge=0, description="the label every triggered input is sent to "
                                             "(all-to-one)")
    poison_rate: float = Field(0.1, ge=0, le=1,
                               description="share of the trigger's candidate training "
                                           "images poisoned (the non-target ones, so on 10 "
                                           "balanced classes 0.1 adds poisoned copies "
                                           "equal to ~90% of the target label's rows, "
                                           "~48% of it after poisoning; for a clean-label "
                                           "trigger the target's own)")


def _no_rows() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass
class PoisonedData:
    """The training set after poisoning, in three blocks:

    1. the clean input's rows, in order (without the poisoned ones when the trigger
       ``replaces_originals``);
    2. the poisoned rows (``is_poison`` True), made from rows ``source_idx`` of the clean
       input, labelled ``target``;
    3. the trigger's extra rows (WaNet's noise-mode "cross" samples), made from rows
       ``extra_idx`` and labelled with those rows' true labels: they carry no backdoor, so
       ``is_poison`` is False for them (none for most triggers).
    """

    x: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray      # bool per row
    source_idx: np.ndarray     # index (into the clean input) of each poisoned row
    extra_idx: np.ndarray = field(default_factory=_no_rows)  # ... of each extra row


def n_poison(n_candidates: int, rate: float) -> int:
    return round(float(rate) * n_candidates)


def poison(x: np.ndarray, y: np.ndarray, trigger, target: int, rate: float,
           seed: int = 0) -> PoisonedData:
    """Poison ``round(rate * n_candidates)`` random rows among
    ``trigger.poison_candidates`` (the non-target ones for a dirty-label trigger): their
    triggered versions, labelled ``target``, are added as copies — or replace the
    originals when ``trigger.replaces_originals`` — and ``trigger.cross_samples`` may add
    rows that keep their true labels (see :class:`PoisonedData` for the layout).

    ``trigger`` is a :class:`~trustlab.attacks.backdoor.triggers.Trigger`; a bad
    ``target`` or ``rate`` is a :class:`~trustlab.registry.ParamError` naming it.
    """
    check_params(PoisonSettings, {"target": target, "poison_rate": rate})
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    candidates = trigger.poison_candidates(y, target)
    k = n_poison(len(candidates), rate)
    rng = np.random.default_rng(seed)
    src = np.sort(rng.choice(candidates, size=k, replace=False))
    x_p = trigger.poison_apply(x[src])
    extra_idx, x_e = trigger.cross_samples(x, y, src, rng)
    extra_idx = np.asarray(extra_idx, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(y)), src) if trigger.replaces_originals else slice(None)
    x_kept, y_kept = x[kept], y[kept]
    x_e = np.asarray(x_e, dtype=np.float32)
    return PoisonedData(
        x=np.concatenate([x_kept, x_p, x_e]).astype(np.float32),
        y=np.concatenate([y_kept, np.full(k, target, dtype=y.dtype), y[extra_idx]]),
        is_poison=np.concatenate([np.zeros(len(y_kept), bool), np.ones(k, bool),
                                  np.zeros(len(extra_idx), bool)]),
        source_idx=src,
        extra_idx=extra_idx,
    )


__all__ = ["PoisonSettings", "PoisonedData", "n_poison", "poison"]
