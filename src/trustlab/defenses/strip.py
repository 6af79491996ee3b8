"""STRIP (Gao et al., ACSAC 2019, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks"): a run-time detector. Superimposing an input with random clean images destroys
its content but not a trigger, so a triggered input keeps getting the target label with
confidence (low entropy) while a clean one's predictions scatter (high entropy).

For an input ``x``:

1. superimpose it with ``n_overlays`` distinct random clean images ``o`` (drawn from
   ``seed``) by the authors' blend, ``cv2.addWeighted(x, 1, o, 1, 0)``: ``x + o``, clipped
   to [0, 1] as 8-bit images saturate (``blend: add``); or ``0.5 x + 0.5 o``
   (``blend: average``);
2. its entropy is the mean, over the overlays, of the Shannon entropy (bits, as the
   reference code's ``log2``) of the model's softmax.

The defender's clean rows (``case.x_clean``) are split in two at random (from ``seed``):
``overlay_fraction`` of them are the overlay pool, the others are held-out clean inputs
whose entropies calibrate the threshold. As in the paper and its code, a normal is fitted
to those entropies (maximum likelihood) and the threshold is its ``frr`` quantile
(``threshold: normal``); ``threshold: quantile`` takes the empirical ``frr`` quantile
instead. An input whose entropy is below the threshold is flagged as triggered.

Evaluation (the case's truth, never used to fit anything): the clean test inputs
(``x_test``, at most ``max_eval`` of them) and the triggered non-target test inputs
(``trigger.apply(x_test[y_test != target])``, at most ``max_eval``). Metrics: ``strip.auc``
(ROC AUC of the negated entropy, triggered vs clean), ``strip.detection_rate`` (triggered
inputs flagged), ``strip.false_rejection_rate`` (clean test inputs flagged),
``strip.flagged_fraction`` (share of all evaluated inputs flagged), ``strip.threshold``,
the calibration set's own false rejection rate, the mean entropies of both sets and their
sizes. Detection only: no repaired model.

The superimposed copies of a batch of inputs go through the model in one forward pass
(``batch_size`` images at a time). Written by hand (a few lines around the model; no
maintained PyTorch library implements STRIP).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.defenses.base import Defense, DefenseOutcome, scores_npz
from trustlab.errors import TrustlabError

if TYPE_CHECKING:
    from trustlab.attacks.backdoor import BackdoorCase


def superimpose(x, overlays, blend: str = "add"):
    """``x`` (N, C, H, W) blended with ``overlays`` (N, K, C, H, W): (N, K, C, H, W). Works
    on numpy arrays and torch tensors."""
    x = x[:, None]
    if blend == "average":
        return 0.5 * x + 0.5 * overlays
    out = x + overlays
    return out.clip(0.0, 1.0)


def overlay_indices(n_inputs: int, pool: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n_inputs, k) row indices into a pool of ``pool`` images: ``k`` distinct ones per
    input (drawn with replacement only when the pool has fewer than ``k``)."""
    if pool >= k:
        return np.argsort(rng.random((n_inputs, pool)), axis=1)[:, :k]
    return rng.integers(0, pool, size=(n_inputs, k))


def fit_threshold(clean_entropies: np.ndarray, frr: float, rule: str = "normal") -> float:
    """The entropy below which an input is flagged, from clean entropies: the ``frr``
    quantile of a normal fitted to them (the paper), or their empirical ``frr`` quantile."""
    h = np.asarray(clean_entropies, dtype=np.float64)
    if rule == "quantile":
        return float(np.quantile(h, frr))
    from scipy.stats import norm

    mu, sigma = norm.fit(h)
    if sigma == 0:
        return float(mu)
    return float(norm.ppf(frr, loc=mu, scale=sigma))


