"""How well a backdoor works: clean accuracy, attack success rate and robust accuracy."""

from __future__ import annotations

from typing import Callable

import numpy as np

from trustlab.errors import TrustlabError


def backdoor_metrics(y_true, pred_clean, pred_triggered, target: int) -> dict[str, float]:
    """The security metrics from predictions on the clean and the triggered test set.

    ``clean_accuracy`` uses every clean test input. ``attack_success_rate`` and
    ``robust_accuracy`` use the triggered inputs whose true label is not the target (a
    target-class input "succeeds" and is "correct" without any backdoor).
    """
    y_true, pred_clean, pred_triggered = (np.asarray(a) for a in (y_true, pred_clean,
                                                                   pred_triggered))
    nontarget = y_true != target
    if not nontarget.any():
        raise TrustlabError("the test set has no non-target inputs to measure the attack on")
    return {
        "clean_accuracy": float(np.mean(pred_clean == y_true)),
        "attack_success_rate": float(np.mean(pred_triggered[nontarget] == target)),
        "robust_accuracy": float(np.mean(pred_triggered[nontarget] == y_true[nontarget])),
    }


def predict_labels(model, x, batch_size: int = 512) -> np.ndarray:
    """Predicted classes of a plain torch model (eval mode, batched, on its device)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not hasattr(x, "detach") else x
    try:
        with torch.no_grad():
            parts = [model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                     for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy()


def evaluate_backdoor(model, x_test, y_test, trigger_apply: Callable, target: int
                      ) -> dict[str, float]:
    """Clean accuracy, ASR and robust accuracy of ``model`` on a test set;
    ``trigger_apply`` is the true trigger's :meth:`~.triggers.Trigger.apply`."""
    pred_clean = predict_labels(model, x_test)
    pred_trig = predict_labels(model, trigger_apply(np.asarray(x_test, dtype=np.float32)))
    return backdoor_metrics(y_test, pred_clean, pred_trig, target)


__all__ = ["backdoor_metrics", "evaluate_backdoor", "predict_labels"]
