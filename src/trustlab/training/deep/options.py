"""The deep training loop's options, declared once: what :func:`~trustlab.training.deep.train`
checks its arguments against and what the deep trial kinds take as their ``training:``
block. Plain pydantic (no torch), so a config can be checked without loading torch.
"""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, model_validator

from trustlab.registry import ParamError, Params

Sampler = Literal["shuffle", "oversample", "undersample", "balanced_batch"]
# The batch sampling schemes (see trustlab.training.deep.data).
SAMPLERS: tuple[str, ...] = typing.get_args(Sampler)


class EarlyStopping(Params):
    """Stop when ``metric`` (a history column) has not improved for ``patience`` epochs;
    with ``restore_best`` the weights of the best epoch are put back."""

    metric: str = Field("val_worst_group_accuracy",
                        description="the history column watched (val_* needs a validation "
                                    "split)")
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")
    mode: Literal["max", "min"] = Field("max", description="whether higher or lower is better")
    restore_best: bool = Field(True, description="put the best epoch's weights back")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as "
                                                      "an improvement")

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return (value > best + self.min_delta if self.mode == "max"
                else value < best - self.min_delta)


class LoopOptions(Params):
    """How the training loop runs: epochs, batches and their sampling, and the
    regularizers that compose with every method (early stopping, flooding; L2 is the
    method's ``weight_decay``)."""

    epochs: int = Field(5, ge=1, description="passes over the training rows (at most)")
    batch_size: int = Field(128, ge=1, description="rows per batch")
    sampler: Sampler = Field("shuffle", description="how batches are drawn: shuffled epochs, "
                                                    "epoch-level over/under-sampling of the "
                                                    "strata, or balanced batches")
    balance_by: Literal["group", "class"] = Field("group",
                                                  description="the strata samplers balance")
    early_stopping: EarlyStopping | None = Field(None, description="null: no early stopping")
    flooding: float | None = Field(None, ge=0.0,
                                   description="flood level b: every method's loss L is "
                                               "trained as |L - b| + b (Ishida et al. 2020); "
                                               "null: none")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, "
                                            "cuda...")


class TrainingOptions(LoopOptions):
    """Deep training options: the loop's, plus the validation split early stopping
    watches (the ``training:`` block of the deep trial kinds)."""

    val_fraction: float = Field(0.0, ge=0.0, lt=1.0,
                                description="share of the training rows held out "
                                            "(stratified by group) for validation; 0: none")

    @model_validator(mode="after")
    def _validation_split_for_early_stopping(self):
        es = self.early_stopping
        if es is not None and es.metric.startswith("val_") and self.val_fraction == 0:
            raise ParamError("early_stopping", f"{es.metric!r} is a validation metric: set "
                             "val_fraction > 0 (the test split is never used for it)")
        return self

    def loop_kwargs(self) -> dict[str, typing.Any]:
        """The options :func:`~trustlab.training.deep.train` takes."""
        return {name: getattr(self, name) for name in LoopOptions.model_fields}


__all__ = ["SAMPLERS", "EarlyStopping", "LoopOptions", "Sampler", "TrainingOptions"]
