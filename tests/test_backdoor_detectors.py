"""The backdoor detectors — spectral signatures, activation clustering, STRIP — on a real
backdoored network (1,500 MNIST digits, a BadNets 3x3 patch, 5% poisoned copies sent to
label 1), with every metric checked against an independent computation, plus their
algorithms on hand-made cases, their parameter checks, and a sweep through the runner.

Why label 1 and ``badnets_cnn``: the filters need the poisoned rows to stand out in the
target label's representation more than that label's own clean spread. On seeds 0-2 of
this case the spectral AUC was 0.83-0.86 (0.96-1.00 inside the target label) and
activation clustering with PCA 0.96-0.97; with target 0 (the widest digit class) or the
global-pooled ``small_cnn`` they drop to 0.55-0.75. Activation clustering with the paper's
ICA (whitened components) gave 0.27-0.63 on these three models (0.67-0.88 inside the
target label) — while on the full 5,000 digits at a 3% poison rate it was ICA that
separated perfectly and PCA that did not: neither reduction wins everywhere. Here its
separation is asserted with ``reduce: pca``, the ICA path on a planted case.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from trustlab.attacks.backdoor import build_backdoor, make_trigger
from trustlab.data import load_dataset
from trustlab.defenses import apply_defense, make_defense
from trustlab.defenses.activation_clustering import ActivationClustering, boundary_margin
from trustlab.defenses.spectral_signatures import SpectralSignatures, spectral_scores
from trustlab.defenses.strip import Strip, fit_threshold, overlay_indices, superimpose
from trustlab.errors import TrustlabError

TARGET = 1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def case():
    from trustlab.training.deep import NETWORKS

    if "badnets_cnn" not in NETWORKS:
        pytest.skip("the badnets_cnn network is not registered")
    ds = load_dataset("mnist", seed=0)
    X = np.asarray(ds.X, dtype=np.float32)
    rows = np.random.default_rng(0).permutation(np.asarray(ds.train_idx))[:1500]
    trigger = make_trigger("patch", X.shape[1:], size=3)
    training = {"epochs": 8, "batch_size": 64, "lr": 0.003, "device": "cpu"}
    return build_backdoor(X, ds.y, rows, np.asarray(ds.test_idx)[:300], trigger=trigger,
                          target=TARGET, poison_rate=0.05, clean_fraction=0.2,
                          network="badnets_cnn", network_params={"width": 8, "hidden": 64},
                          training=training, seed=0, n_classes=10)


def _features(model, x):
    """The penultimate representation, computed here without the defenses' helper."""
    model.eval()
    with torch.no_grad():
        return model.features(torch.as_tensor(x)).double().numpy()


def test_the_planted_backdoor_takes(case):
    m = case.evaluate(case.model)
    assert m["attack_success_rate"] > 0.9 and m["clean_accuracy"] > 0.9, m
    share = case.poisoned.is_poison.sum() / (case.poisoned.y == TARGET).sum()
    assert 0.2 < share < 0.35   # the poisoned share of the target label


# -- spectral signatures -------------------------------------------------------------------
def test_spectral_scores_by_hand_and_against_an_eigendecomposition():
    # points on a line: mean 1, centred [-2, -1, 0, 3], top direction e1 -> squares
    f = np.array([[-1.0, 5.0], [0.0, 5.0], [1.0, 5.0], [4.0, 5.0]])
    np.testing.assert_allclose(spectral_scores(f), [4, 1, 0, 9], atol=1e-12)
    # generic data: the top eigenvector of the centred scatter matrix (eigh, not svd)
    r = np.random.default_rng(0).normal(size=(50, 6)) * [5, 1, 1, 1, 1, 1]
    m = r - r.mean(0)
    v = np.linalg.eigh(m.T @ m)[1][:, -1]
    np.testing.assert_allclose(spectral_scores(r), (m @ v) ** 2, rtol=1e-9)


def test_spectral_removal_is_the_top_share_of_each_label():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [40, 61, 7])
    f = rng.normal(size=(len(y), 5))
    ss = SpectralSignatures(expected_poison_fraction=0.2, removal_factor=1.5).score(f, y)
    for c, n_c in zip((0, 1, 2), (40, 61, 7)):
        rows = y == c
        s = spectral_scores(f[rows])
        k = round(0.3 * n_c)
        assert ss.removed_[rows].sum() == k
        assert s[ss.removed_[rows]].min() >= s[~ss.removed_[rows]].max()
        np.testing.assert_allclose(ss.normalized_scores_[rows], s / np.median(s))


