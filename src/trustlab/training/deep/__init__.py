"""Deep training (S5): networks, in-processing methods and the one PyTorch loop.

Typical use (what a trial kind calls)::

    from trustlab.training.deep import split_tensors, build_method, train, predict
    tr = split_tensors(ds, "train", group_column="group")
    te = split_tensors(ds, "test", group_column="group")
    method = build_method("group_dro", "mlp", tr, model_params={"width": 256},
                          hparams={"eta": 0.01, "weight_decay": 1e-4}, seed=seed)
    history = train(method, tr, te, epochs=5, batch_size=128, seed=seed)
    y_pred = predict(method, te.x)

Importing this package imports torch.
"""

from trustlab.training.deep.data import (
                                         SAMPLERS,
                                         BalancedBatchSampler,
                                         ResampledEpochs,
                                         SplitTensors,
                                         make_loader,
                                         split_tensors,
)
from trustlab.training.deep.hparams import (
                                         HPARAMS,
                                         OPTIMIZER,
                                         default_hparams,
                                         resolve_hparams,
)
from trustlab.training.deep.methods import METHODS, Method, make_method
from trustlab.training.deep.models import MODELS, count_parameters, make_model
from trustlab.training.deep.trainer import (
                                         EarlyStopping,
                                         History,
                                         build_method,
                                         evaluate,
                                         predict,
                                         predict_logits,
                                         resolve_device,
                                         train,
)

__all__ = ["HPARAMS", "METHODS", "MODELS", "OPTIMIZER", "SAMPLERS", "BalancedBatchSampler",
           "EarlyStopping", "History", "Method", "ResampledEpochs", "SplitTensors",
           "build_method", "count_parameters", "default_hparams", "evaluate", "make_loader",
           "make_method", "make_model", "predict", "predict_logits", "resolve_device",
           "resolve_hparams", "split_tensors", "train"]