class Strip(Defense):
    """STRIP (Gao et al. 2019): flag inputs whose predictions stay confident (low entropy)
    when they are superimposed with random clean images.

    ``entropy(model, x, overlays)`` gives the mean superimposition entropy per input; as a
    defense (:meth:`defend`), the threshold is fitted on held-out clean rows and the
    detector evaluated on the clean and triggered test inputs (metrics ``strip.*``, see the
    module). After it: ``threshold_``, ``entropy_clean_``, ``entropy_triggered_``,
    ``entropy_calibration_``.
    """

    name: ClassVar[str] = "strip"

    class Params(registry.Params):
        n_overlays: int = Field(100, ge=1, description="clean images superimposed on each "
                                                       "input")
        frr: float = Field(0.01, gt=0, lt=1, description="target false rejection rate on "
                                                         "clean inputs (sets the threshold)")
        blend: Literal["add", "average"] = Field(
            "add", description="superimposition: x + overlay clipped to [0, 1] (the "
                               "authors' code), or their average")
        threshold: Literal["normal", "quantile"] = Field(
            "normal", description="threshold rule: frr quantile of a normal fitted to the "
                                  "clean entropies (the paper), or their empirical quantile")
        overlay_fraction: float = Field(0.5, gt=0, lt=1,
                                        description="share of the defender's clean rows "
                                                    "used as overlays; the rest calibrate "
                                                    "the threshold")
        max_eval: int = Field(500, ge=1, description="at most this many clean and this many "
                                                      "triggered test inputs evaluated "
                                                      "(random subset)")
        batch_size: int = Field(512, ge=1, description="superimposed images per forward "
                                                        "pass")

    def entropy(self, model, x: np.ndarray, overlays: np.ndarray, rng: np.random.Generator,
                device=None) -> np.ndarray:
        """Mean entropy (bits) of ``model``'s softmax over ``n_overlays`` superimpositions
        of each input of ``x`` with rows of ``overlays`` (drawn with ``rng``)."""
        import torch

        from trustlab.defenses.filtering import model_on

        model, dev = model_on(model, device)
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros(0)
        k = int(self.n_overlays)
        idx = overlay_indices(len(x), len(overlays), k, rng)
        pool = torch.as_tensor(np.asarray(overlays, dtype=np.float32), device=dev)
        xt = torch.as_tensor(x, device=dev)
        per_batch = max(1, int(self.batch_size) // k)
        out = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(x), per_batch):
                    xb = xt[s:s + per_batch]
                    ob = pool[torch.as_tensor(idx[s:s + per_batch], device=dev)]
                    mixed = superimpose(xb, ob, self.blend)
                    logits = model(mixed.reshape(-1, *xb.shape[1:])).float()
                    p = torch.softmax(logits, dim=1)
                    h = torch.special.entr(p).sum(dim=1) / math.log(2)
                    out.append(h.reshape(len(xb), k).mean(dim=1).double().cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy()

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        from sklearn.metrics import roc_auc_score

        device = self.device or case.device
        x_clean = np.asarray(case.x_clean, dtype=np.float32)
        if len(x_clean) < 2:
            raise TrustlabError("strip needs at least two clean rows of the defender "
                                "(overlays and calibration)")
        rng = np.random.default_rng((self.seed, 7))
        perm = rng.permutation(len(x_clean))
        n_pool = min(len(x_clean) - 1, max(1, round(self.overlay_fraction * len(x_clean))))
        pool, calib = x_clean[perm[:n_pool]], x_clean[perm[n_pool:]]

        x_test = np.asarray(case.x_test, dtype=np.float32)
        y_test = np.asarray(case.y_test)
        clean_rows = np.arange(len(y_test))
        trig_rows = np.flatnonzero(y_test != case.target)
        if len(clean_rows) == 0 or len(trig_rows) == 0:
            raise TrustlabError("strip needs clean and non-target test inputs to evaluate on")
        m = int(self.max_eval)
        if len(clean_rows) > m:
            clean_rows = np.sort(rng.choice(clean_rows, size=m, replace=False))
        if len(trig_rows) > m:
            trig_rows = np.sort(rng.choice(trig_rows, size=m, replace=False))
        x_trig = np.asarray(case.trigger.apply(x_test[trig_rows]), dtype=np.float32)

        self.entropy_calibration_ = self.entropy(case.model, calib, pool, rng, device)
        self.threshold_ = fit_threshold(self.entropy_calibration_, self.frr, self.threshold)
        self.entropy_clean_ = self.entropy(case.model, x_test[clean_rows], pool, rng, device)
        self.entropy_triggered_ = self.entropy(case.model, x_trig, pool, rng, device)

        flag_clean = self.entropy_clean_ < self.threshold_
        flag_trig = self.entropy_triggered_ < self.threshold_
        truth = np.r_[np.zeros(len(flag_clean), bool), np.ones(len(flag_trig), bool)]
        auc = float(roc_auc_score(truth, -np.r_[self.entropy_clean_, self.entropy_triggered_]))
        p = self.name
        metrics = {
            f"{p}.auc": auc,
            f"{p}.detection_rate": float(flag_trig.mean()),
            f"{p}.false_rejection_rate": float(flag_clean.mean()),
            f"{p}.flagged_fraction": float((flag_clean.sum() + flag_trig.sum()) / len(truth)),
            f"{p}.threshold": self.threshold_,
            f"{p}.calibration_frr": float(np.mean(self.entropy_calibration_ < self.threshold_)),
            f"{p}.entropy_clean_mean": float(self.entropy_clean_.mean()),
            f"{p}.entropy_triggered_mean": float(self.entropy_triggered_.mean()),
            f"{p}.n_clean": float(len(flag_clean)),
            f"{p}.n_triggered": float(len(flag_trig)),
            f"{p}.n_calibration": float(len(calib)),
        }
        scores = -np.r_[self.entropy_clean_, self.entropy_triggered_]
        return DefenseOutcome(metrics=metrics,
                              artifacts={f"{p}_scores.npz": scores_npz(scores, truth)})


__all__ = ["Strip", "fit_threshold", "overlay_indices", "superimpose"]