def test_spectral_signatures_on_the_planted_case(case):
    ss = make_defense("spectral_signatures", {}, seed=0, device="cpu")
    metrics, artifacts = apply_defense(ss, case)
    p = case.poisoned
    truth = p.is_poison
    # the scores again, from the model's features and an eigendecomposition per label
    f = _features(case.model, p.x)
    norm_scores = np.zeros(len(p.y))
    n_removed = 0
    for c in range(10):
        rows = p.y == c
        m = f[rows] - f[rows].mean(0)
        v = np.linalg.eigh(m.T @ m)[1][:, -1]
        s = (m @ v) ** 2
        norm_scores[rows] = s / np.median(s)
        n_removed += round(0.15 * rows.sum())
    np.testing.assert_allclose(ss.normalized_scores_, norm_scores, rtol=1e-6, atol=1e-9)
    auc = metrics["spectral_signatures.auc"]
    assert auc == pytest.approx(roc_auc_score(truth, norm_scores), abs=1e-9)
    assert auc > 0.75, metrics
    in_t = p.y == TARGET
    assert metrics["spectral_signatures.auc_target_label"] == pytest.approx(
        roc_auc_score(truth[in_t], norm_scores[in_t]), abs=1e-9)
    assert metrics["spectral_signatures.auc_target_label"] > 0.9, metrics
    # removal: 15% of each label; precision and recall by hand
    removed = ss.removed_
    assert metrics["spectral_signatures.n_removed"] == removed.sum() == n_removed
    assert metrics["spectral_signatures.flagged_fraction"] == pytest.approx(
        n_removed / len(p.y))
    assert metrics["spectral_signatures.precision"] == pytest.approx(
        (removed & truth).sum() / removed.sum())
    assert metrics["spectral_signatures.recall"] == pytest.approx(
        (removed & truth).sum() / truth.sum())
    # a repair: a model retrained without the removed rows
    assert {"repaired.clean_accuracy", "repaired.attack_success_rate",
            "defense_time_s"} <= set(metrics) and set(artifacts) == {"spectral_signatures_scores.npz"}
    assert metrics["repaired.clean_accuracy"] > 0.85


