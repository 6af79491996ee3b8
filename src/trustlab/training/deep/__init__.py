"""Deep training: networks, in-processing methods and the one PyTorch loop.

Networks (:data:`NETWORKS`) and training methods (:data:`METHODS`) are registry entries
that declare their parameters; :class:`TrainingOptions` declares the loop's. Typical use
(what a trial kind calls)::

    from trustlab.training.deep import split_tensors, build_method, train, predict
    tr = split_tensors(ds, "train", group_column="group")
    te = split_tensors(ds, "test", group_column="group")
    method = build_method("group_dro", "mlp", tr, model_params={"width": 256},
                          hparams={"eta": 0.01, "weight_decay": 1e-4}, seed=seed)
    history = train(method, tr, te, epochs=5, batch_size=128, seed=seed)
    y_pred = predict(method, te.x)

or, from a dataset to test predictions in one call, :func:`train_network`.
The names load on first use, so the training options (:mod:`~.options`, a deep kind's
``training:`` block) are read without importing torch; the rest imports it.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "data": ["BalancedBatchSampler", "ResampledEpochs", "SplitTensors", "make_loader",
             "split_tensors"],
    "methods": ["METHODS", "Method", "make_method"],
    "models": ["NETWORKS", "count_parameters", "make_model"],
    "options": ["SAMPLERS", "EarlyStopping", "LoopOptions", "TrainingOptions"],
    "pipeline": ["Trained", "check_dataset", "numeric_features", "split_validation",
                 "train_network"],
    "search": ["HparamSearch", "search_network"],
    "trainer": ["History", "build_method", "evaluate", "fit_erm", "predict", "predict_logits",
                "resolve_device", "train"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_MODULE_OF)
