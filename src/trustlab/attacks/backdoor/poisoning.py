"""Backdoor poisoning, all-to-one: copy a ``poison_rate`` share of the rows the trigger
may poison (the non-target images), put the trigger on the copies and label them with
the ``target`` (the originals stay)."""

from __future__ import annotations

from dataclasses import dataclass

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
                               description="share of the non-target training images "
                                           "copied with the trigger and relabelled")


@dataclass
class PoisonedData:
    """The training set after poisoning: originals first, then the poisoned copies."""

    x: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray      # bool per row
    source_idx: np.ndarray     # index (into the clean input) of each poisoned copy


def n_poison(n_candidates: int, rate: float) -> int:
    return round(float(rate) * n_candidates)


def poison(x: np.ndarray, y: np.ndarray, trigger, target: int, rate: float,
           seed: int = 0) -> PoisonedData:
    """Add ``round(rate * n_candidates)`` triggered copies of random rows among
    ``trigger.poison_candidates`` (the non-target ones), labelled ``target``.

    ``trigger`` is a :class:`~trustlab.attacks.backdoor.triggers.Trigger`; a bad
    ``target`` or ``rate`` is a :class:`~trustlab.registry.ParamError` naming it.
    """
    check_params(PoisonSettings, {"target": target, "poison_rate": rate})
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    candidates = trigger.poison_candidates(y, target)
    k = n_poison(len(candidates), rate)
    src = np.sort(np.random.default_rng(seed).choice(candidates, size=k, replace=False))
    x_p = trigger.apply(x[src])
    return PoisonedData(
        x=np.concatenate([x, x_p]).astype(np.float32),
        y=np.concatenate([y, np.full(k, target, dtype=y.dtype)]),
        is_poison=np.concatenate([np.zeros(len(y), bool), np.ones(k, bool)]),
        source_idx=src,
    )


__all__ = ["PoisonSettings", "PoisonedData", "n_poison", "poison"]