# -- activation clustering -----------------------------------------------------------------
def _planted_activations(seed=0):
    """Three labels of 300 rows, 20-dimensional Gaussians; label 2 holds a 20% cluster
    shifted by 10 along a random direction (the 'poison')."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], 300)
    f = rng.normal(size=(900, 20)) * np.linspace(2, 0.5, 20)
    poison = np.zeros(900, dtype=bool)
    poison[np.flatnonzero(y == 2)[:60]] = True
    shift = rng.normal(size=20)
    f[poison] += 10 * shift / np.linalg.norm(shift)
    return f, y, poison


def test_activation_clustering_finds_a_planted_cluster_and_margins_match_kmeans():
    f, y, poison = _planted_activations()
    for reduce in ("ica", "pca"):
        ac = ActivationClustering(reduce=reduce, seed=0).cluster(f, y)
        assert ac.flagged_labels_ == [2], (reduce, ac.small_share_)
        np.testing.assert_array_equal(ac.removed_, poison)
        assert roc_auc_score(poison[y == 2], ac.scores_[y == 2]) == 1.0
        # across labels the margins of clean labels split in two overlap the poison's a bit
        assert roc_auc_score(poison, ac.scores_) > 0.85
        assert ac.ica_fallbacks_ == 0
    # the margin is positive exactly on the smaller cluster's side, and is a distance
    z = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(boundary_margin(z, np.array([2.0, 0.0]), np.zeros(2)),
                               [-1.0, 0.0, 2.0])


def test_ica_and_its_whitened_pca_fallback_cluster_alike():
    # FastICA = PCA whitening + a rotation; k-means sees distances only, so the fallback
    # (whitened PCA) splits a label as a converged ICA does, with the same margins
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    f, y, poison = _planted_activations(seed=3)
    rows = y == 2
    ac = ActivationClustering(seed=0)
    z_ica, fell_back = ac._reduce(f[rows], seed=5)
    assert not fell_back
    z_pca = PCA(n_components=10, whiten=True).fit_transform(f[rows])
    np.testing.assert_allclose(np.cov(z_ica.T), np.eye(10), atol=0.01)
    labels = [KMeans(2, n_init=10, random_state=0).fit(z).labels_ for z in (z_ica, z_pca)]
    assert (labels[0] == labels[1]).all() or (labels[0] != labels[1]).all()
    d_ica = np.linalg.norm(z_ica[:, None] - z_ica[None], axis=-1)
    d_pca = np.linalg.norm(z_pca[:, None] - z_pca[None], axis=-1)
    np.testing.assert_allclose(d_ica, d_pca * math.sqrt(rows.sum() / (rows.sum() - 1)),
                               rtol=1e-6, atol=1e-6)


def test_activation_clustering_on_the_planted_case(case):
    p = case.poisoned
    truth = p.is_poison
    ac = make_defense("activation_clustering", {"reduce": "pca"}, seed=0, device="cpu")
    metrics, _ = apply_defense(ac, case)
    pre = "activation_clustering"
    assert metrics[f"{pre}.auc"] > 0.9 and metrics[f"{pre}.auc_target_label"] > 0.95, metrics
    assert TARGET in ac.flagged_labels_
    assert metrics[f"{pre}.n_labels_flagged"] == len(ac.flagged_labels_) == sum(
        s < 0.35 for s in ac.small_share_.values())
    assert metrics[f"{pre}.auc"] == pytest.approx(roc_auc_score(truth, ac.scores_), abs=1e-9)
    removed = ac.removed_
    # the removed rows are the smaller clusters of the flagged labels: margin > 0 there
    in_flagged = np.isin(p.y, ac.flagged_labels_)
    np.testing.assert_array_equal(removed, in_flagged & (ac.scores_ > 0))
    assert metrics[f"{pre}.n_removed"] == removed.sum()
    assert metrics[f"{pre}.flagged_fraction"] == pytest.approx(removed.sum() / len(p.y))
    assert metrics[f"{pre}.precision"] == pytest.approx((removed & truth).sum() / removed.sum())
    assert metrics[f"{pre}.recall"] == pytest.approx((removed & truth).sum() / truth.sum())
    assert metrics[f"{pre}.recall"] > 0.9
    before = case.evaluate(case.model)["attack_success_rate"]
    assert metrics["repaired.attack_success_rate"] < before - 0.5, (before, metrics)
    # the paper's ICA reduction: same bookkeeping (its separation varies, see the docstring)
    ica = ActivationClustering(seed=0).cluster(_features(case.model, p.x), p.y)
    assert 0 <= ica.ica_fallbacks_ <= 10
    assert np.isfinite(ica.scores_).all()
    again = ActivationClustering(seed=0).cluster(_features(case.model, p.x), p.y)
    np.testing.assert_array_equal(ica.scores_, again.scores_)   # same seed, same result


# -- STRIP ---------------------------------------------------------------------------------
def test_superimpose_and_threshold_rules():
    x = np.full((1, 1, 2, 2), 0.75, dtype=np.float32)
    o = np.array([[[[[0.5, 0.0], [0.25, 1.0]]]]], dtype=np.float32)   # (1, 1, 1, 2, 2)
    np.testing.assert_allclose(superimpose(x, o, "add")[0, 0, 0], [[1, 0.75], [1, 1]])
    np.testing.assert_allclose(superimpose(x, o, "average")[0, 0, 0],
                               [[0.625, 0.375], [0.5, 0.875]])
    h = np.random.default_rng(0).normal(2.0, 0.5, size=400)
    mu, sigma = h.mean(), h.std()
    assert fit_threshold(h, 0.05) == pytest.approx(mu + sigma * norm.ppf(0.05))
    assert fit_threshold(h, 0.05, "quantile") == pytest.approx(np.quantile(h, 0.05))
    idx = overlay_indices(30, 12, 5, np.random.default_rng(0))
    assert idx.shape == (30, 5) and all(len(set(r)) == 5 for r in idx)


def test_strip_on_the_planted_case(case):
    params = {"n_overlays": 20, "max_eval": 200}
    st = make_defense("strip", params, seed=0, device="cpu")
    metrics, artifacts = apply_defense(st, case)
    assert not any(k.startswith("repaired.") for k in metrics) and set(artifacts) == {"strip_scores.npz"}
    h_clean, h_trig = st.entropy_clean_, st.entropy_triggered_
    assert len(h_clean) == 200 and len(h_trig) == 200
    auc = metrics["strip.auc"]
    assert auc == pytest.approx(roc_auc_score(np.r_[np.zeros(200), np.ones(200)],
                                              -np.r_[h_clean, h_trig]))
    assert auc > 0.95 and metrics["strip.detection_rate"] > 0.8, metrics
    assert metrics["strip.false_rejection_rate"] < 0.1, metrics
    t = metrics["strip.threshold"]
    mu, sigma = norm.fit(st.entropy_calibration_)
    assert t == pytest.approx(norm.ppf(0.01, mu, sigma))
    assert metrics["strip.detection_rate"] == np.mean(h_trig < t)
    assert metrics["strip.false_rejection_rate"] == np.mean(h_clean < t)
    assert metrics["strip.flagged_fraction"] == pytest.approx(
        (np.sum(h_trig < t) + np.sum(h_clean < t)) / 400)
    assert metrics["strip.entropy_triggered_mean"] < metrics["strip.entropy_clean_mean"]
    # determinism: the same seed gives the same metrics
    again, _ = apply_defense(make_defense("strip", params, seed=0, device="cpu"), case)
    assert {k: v for k, v in again.items() if k != "defense_time_s"} == \
        {k: v for k, v in metrics.items() if k != "defense_time_s"}


def test_strip_entropy_is_the_mean_shannon_entropy_of_the_overlays(case):
    st = Strip(n_overlays=7, batch_size=10, seed=0)   # forces several forward passes
    x, pool = case.x_test[:4], case.x_clean[:9]
    h = st.entropy(case.model, x, pool, np.random.default_rng(11), "cpu")
    idx = overlay_indices(4, 9, 7, np.random.default_rng(11))
    model = case.model.eval()
    for i in range(4):
        mixed = np.clip(x[i][None] + pool[idx[i]], 0, 1)
        with torch.no_grad():
            prob = torch.softmax(model(torch.as_tensor(mixed)).double(), 1).numpy()
        expected = np.mean([scipy_entropy(q, base=2) for q in prob])
        assert h[i] == pytest.approx(expected, rel=1e-4, abs=1e-6)


# -- parameters and the sweep --------------------------------------------------------------
SWEEP = """
name: bd-detectors
kind: backdoor
dataset: {name: digits, subsample: 600}
model: {name: small_cnn, params: {width: 8}}
training: {epochs: 3, batch_size: 64, lr: 0.003, device: cpu}
attack: {trigger: patch, size: 2, target: 0, poison_rate: 0.1}
seeds: [0]
grid:
  defense:
    - {name: spectral_signatures, params: {expected_poison_fraction: 0.2}}
    - {name: activation_clustering, params: {n_components: 5}}
    - {name: strip, params: {n_overlays: 10, max_eval: 50, frr: 0.05}}
