"""Learning Fair Representations (Zemel, Wu, Swersky, Pitassi & Dwork, ICML 2013).

Pre-processing: every row is mapped to a soft assignment over ``k`` prototypes v_1..v_k,

    M_nk = softmax_k(-d(x_n, v_k)),   d(x, v) = sqrt(sum_j alpha_j (x_j - v_kj)^2),

and represented by x̂_n = sum_k M_nk v_k; each prototype also carries a label weight
w_k in [0, 1] and ŷ_n = sum_k M_nk w_k. The prototypes, w (and, with ``learn_alpha``,
the per-feature distance weights alpha) minimize

    Az L_z + Ax L_x + Ay L_y
    L_z = mean_k |mean_{n unpriv} M_nk - mean_{n priv} M_nk|    statistical parity of the
                                                                prototype memberships
    L_x = mean (x̂ - x)^2 over the unprivileged rows + the same over the privileged rows
    L_y = mean binary cross-entropy of ŷ (clipped to [eps, 1 - eps]) over all rows

with scipy's L-BFGS-B, exactly as AIF360's ``LFR`` does (``lfr_helpers.LFR_optim_objective``):
the parameter vector is [w, prototypes row by row] (+ alpha last), initialized uniform on
[0, 1) from ``numpy.random.RandomState(seed)`` (AIF360's ``np.random.seed(seed)`` draw),
bounds w in [0, 1], alpha >= 0, and by default the gradient is L-BFGS-B's finite
differences with AIF360's step 1e-5. Note that scipy counts those finite-difference
evaluations against ``maxfun``, so AIF360's default maxfun=5000 stops after about
5000 / (number of parameters) iterations; ``gradient: analytic`` uses the exact gradient
(written out below, L_z's |.| by its sign) and makes each iteration cost one evaluation.
With alpha fixed to 1 (the default, as AIF360, which has no alpha) the distance is
scipy's ``cdist`` Euclidean distance, the one AIF360 uses; learned, alpha is one weight
per feature shared by both groups, starting at 1.

The features are standardized first (scikit-learn's StandardScaler, fitted on the
training rows) so that one distance scale fits one-hot and numeric columns alike. Then
the estimator is fitted on the fair representation x̂ (what AIF360's ``transform``
returns as features) and predicts from x̂; or, with ``predict_with: prototypes``, the
estimator is not used and the LFR's own ŷ is the score, thresholded at 0.5 (AIF360's
``transform`` labels: ŷ > 0.5).

Written by hand: AIF360 has LFR, but it is a test oracle here and not a dependency.

Groups: ``privileged`` names the privileged value (the tabular kind passes the dataset's);
every other value is unprivileged. Without it, the group with the highest positive-label
rate in the training data is taken as privileged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.optimize as optim
from pydantic import Field
from scipy.spatial.distance import cdist
from scipy.special import softmax
from sklearn.base import clone
from sklearn.preprocessing import StandardScaler

from trustlab import registry
from trustlab.mitigations._checks import (PRIVILEGED_DOC, PrivilegedValue, check_fit_inputs,
                                          check_predict_inputs, privileged_mask)
from trustlab.mitigations.base import Mitigation

_EPS = np.finfo(float).eps  # AIF360's clip of ŷ, so that the log-loss stays finite


def unpack(params: np.ndarray, k: int, d: int, learn_alpha: bool = False):
    """(w, prototypes, alpha) from the flat parameter vector; alpha is None when fixed."""
    w = params[:k]
    prototypes = params[k:k + k * d].reshape((k, d))
    alpha = params[k + k * d:] if learn_alpha else None
    return w, prototypes, alpha


def _distances(prototypes: np.ndarray, x: np.ndarray, alpha: np.ndarray | None):
    if alpha is None:
        return cdist(x, prototypes)
    root = np.sqrt(alpha)
    return cdist(x * root, prototypes * root)


def _map(prototypes, w, x, alpha):
    dist = _distances(prototypes, x, alpha)
    M = softmax(-dist, axis=1)
    x_hat = np.matmul(M, prototypes)
    y_hat = np.clip(np.matmul(M, w.reshape((-1, 1))), _EPS, 1.0 - _EPS)
    return M, x_hat, y_hat, dist


def lfr_map(prototypes: np.ndarray, w: np.ndarray, x: np.ndarray,
            alpha: np.ndarray | None = None):
    """Memberships M, representation x̂ and clipped ŷ (column) of the rows ``x``."""
    return _map(prototypes, w, x, alpha)[:3]


def _terms(map_u, map_p, x_unpriv, x_priv, y_unpriv, y_priv) -> dict[str, float]:
    # Formed in the same order as AIF360's LFR_optim_objective (same floats, bit for bit).
    M_u, x_hat_u, y_hat_u = map_u[:3]
    M_p, x_hat_p, y_hat_p = map_p[:3]
    y_hat = np.concatenate([y_hat_u, y_hat_p], axis=0)
    y = np.concatenate([y_unpriv.reshape((-1, 1)), y_priv.reshape((-1, 1))], axis=0)
    L_x = np.mean((x_hat_u - x_unpriv) ** 2) + np.mean((x_hat_p - x_priv) ** 2)
    L_z = np.mean(abs(np.mean(M_u, axis=0) - np.mean(M_p, axis=0)))
    L_y = - np.mean(y * np.log(y_hat) + (1. - y) * np.log(1. - y_hat))
    return {"L_x": float(L_x), "L_y": float(L_y), "L_z": float(L_z)}


def lfr_losses(params: np.ndarray, x_unpriv: np.ndarray, x_priv: np.ndarray,
               y_unpriv: np.ndarray, y_priv: np.ndarray, k: int,
               learn_alpha: bool = False) -> dict[str, float]:
    """The three terms L_x, L_y, L_z."""
    w, prototypes, alpha = unpack(params, k, x_unpriv.shape[1], learn_alpha)
    return _terms(_map(prototypes, w, x_unpriv, alpha), _map(prototypes, w, x_priv, alpha),
                  x_unpriv, x_priv, y_unpriv, y_priv)


def lfr_objective(params: np.ndarray, x_unpriv: np.ndarray, x_priv: np.ndarray,
                  y_unpriv: np.ndarray, y_priv: np.ndarray, k: int, Ax: float, Ay: float,
                  Az: float, learn_alpha: bool = False) -> float:
    """Ax L_x + Ay L_y + Az L_z (AIF360's ``LFR_optim_objective`` when alpha is fixed)."""
    parts = lfr_losses(params, x_unpriv, x_priv, y_unpriv, y_priv, k, learn_alpha)
    return Ax * parts["L_x"] + Ay * parts["L_y"] + Az * parts["L_z"]


def lfr_objective_and_grad(params: np.ndarray, x_unpriv: np.ndarray, x_priv: np.ndarray,
                           y_unpriv: np.ndarray, y_priv: np.ndarray, k: int, Ax: float,
                           Ay: float, Az: float, learn_alpha: bool = False
                           ) -> tuple[float, np.ndarray]:
    """The objective and its gradient (|.| differentiated as its sign, the clip as 0
    outside [eps, 1 - eps]).

    With G = dL/dM per row: dL/dD = -M * (G - sum_k M G) (softmax), and with
    H = dL/dD / D, dD_nk/dv_kj = -alpha_j (x_nj - v_kj) / D_nk and
    dD_nk/dalpha_j = (x_nj - v_kj)^2 / (2 D_nk).
    """
    d = x_unpriv.shape[1]
    w, V, alpha = unpack(params, k, d, learn_alpha)
    a = np.ones(d) if alpha is None else alpha
    n_total = len(x_unpriv) + len(x_priv)
    maps = [_map(V, w, x, alpha) for x in (x_unpriv, x_priv)]
    parts = _terms(*maps, x_unpriv, x_priv, y_unpriv, y_priv)
    value = Ax * parts["L_x"] + Ay * parts["L_y"] + Az * parts["L_z"]
    sign = np.sign(np.mean(maps[0][0], axis=0) - np.mean(maps[1][0], axis=0))

    g_w, g_V, g_a = np.zeros(k), np.zeros((k, d)), np.zeros(d)
    for (M, x_hat, y_hat, dist), x, y, side in ((maps[0], x_unpriv, y_unpriv, 1.0),
                                          (maps[1], x_priv, y_priv, -1.0)):
        n = len(x)
        y = y.reshape(-1, 1).astype(np.float64)
        raw = M @ w.reshape(-1, 1)
        inside = (raw > _EPS) & (raw < 1.0 - _EPS)
        d_yhat = Ay * -(y / y_hat - (1.0 - y) / (1.0 - y_hat)) / n_total * inside  # (n, 1)
        d_xhat = Ax * 2.0 * (x_hat - x) / (n * d)  # (n, d)
        G = d_xhat @ V.T + d_yhat @ w.reshape(1, -1) + Az * side * sign / (k * n)
        g_w += (M.T @ d_yhat).ravel()
        g_V += M.T @ d_xhat
        dD = -M * (G - np.sum(M * G, axis=1, keepdims=True))
        H = np.divide(dD, dist, out=np.zeros_like(dD), where=dist > 0)  # (n, k)
        Hx = H.T @ x  # (k, d)
        h = H.sum(axis=0)  # (k,)
        g_V += -a * (Hx - h[:, None] * V)
        if alpha is not None:
            g_a += 0.5 * (H.sum(axis=1) @ (x ** 2) - 2.0 * np.sum(V * Hx, axis=0)
                          + h @ (V ** 2))
    grad = np.concatenate([g_w, g_V.ravel()] + ([g_a] if alpha is not None else []))
    return float(value), grad


def fit_lfr(x_unpriv: np.ndarray, x_priv: np.ndarray, y_unpriv: np.ndarray,
            y_priv: np.ndarray, k: int, Ax: float, Ay: float, Az: float, seed: int,
            maxiter: int, maxfun: int, learn_alpha: bool = False,
            gradient: str = "numeric") -> tuple[np.ndarray, dict]:
    """L-BFGS-B from AIF360's initialization; returns the parameters and scipy's info."""
    d = x_unpriv.shape[1]
    # AIF360: np.random.seed(seed); np.random.uniform(size=k + d k) — the same stream.
    x0 = np.random.RandomState(seed).uniform(size=k + d * k)
    bounds = [(0, 1)] * k + [(None, None)] * d * k
    if learn_alpha:
        x0 = np.concatenate([x0, np.ones(d)])  # start from the plain Euclidean distance
        bounds += [(0, None)] * d
    args = (x_unpriv, x_priv, y_unpriv, y_priv, k, Ax, Ay, Az, learn_alpha)
    if gradient == "numeric":
        params, _, info = optim.fmin_l_bfgs_b(lfr_objective, x0=x0, epsilon=1e-5, args=args,
                                              bounds=bounds, approx_grad=True,
                                              maxfun=maxfun, maxiter=maxiter)
    else:
        params, _, info = optim.fmin_l_bfgs_b(lfr_objective_and_grad, x0=x0, args=args,
                                              bounds=bounds, maxfun=maxfun,
                                              maxiter=maxiter)
    return params, info


class LearningFairRepresentations(Mitigation):
    """Learning Fair Representations (Zemel et al. 2013): map rows to k prototypes whose
    memberships do not reveal the group, then learn from that representation.

    Learned: ``w_`` (prototype label weights), ``prototypes_`` (in standardized feature
    units), ``alpha_`` (distance weights; ones unless learned), ``scaler_``,
    ``losses_`` (L_x, L_y, L_z at the solution on the training rows), ``n_iter_``,
    ``privileged_``. ``predict_score`` is the estimator's P(y=1) on x̂, or ŷ with
    ``predict_with: prototypes``.
    """

    name = "lfr"

    class Params(registry.Params):
        k: int = Field(5, ge=1, description="number of prototypes")
        Ax: float = Field(0.01, ge=0, description="weight of the reconstruction loss L_x")
        Ay: float = Field(1.0, ge=0, description="weight of the label loss L_y")
        Az: float = Field(50.0, ge=0, description="weight of the statistical-parity loss L_z")
        maxiter: int = Field(5000, ge=1, description="L-BFGS-B iterations at most")
        maxfun: int = Field(5000, ge=1, description="objective evaluations at most (finite "
                                                    "differences count, as in AIF360)")
        gradient: Literal["numeric", "analytic"] = Field(
            "numeric", description="numeric: L-BFGS-B finite differences (AIF360); "
                                   "analytic: the exact gradient (far fewer evaluations)")
        learn_alpha: bool = Field(False, description="also learn per-feature distance "
                                                     "weights (Zemel et al.; AIF360 fixes 1)")
        predict_with: Literal["estimator", "prototypes"] = Field(
            "estimator", description="estimator: fit the estimator on x̂; prototypes: the "
                                     "LFR's own ŷ > 0.5 (AIF360)")
        privileged: PrivilegedValue = Field(None, description=PRIVILEGED_DOC)

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        priv, self.privileged_ = privileged_mask(y, sensitive, self.privileged, self.name)
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        unpriv = ~priv
        parts = (Z[unpriv], Z[priv], y[unpriv].astype(np.float64),
                 y[priv].astype(np.float64))
        params, info = fit_lfr(*parts, k=self.k, Ax=self.Ax, Ay=self.Ay, Az=self.Az,
                               seed=self.seed, maxiter=self.maxiter, maxfun=self.maxfun,
                               learn_alpha=self.learn_alpha, gradient=self.gradient)
        self.params_ = params
        w, prototypes, alpha = unpack(params, self.k, X.shape[1], self.learn_alpha)
        self.w_, self.prototypes_ = w.copy(), prototypes.copy()
        self.alpha_ = np.ones(X.shape[1]) if alpha is None else alpha.copy()
        self.losses_ = lfr_losses(params, *parts, k=self.k, learn_alpha=self.learn_alpha)
        self.n_iter_ = int(info["nit"])
        if self.predict_with == "estimator":
            self.estimator_ = clone(estimator).fit(self._transform(Z)[1], y)
        return self

    def effect(self) -> dict[str, float]:
        # The features are always replaced by x̂, so there is no "unchanged" case; these say
        # how far (L_x, in squared standardized units) and how fair (L_z) the result is.
        return {"reconstruction_error": self.losses_["L_x"],
                "membership_parity_gap": self.losses_["L_z"],
                "iterations": float(self.n_iter_)}

    def _transform(self, Z: np.ndarray):
        alpha = self.alpha_ if self.learn_alpha else None
        M, x_hat, y_hat = lfr_map(self.prototypes_, self.w_, Z, alpha)
        return M, x_hat, y_hat.ravel()

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The fair representation x̂ of ``X`` (standardized units), as AIF360's features."""
        return self._transform(self.scaler_.transform(np.asarray(X, dtype=np.float64)))[1]

    def memberships(self, X: np.ndarray) -> np.ndarray:
        """Each row's soft assignment M over the prototypes."""
        return self._transform(self.scaler_.transform(np.asarray(X, dtype=np.float64)))[0]

    def predict_score(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        _, x_hat, y_hat = self._transform(self.scaler_.transform(X))
        if self.predict_with == "prototypes":
            return y_hat.astype(np.float64)
        if not hasattr(self.estimator_, "predict_proba"):
            return None
        return np.asarray(self.estimator_.predict_proba(x_hat))[:, 1].astype(np.float64)

    def predict(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        _, x_hat, y_hat = self._transform(self.scaler_.transform(X))
        if self.predict_with == "prototypes":
            return (y_hat > 0.5).astype(np.int64)
        return np.asarray(self.estimator_.predict(x_hat)).astype(np.int64)
