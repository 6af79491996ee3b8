"""What the trial kinds share: a strict config base, config blocks that name a registry
entry (:class:`Choice`, :class:`FlatChoice`), the ``subsample`` key and how it draws rows,
and the per-process dataset cache."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from trustlab.registry import get_registry


class StrictConfig(BaseModel):
    """A config block where an unknown key is an error that names it."""

    model_config = ConfigDict(extra="forbid")


class Choice(StrictConfig):
    """``{name: <entry>, params: {...}}``: a registry entry and its parameters.

    ``params`` is checked against the entry's own declaration and its defaults are filled
    in, so the resolved config (and the trial id, its hash) says exactly what runs.
    Subclasses set ``stage`` (the registry) and may add keys of their own.
    """

    stage: ClassVar[str]
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_params(self):
        self.params = get_registry(self.stage).resolve(self.name, self.params)
        return self

    @property
    def entry(self):
        return get_registry(self.stage).get(self.name)


class FlatChoice(BaseModel):
    """A block whose ``selector`` key names a registry entry and whose other, undeclared
    keys are that entry's parameters, written flat beside the block's own keys::

        attack: {trigger: patch, size: 4, position: bottom_right, target: 0}

    (``size`` and ``position`` belong to the ``patch`` trigger). The entry's declaration
    checks them and fills its defaults; :attr:`entry_params` returns them.
    """

    model_config = ConfigDict(extra="allow")
    stage: ClassVar[str]
    selector: ClassVar[str]

    @model_validator(mode="after")
    def _resolve_entry_params(self):
        name = getattr(self, self.selector)
        self.__pydantic_extra__ = get_registry(self.stage).resolve(
            name, dict(self.__pydantic_extra__ or {}), key="", name_key=self.selector)
        return self

    @property
    def entry(self):
        return get_registry(self.stage).get(getattr(self, self.selector))

    @property
    def entry_params(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


def _check_subsample(v):
    if v is None:
        return v
    if isinstance(v, bool) or v <= 0 or (isinstance(v, float) and v > 1):
        raise ValueError("must be a fraction in (0, 1] or a row count >= 1")
    return v


# Training rows to keep: a fraction in (0, 1] or a count, drawn with the trial seed.
Subsample = Annotated[int | float | None, AfterValidator(_check_subsample)]


def subsample_rows(train_idx: np.ndarray, subsample: int | float | None, seed: int,
                   minimum: int = 1) -> np.ndarray:
    """``subsample`` of ``train_idx`` (sorted), drawn with the trial seed; all if None."""
    train_idx = np.asarray(train_idx)
    if subsample is None:
        return train_idx
    n = (int(round(subsample * len(train_idx))) if isinstance(subsample, float)
         else int(subsample))
    n = max(minimum, min(n, len(train_idx)))
    return np.sort(np.random.default_rng(seed).choice(train_idx, size=n, replace=False))


def load_dataset_cached(name: str, seed: int, options: dict[str, Any] | None = None):
    """``load_dataset`` cached per process: a sweep's trials in one worker (other models,
    methods, defenses) reuse the loaded data instead of reading it again."""
    return _load(name, seed, json.dumps(options or {}, sort_keys=True))


@lru_cache(maxsize=4)
def _load(name: str, seed: int, options_json: str):
    from trustlab.data import load_dataset

    return load_dataset(name, seed=seed, **json.loads(options_json))