"""


def test_the_detectors_run_in_a_backdoor_sweep(tmp_path):
    from trustlab.experiments.config import load_experiment
    from trustlab.experiments.results import load_results
    from trustlab.experiments.runner import run_experiment

    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(SWEEP).replace("frr: 0.05", "frr: 2"))
    with pytest.raises(TrustlabError, match=r"defense\.params\.frr") as err:
        load_experiment(bad)
    assert "\n" not in str(err.value)

    path = tmp_path / "bd.yaml"
    path.write_text(textwrap.dedent(SWEEP))
    out = tmp_path / "out"
    run_experiment(load_experiment(path), out, executor="local", workers=1, progress=False)
    trials = {t["params"]["defense.name"]: t for t in load_results(out).trials}
    assert all(t["status"] == "ok" for t in trials.values()), trials
    for name in ("spectral_signatures", "activation_clustering"):
        m = trials[name]["metrics"]
        assert {f"{name}.{k}" for k in ("auc", "auc_target_label", "flagged_fraction",
                                         "precision", "recall", "n_removed")} <= set(m)
        assert m[f"{name}.flagged_fraction"] == pytest.approx(
            m[f"{name}.n_removed"] / m["n_train"])
        assert {"repaired.clean_accuracy", "repaired.attack_success_rate"} <= set(m)
    assert "activation_clustering.n_labels_flagged" in trials["activation_clustering"]["metrics"]
    m = trials["strip"]["metrics"]
    assert {f"strip.{k}" for k in ("auc", "flagged_fraction", "false_rejection_rate",
                                    "detection_rate", "threshold")} <= set(m)
    assert not any(k.startswith("repaired.") for k in m)
    # every defense starts from the same backdoored model
    asr = {t["metrics"]["attack_success_rate"] for t in trials.values()}
    assert len(asr) == 1
    # each detector stores its per-sample scores; the report draws their ROC curves and
    # the detection table from them and from the metrics
    import io

    from trustlab.report import write_report

    for name in ("spectral_signatures", "activation_clustering", "strip"):
        tid = trials[name]["trial_id"]
        z = np.load(io.BytesIO((out / "trials" / tid / f"{name}_scores.npz").read_bytes()))
        assert z["scores"].shape == z["is_poison"].shape
        from sklearn.metrics import roc_auc_score

        assert roc_auc_score(z["is_poison"], z["scores"]) == pytest.approx(
            trials[name]["metrics"][f"{name}.auc"])
    page = write_report(out).read_text()
    assert "ROC curves of the detectors" in page and 'alt="ROC strip"' in page
    assert "NC: target flagged" in page
